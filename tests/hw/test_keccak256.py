# amaranth: UnusedElaboratable=no
"""Keccak gateware against the golden model and eth_hash, in Amaranth's simulator."""

from __future__ import annotations

import itertools
import random

import pytest
from streams import receive, send, simulate  # tests/hw/streams.py

from ocee.hw.hashing.keccak import RATE_BYTES, keccak256_reference, keccak_f1600
from ocee.hw.hashing.keccak256 import Keccak256, KeccakF1600
from ocee.hw.hashing.keccak_slices import SliceSerialKeccakF1600, make_permutation
from ocee.hw.hashing.merkle import keccak256


def _lanes(state: int) -> list[int]:
    return [(state >> (64 * i)) & ((1 << 64) - 1) for i in range(25)]


def _state(lanes: list[int]) -> int:
    return sum(lane << (64 * i) for i, lane in enumerate(lanes))


@pytest.mark.parametrize("rounds_per_cycle", [1, 3, 24])
def test_permutation_matches_model(rounds_per_cycle: int) -> None:
    dut = KeccakF1600(rounds_per_cycle)
    rng = random.Random(rounds_per_cycle)
    states = [0, (1 << 1600) - 1] + [rng.getrandbits(1600) for _ in range(4)]
    got: list[int] = []
    cycles: list[int] = []

    async def bench(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.set(dut.o.ready, 1)
        for state in states:
            ctx.set(dut.i.payload, state)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            n = 0
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                n += 1
            cycles.append(n)
            got.append(ctx.get(dut.o.payload))
            await ctx.tick()

    simulate(dut, bench)
    assert got == [_state(keccak_f1600(_lanes(s))) for s in states]
    assert set(cycles) == {24 // rounds_per_cycle}


def _permutes_in_order(dut: KeccakF1600 | SliceSerialKeccakF1600, states: list[int],
                       rng: random.Random) -> None:
    """Offer ``states`` with random gaps, take results with random back-pressure: each comes
    out permuted, in order."""
    got: list[int] = []

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        await send(ctx, dut.i, states, rng, idle=0.3)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        await receive(ctx, dut.o, len(states), got, rng, ready=0.5)

    simulate(dut, producer, consumer)
    assert got == [_state(keccak_f1600(_lanes(s))) for s in states]


@pytest.mark.parametrize(("rounds_per_cycle", "contexts"), [(1, 1), (1, 3), (2, 4), (4, 6)])
def test_ring_keeps_order_and_pipelines(rounds_per_cycle: int, contexts: int) -> None:
    """States back to back, with random gaps and back-pressure, come out permuted and in order;
    with the output always ready the ring finishes ``contexts`` per 24 // k clocks."""
    dut = KeccakF1600(rounds_per_cycle, contexts)
    rng = random.Random(contexts)
    states = [rng.getrandbits(1600) for _ in range(40)]
    _permutes_in_order(dut, states, rng)

    done: list[int] = []

    async def streaming(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for clock in range(24 // rounds_per_cycle + 12 * 24 // (rounds_per_cycle * contexts)):
            ctx.set(dut.i.payload, states[clock % len(states)])
            await ctx.tick()
            if ctx.get(dut.o.valid):
                done.append(clock)

    simulate(dut, streaming)
    # Every context is busy: each finishes again 24 // k clocks after it last did.
    assert len(done) >= 10
    assert {b - a for a, b in zip(done, done[contexts:], strict=False)} == {24 // rounds_per_cycle}


def _blocks(message: bytes) -> list[tuple[int, int, int]]:
    """(data, length, last) transfers for a message."""
    chunks = [message[i:i + RATE_BYTES] for i in range(0, len(message), RATE_BYTES)] or [b""]
    return [(int.from_bytes(c, "little"), len(c), int(i == len(chunks) - 1))
            for i, c in enumerate(chunks)]


@pytest.mark.parametrize("rounds_per_cycle", [1, 24])
def test_keccak256_matches_eth_hash(rounds_per_cycle: int) -> None:
    rng = random.Random(7)
    lengths = [0, 1, 31, 32, 64, 135, 136, 137, 271, 272, 273] + [rng.randrange(400) for _ in range(4)]
    messages = [bytes(rng.randrange(256) for _ in range(n)) for n in lengths]
    dut = Keccak256(rounds_per_cycle)
    digests: list[bytes] = []

    blocks = [{"data": d, "length": n, "last": last} for m in messages for d, n, last in _blocks(m)]

    async def producer(ctx) -> None:  # type: ignore[no-untyped-def]
        await send(ctx, dut.i_block, blocks, rng, idle=0.3)

    async def consumer(ctx) -> None:  # type: ignore[no-untyped-def]
        await receive(ctx, dut.o_digest, len(messages), digests, rng, ready=0.6,
                      convert=lambda x: x.to_bytes(32, "little"))

    simulate(dut, producer, consumer)
    assert digests == [keccak256(m) for m in messages]
    assert digests == [keccak256_reference(m) for m in messages]


def test_rounds_per_cycle_is_validated() -> None:
    with pytest.raises(ValueError, match=r"must be one of .* \(a divisor of 24\), not 5"):
        KeccakF1600(5)
    with pytest.raises(ValueError, match=r"contexts must divide the 12 steps .* not 5"):
        KeccakF1600(2, 5)


@pytest.mark.parametrize("slices_per_clock", [1, 8, 64])
def test_slice_serial_permutation_matches_model(slices_per_clock: int) -> None:
    """States with random gaps and back-pressure come out permuted, in order; each takes
    ``25 * 64 / w`` clocks from being taken to its result (a parity pass and 24 rounds)."""
    dut = SliceSerialKeccakF1600(slices_per_clock)
    rng = random.Random(slices_per_clock)
    states = [0, (1 << 1600) - 1] + [rng.getrandbits(1600) for _ in range(6)]
    _permutes_in_order(dut, states, rng)

    taken: list[int] = []
    presented: list[int] = []

    async def back_to_back(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for clock in range(3 * dut.cycles + 3):
            ctx.set(dut.i.payload, states[len(taken) % len(states)])
            _, _, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            if ready:
                taken.append(clock)
            if valid:
                presented.append(clock)

    simulate(dut, back_to_back)
    assert dut.cycles == 25 * 64 // slices_per_clock
    # Edges: a state taken at edge t has its result shown from edge t + cycles on (sampled at
    # the edge after); the next state is taken as the result is: one permutation per cycles + 1.
    assert [p - t for t, p in zip(taken, presented, strict=False)] == [dut.cycles + 1] * len(presented)
    assert {b - a for a, b in itertools.pairwise(taken)} == {dut.cycles + 1}


def test_slices_per_clock_is_validated() -> None:
    with pytest.raises(ValueError, match=r"slices_per_clock must be one of .* not 3"):
        SliceSerialKeccakF1600(3)
    with pytest.raises(ValueError, match=r"contexts must be 1 with slices_per_clock, not 2"):
        make_permutation(1, 2, slices_per_clock=8)
