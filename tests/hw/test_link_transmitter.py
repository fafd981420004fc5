# amaranth: UnusedElaboratable=no
"""The link transmitter in Amaranth's simulator: every body it sends is decoded by the host's
FrameDecoder (SLIP, length, CRC) and checked field by field against what the emulator's rules
say it must be; a randomized run against a small go-back-N host with lost frames both ways checks
that every record arrives exactly once, in order, with its ``ends`` bit.

Event records here describe themselves: the first byte is the record's length, so a host can
split a payload without the protocol's tables.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from amaranth.sim import Simulator

from ocee.host.link.wire import (
    END,
    ESC,
    STATUS,
    Frame,
    FrameDecoder,
    FrameKind,
    crc32,
)
from ocee.hw.link.layouts import EVENT_BYTE
from ocee.hw.link.transmitter import MAX_EVENTS_PER_FRAME, LinkTransmitter

Record = tuple[bytes, bool]  # an event record and its `ends` bit


def record(length: int, tag: int = 0) -> bytes:
    """A record of ``length`` bytes whose first byte is its length."""
    return bytes([length]) + bytes((tag * 7 + i) & 0xFF for i in range(length - 1))


def command(tag: int, lengths: list[int]) -> list[Record]:
    """The records of one command: the last one ends it."""
    return [(record(n, tag + i), i == len(lengths) - 1) for i, n in enumerate(lengths)]


def event_bytes(records: list[Record]) -> list[int]:
    """The records as EVENT_BYTE payloads (raw bits), as the event serializer sends them."""
    out = []
    for raw, end in records:
        for i, byte in enumerate(raw):
            out.append(EVENT_BYTE.const({"data": byte, "first": i == 0, "last": i == len(raw) - 1,
                                         "length": len(raw), "end": end}).as_bits())
    return out


def split(frame: Frame) -> list[Record]:
    """The records of a DATA frame, with their ends bits; checks the unused ends bits are 0."""
    ends = int.from_bytes(frame.payload[:4], "little")
    records: list[Record] = []
    body = frame.payload[4:]
    i = 0
    while i < len(body):
        n = body[i]
        assert n and i + n <= len(body), f"a record runs past the payload: {frame}"
        records.append((body[i:i + n], bool(ends >> len(records) & 1)))
        i += n
    assert 1 <= len(records) <= MAX_EVENTS_PER_FRAME
    assert ends >> len(records) == 0
    return records


class Bench:
    """Drives a LinkTransmitter a clock at a time as the link controller does, and decodes
    every body it sends into ``frames`` (clock of the last byte, frame)."""

    def __init__(self, *, seed: int = 0, ready: float = 1.0, epoch: int = 1,
                 rx_expected: int = 0x1234, credit: int = 0x0800, **params: Any) -> None:
        params.setdefault("rto_cycles", 100_000)
        params.setdefault("ack_delay_cycles", 8)
        self.dut = LinkTransmitter(**params)
        self.rng = random.Random(seed)
        self.ready = ready
        self.epoch, self.rx_expected, self.credit = epoch, rx_expected, credit
        self.clock = 0
        self.frames: list[tuple[int, Frame]] = []
        self.tx_frames = 0
        self.retransmits = 0
        self.first_sent: dict[int, bytes] = {}  # seq -> the payload of its first transmission
        self.lap = 0  # the lap of the latest DATA frame
        self._body = bytearray()
        self._inputs = (epoch, rx_expected, credit)  # in the previous clock
        self._headers: deque[tuple[int, int, int]] = deque()  # picked, not yet fully received
        self._decoder = FrameDecoder(self.dut.max_frame)
        self.on_frame: Callable[[Frame], None] | None = None

    def data(self, start: int = 0) -> list[Frame]:
        return [f for _, f in self.frames[start:] if f.kind is FrameKind.DATA]

    def kinds(self, start: int = 0) -> list[FrameKind]:
        return [f.kind for _, f in self.frames[start:]]

    async def step(self, ctx: Any, *, peer_ack: int | None = None,
                   nak: tuple[int, int] | None = None, owe_ack: bool = False,
                   send_nak: int | None = None, status: int | None = None) -> None:
        """One clock, with the controller's strobes given."""
        dut = self.dut
        ctx.set(dut.epoch, self.epoch)
        ctx.set(dut.rx_expected, self.rx_expected)
        ctx.set(dut.credit, self.credit)
        strobes = [dut.peer_ack_valid, dut.nak_valid, dut.owe_ack, dut.send_nak_valid,
                   dut.send_status_valid]
        if peer_ack is not None:
            ctx.set(dut.peer_ack_valid, 1)
            ctx.set(dut.peer_ack, peer_ack)
        if nak is not None:
            ctx.set(dut.nak_valid, 1)
            ctx.set(dut.nak_ack, nak[0])
            ctx.set(dut.nak_lap, nak[1])
        ctx.set(dut.owe_ack, owe_ack)
        if send_nak is not None:
            ctx.set(dut.send_nak_valid, 1)
            ctx.set(dut.send_nak_lap, send_nak)
        if status is not None:
            ctx.set(dut.send_status_valid, 1)
            ctx.set(dut.status.as_value(), status)
        ready = self.rng.random() < self.ready
        ctx.set(dut.o_body.ready, ready)
        body = dut.o_body
        _, _, valid, byte, last, tx_frame, retransmit = await ctx.tick().sample(
            body.valid, body.payload.data, body.payload.last, dut.tx_frame, dut.retransmit)
        for strobe in strobes:
            ctx.set(strobe, 0)
        self.clock += 1
        if tx_frame:  # a strobe the clock after the header took the controller's inputs
            self._headers.append(self._inputs)
        self._inputs = (self.epoch, self.rx_expected, self.credit)
        self.tx_frames += tx_frame
        self.retransmits += retransmit
        if valid and ready:
            self._body.append(byte)
            if last:
                self._take(bytes(self._body))
                self._body.clear()

    def _take(self, body: bytes) -> None:
        assert len(body) <= self.dut.max_frame
        encoded = body.replace(ESC, b"\xdb\xdd").replace(END, b"\xdb\xdc") + END
        frames = self._decoder.feed(encoded)
        assert self._decoder.errors == 0 and len(frames) == 1, f"a bad body: {body.hex()}"
        frame = frames[0]
        assert crc32(body[:-4]).to_bytes(4, "little") == body[-4:]
        assert (frame.epoch, frame.ack, frame.credit) == self._headers.popleft()
        assert not frame.poll
        if frame.kind is FrameKind.DATA:
            split(frame)
            first = self.first_sent.setdefault(frame.seq, frame.payload)
            assert first == frame.payload, f"frame {frame.seq} sent again with another payload"
            self.lap = frame.lap
        else:
            assert frame.seq == 0
            if frame.kind is not FrameKind.NAK:
                assert frame.lap == 0
        self.frames.append((self.clock, frame))
        if self.on_frame is not None:
            self.on_frame(frame)

    async def drain(self, ctx: Any, quiet: int = 20) -> None:
        """Until nothing has been offered on ``o_body`` for ``quiet`` clocks."""
        idle = 0
        while idle < quiet:
            await self.step(ctx)
            idle = 0 if self._body or ctx.get(self.dut.o_body.valid) else idle + 1

    async def run(self, ctx: Any, clocks: int) -> None:
        for _ in range(clocks):
            await self.step(ctx)

    async def until(self, ctx: Any, done: Callable[[], bool], limit: int = 20_000) -> None:
        for _ in range(limit):
            if done():
                return
            await self.step(ctx)
        raise AssertionError(f"not done after {limit} clocks")

    def simulate(self, body: Callable[[Any], Awaitable[None]], records: list[Record] | None = None,
                 idle: float = 0.0, pause: int = 0) -> None:
        """Run ``body`` (the controller) while a serializer offers ``records``, idling with
        probability ``idle`` before each byte and for ``pause`` clocks after each command."""
        feed_rng = random.Random(self.rng.random())
        commands: list[list[Record]] = [[]]
        for raw, end in records or []:
            commands[-1].append((raw, end))
            if end:
                commands.append([])

        async def feeder(ctx: Any) -> None:
            port = self.dut.i_event
            for records_of_command in commands:
                for payload in event_bytes(records_of_command):
                    while feed_rng.random() < idle:
                        await ctx.tick()
                    ctx.set(port.payload.as_value(), payload)
                    ctx.set(port.valid, 1)
                    while not (await ctx.tick().sample(port.ready))[2]:
                        pass
                    ctx.set(port.valid, 0)
                for _ in range(pause):
                    await ctx.tick()

        async def controller(ctx: Any) -> None:
            await body(ctx)
            assert not self._body, "a body was left unfinished"

        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(feeder, background=True)  # a full window may stall it for good
        sim.add_testbench(controller)
        sim.run()


