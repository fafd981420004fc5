# amaranth: UnusedElaboratable=no
"""Command assembler and event serializer gateware against the protocol's codecs and the host.

(Not named test_link_records.py: tests/link/ has one, and pytest's test modules need distinct
names.)

The assembler's payloads are split by the host's device emulator (``DeviceEmulator._split``) and
its records packed by the host's compiled codec (``COMMANDS``); the serializer's bytes are the
codec's ``pack`` of each event, and the host's ``EVENTS.unpack`` reads them back.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from amaranth.back import rtlil
from streams import receive, send, simulate  # tests/hw/streams.py

from ocee.host.link.device import DeviceEmulator
from ocee.host.link.records import COMMANDS, EVENTS
from ocee.hw.link.records import COMMAND_BYTES, EVENT_HEADER_BYTES, CommandAssembler, EventSerializer
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    COMMAND,
    COMMAND_CODEC,
    EVENT,
    EVENT_CODEC,
    Cancel,
    Canceled,
    Event,
    NewOrder,
    Opcode,
    OrderType,
    RecordCodec,
    Side,
    StpMode,
    TimeInForce,
)

COMMAND_MASK = (1 << COMMAND.size) - 1
#: First bytes that are no opcode.
NOT_OPCODES = [b for b in range(256) if not COMMANDS.sizes[b]]


def watchdog(done: list[bool], clocks: int = 20_000) -> Any:
    """A testbench that fails the simulation if ``done`` is still empty after ``clocks`` clocks,
    so that a block that stops short fails its test instead of hanging it."""
    async def bench(ctx: Any) -> None:
        for _ in range(clocks):
            if done:
                return
            await ctx.tick()
        raise AssertionError(f"the testbenches did not finish in {clocks} clocks")
    return bench


def random_fields(codec: RecordCodec[Any], cls: type[Any], rng: random.Random,
                  valid_enums: bool) -> dict[str, int]:
    """Random wire values for every field of ``cls`` (enumerations: members, or any bits)."""
    values = {}
    for f in codec.fields(cls)[1:]:
        if f.enum is not None and valid_enums:
            values[f.name] = rng.choice(list(f.enum)).value
        else:
            # Small values and all-ones as often as random ones: fields are mostly small numbers.
            values[f.name] = rng.choice([0, 1, rng.randrange(1 << f.width), (1 << f.width) - 1])
    return values


def random_command(rng: random.Random, opcode: Opcode | None = None) -> bytes:
    """A record of a valid opcode, any field bits (an enumeration with no valid value too)."""
    cls = COMMAND_CODEC.class_of_tag((opcode or rng.choice(list(Opcode))).value)
    value = cls.OP.value
    for f, v in zip(COMMAND_CODEC.fields(cls)[1:],
                    random_fields(COMMAND_CODEC, cls, rng, valid_enums=rng.random() < 0.8).values(),
                    strict=True):
        value |= v << f.offset
    return value.to_bytes(COMMAND_CODEC.size(cls), "little")


def invalid_record(rng: random.Random) -> bytes:
    """A record whose first byte is no opcode: it runs to the end of its payload."""
    length = rng.choice([1, 2, 3, rng.randrange(1, 40)])
    return bytes([rng.choice(NOT_OPCODES)]) + rng.randbytes(length - 1)


def expected_command(raw: bytes) -> int:
    """The COMMAND bits the assembler emits for record ``raw``."""
    if COMMANDS.sizes[raw[0]]:
        return int.from_bytes(raw, "little") & COMMAND_MASK
    return raw[0] | (raw[1] << 8 if len(raw) > 1 else 0)


def random_payload(rng: random.Random, invalid_tail: bool) -> bytes:
    payload = b"".join(random_command(rng) for _ in range(rng.randrange(0 if invalid_tail else 1, 6)))
    return payload + invalid_record(rng) if invalid_tail else payload


def payload_items(payloads: list[bytes]) -> list[dict[str, int]]:
    return [{"data": b, "last": int(k == len(p) - 1)} for p in payloads for k, b in enumerate(p)]


def run_assembler(payloads: list[bytes], seed: int, idle: float = 0.0,
                  ready: float = 1.0) -> tuple[list[int], int]:
    """The COMMAND bits emitted for ``payloads``, and ``consumed`` at the end."""
    dut = CommandAssembler()
    rng = random.Random(seed)
    records = [r for p in payloads for r in DeviceEmulator._split(p) or []]
    got: list[int] = []
    consumed: list[int] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, payload_items(payloads), rng, idle=idle)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, dut.o, len(records), got, rng, ready=ready, raw=True)
        for _ in range(4):  # nothing more comes
            await ctx.tick()
            assert not ctx.get(dut.o.valid)
        consumed.append(ctx.get(dut.consumed))

    simulate(dut, producer, consumer, watchdog(consumed))
    assert got == [expected_command(r) for r in records]
    return got, consumed[0]


# Command assembler --------------------------------------------------------------------------------


def test_blocks_convert_to_rtlil() -> None:
    """Both blocks elaborate into a netlist (the simulator alone accepts some designs that
    synthesis does not)."""
    for dut in (CommandAssembler(), EventSerializer()):
        assert "module" in rtlil.convert(dut, name="top")


def test_record_table_is_the_codecs() -> None:
    assert COMMAND_BYTES == max(COMMANDS.sizes) == (COMMAND.size + 7) // 8
    assert NOT_OPCODES[:2] == [0, 9] and len(NOT_OPCODES) == 256 - len(Opcode)


@pytest.mark.parametrize("opcode", list(Opcode), ids=lambda op: op.name)
def test_every_opcode_one_record_per_payload(opcode: Opcode) -> None:
    rng = random.Random(opcode.value)
    payloads = [random_command(rng, opcode) for _ in range(12)]
    got, consumed = run_assembler(payloads, seed=opcode.value, idle=0.3, ready=0.5)
    assert consumed == sum(map(len, payloads))
    for raw, bits in zip(payloads, got, strict=True):  # the codec reads the same fields back
        assembled = bits.to_bytes(COMMAND_BYTES, "little")[:len(raw)]
        assert COMMAND_CODEC.unpack_fields(assembled) == COMMAND_CODEC.unpack_fields(raw)


def test_typed_commands_from_the_host_codec() -> None:
    commands = [
        NewOrder(market=3, id=0xC0DBC0DB, account=0xFFFFFFFF, price=7, qty=1, side=Side.SELL,
                 type=OrderType.MARKET, tif=TimeInForce.FOK, post_only=True,
                 stp=StpMode.CANCEL_BOTH),
        Cancel(market=0, id=49169),
    ]
    rng = random.Random(3)
    for cls in COMMAND_CODEC.classes:
        commands.append(COMMAND_CODEC.from_fields(cls, random_fields(COMMAND_CODEC, cls, rng, True)))
    payload = b"".join(COMMANDS.pack(c) for c in commands)
    got, _ = run_assembler([payload], seed=3)
    assert [COMMANDS.unpack(bits.to_bytes(COMMAND_BYTES, "little")[:COMMANDS.size(bits & 0xFF)])
            for bits in got] == commands


@pytest.mark.parametrize(("idle", "ready"), [(0.0, 1.0), (0.4, 1.0), (0.0, 0.3), (0.3, 0.6)])
def test_payloads_of_several_records_with_and_without_invalid_tails(idle: float,
                                                                      ready: float) -> None:
    rng = random.Random(int(idle * 10 + ready * 100))
    payloads = [random_payload(rng, invalid_tail=rng.random() < 0.4) for _ in range(40)]
    assert any(COMMANDS.sizes[p[-1]] == 0 for p in payloads)
    _, consumed = run_assembler(payloads, seed=5, idle=idle, ready=ready)
    assert consumed == sum(map(len, payloads)) % (1 << 16)


@pytest.mark.parametrize("raw", [b"\x00", b"\x09\x02", b"\xff\x03\x01\x02\x03", b"\x00\xc0" * 20],
                         ids=["1-byte", "2-byte", "5-byte", "40-byte"])
def test_invalid_opcode_record_is_rejected_like_execute_bytes(raw: bytes) -> None:
    """The COMMAND emitted for a record with no opcode: its header as the engine reads it, every
    other bit zero; the model gives it the events it gives the raw record."""
    (bits,), _ = run_assembler([raw], seed=1)
    assert bits >> 16 == 0
    header = bits.to_bytes(2, "little")
    assert header == (raw + b"\x00")[:2]
    assert MatchingModel().execute_bytes(header) == MatchingModel().execute_bytes(raw)


def test_invalid_tail_after_valid_records_in_one_payload() -> None:
    rng = random.Random(9)
    payload = random_command(rng, Opcode.CANCEL) + random_command(rng, Opcode.NEW_ORDER) + \
        b"\x63\x02\x11\x22"
    got, consumed = run_assembler([payload, random_command(rng, Opcode.QUERY)], seed=9)
    assert [bits & 0xFF for bits in got] == [2, 1, 0x63, 7]
    assert got[2] == 0x0263 and consumed == 6 + 19 + 4 + 3


def test_payload_ending_inside_a_record_still_ends_it() -> None:
    """The receiver never commits such a payload; if one came, the record would end with it, so
    that the next payload's first byte is read as an opcode."""
    dut = CommandAssembler()
    rng = random.Random(10)
    truncated = random_command(rng, Opcode.MODIFY)[:7]
    query = random_command(rng, Opcode.QUERY)
    got: list[int] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, payload_items([truncated, query]), rng)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, dut.o, 2, got, rng, raw=True)
        done.append(True)

    simulate(dut, producer, consumer, watchdog(done))
    assert got == [int.from_bytes(truncated, "little"), int.from_bytes(query, "little")]


