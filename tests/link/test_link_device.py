"""The device's rules (docs/link.md), checked on the emulator frame by frame: what the gateware
must do when a host sends exactly these bytes."""

from __future__ import annotations

import pytest

from ocee.host.link import DeviceEmulator
from ocee.host.link.records import COMMANDS, EVENTS
from ocee.host.link.wire import (
    ControlOp,
    DeviceStatus,
    Frame,
    FrameDecoder,
    FrameKind,
    encode_frame,
    pack_control,
    pack_set_stream,
    unpack_status,
)
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.protocol import (
    Accepted,
    BatchClosed,
    Cancel,
    CloseBatch,
    Command,
    Event,
    MassCancelMarket,
    NewOrder,
    Opcode,
    Rejected,
    RejectReason,
    Side,
)

DATA, ACK, NAK, STATUS = FrameKind.DATA, FrameKind.ACK, FrameKind.NAK, FrameKind.STATUS


class RawHost:
    """Sends hand-made frames to an emulator and decodes what it answers; time is ``now``."""

    def __init__(self, device: DeviceEmulator) -> None:
        self.device = device
        self.decoder = FrameDecoder()
        self.now = 0.0
        self.tag = 0

    def send(self, *frames: bytes, poll: bool = True) -> list[Frame]:
        self.device.receive(b"".join(frames), self.now)
        if poll:
            self.device.poll(self.now)
        return self.decoder.feed(self.device.transmit())

    def drain(self, frames: list[Frame]) -> list[Frame]:
        """Acknowledge the device's DATA frames until it has nothing more to send."""
        received = list(frames)
        while data := [f for f in frames if f.kind is DATA]:
            frames = self.send(encode_frame(ACK, 7, 0, data[-1].seq + 1, 0))
            received += frames
        return received

    def control(self, op: ControlOp, arg: int = 0, boot_id: int | None = None) -> DeviceStatus:
        """A request quoting the device's boot id (as a host does), or ``boot_id``."""
        self.tag += 1
        boot_id = self.device.boot_id if boot_id is None else boot_id
        (reply,) = self.send(encode_frame(FrameKind.CONTROL, 0, 0, 0, 0,
                                          pack_control(self.tag, op, arg, boot_id)), poll=False)
        assert reply.kind is STATUS
        status = unpack_status(reply.payload)
        assert status.tag == self.tag and status.epoch == reply.epoch
        return status

    def data(self, seq: int, *commands: Command | bytes, epoch: int = 7, ack: int = 0) -> bytes:
        payload = b"".join(c if isinstance(c, bytes) else COMMANDS.pack(c) for c in commands)
        return encode_frame(DATA, epoch, seq, ack, 0, payload)

    def open(self, epoch: int = 7) -> None:
        assert self.control(ControlOp.OPEN, epoch).epoch == epoch


def events_of(frames: list[Frame]) -> list[tuple[Event, bool]]:
    """(event, last of its command) for every event in the DATA frames."""
    out = []
    for f in frames:
        if f.kind is not DATA:
            continue
        ends = int.from_bytes(f.payload[:4], "little")
        i, k = 4, 0
        while i < len(f.payload):
            size = EVENTS.sizes[f.payload[i]]
            out.append((EVENTS.unpack(f.payload[i:i + size]), bool(ends >> k & 1)))
            i += size
            k += 1
    return out


def order(id: int, side: Side = Side.BUY, price: int = 100, qty: int = 5) -> NewOrder:
    return NewOrder(market=0, id=id, account=1, side=side, price=price, qty=qty)


def test_status_before_open() -> None:
    host = RawHost(DeviceEmulator(MatchingConfig(markets=2), fifo_bytes=500, max_frame=300,
                                  tx_window=3))
    status = host.control(ControlOp.STATUS)
    assert (status.epoch, status.fifo_bytes, status.max_frame, status.tx_window,
            status.link_version) == (0, 500, 300, 3, 1)
    assert status.info.config == MatchingConfig(markets=2)
    # At epoch 0 no DATA is taken: the device answers with an ACK carrying its epoch, 0.
    replies = host.send(host.data(0, order(1)))
    assert [(f.kind, f.epoch) for f in replies] == [(ACK, 0)]
    assert host.device.commands == 0 and host.device.sequence_errors == 1


