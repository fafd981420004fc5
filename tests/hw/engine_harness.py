"""Runs command records through :class:`MatchingEngine` in Amaranth's simulator and compares
every event with the reference model's, decoded, so that a mismatch reads as a diff."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from streams import send, simulate  # tests/hw/streams.py

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.engine import MatchingEngine
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import COMMAND_CODEC, EVENT, EVENT_CODEC, Command


def decode_event(bits: int) -> Any:
    raw = bits.to_bytes((EVENT.size + 7) // 8, "little")
    try:
        return EVENT_CODEC.unpack(raw[:EVENT_CODEC.size_of_tag(raw[0])])
    except Exception as error:  # an event the codec cannot read is itself a finding
        return f"<undecodable {bits:#x}: {error}>"


def decode_command(raw: bytes) -> Any:
    try:
        return COMMAND_CODEC.unpack(raw)
    except Exception:  # a malformed record, on purpose
        return f"<record {raw.hex()}>"


def run_engine(config: MatchingConfig, records: Sequence[bytes | Command], *, idle: float = 0.0,
               ready: float = 1.0, seed: int = 0, dut: Any = None,
               taken_at: list[int] | None = None) -> int:
    """Execute ``records`` (raw command records, or commands) on the engine and on the model;
    assert the two event streams are equal, bit for bit. Returns the number of events.

    ``dut``: another component with the engine's ports (the engine core, whose batch roots are
    then compared with the full model's). ``taken_at``: filled with the clock (counted from
    reset) at which each event was taken."""
    raws = [r if isinstance(r, bytes) else COMMAND_CODEC.pack(r) for r in records]
    model = MatchingModel(config, hash_events=dut is not None)
    expected: list[tuple[int, Any]] = []  # (command index, event)
    for i, raw in enumerate(raws):
        expected += [(i, e) for e in model.execute_bytes(raw)]
    if dut is None:
        dut = MatchingEngine(config)
    rng = random.Random(seed)
    got: list[int] = []

    async def producer(ctx: Any) -> None:
        await ctx.tick().until(dut.ready)
        await send(ctx, dut.i_command, [int.from_bytes(r, "little") for r in raws], rng,
                   idle=idle, raw=True)

    firsts: list[int] = []  # o_event_first beside each event taken

    async def consumer(ctx: Any) -> None:
        source = dut.o_event.payload.as_value()
        clock = 0
        while len(got) < len(expected):
            clock += 1
            taking = rng.random() < ready
            ctx.set(dut.o_event.ready, taking)
            _, _, valid, payload, first = await ctx.tick().sample(dut.o_event.valid, source,
                                                                  dut.o_event_first)
            if taking and valid:
                got.append(payload)
                firsts.append(first)
                if taken_at is not None:
                    taken_at.append(clock)
        ctx.set(dut.o_event.ready, 1)
        for _ in range(40):  # nothing more may come out
            _, _, valid = await ctx.tick().sample(dut.o_event.valid)
            extra = decode_event(ctx.get(dut.o_event.payload.as_value()))
            assert not valid, f"an event the model does not emit: {extra}"

    done = []

    async def watchdog(ctx: Any) -> None:
        # Generous: the engine spends a few hundred clocks on a long sweep or a deep query.
        limit = dut.init_cycles + 400 * len(raws) + 1000
        for _ in range(limit):
            if done:
                return
            await ctx.tick()
        waiting = expected[len(got)][1] if len(got) < len(expected) else None
        raise AssertionError(f"the engine stalled: {len(got)} of {len(expected)} events after "
                             f"{limit} clocks; the next expected is {waiting}")

    async def finished(ctx: Any) -> None:
        await consumer(ctx)
        done.append(True)

    simulate(dut, producer, finished, watchdog)
    for n, (bits, (i, event)) in enumerate(zip(got, expected, strict=True)):
        want = int.from_bytes(EVENT_CODEC.pack(event), "little")
        assert bits == want, (
            f"event {n} (of command {i}: {decode_command(raws[i])}):\n"
            f"  expected {event}\n  received {decode_event(bits)}")
        # The first event of each command is marked (the link derives its `ends` bits from it).
        first = n == 0 or expected[n - 1][0] != i
        assert firsts[n] == first, f"event {n} (of command {i}): o_event_first is {firsts[n]}"
    return len(expected)
