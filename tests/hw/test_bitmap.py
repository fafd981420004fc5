# amaranth: UnusedElaboratable=no
"""Occupancy bitmap gateware against its golden model, in Amaranth's simulator.

Every query's answer is checked against the model at the clock it is due (QUERY_LATENCY after the
query) and no other; curated cases also pin the model's answers by hand. Random traffic runs
twice: with the simulator's block RAM, where a row read in the clock it is written returns the
old data, and with one returning the new data, since the hardware may return either.
"""

from __future__ import annotations

import random
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from amaranth import Module, Signal
from amaranth.back import rtlil
from amaranth.hdl import ResetInserter
from streams import simulate  # tests/hw/streams.py

from ocee.hw.matching import bitmap
from ocee.hw.matching.bitmap import (
    QUERY_LATENCY,
    OccupancyBitmap,
    OccupancyBitmapModel,
    QueryMode,
    word_bits,
)

Update = tuple[int, int, bool]  # book, index, set
Query = tuple[int, QueryMode, int]  # book, mode, index

HIGH, LOW, BELOW, ABOVE = (QueryMode.BEST_HIGH, QueryMode.BEST_LOW, QueryMode.NEXT_BELOW,
                           QueryMode.NEXT_ABOVE)
NOT_FOUND = None
ANY = object()  # a curated step whose answer only the model gives


@dataclass
class Step:
    """One clock: an update and a query offered together (either may be absent)."""

    update: Update | None = None
    query: Query | None = None
    expect: object = ANY  # the query's answer, checked against the model too


class BitmapBench:
    """Drives an OccupancyBitmap a clock at a time; checks each answer at the clock it is due."""

    def __init__(self, dut: OccupancyBitmap) -> None:
        self.dut = dut
        self.model = OccupancyBitmapModel(dut.books, dut.levels)
        self.clock = 0
        self.due: deque[tuple[int, Query, int | None, int]] = deque()
        self.checked = 0

    async def wait_ready(self, ctx: Any) -> int:
        """Clocks until ``ready``, offering nothing; the model starts empty."""
        clocks = 0
        while not ctx.get(self.dut.ready):
            await ctx.tick()
            clocks += 1
        self.model.reset()
        return clocks

    def _check_result(self, ctx: Any) -> None:
        valid = ctx.get(self.dut.o_result.valid)
        if self.due and self.due[0][0] == self.clock:
            _, query, answer, word = self.due.popleft()
            assert valid, f"clock {self.clock}: no result for {query}"
            result = ctx.get(self.dut.o_result.payload)
            got = int(result.index) if result.found else None
            assert got == answer, f"clock {self.clock}: {query} gave {got}, model {answer}"
            assert result.found or result.index == 0
            got_word = int(result.word)
            assert got_word == word, \
                f"clock {self.clock}: {query} gave word {got_word:#x}, model {word:#x}"
            self.checked += 1
        else:
            assert not valid, f"clock {self.clock}: a result nobody asked for"

    async def step(self, ctx: Any, step: Step) -> None:
        dut = self.dut
        ctx.set(dut.i_update.valid, step.update is not None)
        if step.update is not None:
            book, index, set_ = step.update
            ctx.set(dut.i_update.payload, {"book": book, "index": index, "set": set_})
            self.model.update(book, index, set_)  # the same clock's query sees it
        ctx.set(dut.i_query.valid, step.query is not None)
        if step.query is not None:
            book, mode, index = step.query
            ctx.set(dut.i_query.payload, {"book": book, "mode": mode, "index": index})
            answer = self.model.query(book, mode, index)
            if step.expect is not ANY:
                assert answer == step.expect, f"model: {step.query} gave {answer}, not {step.expect}"
            word = self.model.word(book, mode, index)
            self.due.append((self.clock + QUERY_LATENCY, step.query, answer, word))
        self._check_result(ctx)
        await ctx.tick()
        self.clock += 1

    async def drain(self, ctx: Any) -> None:
        """Idle until every answer has been checked, and one clock more."""
        for _ in range(QUERY_LATENCY + 1):
            await self.step(ctx, Step())
        assert not self.due


def run(dut: OccupancyBitmap, steps: list[Step]) -> BitmapBench:
    bench = BitmapBench(dut)

    async def testbench(ctx: Any) -> None:
        assert await bench.wait_ready(ctx) == dut.init_cycles
        for step in steps:
            await bench.step(ctx, step)
        await bench.drain(ctx)

    simulate(dut, testbench)
    return bench