def delivered(frames: list[Frame]) -> list[Record]:
    """The records of DATA frames taken in order (each seq once), as a go-back-N host does."""
    out: list[Record] = []
    expected = 0
    for frame in frames:
        if frame.kind is FrameKind.DATA and frame.seq == expected:
            out += split(frame)
            expected += 1
    return out


# Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "message"), [
    ({"max_frame": 127}, "max_frame must be between 128 and 4096, not 127"),
    ({"max_frame": 4097}, "max_frame must be between 128 and 4096, not 4097"),
    ({"max_frame": 256.0}, "max_frame must be between 128 and 4096, not 256.0"),
    ({"tx_window": 12}, "tx_window must be a power of two between 1 and 128, not 12"),
    ({"tx_window": 256}, "tx_window must be a power of two between 1 and 128, not 256"),
    ({"tx_window": 0}, "tx_window must be a power of two between 1 and 128, not 0"),
    ({"rto_cycles": 0}, "rto_cycles must be a positive integer, not 0"),
    ({"ack_delay_cycles": -1}, "ack_delay_cycles must be a non-negative integer, not -1"),
])
def test_constructor_validation(params: dict[str, Any], message: str) -> None:
    params.setdefault("rto_cycles", 1000)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        LinkTransmitter(**params)


# Framing -------------------------------------------------------------------------------------