def test_assembler_takes_a_byte_per_clock_with_no_gap_between_records() -> None:
    rng = random.Random(11)
    payloads = [random_payload(rng, invalid_tail=k % 3 == 0) for k in range(12)]
    items = payload_items(payloads)
    records = [r for p in payloads for r in DeviceEmulator._split(p) or []]
    dut = CommandAssembler()
    taken: list[int] = []
    emitted: list[int] = []

    async def producer(ctx: Any) -> None:
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        clock = 0
        for item in items:
            ctx.set(dut.i.payload, item)
            while True:
                _, _, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
                clock += 1
                if valid:
                    emitted.append(clock)
                if ready:
                    taken.append(clock)
                    assert ctx.get(dut.consumed) == len(taken)
                    break
                assert clock < 2 * len(items), "the assembler stopped taking bytes"
        ctx.set(dut.i.valid, 0)
        _, _, valid = await ctx.tick().sample(dut.o.valid)
        if valid:
            emitted.append(clock + 1)

    simulate(dut, producer)
    assert taken == list(range(1, len(items) + 1))  # one byte in every clock
    ends = [sum(map(len, records[:k + 1])) for k in range(len(records))]
    assert emitted == [end + 1 for end in ends]  # each record in the clock after its last byte


# Event serializer ---------------------------------------------------------------------------------