def test_open_and_reset_need_the_right_epoch() -> None:
    host = RawHost(DeviceEmulator())
    assert host.control(ControlOp.OPEN, 0).epoch == 0  # 0 is no epoch
    host.open(7)
    assert host.control(ControlOp.OPEN, 9).epoch == 7  # open already: a replayed OPEN is harmless
    host.send(host.data(0, order(1)))
    assert host.control(ControlOp.RESET, 6).epoch == 7  # a stale RESET is harmless
    assert host.device.model.resting_count == 1
    boot_id = host.device.boot_id
    status = host.control(ControlOp.RESET, 7)
    assert status.epoch == 0 and status.counters.commands == 0
    assert host.device.model.resting_count == 0
    assert status.boot_id == host.device.boot_id != boot_id


def test_a_replayed_open_after_a_reset_is_harmless() -> None:
    """A request quotes the boot id: one from before a reset cannot reopen the device."""
    device = DeviceEmulator(seed=1)
    host = RawHost(device)
    old_boot = device.boot_id
    host.open(7)
    open_7 = pack_control(99, ControlOp.OPEN, 7, old_boot)
    data_0 = host.data(0, order(1))
    host.send(data_0)
    device.reset()
    replies = host.send(encode_frame(FrameKind.CONTROL, 0, 0, 0, 0, open_7), data_0)
    assert unpack_status(replies[0].payload).epoch == 0  # the replayed OPEN did nothing
    assert [(f.kind, f.epoch) for f in replies[1:]] == [(ACK, 0)]  # nor the replayed DATA
    assert device.commands == 0
    assert host.control(ControlOp.RESET, 0, boot_id=old_boot).boot_id == device.boot_id


def test_data_in_order_once() -> None:
    host = RawHost(DeviceEmulator())
    host.open()
    frame = host.data(0, order(1), order(2, Side.SELL, 100, 3))
    replies = host.send(frame)
    events = events_of(replies)
    assert [(type(e).__name__, last) for e, last in events] == [
        ("Accepted", True), ("Accepted", False), ("Fill", True)]
    assert [e.seq for e, _ in events] == [0, 1, 2]
    assert replies[-1].ack == 1 and replies[-1].credit == (2048 + 38) & 0xFFFF
    # The same frame again (a retransmission or a replay) is acknowledged, not executed.
    replies = host.send(frame)
    assert events_of(replies) == [] and [f.kind for f in replies] == [ACK]
    assert replies[0].ack == 1 and host.device.commands == 2
    # A frame ahead of the expected one: a NAK for the expected one, with the frame's lap.
    ahead = encode_frame(DATA, 7, 2, 0, 0, COMMANDS.pack(order(3)), lap=5)
    replies = host.send(ahead)
    assert [(f.kind, f.ack, f.lap) for f in replies] == [(NAK, 1, 5)]
    assert host.send(ahead) == []  # once per expected frame and lap
    assert [f.kind for f in host.send(encode_frame(DATA, 7, 2, 0, 0, b"", lap=6))] == [NAK]
    assert host.device.sequence_errors == 4 and host.device.commands == 2


def test_another_epochs_frames_are_not_taken() -> None:
    host = RawHost(DeviceEmulator())
    host.open(7)
    replies = host.send(host.data(0, order(1), epoch=8))
    assert [(f.kind, f.epoch) for f in replies] == [(ACK, 7)]
    assert host.device.commands == 0


def test_credit_and_overflow() -> None:
    host = RawHost(DeviceEmulator(fifo_bytes=40))
    host.open()
    # Two new orders (38 bytes) fit; nothing runs until poll, so the FIFO holds them.
    host.send(host.data(0, order(1), order(2)), poll=False)
    # A third frame does not fit: not taken, not acknowledged, counted.
    host.send(host.data(1, order(3)), poll=False)
    assert host.device.overflows == 1
    replies = host.send()
    assert len(events_of(replies)) == 2
    assert replies[-1].ack == 1 and replies[-1].credit == 40 + 38
    host.send(host.data(1, order(3)))
    assert host.device.commands == 3 and host.device.counters.overflows == 1