def test_an_isolated_command_leaves_at_once_in_one_frame() -> None:
    bench = Bench()
    records = command(1, [23, 39, 39])
    building = []

    async def body(ctx: Any) -> None:
        for _ in range(260):
            building.append(ctx.get(bench.dut.building))
            await bench.step(ctx)

    bench.simulate(body, records)
    [(clock, frame)] = bench.frames
    assert (frame.kind, frame.seq, frame.lap) == (FrameKind.DATA, 0, 0)
    assert split(frame) == records
    # 101 event bytes, one per clock; the body (8 + 4 + 101 + 4 bytes) starts the clock after.
    assert building.index(1) == 1 and building.index(0, 1) == 1 + 101
    assert clock == 1 + 101 + 1 + 117
    assert bench.tx_frames == 1 and bench.retransmits == 0


def test_a_pause_inside_a_command_does_not_split_it_one_between_commands_does() -> None:
    bench = Bench(seed=3)
    records = command(1, [15, 15, 15, 15]) + command(9, [12])

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 2)

    bench.simulate(body, records, idle=0.5, pause=3)
    assert [split(f) for f in bench.data()] == [records[:4], records[4:]]


def test_32_events_close_a_frame() -> None:
    bench = Bench(max_frame=512)
    records = [r for tag in range(70) for r in command(tag, [3])]

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 3)

    bench.simulate(body, records)
    assert [len(split(f)) for f in bench.data()] == [32, 32, 6]
    assert delivered(bench.data()) == records


@pytest.mark.parametrize(("lengths", "first"), [
    ([46, 46, 20, 5], 3),  # 112 record bytes: exactly a 128-byte body
    ([46, 46, 21, 5], 2),  # 113: the third record starts the next frame
])
def test_a_record_that_fits_exactly_and_one_that_does_not(lengths: list[int], first: int) -> None:
    bench = Bench(max_frame=128)
    records = command(0, lengths)

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 2)

    bench.simulate(body, records)
    frames = bench.data()
    assert [split(f) for f in frames] == [records[:first], records[first:]]
    assert split(frames[0])[-1][1] is False and split(frames[1])[-1][1] is True
    if first == 3:
        assert len(frames[0].payload) + 12 == 128


# Window, acknowledgements, go-back -----------------------------------------------------------


def isolated_commands(count: int, length: int = 20) -> list[Record]:
    return [r for tag in range(count) for r in command(tag, [length])]


async def wait_building_done(bench: Bench, ctx: Any) -> None:
    """Until the frames offered so far are closed and sent (ready permitting)."""
    for _ in range(2000):
        await bench.step(ctx)
        if not ctx.get(bench.dut.building) and not ctx.get(bench.dut.o_body.valid):
            return
    raise AssertionError("still busy")


