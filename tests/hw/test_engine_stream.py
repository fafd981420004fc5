# amaranth: UnusedElaboratable=no
"""What the link needs of the engine core: where each command's events end (``CommandEnds``), and
moving the event stream (set stream: ``seq``, batch number, the batch in progress dropped)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from streams import simulate  # tests/hw/streams.py

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.engine_core import EngineCore
from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.merkle import MerkleAccumulator
from ocee.hw.link.ends import CommandEnds
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import COMMAND_CODEC, EVENT_CODEC, BatchClosed, CloseBatch, Command, Event

SMALL = MatchingConfig(markets=2, levels=64, orders=64, ids=256)


class _TaggedCore(Elaboratable):
    """The engine core with ``CommandEnds`` behind it, as the appliance wires them."""

    def __init__(self, config: MatchingConfig) -> None:
        self.core = EngineCore(config, rounds_per_cycle=4)
        self.ends = CommandEnds()

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.core, m.submodules.ends = self.core, self.ends
        wiring.connect(m, self.core.o_event, self.ends.i_event)
        m.d.comb += [self.ends.i_first.eq(self.core.o_event_first),
                     self.ends.idle.eq(self.core.idle)]
        return m


def _expected(parts: list[list[Command] | tuple[int, int]]) -> list[tuple[Event, bool]]:
    """The events (and `ends` bits) of command lists, with set-stream moves (seq, batch) between
    them, as docs/link.md defines them (and the link's device emulator computes them)."""
    model = MatchingModel(SMALL, hash_events=False)
    offset, batch, leaves, count = 0, 0, MerkleAccumulator(), 0
    out: list[tuple[Event, bool]] = []
    for part in parts:
        if isinstance(part, tuple):
            seq, batch = part
            offset = (seq - model.seq) & 0xFFFF_FFFF
            leaves, count = MerkleAccumulator(), 0
            continue
        for command in part:
            events = model.execute(command)
            for i, event in enumerate(events):
                event.seq = (event.seq + offset) & 0xFFFF_FFFF
                if isinstance(event, BatchClosed):
                    event.batch, event.count, event.root = batch, count, leaves.root()
                    batch, leaves, count = batch + 1, MerkleAccumulator(), 0
                else:
                    leaves.add(event_leaf(event))
                    count += 1
                out.append((event, i == len(events) - 1))
    return out


@pytest.mark.parametrize(("idle", "ready"), [(0.3, 0.6), (0.0, 1.0), (0.0, 0.05)])
def test_ends_and_set_stream(idle: float, ready: float) -> None:
    flow = list(generate_flow(FlowParams(commands=160, seed=3, markets=2, depth=10, batch_every=10_000,
                                         config=SMALL)))
    # A batch in progress when the stream moves: its leaves before the move must be dropped.
    parts: list[list[Command] | tuple[int, int]] = [
        [*flow[:50], CloseBatch(market=0), *flow[50:80]],
        (123_456, 41),
        [*flow[80:120], CloseBatch(market=0)],
        (0xFFFF_FFF0, 7),  # seq wraps around within the next batch
        [*flow[120:], CloseBatch(market=0)],
    ]
    expected = _expected(parts)
    dut = _TaggedCore(SMALL)
    rng = random.Random(5)
    got: list[tuple[int, int]] = []
    idle_seen: list[bool] = []

    async def producer(ctx: Any) -> None:
        core = dut.core
        await ctx.tick().until(core.ready)
        for part in parts:
            if isinstance(part, tuple):
                # The link sends a set-stream only once the core is idle.
                await ctx.tick().until(core.idle)
                ctx.set(core.i_set_stream.payload.seq, part[0])
                ctx.set(core.i_set_stream.payload.batch, part[1])
                ctx.set(core.i_set_stream.valid, 1)
                await ctx.tick().until(core.i_set_stream.ready)
                ctx.set(core.i_set_stream.valid, 0)
                continue
            for command in part:
                while rng.random() < idle:
                    await ctx.tick()
                ctx.set(core.i_command.payload.as_value(),
                        int.from_bytes(COMMAND_CODEC.pack(command), "little"))
                ctx.set(core.i_command.valid, 1)
                await ctx.tick().until(core.i_command.ready)
                ctx.set(core.i_command.valid, 0)

    async def consumer(ctx: Any) -> None:
        out = dut.ends.o_event
        while len(got) < len(expected):
            taking = rng.random() < ready
            ctx.set(out.ready, taking)
            _, _, valid, bits, end = await ctx.tick().sample(out.valid, out.payload.event.as_value(),
                                                             out.payload.end)
            if taking and valid:
                got.append((bits, end))
        ctx.set(out.ready, 1)
        for _ in range(200):
            _, _, valid, idle = await ctx.tick().sample(out.valid, dut.core.idle)
            assert not valid, "an event too many"
            idle_seen.append(idle)

    simulate(dut, producer, consumer)
    assert idle_seen[-1], "the core is not idle after its last command"
    for n, ((bits, end), (event, last)) in enumerate(zip(got, expected, strict=True)):
        assert bits == int.from_bytes(EVENT_CODEC.pack(event), "little"), (
            f"event {n}: expected {event}, got {EVENT_CODEC.unpack(bits.to_bytes(46, 'little'))}")
        assert end == last, f"event {n} ({event}): end is {end}, expected {last}"
