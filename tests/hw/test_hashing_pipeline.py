# amaranth: UnusedElaboratable=no
"""Leaf hasher and batch accumulator gateware against the Python leaves and Merkle tree."""

from __future__ import annotations

import random
from typing import Any

import pytest
from streams import receive, send, simulate  # tests/hw/streams.py

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.hashing.accumulator import BatchAccumulator
from ocee.hw.hashing.batch_hasher import BatchHasher
from ocee.hw.hashing.keccak import keccak_f1600
from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.leaf_hasher import LeafHasher
from ocee.hw.hashing.merkle import EMPTY_ROOT, keccak256, merkle_root
from ocee.hw.hashing.shared_permutation import SharedPermutation
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT, EVENT_CODEC, BatchClosed


def _raw(event: Any) -> int:
    """An event as the integer of its EVENT layout bits."""
    return int.from_bytes(EVENT_CODEC.pack(event), "little")


def _event(bits: int) -> Any:
    raw = bits.to_bytes((EVENT.size + 7) // 8, "little")
    return EVENT_CODEC.unpack(raw[:EVENT_CODEC.size_of_tag(raw[0])])


def _permuted_digest(state: int) -> bytes:
    """The first 256 bits of Keccak-f[1600] of a 1600-bit state, little-endian lanes."""
    lanes = keccak_f1600([(state >> (64 * i)) & ((1 << 64) - 1) for i in range(25)])
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])


def _flow_events(n: int) -> list:
    model = MatchingModel(hash_events=False)
    events = [e for c in generate_flow(FlowParams(commands=n, seed=4, markets=2))
              for e in model.execute(c)]
    return [e for e in events if not isinstance(e, BatchClosed)]


@pytest.mark.parametrize(("rounds_per_cycle", "contexts"), [(2, 1), (1, 3)])
def test_leaf_hasher_matches_the_leaf_encoding(rounds_per_cycle: int, contexts: int) -> None:
    events = _flow_events(300)
    kinds = {type(e) for e in events}
    assert len(kinds) >= 6  # accepted, fill, canceled, modified, book, rejected, ...
    dut = LeafHasher(rounds_per_cycle, contexts)
    rng = random.Random(1)
    leaves: list[bytes] = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        await send(ctx, dut.i_event, map(_raw, events), rng, idle=0.2, raw=True)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        await receive(ctx, dut.o_leaf, len(events), leaves, rng, ready=0.7,
                      convert=lambda x: x.to_bytes(32, "little"))

    simulate(dut, producer, consumer)
    assert leaves == [event_leaf(e) for e in events]


@pytest.mark.parametrize(("rounds_per_cycle", "contexts", "idle", "max_pending"),
                         [(1, 1, 0.2, None), (3, 1, 0.2, None), (1, 3, 0.0, None),
                          (2, 4, 0.05, None), (3, 1, 0.0, 1), (2, 3, 0.0, 2)])
def test_accumulator_roots_for_every_tree_shape(rounds_per_cycle: int, contexts: int,
                                                idle: float, max_pending: int | None) -> None:
    # (24 rounds per cycle is checked in test_keccak256; it is slow in Amaranth's simulator.)
    sizes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 0]
    batches = [[keccak256(bytes([n, i])) for i in range(n)] for n in sizes]
    dut = BatchAccumulator(rounds_per_cycle, contexts, max_pending)
    rng = random.Random(2)
    roots: list[tuple[int, bytes]] = []

    items = [item for leaves in batches
             for item in [*({"leaf": int.from_bytes(x, "little"), "close": 0} for x in leaves),
                          {"leaf": 0, "close": 1}]]

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        await send(ctx, dut.i_item, items, rng, idle=idle)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        await receive(ctx, dut.o_root, len(batches), roots, rng, ready=0.5,
                      convert=lambda x: (x.count, x.root.to_bytes(32, "little")))

    simulate(dut, producer, consumer)
    assert roots == [(len(b), merkle_root(b)) for b in batches]
    assert roots[0] == (0, EMPTY_ROOT)


@pytest.mark.parametrize(("rounds_per_cycle", "contexts", "queue_depth", "shared"),
                         [(2, 1, 8, False), (1, 3, 8, False), (2, 1, 2, False), (3, 1, 2, True),
                          (2, 3, 8, True)])
def test_batch_hasher_turns_unhashed_events_into_the_devices(rounds_per_cycle: int, contexts: int,
                                                             queue_depth: int, shared: bool) -> None:
    """Events of the model without hashing in, the full model's events (roots filled) out.
    (The boards' stage, one slice-serial core shared, runs under Verilator:
    tests/sim/test_hashing_verilator.py.)"""
    commands = list(generate_flow(FlowParams(commands=160, seed=9, markets=2, batch_every=23)))
    plain = MatchingModel(hash_events=False)
    full = MatchingModel()
    events_in = [e for c in commands for e in plain.execute(c)]
    expected = [e for c in commands for e in full.execute(c)]
    assert sum(isinstance(e, BatchClosed) for e in expected) == 7
    dut = BatchHasher(rounds_per_cycle, queue_depth=queue_depth, contexts=contexts,
                      shared_permutation=shared)
    rng = random.Random(3)
    got: list = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        await send(ctx, dut.i_event, map(_raw, events_in), rng, idle=0.2, raw=True)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        await receive(ctx, dut.o_event, len(expected), got, rng, ready=0.7, convert=_event, raw=True)

    simulate(dut, producer, consumer)
    assert got == expected


@pytest.mark.parametrize(("rounds_per_cycle", "contexts"), [(3, 1), (2, 3)])
def test_shared_permutation_returns_each_users_digests_in_order(rounds_per_cycle: int,
                                                               contexts: int) -> None:
    """Three users with random gaps and backpressure, one of which stops reading for a long
    while: every user gets the digests of its own states, in order, and the others go on."""
    users = 3
    dut = SharedPermutation(users, rounds_per_cycle, contexts)
    rng = random.Random(5)
    states = [[rng.getrandbits(1600) for _ in range(12)] for _ in range(users)]
    got: list[list[bytes]] = [[] for _ in range(users)]
    finished_early: list[int] = []  # users done before user 0 reads anything
    user0_reading = False

    def producer(u: int):  # type: ignore[no-untyped-def]
        async def bench(ctx) -> None:  # type: ignore[no-untyped-def]
            await send(ctx, dut.user[u].i, states[u], random.Random(u), idle=0.3)
        return bench

    def consumer(u: int):  # type: ignore[no-untyped-def]
        async def bench(ctx) -> None:  # type: ignore[no-untyped-def]
            nonlocal user0_reading
            if u == 0:
                await ctx.tick().repeat(2000)  # user 0 reads nothing for a long while
                user0_reading = True
            await receive(ctx, dut.user[u].o, len(states[u]), got[u], random.Random(10 + u),
                          ready=0.6, convert=lambda x: x.to_bytes(32, "little"),
                          max_clocks=5000)
            if not user0_reading:
                finished_early.append(u)
        return bench

    simulate(dut, *(producer(u) for u in range(users)), *(consumer(u) for u in range(users)))
    for u in range(users):
        assert got[u] == [_permuted_digest(s) for s in states[u]], f"user {u}"
    assert sorted(finished_early) == [1, 2], "a user not reading its digests held the others up"