def random_event(rng: random.Random, cls: type[Event]) -> Event:
    fields = random_fields(EVENT_CODEC, cls, rng, valid_enums=True)
    return EVENT_CODEC.from_fields(cls, fields)


def tagged(raw: bytes, end: bool, garbage: int = 0) -> int:
    """TAGGED_EVENT bits for record ``raw``; ``garbage`` fills the layout's bits past the record."""
    beyond = 8 * len(raw)
    garbage &= ((1 << EVENT.size) - 1) >> beyond << beyond
    return int.from_bytes(raw, "little") | garbage | int(end) << EVENT.size


EventByte = tuple[int, int, int, int, int]  # data, first, last, length, end


def expected_bytes(raw: bytes, end: bool) -> list[EventByte]:
    return [(b, int(k == 0), int(k == len(raw) - 1), len(raw), int(end)) for k, b in enumerate(raw)]


def run_serializer(inputs: list[tuple[bytes, bool]], seed: int, idle: float = 0.0,
                   ready: float = 1.0) -> list[EventByte]:
    dut = EventSerializer()
    rng = random.Random(seed)
    count = sum(len(raw) for raw, _ in inputs)
    got: list[EventByte] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, [tagged(raw, end, rng.getrandbits(EVENT.size)) for raw, end in inputs],
                   rng, idle=idle, raw=True)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, dut.o, count, got, rng, ready=ready,
                      convert=lambda x: (x.data, x.first, x.last, x.length, x.end))
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.o.valid)
        done.append(True)

    simulate(dut, producer, consumer, watchdog(done))
    return got


