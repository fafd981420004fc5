# amaranth: UnusedElaboratable=no
"""Leaf hasher and batch accumulator gateware against the Python leaves and Merkle tree."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.hashing.accumulator import BatchAccumulator
from ocee.hw.hashing.batch_hasher import BatchHasher
from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.leaf_hasher import LeafHasher
from ocee.hw.hashing.merkle import EMPTY_ROOT, keccak256, merkle_root
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT_CODEC, BatchClosed


def _flow_events(n: int) -> list:
    model = MatchingModel(hash_events=False)
    events = [e for c in generate_flow(FlowParams(commands=n, seed=4, markets=2))
              for e in model.execute(c)]
    return [e for e in events if not isinstance(e, BatchClosed)]


def test_leaf_hasher_matches_the_leaf_encoding() -> None:
    events = _flow_events(300)
    kinds = {type(e) for e in events}
    assert len(kinds) >= 6  # accepted, fill, canceled, modified, book, rejected, ...
    dut = LeafHasher(rounds_per_cycle=2)
    rng = random.Random(1)
    leaves: list[bytes] = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        for event in events:
            while rng.random() < 0.2:
                await ctx.tick()
            ctx.set(dut.i_event.payload.as_value(), int.from_bytes(EVENT_CODEC.pack(event), "little"))
            ctx.set(dut.i_event.valid, 1)
            await ctx.tick().until(dut.i_event.ready)
            ctx.set(dut.i_event.valid, 0)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        while len(leaves) < len(events):
            ready = rng.random() < 0.7
            ctx.set(dut.o_leaf.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_leaf.valid, dut.o_leaf.payload)
            if ready and valid:
                leaves.append(payload.to_bytes(32, "little"))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert leaves == [event_leaf(e) for e in events]


@pytest.mark.parametrize("rounds_per_cycle", [1, 3])
def test_accumulator_roots_for_every_tree_shape(rounds_per_cycle: int) -> None:
    # (24 rounds per cycle is checked in test_keccak256; it is slow in Amaranth's simulator.)
    sizes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 0]
    batches = [[keccak256(bytes([n, i])) for i in range(n)] for n in sizes]
    dut = BatchAccumulator(rounds_per_cycle)
    rng = random.Random(2)
    roots: list[tuple[int, bytes]] = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        for leaves in batches:
            for item in [*({"leaf": int.from_bytes(x, "little"), "close": 0} for x in leaves),
                         {"leaf": 0, "close": 1}]:
                while rng.random() < 0.2:
                    await ctx.tick()
                ctx.set(dut.i_item.payload, item)
                ctx.set(dut.i_item.valid, 1)
                await ctx.tick().until(dut.i_item.ready)
                ctx.set(dut.i_item.valid, 0)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        while len(roots) < len(batches):
            ready = rng.random() < 0.5
            ctx.set(dut.o_root.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_root.valid, dut.o_root.payload)
            if ready and valid:
                roots.append((payload.count, payload.root.to_bytes(32, "little")))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert roots == [(len(b), merkle_root(b)) for b in batches]
    assert roots[0] == (0, EMPTY_ROOT)


def test_batch_hasher_turns_unhashed_events_into_the_devices() -> None:
    """Events of the model without hashing in, the full model's events (roots filled) out."""
    commands = list(generate_flow(FlowParams(commands=160, seed=9, markets=2, batch_every=23)))
    plain = MatchingModel(hash_events=False)
    full = MatchingModel()
    events_in = [e for c in commands for e in plain.execute(c)]
    expected = [e for c in commands for e in full.execute(c)]
    assert sum(isinstance(e, BatchClosed) for e in expected) == 7
    dut = BatchHasher(rounds_per_cycle=2)
    rng = random.Random(3)
    got: list = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        for event in events_in:
            while rng.random() < 0.2:
                await ctx.tick()
            ctx.set(dut.i_event.payload.as_value(), int.from_bytes(EVENT_CODEC.pack(event), "little"))
            ctx.set(dut.i_event.valid, 1)
            await ctx.tick().until(dut.i_event.ready)
            ctx.set(dut.i_event.valid, 0)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        while len(got) < len(expected):
            ready = rng.random() < 0.7
            ctx.set(dut.o_event.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_event.valid,
                                                           dut.o_event.payload.as_value())
            if ready and valid:
                raw = payload.to_bytes(46, "little")
                got.append(EVENT_CODEC.unpack(raw[:EVENT_CODEC.size_of_tag(raw[0])]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == expected
