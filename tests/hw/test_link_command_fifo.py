# amaranth: UnusedElaboratable=no
"""Command FIFO gateware against its Python model, in Amaranth's simulator.

Every clock compares ``w_free``, ``level`` and the output with the model before driving that
clock's write, commit, rollback and read, so the model predicts the FIFO clock by clock.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from amaranth.back import rtlil
from streams import simulate  # tests/hw/streams.py

from ocee.hw.link.command_fifo import MAX_DEPTH, CommandFifo

Byte = tuple[int, int]  # (data, last)


class CommandFifoModel:
    """The FIFO's contract: pending bytes, committed bytes, and when ``o`` offers a byte.

    A committed byte is on ``o`` from the second clock after its commit; after that, a byte is
    on ``o`` in a clock exactly when committed bytes were left over from the clock before.
    """

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.pending: list[Byte] = []
        self.committed: deque[Byte] = deque()
        self.offering = False  # a byte is on `o` in this clock

    @property
    def level(self) -> int:
        return len(self.committed)

    @property
    def w_free(self) -> int:
        return self.depth - len(self.committed) - len(self.pending)

    def step(self, write: Byte | None, commit: bool, rollback: bool, ready: bool) -> Byte | None:
        """One clock; returns the byte taken from ``o``, if any."""
        assert write is None or self.w_free > 0, "the bench wrote to a full FIFO"
        taken = None
        if self.offering and ready:
            taken = self.committed.popleft()
        self.offering = bool(self.committed)  # what was committed before this clock's commit
        if write is not None:
            self.pending.append(write)
        if rollback:
            self.pending = []
        elif commit:
            self.committed.extend(self.pending)
            self.pending = []
        return taken


@dataclass
class Clock:
    write: Byte | None = None
    commit: bool = False
    rollback: bool = False
    ready: bool = False


class FifoBench:
    def __init__(self, dut: CommandFifo) -> None:
        self.dut = dut
        self.model = CommandFifoModel(dut.depth)
        self.clock = 0
        self.read: list[Byte] = []  # every byte taken from `o`
        self.committed: list[Byte] = []  # every byte committed, in order

    def check(self, ctx: Any) -> None:
        dut, model = self.dut, self.model
        where = f"clock {self.clock}"
        assert ctx.get(dut.w_free) == model.w_free, where
        assert ctx.get(dut.level) == model.level, where
        assert ctx.get(dut.o.valid) == model.offering, where
        if model.offering:
            payload = ctx.get(dut.o.payload)
            assert (payload.data, payload.last) == model.committed[0], where

    async def step(self, ctx: Any, clock: Clock) -> None:
        self.check(ctx)
        dut = self.dut
        ctx.set(dut.w_en, clock.write is not None)
        ctx.set(dut.w_data, clock.write[0] if clock.write else 0)
        ctx.set(dut.w_last, clock.write[1] if clock.write else 0)
        ctx.set(dut.commit, clock.commit)
        ctx.set(dut.rollback, clock.rollback)
        ctx.set(dut.o.ready, clock.ready)
        if clock.commit and not clock.rollback:
            self.committed += [*self.model.pending, *([clock.write] if clock.write else [])]
        taken = self.model.step(clock.write, clock.commit, clock.rollback, clock.ready)
        if taken is not None:
            self.read.append(taken)
        await ctx.tick()
        self.clock += 1


def run(depth: int, body: Callable[[Any, FifoBench], Any]) -> FifoBench:
    dut = CommandFifo(depth)
    bench = FifoBench(dut)

    async def testbench(ctx: Any) -> None:
        await body(ctx, bench)
        bench.check(ctx)

    simulate(dut, testbench)
    assert bench.read == bench.committed[:len(bench.read)]
    return bench


def random_byte(rng: random.Random) -> Byte:
    return rng.randrange(256), int(rng.random() < 0.2)


# Validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [8, 24, 0, -16, 16.0, True, 1 << 15])
def test_depth_validation(depth: Any) -> None:
    message = f"depth must be a power of two between 16 and {MAX_DEPTH}, not {depth!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        CommandFifo(depth)


def test_ring_is_one_9_bit_memory() -> None:
    assert "memory width 9 size 2048" in rtlil.convert(CommandFifo(2048), name="top")


# Curated cases ----------------------------------------------------------------------------------


def test_pending_bytes_are_invisible_until_committed() -> None:
    async def body(ctx: Any, bench: FifoBench) -> None:
        for k in range(5):
            await bench.step(ctx, Clock(write=(k, int(k == 4)), ready=True))
        for _ in range(3):
            await bench.step(ctx, Clock(ready=True))
        assert bench.model.w_free == 11 and bench.model.level == 0
        await bench.step(ctx, Clock(commit=True, ready=True))
        for _ in range(8):
            await bench.step(ctx, Clock(ready=True))

    bench = run(16, body)
    assert bench.read == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 1)]


def test_commit_with_the_final_write_and_rollback_with_a_write() -> None:
    async def body(ctx: Any, bench: FifoBench) -> None:
        await bench.step(ctx, Clock(write=(1, 0)))
        await bench.step(ctx, Clock(write=(2, 1), commit=True))  # both bytes
        await bench.step(ctx, Clock(write=(3, 0)))
        await bench.step(ctx, Clock(write=(4, 1), rollback=True))  # neither 3 nor 4
        await bench.step(ctx, Clock(write=(5, 1), commit=True))
        await bench.step(ctx, Clock(commit=True))  # nothing pending: no effect
        await bench.step(ctx, Clock(rollback=True))
        for _ in range(6):
            await bench.step(ctx, Clock(ready=True))

    bench = run(16, body)
    assert bench.read == [(1, 0), (2, 1), (5, 1)]


def test_full_fifo_then_drain_with_wrap_around() -> None:
    async def body(ctx: Any, bench: FifoBench) -> None:
        for lap in range(4):
            k = 0
            while bench.model.w_free:  # fill it up
                k += 1
                await bench.step(ctx, Clock(write=(lap * 16 + k, 0), commit=bench.model.w_free == 1))
            for _ in range(3):  # full: nothing can be written until a byte is read
                await bench.step(ctx, Clock())
            for k in range(9):  # a partial drain moves the ring's start; writes go on beside it
                await bench.step(ctx, Clock(write=(200 + k, 1) if 0 < k < 6 else None, ready=True))
            await bench.step(ctx, Clock(commit=True))
        while bench.model.level or bench.model.offering:
            await bench.step(ctx, Clock(ready=True))

    bench = run(16, body)
    assert bench.read == bench.committed and len(bench.read) == 16 + 3 * 9 + 5


def test_reads_stream_one_byte_per_clock_while_writes_go_on() -> None:
    """A committed byte is on `o` two clocks after its commit; reads then take a byte per clock
    with writes, commits and rollbacks in every clock beside them."""
    rng = random.Random(1)
    read_clocks: list[int] = []

    async def body(ctx: Any, bench: FifoBench) -> None:
        for k in range(12):
            await bench.step(ctx, Clock(write=(k, 0), commit=k == 11))
        assert not ctx.get(bench.dut.o.valid)
        await bench.step(ctx, Clock(ready=True))
        assert ctx.get(bench.dut.o.valid)  # the second clock after the commit
        for _ in range(60):
            before = len(bench.read)
            write = random_byte(rng) if bench.model.w_free else None
            action = rng.random()
            await bench.step(ctx, Clock(write=write, commit=action < 0.3,
                                        rollback=0.3 <= action < 0.4, ready=True))
            if len(bench.read) > before:
                read_clocks.append(bench.clock)

    run(16, body)
    assert len(read_clocks) >= 40
    first = read_clocks[0]
    # While committed bytes remain, one is read in every clock.
    assert read_clocks[:12] == list(range(first, first + 12))


# Random traffic ---------------------------------------------------------------------------------


def random_body(clocks: int, seed: int) -> Callable[[Any, FifoBench], Any]:
    """Random writes, commits, rollbacks and reads, in phases that fill the FIFO (reads rare)
    and drain it (writes rare)."""
    rng = random.Random(seed)

    async def body(ctx: Any, bench: FifoBench) -> None:
        for clock in range(clocks):
            p_write, p_ready = ((0.9, 0.1), (0.2, 0.9), (0.6, 0.6))[(clock // 200) % 3]
            write = random_byte(rng) if bench.model.w_free and rng.random() < p_write else None
            action = rng.random()
            await bench.step(ctx, Clock(write=write, commit=action < 0.15,
                                        rollback=0.15 <= action < 0.2,
                                        ready=rng.random() < p_ready))

    return body


@pytest.mark.parametrize(("depth", "clocks", "seed"), [(16, 4000, 1), (16, 4000, 2), (64, 3000, 3),
                                                       (2048, 2000, 4)])
def test_random_traffic_matches_the_model(depth: int, clocks: int, seed: int) -> None:
    bench = run(depth, random_body(clocks, seed))
    assert bench.clock == clocks and len(bench.read) > clocks // 5