@pytest.mark.parametrize(("idle", "ready"), [(0.0, 1.0), (0.4, 1.0), (0.0, 0.3), (0.3, 0.6)])
def test_every_event_kind_as_the_codec_packs_it(idle: float, ready: float) -> None:
    rng = random.Random(int(idle * 10 + ready * 100))
    events = [random_event(rng, cls) for cls in EVENT_CODEC.classes for _ in range(4)]
    rng.shuffle(events)
    inputs = [(EVENT_CODEC.pack(e), rng.random() < 0.5) for e in events]
    assert all(EVENTS.pack(e) == raw for e, (raw, _) in zip(events, inputs, strict=True))
    got = run_serializer(inputs, seed=7, idle=idle, ready=ready)
    assert got == [b for raw, end in inputs for b in expected_bytes(raw, end)]
    records, record = [], bytearray()
    for data, _, last, _, _ in got:  # and the host reads the events back
        record.append(data)
        if last:
            records.append(EVENTS.unpack(bytes(record)))
            record = bytearray()
    assert records == events


def test_event_of_no_known_kind_sends_its_header() -> None:
    """Kind 0 never leaves the engine; the safe choice is a record of its header alone, and the
    event after it is intact."""
    header = bytes([0, 3, 1, 2, 3, 4])  # run_serializer fills the rest of the layout at random
    assert len(header) == EVENT_HEADER_BYTES
    canceled = EVENT_CODEC.pack(random_event(random.Random(2), Canceled))
    got = run_serializer([(header, True), (canceled, False)], seed=2)
    assert got == expected_bytes(header, True) + expected_bytes(canceled, False)


def test_serializer_sends_a_byte_per_clock_back_to_back() -> None:
    rng = random.Random(13)
    events = [random_event(rng, rng.choice(EVENT_CODEC.classes)) for _ in range(20)]
    inputs = [(EVENT_CODEC.pack(e), k % 2 == 0) for k, e in enumerate(events)]
    expected = [b for raw, end in inputs for b in expected_bytes(raw, end)]
    dut = EventSerializer()
    clocks: list[int] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, [tagged(raw, end) for raw, end in inputs], rng, raw=True)

    async def consumer(ctx: Any) -> None:
        ctx.set(dut.o.ready, 1)
        got: list[EventByte] = []
        clock = 0
        while len(got) < len(expected):
            _, _, valid, x = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            clock += 1
            assert clock <= 2 * len(expected), "the serializer stopped sending"
            if valid:
                got.append((x.data, x.first, x.last, x.length, x.end))
                clocks.append(clock)
        assert got == expected
        done.append(True)

    simulate(dut, producer, consumer, watchdog(done))
    assert clocks == list(range(clocks[0], clocks[0] + len(expected)))
