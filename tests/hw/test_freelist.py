# amaranth: UnusedElaboratable=no
"""Free list gateware against its golden model, in Amaranth's simulator.

Every clock compares all outputs (slot, count, empty, flags) with the model before offering that
clock's alloc and free, so the model predicts every slot handed out.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.hdl import ResetInserter
from streams import simulate  # tests/hw/streams.py

from ocee.hw.matching import bitmap
from ocee.hw.matching.freelist import QUEUE, FreeList, FreeListModel

Stimulus = Callable[[int, FreeListModel, list[int]], tuple[bool, int | None]]


class FreeListBench:
    """Drives a FreeList a clock at a time, checking it against the model before each clock."""

    def __init__(self, dut: FreeList) -> None:
        self.dut = dut
        self.model = FreeListModel(dut.entries)
        self.clock = 0
        self.allocated: list[int] = []  # the slots handed out and not yet freed, in order

    async def wait_ready(self, ctx: Any) -> int:
        clocks = 0
        while not ctx.get(self.dut.ready):
            assert ctx.get(self.dut.empty) and ctx.get(self.dut.count) == 0
            assert not ctx.get(self.dut.i_free.ready)
            await ctx.tick()
            clocks += 1
        self.model.reset()
        self.allocated = []
        return clocks

    def check(self, ctx: Any) -> None:
        dut, model = self.dut, self.model
        where = f"clock {self.clock}"
        assert ctx.get(dut.ready) and ctx.get(dut.i_free.ready), where
        assert ctx.get(dut.count) == model.count, where
        assert bool(ctx.get(dut.empty)) == model.empty, where
        if not model.empty:
            assert ctx.get(dut.slot) == model.slot, where
        assert bool(ctx.get(dut.underflow)) == model.underflow, where
        assert bool(ctx.get(dut.overflow)) == model.overflow, where

    async def step(self, ctx: Any, alloc: bool = False, free: int | None = None) -> int | None:
        """One clock: check the outputs, then alloc and/or free. Returns the slot allocated."""
        self.check(ctx)
        dut = self.dut
        ctx.set(dut.alloc, alloc)
        ctx.set(dut.i_free.valid, free is not None)
        ctx.set(dut.i_free.payload, 0 if free is None else free)
        slot = ctx.get(dut.slot) if alloc and not self.model.empty else None
        assert self.model.step(alloc, free) == slot
        if slot is not None:
            self.allocated.append(slot)
        if free is not None and free in self.allocated:
            self.allocated.remove(free)
        await ctx.tick()
        ctx.set(dut.alloc, 0)
        ctx.set(dut.i_free.valid, 0)
        self.clock += 1
        return slot


def run(entries: int, body: Callable[[Any, FreeListBench], Any]) -> FreeListBench:
    dut = FreeList(entries)
    bench = FreeListBench(dut)

    async def testbench(ctx: Any) -> None:
        assert await bench.wait_ready(ctx) == dut.init_cycles == entries
        await body(ctx, bench)
        bench.check(ctx)

    simulate(dut, testbench)
    return bench


@pytest.fixture(params=["old", "new"], ids=["collisions-old", "collisions-new"])
def collisions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """What a block RAM row read in the clock it is written returns (the design never uses it)."""
    monkeypatch.setattr(bitmap, "COLLISIONS_RETURN_NEW_DATA", request.param == "new")
    return str(request.param)


# Validation and elaboration ------------------------------------------------------------------


@pytest.mark.parametrize(("entries", "message"), [
    (1000, "entries must be a power of two, not 1000"),
    (0, "entries must be a power of two, not 0"),
    (-8, "entries must be a power of two, not -8"),
    (8.0, "entries must be a power of two, not 8.0"),
    (2, f"entries must be at least {QUEUE + 1}, not 2"),
])
def test_constructor_validation(entries: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        FreeList(entries)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        FreeListModel(entries)


def test_model_checks_slots() -> None:
    with pytest.raises(ValueError, match=re.escape("slot 16 is outside 0 .. 15")):
        FreeListModel(16).free(16)


def test_large_configuration_elaborates() -> None:
    assert "memory width 16 size 65536" in rtlil.convert(FreeList(65536), name="top")


# Curated cases -------------------------------------------------------------------------------


def test_allocations_after_reset_count_up_then_run_dry() -> None:
    """Back-to-back allocations, one per clock, hand out 0 .. entries - 1, then it is empty."""
    got: list[int | None] = []

    async def body(ctx: Any, bench: FreeListBench) -> None:
        for _ in range(16):
            got.append(await bench.step(ctx, alloc=True))
        assert ctx.get(bench.dut.empty) and ctx.get(bench.dut.count) == 0
        assert not ctx.get(bench.dut.underflow)

    run(16, body)
    assert got == list(range(16))


def test_first_in_first_out() -> None:
    got: list[int | None] = []

    async def body(ctx: Any, bench: FreeListBench) -> None:
        for _ in range(6):
            await bench.step(ctx, alloc=True)  # 0 .. 5
        for slot in (4, 1, 5):
            await bench.step(ctx, free=slot)
        for _ in range(10):  # 6 .. 15, then the freed ones in the order freed
            await bench.step(ctx, alloc=True)
        for _ in range(3):
            got.append(await bench.step(ctx, alloc=True))

    run(16, body)
    assert got == [4, 1, 5]


def test_alloc_and_free_in_the_same_clock() -> None:
    got: list[int | None] = []

    async def body(ctx: Any, bench: FreeListBench) -> None:
        got.append(await bench.step(ctx, alloc=True))  # 0
        got.append(await bench.step(ctx, alloc=True, free=0))  # 1, and 0 joins the end
        got.append(await bench.step(ctx, alloc=True, free=1))  # 2
        for _ in range(5):  # 3 .. 7
            got.append(await bench.step(ctx, alloc=True))
        got.append(await bench.step(ctx, alloc=True, free=7))  # 0: it was freed first
        got.append(await bench.step(ctx, alloc=True))  # 1
        got.append(await bench.step(ctx, alloc=True))  # 7
        assert ctx.get(bench.dut.empty)

    run(8, body)
    assert got == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 7]


def test_running_dry_and_refilling_with_alloc_and_free_each_clock(collisions: str) -> None:
    """Near empty, a freed slot must be handed out at once, whatever the reads in flight."""

    async def body(ctx: Any, bench: FreeListBench) -> None:
        for _ in range(7):
            await bench.step(ctx, alloc=True)  # one slot left: 7
        for _ in range(20):  # alloc the last one and free an old one in every clock
            slot = bench.allocated[0]
            await bench.step(ctx, alloc=True, free=slot)
        for _ in range(3):  # empty it, refill it with one free per clock, empty it again
            while not bench.model.empty:
                await bench.step(ctx, alloc=True)
            for slot in list(bench.allocated):
                await bench.step(ctx, free=slot)
            for _ in range(8):
                await bench.step(ctx, alloc=True, free=None)

    run(8, body)


def test_underflow_is_sticky_and_changes_nothing() -> None:
    async def body(ctx: Any, bench: FreeListBench) -> None:
        for _ in range(4):
            await bench.step(ctx, alloc=True)
        assert ctx.get(bench.dut.empty)
        assert await bench.step(ctx, alloc=True) is None  # nothing to allocate
        assert ctx.get(bench.dut.underflow) and ctx.get(bench.dut.count) == 0
        await bench.step(ctx, alloc=True, free=2)  # the free still happens
        assert ctx.get(bench.dut.count) == 1 and ctx.get(bench.dut.slot) == 2
        assert await bench.step(ctx, alloc=True) == 2
        await bench.step(ctx, free=3)
        assert ctx.get(bench.dut.underflow)  # sticky

    run(4, body)


def test_overflow_is_sticky_and_changes_nothing() -> None:
    async def body(ctx: Any, bench: FreeListBench) -> None:
        assert await bench.step(ctx, alloc=True) == 0
        await bench.step(ctx, free=0)  # all four free again: 1, 2, 3, 0
        assert not ctx.get(bench.dut.overflow)
        await bench.step(ctx, free=3)  # every slot is free already: ignored
        assert ctx.get(bench.dut.overflow) and ctx.get(bench.dut.count) == 4
        assert await bench.step(ctx, alloc=True) == 1
        await bench.step(ctx, free=1)  # full again
        assert await bench.step(ctx, alloc=True, free=2) == 2  # with an alloc, a free is fine
        assert ctx.get(bench.dut.count) == 4
        for expected in (3, 0, 1, 2):
            assert await bench.step(ctx, alloc=True) == expected
        assert ctx.get(bench.dut.overflow) and not ctx.get(bench.dut.underflow)

    run(4, body)


def test_reset_reruns_the_init_sequence() -> None:
    dut = FreeList(8)
    reset = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(reset)(dut)
    bench = FreeListBench(dut)
    got: list[int | None] = []

    async def testbench(ctx: Any) -> None:
        await bench.wait_ready(ctx)
        for _ in range(5):
            await bench.step(ctx, alloc=True)
        await bench.step(ctx, free=3)
        await bench.step(ctx, alloc=True)  # underflow is set below, and cleared by the reset
        ctx.set(dut.alloc, 1)
        while not ctx.get(dut.empty):
            await ctx.tick()
        await ctx.tick()
        assert ctx.get(dut.underflow)
        ctx.set(dut.alloc, 0)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        assert await bench.wait_ready(ctx) == dut.init_cycles
        for _ in range(8):
            got.append(await bench.step(ctx, alloc=True))
        bench.check(ctx)

    simulate(top, testbench)
    assert got == list(range(8))


# Random traffic ------------------------------------------------------------------------------


def random_body(clocks: int, seed: int, bias: float = 0.5) -> Callable[[Any, FreeListBench], Any]:
    """Allocs and frees of random slots, in phases that drain the list and fill it up again."""
    rng = random.Random(seed)

    async def body(ctx: Any, bench: FreeListBench) -> None:
        for clock in range(clocks):
            phase = (clock // 150) % 3
            p_alloc = (0.9, 0.2, bias)[phase]
            alloc = rng.random() < p_alloc and (not bench.model.empty or rng.random() < 0.05)
            free = None
            if bench.allocated and rng.random() < 1.1 - p_alloc:
                free = bench.allocated[rng.randrange(len(bench.allocated))]
            await bench.step(ctx, alloc, free)

    return body


@pytest.mark.parametrize(("entries", "clocks"), [(4, 2000), (8, 2000), (64, 3000), (8192, 3000)])
def test_random_traffic_matches_the_model(entries: int, clocks: int, collisions: str) -> None:
    bench = run(entries, random_body(clocks, seed=entries))
    assert bench.clock == clocks