def test_a_record_with_no_opcode_runs_to_the_end_and_is_rejected() -> None:
    host = RawHost(DeviceEmulator())
    host.open()
    events = events_of(host.send(host.data(0, Cancel(market=0, id=4), b"\x63\x02junk")))
    assert [e for e, _ in events] == [
        Rejected(0, 0, 4, Opcode.CANCEL.value, RejectReason.UNKNOWN_ID),
        Rejected(2, 1, 0, 0x63, RejectReason.MALFORMED)]
    raw = COMMANDS.pack(order(5))
    tif_3 = raw[:-1] + bytes([raw[-1] | 0b1100])
    (event, _), = events_of(host.send(host.data(1, tif_3)))
    assert event == Rejected(0, 2, 5, Opcode.NEW_ORDER.value, RejectReason.MALFORMED)


def test_a_payload_ending_inside_a_record_is_a_framing_error() -> None:
    host = RawHost(DeviceEmulator())
    host.open()
    assert host.send(host.data(0, COMMANDS.pack(order(1))[:-1])) == []
    assert host.device.counters.framing_errors == 1 and host.device.commands == 0
    assert events_of(host.send(host.data(0, order(1))))  # frame 0 is still expected


def test_set_stream_directive() -> None:
    host = RawHost(DeviceEmulator())
    host.open()
    host.send(host.data(0, order(1)))
    directive = encode_frame(FrameKind.DIRECTIVE, 7, 2, 0, 0, pack_set_stream(1000, 41))
    host.send(host.data(1, order(2)), poll=False)
    assert host.send(directive, poll=False) == []  # the engine is busy: refused
    assert host.device.overflows == 1
    host.send()
    (ack,) = host.send(directive)
    assert ack.kind is ACK and ack.ack == 3
    events = [e for e, _ in events_of(host.send(host.data(3, order(3), CloseBatch())))]
    assert [e.seq for e in events] == [1000, 1001]
    closed = events[1]
    assert isinstance(closed, BatchClosed) and (closed.batch, closed.count) == (41, 1)
    assert host.device.status().event_seq == 1002 and host.device.status().batch == 42


def test_events_wait_for_the_window_and_are_resent() -> None:
    device = DeviceEmulator(tx_window=2, rto=0.5, max_frame=128)
    host = RawHost(device)
    host.open()
    setup = [order(i, Side.SELL, 100 + i % 50, 1) for i in range(40)]
    assert len(events_of(host.drain(host.send(*(host.data(i, c) for i, c in enumerate(setup)))))) == 40
    # A mass cancel of 40 orders: 41 events, many frames; two go out, the rest wait.
    first = host.send(host.data(40, MassCancelMarket(market=0)))
    assert [f.kind for f in first if f.kind is DATA] == [DATA, DATA]
    assert host.send() == []  # nothing new before an acknowledgement or a timeout
    host.now += 0.5
    again = host.send()
    assert [f.seq for f in again if f.kind is DATA] == [f.seq for f in first if f.kind is DATA]
    assert all(f.lap == 1 for f in again if f.kind is DATA)
    assert device.retransmits == 2
    events = events_of(host.drain(again))
    assert len(events) == 41 and [last for _, last in events] == [False] * 40 + [True]


def test_power_cycle_after_a_given_command() -> None:
    device = DeviceEmulator(resets_at=[2])
    host = RawHost(device)
    host.open()
    replies = host.send(host.data(0, order(1), order(2, price=99)))
    assert events_of(replies) == []  # its events, and those in the same frame, never left
    assert device.power_cycles == 1 and device.epoch == 0 and device.model.resting_count == 0
    assert device.lifetime_commands == 2 and device.commands == 0


def test_constructor_checks() -> None:
    for kwargs, message in [({"fifo_bytes": 1 << 15}, "fifo_bytes must be between 1 and 32767"),
                            ({"max_frame": 100}, "max_frame must be between 128 and 4096"),
                            ({"tx_window": 0}, "tx_window must be between 1 and 255"),
                            ({"rto": 0}, "rto must be positive")]:
        with pytest.raises(ValueError, match=message):
            DeviceEmulator(**kwargs)  # type: ignore[arg-type]


def test_accepted_event_of_the_first_order() -> None:
    host = RawHost(DeviceEmulator())
    host.open()
    ((event, last),) = events_of(host.send(host.data(0, order(1))))
    assert isinstance(event, Accepted) and last and event.id == 1