@pytest.fixture(params=["old", "new"], ids=["collisions-old", "collisions-new"])
def collisions(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """What a block RAM row read in the clock it is written returns."""
    monkeypatch.setattr(bitmap, "COLLISIONS_RETURN_NEW_DATA", request.param == "new")
    return str(request.param)


# Geometry and validation ---------------------------------------------------------------------


@pytest.mark.parametrize(("levels", "width"), [(8, 8), (16, 8), (64, 8), (128, 16), (256, 16),
                                               (1024, 32), (4096, 64), (8192, 128)])
def test_word_width(levels: int, width: int) -> None:
    assert word_bits(levels) == width
    dut = OccupancyBitmap(8, levels)
    assert dut.word_bits == width
    assert dut.words_per_book == levels // width <= width
    assert dut.init_cycles == dut.words == 8 * levels // width


@pytest.mark.parametrize(("books", "levels", "message"), [
    (4, 1000, "levels must be a power of two, not 1000"),
    (4, 0, "levels must be a power of two, not 0"),
    (4, 4, "levels must be at least 8, not 4"),
    (4, 1024.0, "levels must be a power of two, not 1024.0"),
    (0, 1024, "books must be a positive integer, not 0"),
    (True, 1024, "books must be a positive integer, not True"),
])
def test_constructor_validation(books: Any, levels: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        OccupancyBitmap(books, levels)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        OccupancyBitmapModel(books, levels)


def test_model_checks_its_arguments() -> None:
    model = OccupancyBitmapModel(2, 64)
    with pytest.raises(IndexError, match=re.escape("book 2 is outside 0 .. 1")):
        model.update(2, 0, True)
    with pytest.raises(IndexError, match=re.escape("index 64 is outside 0 .. 63")):
        model.query(0, BELOW, 64)


@pytest.mark.parametrize(("books", "levels"), [(32, 4096)])
def test_large_configurations_elaborate(books: int, levels: int) -> None:
    text = rtlil.convert(OccupancyBitmap(books, levels), name="top")
    assert "memory width" in text


# Curated cases -------------------------------------------------------------------------------


def boundary_steps(levels: int, width: int, book: int = 0) -> Iterator[Step]:
    """Index 0 and levels - 1, the first and last word boundaries, searches across empty words."""
    last = levels - 1
    for mode, index in [(HIGH, 0), (LOW, 0), (BELOW, last), (ABOVE, 0), (BELOW, 0), (ABOVE, last)]:
        yield Step(query=(book, mode, index), expect=NOT_FOUND)  # an empty book
    yield Step(update=(book, 0, True), query=(book, HIGH, 0), expect=0)  # seen in the same clock
    yield Step(query=(book, LOW, 0), expect=0)
    yield Step(query=(book, BELOW, 0), expect=NOT_FOUND)
    yield Step(query=(book, ABOVE, 0), expect=NOT_FOUND)
    yield Step(query=(book, BELOW, last), expect=0)  # across every empty word
    yield Step(update=(book, last, True), query=(book, HIGH, 0), expect=last)
    yield Step(query=(book, LOW, last), expect=0)
    yield Step(query=(book, ABOVE, 0), expect=last)  # across every empty word
    yield Step(query=(book, BELOW, last), expect=0)
    yield Step(query=(book, ABOVE, last), expect=NOT_FOUND)
    yield Step(query=(book, BELOW, 1), expect=0)
    yield Step(query=(book, ABOVE, last - 1), expect=last)
    if levels > width:  # more than one word
        # The first word boundary: width - 1 and width.
        yield Step(update=(book, width - 1, True))
        yield Step(update=(book, width, True))
        yield Step(query=(book, ABOVE, 0), expect=width - 1)
        yield Step(query=(book, ABOVE, width - 1), expect=width)
        yield Step(query=(book, BELOW, width), expect=width - 1)
        yield Step(query=(book, BELOW, width - 1), expect=0)
        yield Step(query=(book, ABOVE, width), expect=last)
        # The last word boundary.
        yield Step(update=(book, levels - width, True))
        yield Step(update=(book, levels - width - 1, True))
        yield Step(query=(book, BELOW, last), expect=levels - width)
        yield Step(query=(book, BELOW, levels - width), expect=levels - width - 1)
        yield Step(query=(book, ABOVE, levels - width - 1), expect=levels - width)
        yield Step(query=(book, ABOVE, levels - width), expect=last)
        # Clear them again; the ends are left.
        for index in (width - 1, width, levels - width, levels - width - 1):
            yield Step(update=(book, index, False))
    yield Step(query=(book, ABOVE, 0), expect=last)
    yield Step(query=(book, BELOW, last), expect=0)
    yield Step(update=(book, 0, False), query=(book, LOW, 5), expect=last)
    yield Step(update=(book, last, False), query=(book, HIGH, 5), expect=NOT_FOUND)
    yield Step(query=(book, BELOW, last), expect=NOT_FOUND)


@pytest.mark.parametrize(("books", "levels"), [(2, 64), (8, 1024), (1, 8), (3, 16), (2, 4096)])
def test_boundaries(books: int, levels: int, collisions: str) -> None:
    width = word_bits(levels)
    steps = list(boundary_steps(levels, width, book=books - 1))
    assert run(OccupancyBitmap(books, levels), steps).checked == sum(s.query is not None
                                                                     for s in steps)


def test_books_are_independent(collisions: str) -> None:
    levels = 64
    steps = [Step(update=(0, i, True)) for i in (3, 17, 40)]
    steps += [Step(query=(1, mode, 20), expect=NOT_FOUND) for mode in QueryMode]
    steps += [Step(update=(1, 17, False), query=(0, BELOW, 20), expect=17),
              Step(update=(1, 50, True), query=(0, ABOVE, 20), expect=40),
              Step(query=(0, HIGH, 0), expect=40),
              Step(query=(1, LOW, 0), expect=50),
              Step(update=(0, 40, False), query=(1, HIGH, 0), expect=50),
              Step(query=(0, HIGH, 0), expect=17)]
    run(OccupancyBitmap(2, levels), steps)


def test_back_to_back_updates_and_queries_on_one_word(collisions: str) -> None:
    """Every clock updates the same word and queries it: each query sees its clock's update."""
    book, base = 1, 32  # word 1 of a 1024-level book (32-bit words)
    steps = [
        Step(update=(book, base + 5, True), query=(book, HIGH, 0), expect=base + 5),
        Step(update=(book, base + 9, True), query=(book, HIGH, 0), expect=base + 9),
        Step(update=(book, base + 1, True), query=(book, LOW, 0), expect=base + 1),
        Step(update=(book, base + 9, False), query=(book, BELOW, base + 31), expect=base + 5),
        Step(update=(book, base + 5, False), query=(book, ABOVE, base), expect=base + 1),
        Step(update=(book, base + 1, False), query=(book, LOW, 0), expect=NOT_FOUND),
        Step(update=(book, base + 31, True), query=(book, BELOW, base + 31), expect=NOT_FOUND),
        Step(update=(book, base + 0, True), query=(book, ABOVE, base), expect=base + 31),
        Step(update=(book, base + 0, False), query=(book, BELOW, base + 31), expect=NOT_FOUND),
        Step(update=(book, base + 31, False), query=(book, HIGH, 0), expect=NOT_FOUND),
        # Set and clear the same level in alternate clocks, the summary bit flipping each time.
        *[Step(update=(book, base + 7, i % 2 == 0), query=(book, HIGH, 0),
               expect=base + 7 if i % 2 == 0 else NOT_FOUND) for i in range(8)],
        # Updates to the word one and two clocks apart, interleaved with another word.
        Step(update=(book, base + 2, True)),
        Step(update=(book, base + 40, True)),
        Step(update=(book, base + 3, True), query=(book, BELOW, base + 40), expect=base + 3),
        Step(update=(book, base + 2, False), query=(book, LOW, 0), expect=base + 3),
        Step(update=(book, base + 40, False), query=(book, ABOVE, base + 2), expect=base + 3),
        Step(update=(book, base + 3, False), query=(book, ABOVE, 0), expect=NOT_FOUND),
    ]
    run(OccupancyBitmap(2, 1024), steps)


def test_same_clock_update_is_seen_and_later_ones_are_not(collisions: str) -> None:
    steps = [Step(update=(0, 10, True), query=(0, HIGH, 0), expect=10),
             Step(update=(0, 20, True)),  # one clock after the query: not seen by it
             Step(query=(0, HIGH, 0), expect=20),
             Step(update=(0, 20, False), query=(0, BELOW, 63), expect=10)]
    run(OccupancyBitmap(1, 64), steps)


def test_init_sequence() -> None:
    """``ready`` rises after one clock per word; updates and queries before it are ignored."""
    dut = OccupancyBitmap(3, 256)  # 16-bit words, 16 per book: 48 clocks
    answers: list[tuple[bool, int]] = []

    async def testbench(ctx: Any) -> None:
        ctx.set(dut.i_update.payload, {"book": 2, "index": 100, "set": 1})
        ctx.set(dut.i_query.payload, {"book": 2, "mode": HIGH, "index": 0})
        ctx.set(dut.i_update.valid, 1)
        ctx.set(dut.i_query.valid, 1)
        for clock in range(dut.init_cycles):
            assert not ctx.get(dut.ready), clock
            assert not ctx.get(dut.i_update.ready) and not ctx.get(dut.i_query.ready)
            assert not ctx.get(dut.o_result.valid)
            await ctx.tick()
        assert ctx.get(dut.ready) and ctx.get(dut.i_update.ready) and ctx.get(dut.i_query.ready)
        ctx.set(dut.i_update.valid, 0)
        ctx.set(dut.i_query.valid, 0)
        for _ in range(QUERY_LATENCY + 1):
            assert not ctx.get(dut.o_result.valid)  # the queries offered before ready: none
            await ctx.tick()
        ctx.set(dut.i_query.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_query.valid, 0)
        await ctx.tick().repeat(QUERY_LATENCY - 1)
        assert ctx.get(dut.o_result.valid)
        result = ctx.get(dut.o_result.payload)
        answers.append((bool(result.found), int(result.index)))

    simulate(dut, testbench)
    assert answers == [(False, 0)]  # the update offered before ready was not taken


def test_reset_reruns_the_init_sequence(collisions: str) -> None:
    """After a reset mid-traffic the book is empty again, though the words still hold old bits
    until the init sequence clears them: a set in a dirty word must not bring them back."""
    dut = OccupancyBitmap(2, 64)
    reset = Signal()
    top = Module()
    top.submodules.dut = ResetInserter(reset)(dut)
    bench = BitmapBench(dut)

    async def testbench(ctx: Any) -> None:
        await bench.wait_ready(ctx)
        for index in range(64):
            await bench.step(ctx, Step(update=(1, index, True)))
        await bench.step(ctx, Step(query=(1, LOW, 0), expect=0))
        await bench.drain(ctx)
        ctx.set(reset, 1)
        await ctx.tick()
        ctx.set(reset, 0)
        assert await bench.wait_ready(ctx) == dut.init_cycles
        await bench.step(ctx, Step(query=(1, HIGH, 0), expect=NOT_FOUND))
        await bench.step(ctx, Step(update=(1, 33, True)))
        for mode, expect in [(HIGH, 33), (LOW, 33), (BELOW, NOT_FOUND), (ABOVE, NOT_FOUND)]:
            await bench.step(ctx, Step(query=(1, mode, 33), expect=expect))
        await bench.drain(ctx)

    simulate(top, testbench)
    assert bench.checked == 6


# Random traffic ------------------------------------------------------------------------------


def random_steps(books: int, levels: int, count: int, seed: int) -> list[Step]:
    """Updates and queries in most clocks, aimed at a few levels (word edges, the ends, and the
    same word back to back) so that books fill up and empty again."""
    rng = random.Random(seed)
    width = word_bits(levels)
    hot = sorted({0, levels - 1, width - 1, width % levels, levels - width}
                 | {rng.randrange(levels) for _ in range(10)})
    steps = []
    last_index = 0
    for clock in range(count):
        filling = (clock // 300) % 2 == 0
        update = query = None
        if rng.random() < 0.7:
            r = rng.random()
            if r < 0.3:
                index = last_index ^ rng.randrange(width)  # the same word as the last update
            elif r < 0.8:
                index = rng.choice(hot)
            else:
                index = rng.randrange(levels)
            last_index = index
            update = (rng.randrange(books), index, rng.random() < (0.7 if filling else 0.3))
        if rng.random() < 0.7:
            index = rng.choice(hot) if rng.random() < 0.5 else rng.randrange(levels)
            if update is not None and rng.random() < 0.3:
                book, index = update[0], update[1]
            else:
                book = rng.randrange(books)
            query = (book, rng.choice(list(QueryMode)), index)
        steps.append(Step(update, query))
    return steps


@pytest.mark.parametrize(("books", "levels", "clocks"), [
    (2, 64, 3000),
    (8, 1024, 3000),
    (1, 8, 1000),
    (3, 16, 1000),
    (2, 4096, 1500),
])
def test_random_traffic_matches_the_model(books: int, levels: int, clocks: int,
                                          collisions: str) -> None:
    steps = random_steps(books, levels, clocks, seed=books * 7919 + levels)
    bench = run(OccupancyBitmap(books, levels), steps)
    assert bench.checked == sum(s.query is not None for s in steps)