def test_a_full_window_stalls_the_events_until_an_ack() -> None:
    bench = Bench(tx_window=4)
    records = isolated_commands(7)
    ready_while_full = []

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 4)
        for _ in range(300):  # 4 frames unacknowledged: nothing more is taken
            ready_while_full.append(ctx.get(bench.dut.i_event.ready))
            await bench.step(ctx)
        assert len(bench.frames) == 4 and not ctx.get(bench.dut.building)
        await bench.step(ctx, peer_ack=2)
        await bench.until(ctx, lambda: len(bench.frames) == 6)
        await bench.run(ctx, 200)
        assert len(bench.frames) == 6
        await bench.step(ctx, peer_ack=6)
        await bench.until(ctx, lambda: len(bench.frames) == 7)

    bench.simulate(body, records, idle=0.3, pause=3)
    assert not any(ready_while_full)
    assert [f.seq for f in bench.data()] == list(range(7))
    assert delivered(bench.data()) == records
    assert bench.retransmits == 0


def test_nak_of_the_current_lap_goes_back_and_an_old_lap_is_ignored() -> None:
    bench = Bench(tx_window=8)
    records = isolated_commands(5)

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 5)
        await bench.step(ctx, peer_ack=2)
        await bench.step(ctx, nak=(3, 0))  # not the oldest unacknowledged frame
        await bench.step(ctx, peer_ack=9)  # beyond the frames sent: ignored
        await bench.run(ctx, 300)
        assert len(bench.frames) == 5
        await bench.step(ctx, nak=(2, 0))  # oldest, current lap: frames 2, 3, 4 again
        await bench.until(ctx, lambda: len(bench.frames) == 8)
        assert bench.retransmits == 3
        await bench.step(ctx, nak=(2, 0))  # lap 0 was answered by the go-back
        await bench.step(ctx, peer_ack=3, nak=(3, 1))  # an ack and a NAK in the same clock
        await bench.until(ctx, lambda: len(bench.frames) == 10)
        await bench.run(ctx, 300)

    bench.simulate(body, records, pause=3)
    frames = bench.data()
    assert [(f.seq, f.lap) for f in frames] == [
        (0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (2, 1), (3, 1), (4, 1), (3, 2), (4, 2)]
    assert bench.retransmits == 5 and bench.tx_frames == 10


def test_a_timeout_goes_back_after_rto_cycles() -> None:
    rto = 600
    bench = Bench(tx_window=8, rto_cycles=rto)
    records = isolated_commands(3)

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 3)
        await bench.step(ctx, peer_ack=1)
        await bench.until(ctx, lambda: len(bench.frames) == 5, limit=3 * rto)
        await bench.step(ctx, peer_ack=3)
        await bench.run(ctx, 3 * rto)

    bench.simulate(body, records, pause=3)
    *_, (resent1, f1), (_, f2) = bench.frames
    assert (f1.seq, f1.lap, f2.seq, f2.lap) == (1, 1, 2, 1)
    # The timer restarted at the ack (TCP's choice): `rto` clocks after it the go-back, in the
    # next clock frame 1 is chosen, in the one after its first byte is offered.
    ack_step = bench.frames[2][0]  # the clock after frame 2's last byte
    assert resent1 - (len(f1.payload) + 12) == ack_step + rto + 2
    assert len(bench.frames) == 5 and bench.retransmits == 2


def test_frames_acknowledged_during_a_go_back_are_not_sent_again() -> None:
    bench = Bench(tx_window=8, ready=0.5, seed=5)
    records = isolated_commands(6, length=40)

    async def body(ctx: Any) -> None:
        await bench.until(ctx, lambda: len(bench.frames) == 6)
        await bench.step(ctx, nak=(0, 0))
        await bench.until(ctx, lambda: len(bench.frames) == 7)  # frame 0 again; 1 is on its way
        await bench.step(ctx, peer_ack=4)
        await bench.run(ctx, 1000)

    bench.simulate(body, records, pause=3)
    assert [f.seq for f in bench.data()] == [0, 1, 2, 3, 4, 5, 0, 1, 4, 5]
    assert bench.retransmits == 4


# Control frames and priorities ---------------------------------------------------------------


