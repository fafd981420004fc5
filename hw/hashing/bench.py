"""Clocks per permutation, per digest and per event, measured in Amaranth's simulator.

``ocee bench hashing`` prints both: :func:`measure_keccak` times the Keccak core alone (the
permutation and one-block Keccak-256 messages, each leaf and inner node being one), and
:func:`measure_batch_hasher` the whole stage on a generated flow's events, as the matching model
emits them without roots. Inputs are offered back to back and outputs always taken, so the figures
are the blocks' own throughput; what the simulator counts is the figure, nothing is derived from
``rounds_per_cycle``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from amaranth import Value
from amaranth.sim import Simulator

from ..protocol import EVENT_CODEC, Event
from .batch_hasher import BatchHasher
from .keccak import keccak256_reference, keccak_f1600
from .keccak256 import BLOCK, Keccak256, KeccakF1600
from .keccak_slices import SliceSerialKeccakF1600

__all__ = ["HashingThroughput", "KeccakTiming", "measure_batch_hasher", "measure_keccak",
           "measure_slice_serial"]


@dataclass(frozen=True)
class HashingThroughput:
    rounds_per_cycle: int
    contexts: int
    shared: bool
    events: int
    cycles: int
    slices_per_clock: int | None = None  # the slice-serial core at this many, else rings

    @property
    def cycles_per_event(self) -> float:
        return self.cycles / self.events


def measure_batch_hasher(events: list[Event], rounds_per_cycle: int, contexts: int = 1, *,
                         shared: bool = False, queue_depth: int = 8,
                         slices_per_clock: int | None = None) -> HashingThroughput:
    dut = BatchHasher(rounds_per_cycle, queue_depth=queue_depth, contexts=contexts,
                      shared_permutation=shared, slices_per_clock=slices_per_clock)
    done = {"cycles": 0, "out": 0}

    async def producer(ctx: Any) -> None:
        for event in events:
            ctx.set(dut.i_event.payload.as_value(), int.from_bytes(EVENT_CODEC.pack(event), "little"))
            ctx.set(dut.i_event.valid, 1)
            await ctx.tick().until(dut.i_event.ready)
        ctx.set(dut.i_event.valid, 0)

    async def consumer(ctx: Any) -> None:
        ctx.set(dut.o_event.ready, 1)
        cycles = 0
        while done["out"] < len(events):
            _, _, valid = await ctx.tick().sample(dut.o_event.valid)
            cycles += 1
            done["out"] += int(valid)
        done["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return HashingThroughput(rounds_per_cycle, contexts, shared, len(events), done["cycles"],
                             slices_per_clock)


@dataclass(frozen=True)
class KeccakTiming:
    rounds_per_cycle: int
    contexts: int
    permutation_latency: int
    """Clocks from a state taken to its permuted state presented (``KeccakF1600``)."""
    permutation_period: float
    """Clocks per permutation, states back to back (``KeccakF1600``): the ring finishes its
    contexts in a burst, so this is the time for ``contexts`` of them divided by ``contexts``."""
    digest_period: float
    """Clocks from one digest to the next, one-block messages back to back (``Keccak256``): the
    rate of one core hashing leaves or inner nodes."""


def measure_slice_serial(slices_per_clock: int, count: int = 4) -> tuple[int, float]:
    """Clocks from a state taken to its result presented, and clocks per permutation back to
    back, of the slice-serial core (:class:`SliceSerialKeccakF1600`); results checked."""
    rng = random.Random(slices_per_clock)
    states = [rng.getrandbits(1600) for _ in range(count)]
    core = SliceSerialKeccakF1600(slices_per_clock)
    taken, presented, results = _run_stream(core, "i", "o", states)
    if results != [_permuted(s) for s in states]:
        raise RuntimeError(f"SliceSerialKeccakF1600({slices_per_clock}) disagrees with the "
                           f"golden model")
    return _single({p - t for t, p in zip(taken, presented, strict=True)}), _period(presented)


def measure_keccak(rounds_per_cycle: int, contexts: int = 1, count: int = 6) -> KeccakTiming:
    """Time ``count`` rounds of the ring's contexts and ``count`` one-block digests, and check
    their results."""
    rng = random.Random(rounds_per_cycle)
    states = [rng.getrandbits(1600) for _ in range(count * contexts)]
    ring = KeccakF1600(rounds_per_cycle, contexts)
    taken, presented, results = _run_stream(ring, "i", "o", states)
    if results != [_permuted(s) for s in states]:
        raise RuntimeError(f"KeccakF1600({rounds_per_cycle}, {contexts}) disagrees with the "
                           f"golden model")
    latencies = {p - t for t, p in zip(taken, presented, strict=True)}
    messages = [rng.randbytes(39) for _ in range(count)]  # the longest leaf preimage
    blocks = [int.from_bytes(m, "little") | len(m) << BLOCK["length"].offset | 1 << BLOCK["last"].offset
              for m in messages]
    _, digested, digests = _run_stream(Keccak256(rounds_per_cycle), "i_block", "o_digest", blocks)
    if [d.to_bytes(32, "little") for d in digests] != [keccak256_reference(m) for m in messages]:
        raise RuntimeError(f"Keccak256({rounds_per_cycle}) disagrees with the golden model")
    return KeccakTiming(rounds_per_cycle, contexts, _single(latencies),
                        _period(presented, contexts), _period(digested))


def _run_stream(dut: Any, i: str, o: str, payloads: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Offer ``payloads`` back to back on stream ``i`` and take everything from ``o``, always ready.

    Returns the clock edge that took each input, the edge that presented each output, and the
    outputs.
    """
    port_in, port_out = getattr(dut, i), getattr(dut, o)
    taken: list[int] = []
    presented: list[int] = []
    outputs: list[int] = []

    async def bench(ctx: Any) -> None:
        ctx.set(port_out.ready, 1)
        clock = 0
        while len(outputs) < len(payloads):
            offering = len(taken) < len(payloads)
            if offering:
                ctx.set(Value.cast(port_in.payload), payloads[len(taken)])
            ctx.set(port_in.valid, offering)
            # Sampled at edge ``clock``, before it takes effect: what that edge transfers. With
            # ready always high, an output seen here was put up by the edge before.
            _, _, ready, valid, payload = await ctx.tick().sample(
                port_in.ready, port_out.valid, port_out.payload)
            clock += 1
            if offering and ready:
                taken.append(clock)
            if valid:
                presented.append(clock - 1)
                outputs.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return taken, presented, outputs


def _permuted(state: int) -> int:
    lanes = keccak_f1600([(state >> (64 * i)) & ((1 << 64) - 1) for i in range(25)])
    return sum(lane << (64 * i) for i, lane in enumerate(lanes))


def _single(values: set[int]) -> int:
    if len(values) != 1:
        raise RuntimeError(f"expected one figure, measured {sorted(values)}")
    return values.pop()


def _period(clocks: list[int], contexts: int = 1) -> float:
    """Clocks per event of a steady stream of events ``clocks``, ``contexts`` at a time."""
    return _single({b - a for a, b in zip(clocks, clocks[contexts:], strict=False)}) / contexts