def status_bits(tag: int) -> int:
    rng = random.Random(tag)
    return rng.getrandbits(STATUS.size)


def test_status_then_nak_then_data_then_nothing_owed() -> None:
    bench = Bench(tx_window=8)
    records = isolated_commands(3)

    async def body(ctx: Any) -> None:
        bench.ready = 0.0
        await bench.run(ctx, 100)  # frame 0 is offered, 1 and 2 wait behind it
        bench.rx_expected = 0x4321
        await bench.step(ctx, owe_ack=True)
        await bench.step(ctx, send_nak=5)
        await bench.step(ctx, send_nak=6)  # the newest NAK replaces the pending one
        await bench.step(ctx, status=status_bits(1))
        bench.ready = 1.0
        await bench.run(ctx, 400)

    bench.simulate(body, records, pause=3)
    assert bench.kinds() == [FrameKind.DATA, FrameKind.STATUS, FrameKind.NAK, FrameKind.DATA,
                             FrameKind.DATA]
    _, status = bench.frames[1]
    assert status.payload == status_bits(1).to_bytes(STATUS.size // 8, "little")
    _, nak = bench.frames[2]
    assert (nak.lap, nak.ack, nak.payload) == (6, 0x4321, b"")
    assert bench.tx_frames == 5


def test_a_status_request_while_a_status_is_sent_is_sent_next() -> None:
    bench = Bench()

    async def body(ctx: Any) -> None:
        await bench.step(ctx, status=status_bits(1))
        await bench.run(ctx, 20)
        await bench.step(ctx, status=status_bits(2))
        await bench.run(ctx, 200)

    bench.simulate(body)
    assert [f.payload for _, f in bench.frames] == [
        status_bits(t).to_bytes(STATUS.size // 8, "little") for t in (1, 2)]


def test_an_owed_ack_waits_for_events_then_goes_alone() -> None:
    delay = 30
    bench = Bench(ack_delay_cycles=delay)
    records = command(0, [23])

    async def body(ctx: Any) -> None:
        await bench.step(ctx, owe_ack=True)  # the events of the same command carry it
        await bench.run(ctx, 200)
        assert bench.kinds() == [FrameKind.DATA]
        await bench.step(ctx, owe_ack=True)
        await bench.until(ctx, lambda: len(bench.frames) == 2)
        clock, ack = bench.frames[1]
        assert ack.kind is FrameKind.ACK and ack.payload == b""
        # Chosen `delay` + 1 clocks after the strobe, its first byte offered in the next one.
        assert clock - 12 == 201 + delay + 2
        await bench.run(ctx, 200)

    bench.simulate(body, records)
    assert bench.kinds() == [FrameKind.DATA, FrameKind.ACK]


def test_a_new_credit_is_sent_in_an_ack_only_in_an_epoch() -> None:
    bench = Bench(epoch=0)

    async def body(ctx: Any) -> None:
        bench.credit += 100
        await bench.run(ctx, 200)
        assert bench.frames == []  # no epoch: the host is not listening for credits
        bench.epoch = 7
        await bench.until(ctx, lambda: len(bench.frames) == 1)
        await bench.run(ctx, 200)
        bench.credit += 1
        await bench.until(ctx, lambda: len(bench.frames) == 2)
        await bench.run(ctx, 200)

    bench.simulate(body)
    assert bench.kinds() == [FrameKind.ACK, FrameKind.ACK]  # the credit is checked in _take


# Throughput ----------------------------------------------------------------------------------


def test_queued_frames_go_out_back_to_back_and_events_one_byte_per_clock() -> None:
    bench = Bench(tx_window=8, max_frame=128)
    records = [r for tag in range(40) for r in command(tag, [23, 39])]  # a frame each
    taken = []

    async def body(ctx: Any) -> None:
        bench.ready = 0.0
        for _ in range(800):
            taken.append(ctx.get(bench.dut.i_event.valid) and ctx.get(bench.dut.i_event.ready))
            await bench.step(ctx)
        bench.ready = 1.0
        start = bench.clock
        await bench.until(ctx, lambda: len(bench.frames) == 8)
        sent = sum(len(f.payload) + 12 for _, f in bench.frames)
        assert bench.clock - start == sent  # not one clock between bodies

    bench.simulate(body, records)
    # Eight slots: the first frame waits for the line, seven more fill up; one byte per clock.
    nbytes = sum(len(f.payload) - 4 for f in bench.data())
    assert taken.index(True) == 0 and sum(taken) == nbytes
    assert all(taken[:nbytes])


# Random traffic against a go-back-N host -----------------------------------------------------


class Host:
    """The host's receiving side (docs/link.md): in-order DATA frames only, a NAK once per
    (expected, lap) for a gap, cumulative acks; its frames reach the device after a delay and
    are lost, as the device's are, with probability ``loss``."""

    def __init__(self, bench: Bench, rng: random.Random, loss: float) -> None:
        self.bench = bench
        self.rng = rng
        self.loss = loss
        self.expected = 0
        self.records: list[Record] = []
        self.nak_sent: tuple[int, int] | None = None
        self.replies: deque[tuple[int, int, int | None]] = deque()  # (due, ack, NAK lap)
        self.status_requests: list[int] = []

    def on_frame(self, frame: Frame) -> None:
        if self.rng.random() < self.loss or frame.kind is not FrameKind.DATA:
            return
        d = (frame.seq - self.expected) & 0xFFFF
        nak = None
        if d == 0:
            self.records += split(frame)
            self.expected += 1
        elif d < 0x8000:
            if self.nak_sent == (self.expected, frame.lap):
                return
            self.nak_sent = nak_key = (self.expected, frame.lap)
            nak = nak_key[1]
        if self.rng.random() >= self.loss:
            due = max(self.replies[-1][0] if self.replies else 0,
                      self.bench.clock + self.rng.randrange(10, 100))
            self.replies.append((due, self.expected, nak))

    async def step(self, ctx: Any) -> None:
        """One clock: the host's next frame if it is due, and now and then the controller's own
        business: a status request, a NAK or an ACK owed, new ``ack`` and ``credit`` values."""
        controller: dict[str, Any] = {}
        draw = self.rng.random()
        if draw < 0.002:
            controller["status"] = self.rng.getrandbits(STATUS.size)
            self.status_requests.append(controller["status"])
        elif draw < 0.004:
            controller["send_nak"] = self.rng.randrange(8)
        elif draw < 0.006:
            controller["owe_ack"] = True
        elif draw < 0.008:
            self.bench.rx_expected = self.rng.getrandbits(16)
            self.bench.credit = self.rng.getrandbits(16)
        if self.replies and self.replies[0][0] <= self.bench.clock:
            _, ack, nak = self.replies.popleft()
            controller["peer_ack"] = ack
            if nak is not None:
                controller["nak"] = (ack, nak)
        await self.bench.step(ctx, **controller)


@pytest.mark.parametrize(("seed", "tx_window", "loss"), [
    (1, 4, 0.0), (2, 1, 0.05), (3, 16, 0.1), (4, 8, 0.25),
])
def test_random_traffic_is_delivered_exactly_once_in_order(seed: int, tx_window: int,
                                                           loss: float) -> None:
    rng = random.Random(seed)
    records = [r for tag in range(40)
               for r in command(tag, [rng.choice([12, 15, 23, 39, 46])
                                      for _ in range(rng.choice([1, 1, 2, 3]))])]
    bench = Bench(seed=seed, ready=0.6, tx_window=tx_window, max_frame=128, rto_cycles=1500)
    host = Host(bench, random.Random(seed + 100), loss)
    bench.on_frame = host.on_frame

    async def body(ctx: Any) -> None:
        for _ in range(40_000):
            if len(host.records) == len(records) and not host.replies \
                    and not ctx.get(bench.dut.o_body.valid):
                break
            await host.step(ctx)
        await bench.drain(ctx)

    bench.simulate(body, records, idle=0.3)
    assert host.records == records
    data = bench.data()
    assert bench.tx_frames == len(bench.frames)
    assert bench.retransmits == len(data) - len(bench.first_sent)
    if loss:
        assert bench.retransmits > 0
    # One status request is kept pending, the newest: the replies are some of the requests, in
    # order, the last one included.
    statuses = [int.from_bytes(f.payload, "little") for _, f in bench.frames
                if f.kind is FrameKind.STATUS]
    requests = iter(host.status_requests)
    assert all(status in requests for status in statuses)
    assert statuses[-1:] == host.status_requests[-1:]
