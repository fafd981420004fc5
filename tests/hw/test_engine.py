# amaranth: UnusedElaboratable=no
"""The matching engine gateware against the reference model, in Amaranth's simulator.

Every hand-written rule case of ``tests/test_matching_rules.py`` is replayed on the engine (its
commands are recorded while the case runs on the model), then random command mixes aimed at the
edges (tiny id space, full books, moving windows whose lowest tick is no multiple of the level
count, every order type and flag) and generated flows, with idle gaps and backpressure. The long
flows run under Verilator (tests/sim).
"""

from __future__ import annotations

import inspect
import itertools
import random
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import test_matching_rules as rules  # tests/test_matching_rules.py
from engine_harness import run_engine  # tests/hw/engine_harness.py

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.matching.bitmap import QUERY_LATENCY
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.engine import MatchingEngine
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    COMMAND_CODEC,
    Cancel,
    CloseBatch,
    Command,
    MassCancelAccount,
    MassCancelMarket,
    Modify,
    NewOrder,
    OrderType,
    Query,
    Rejected,
    SetWindow,
    Side,
    StpMode,
    TimeInForce,
)

SMALL = MatchingConfig(markets=2, levels=64, orders=64, ids=256)
SELL_1 = dict(market=0, account=1, side=Side.SELL)  # account 1 selling in market 0


class _Recorder:
    """Patches the model's entry points to log every command record each model instance gets."""

    def __init__(self) -> None:
        self.log: dict[int, tuple[MatchingModel, list[bytes]]] = {}
        self._in_bytes: set[int] = set()
        self._execute, self._execute_bytes = MatchingModel.execute, MatchingModel.execute_bytes

    def _record(self, model: MatchingModel, raw: bytes) -> None:
        self.log.setdefault(id(model), (model, []))[1].append(raw)

    def patches(self) -> tuple[Any, Any]:
        recorder = self

        def execute(model: MatchingModel, command: Command) -> Any:
            if id(model) not in recorder._in_bytes:
                recorder._record(model, COMMAND_CODEC.pack(command))
            return recorder._execute(model, command)

        def execute_bytes(model: MatchingModel, raw: bytes) -> Any:
            recorder._record(model, raw)
            recorder._in_bytes.add(id(model))
            try:
                return recorder._execute_bytes(model, raw)
            finally:
                recorder._in_bytes.discard(id(model))

        return (mock.patch.object(MatchingModel, "execute", execute),
                mock.patch.object(MatchingModel, "execute_bytes", execute_bytes))


def _recorded_rule_cases() -> Iterator[tuple[str, MatchingConfig, list[bytes]]]:
    """Each rule case's command records, per model it drove, as the model received them."""
    for name, case in inspect.getmembers(rules, inspect.isfunction):
        if not name.startswith("test_"):
            continue
        params: list[dict[str, Any]] = [{}]
        for mark in getattr(case, "pytestmark", []):
            if mark.name == "parametrize":
                params = [{mark.args[0]: v} for v in mark.args[1]]
        for n, kwargs in enumerate(params):
            recorder = _Recorder()
            patch_execute, patch_bytes = recorder.patches()
            with patch_execute, patch_bytes:
                case(**kwargs)
            for k, (model, raws) in enumerate(recorder.log.values()):
                yield f"{name}[{n}.{k}]", model.config, raws


RULE_CASES = list(_recorded_rule_cases())


def test_every_rule_case_was_recorded() -> None:
    names = {name.split("[")[0] for name, _, _ in RULE_CASES}
    expected = {n for n, _ in inspect.getmembers(rules, inspect.isfunction) if n.startswith("test_")}
    assert names == expected
    assert sum(len(raws) for _, _, raws in RULE_CASES) > 150


@pytest.mark.parametrize(("name", "config", "raws"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_rule_case(name: str, config: MatchingConfig, raws: list[bytes]) -> None:
    assert run_engine(config, raws, idle=0.3, ready=0.6, seed=len(raws)) >= len(raws)


def edge_commands(rng: random.Random, count: int, config: MatchingConfig) -> list[Command]:
    """Random commands aimed at the corners: few ids (duplicates, unknown ids), a window that
    moves to lowest ticks that are no multiple of the level count, prices at and beyond its
    edges, full books, every order type, time in force, post-only and self-trade mode, small
    quantities so that orders fill partly and sweep levels."""
    levels, markets = config.levels, config.markets
    lowest = [0] * markets
    ids = min(config.ids, 3 * config.orders // 2)
    issued: list[int] = [0]  # ids of new orders sent: cancels and modifies mostly name these
    commands: list[Command] = []

    def some_id() -> int:
        return rng.choice(issued[-24:]) if rng.random() < 0.85 else rng.randrange(ids + 2)

    for _ in range(count):
        market = rng.randrange(markets + (1 if rng.random() < 0.02 else 0))  # sometimes invalid
        lo = lowest[market % markets]
        mid = lo + levels // 2
        roll = rng.random()
        if roll < 0.55:
            kind = rng.random()
            post_only = kind < 0.1
            issued.append(rng.randrange(ids + 2))
            commands.append(NewOrder(
                market=market, id=issued[-1], account=rng.randrange(4),
                price=min(max(0, mid + rng.randint(-levels // 2 - 2, levels // 2 + 1)), (1 << 32) - 1),
                qty=rng.choice([0, 1, 1, 2, 3, 5, 8, 13, 40]) if rng.random() < 0.97 else 0xFFFF_FFFF,
                side=rng.choice([Side.BUY, Side.SELL]),
                type=OrderType.MARKET if 0.1 <= kind < 0.2 else OrderType.LIMIT,
                tif=TimeInForce.GTC if post_only or rng.random() < 0.6 else rng.choice(list(TimeInForce)),
                post_only=post_only or rng.random() < 0.01, stp=rng.choice(list(StpMode))))
        elif roll < 0.7:
            commands.append(Cancel(market=market, id=some_id()))
        elif roll < 0.84:
            commands.append(Modify(market=market, id=some_id(), qty=rng.choice([0, 1, 2, 4, 9, 30])))
        elif roll < 0.86:
            commands.append(MassCancelAccount(market=market, account=rng.randrange(4)))
        elif roll < 0.865:
            commands.append(MassCancelMarket(market=market))
        elif roll < 0.93:
            new = max(0, lo + rng.randint(-levels // 4, levels // 4))
            if rng.random() < 0.05:
                new = (1 << 32) - levels + rng.randint(-1, 1)
            commands.append(SetWindow(market=market, lowest=new))
            if market < markets and new + levels <= 1 << 32:
                lowest[market] = new  # the model decides; a rejected move keeps the old window,
        elif roll < 0.98:  # which the generator then only approximates: fine for coverage
            commands.append(Query(market=market, levels=rng.choice([0, 1, 2, 3, 255])))
        else:
            commands.append(CloseBatch(market=rng.randrange(256)))
    return commands


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_edge_mix(seed: int) -> None:
    rng = random.Random(seed)
    config = MatchingConfig(markets=3, levels=64, orders=8, ids=32) if seed == 3 else SMALL
    commands = edge_commands(rng, 1200, config)
    run_engine(config, commands, idle=0.2 * (seed % 2), ready=1.0 - 0.3 * (seed % 2), seed=seed)


@pytest.mark.parametrize("seed", [4, 5])
def test_generated_flow(seed: int) -> None:
    flow = list(generate_flow(FlowParams(commands=1500, seed=seed, markets=2, depth=12, config=SMALL)))
    run_engine(SMALL, flow, idle=0.25, ready=0.7, seed=seed)


def test_a_taker_fills_a_level_one_maker_per_clock() -> None:
    """The take loop: a filled maker leaves the book in the clock of its fill while its
    successor's row is read, so a level's fills come out one per clock; the next level was
    searched for when the taker entered this one, so changing level costs no bitmap query."""
    sell = dict(market=0, account=1, qty=1, side=Side.SELL)
    commands: list[Command] = [NewOrder(id=i, price=20, **sell) for i in range(6)]
    commands += [NewOrder(id=10 + i, price=22, **sell) for i in range(3)]
    commands.append(NewOrder(market=0, id=50, account=2, price=30, qty=9, side=Side.BUY))
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    fills = taken_at[-9:]  # the taker's last nine events: its fills, in price-time order
    gaps = [b - a for a, b in itertools.pairwise(fills)]
    assert gaps[:5] == [1] * 5 and gaps[6:] == [1] * 2, gaps
    # Entering the second level: its answer came 10 clocks after the first level was entered,
    # 6 fills ago, then 2 clocks read its head and first maker (the answer's clock reads the
    # level's row). A search at that point would take 10 more (a bitmap query) on top.
    assert gaps[5] <= 6, gaps


def test_a_taker_changes_level_within_a_word_in_two_clocks() -> None:
    """A level the search ahead found brings the rest of its bitmap word, so the taker's next
    levels in that word are known without a query, and the next level's row is read beside
    the fill that exhausts the current one: a level of one maker then costs 2 clocks (its
    head's row, the fill). The search ahead asks for the level after the word, whose answer is
    waited for only when the word runs out. SMALL's words are 8 levels: prices 16 to 22 are
    one word, 24 to 30 the next."""
    sell = dict(market=0, account=1, qty=1, side=Side.SELL)
    prices = [16, 18, 20, 22, 24, 26, 28, 30]
    commands: list[Command] = [NewOrder(id=i, price=p, **sell) for i, p in enumerate(prices)]
    commands.append(NewOrder(market=0, id=50, account=2, price=40, qty=8, side=Side.BUY))
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    gaps = [b - a for a, b in itertools.pairwise(taken_at[-8:])]  # the taker's eight fills
    # 16 -> 18: the cached best level had no word with it, so the search ahead from 16 binds;
    # 22 -> 24: the word is exhausted and the search ahead for the next word has answered.
    assert [gaps[i] for i in (1, 2, 4, 5, 6)] == [2] * 5, gaps
    assert max(gaps) <= 11, gaps


def test_simple_commands_back_to_back_take_one_and_two_clocks() -> None:
    """The id map is read at an offered command's id in the clock the command is taken, so the
    decode clock has the entry. A limit order that cannot cross (the opposite book's cached
    best level says so) is then checked, accepted and written to a free slot in the decode
    clock, which takes the next command; the link stage appends it to its level beside that
    command's decode: 1 clock per add, a post-only one included. A cancel finds its order's
    row in the decode clock, emits and frees it in the next, which takes the next command; the
    unlink stage takes it out of its list beside that command's decode: 2 clocks.
    The first cancel is decoded beside the last add's link (its event comes in its second
    clock). Each command here emits one event, so the events' spacing is the commands'."""
    adds: list[Command] = []
    for i in range(8):
        side = Side.BUY if i % 2 else Side.SELL
        price = 10 - i // 2 if side == Side.BUY else 20 + i // 2  # never crossing
        adds.append(NewOrder(market=i % 2, id=i + 1, account=1, price=price, qty=3, side=side,
                             post_only=i % 4 == 3))
    cancels: list[Command] = [Cancel(market=i % 2, id=i + 1) for i in (5, 0, 7, 2, 1, 6)]
    # Smaller, or larger for the tail of its level (ids 4 and 8 are), keep their places.
    modifies: list[Command] = [Modify(market=i % 2, id=i + 1, qty=q)
                               for i, q in ((3, 1), (4, 2), (7, 9), (3, 2))]
    taken_at: list[int] = []
    run_engine(SMALL, adds + cancels + modifies, taken_at=taken_at)
    add_gaps = [b - a for a, b in itertools.pairwise(taken_at[:8])]
    cancel_gaps = [b - a for a, b in itertools.pairwise(taken_at[7:14])]
    modify_gaps = [b - a for a, b in itertools.pairwise(taken_at[14:])]
    assert add_gaps == [1] * 7, add_gaps
    assert cancel_gaps == [2] * 6, cancel_gaps
    assert modify_gaps == [2] * 3, modify_gaps


@pytest.mark.parametrize("follower", ["cancel last", "cancel first", "modify last",
                                      "modify first", "cancel middle"])
def test_a_command_right_after_an_add_sees_its_link(follower: str) -> None:
    """Adds to one level back to back (each linked beside the next one's decode, taking the
    level's tail and total from the link before), then at once a cancel or a modify of the
    order just linked, of the old tail, or of one in between: each reads pointers the link
    stage wrote in the clock its read was issued. A taker then sweeps the level, so a wrong
    pointer or total shows as a wrong fill, and a query reads the totals."""
    sell = dict(market=0, account=1, side=Side.SELL)
    adds: list[Command] = [NewOrder(id=i, price=20, qty=i, **sell) for i in (1, 2, 3)]
    target = {"last": 3, "first": 1, "middle": 2}[follower.split()[1]]
    follow: Command = (Cancel(market=0, id=target) if follower.startswith("cancel")
                       else Modify(market=0, id=target, qty=9))
    commands = [*adds, follow, Query(market=0, levels=2),
                NewOrder(market=0, id=50, account=2, price=30, qty=20, side=Side.BUY),
                Query(market=0, levels=2)]
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    assert taken_at[1] - taken_at[0] == 1 and taken_at[2] - taken_at[1] == 1, taken_at


@pytest.mark.parametrize("follower", ["cancel prev", "cancel next", "add same level",
                                      "add same id", "cancel same id", "cross emptied level",
                                      "modify next", "add other side"])
def test_a_command_right_after_a_cancel_sees_its_unlink(follower: str) -> None:
    """A cancel, then at once a command that reads what the unlink stage is writing: the
    canceled order's neighbours' pointers, its level's tail and total, its freed id, or (when
    the level empties) the best-level cache and the bitmap. A sweep and queries afterwards show
    any pointer or total gone wrong as a wrong event."""
    sell = dict(market=0, account=1, side=Side.SELL)
    book: list[Command] = [NewOrder(id=i, price=20, qty=i, **sell) for i in (1, 2, 3)]
    book.append(NewOrder(id=9, price=25, qty=4, **sell))
    target = 3 if follower == "cross emptied level" else 2
    cancels: list[Command] = [Cancel(market=0, id=i) for i in (1, 2)] \
        if follower == "cross emptied level" else []
    follow: Command = {
        "cancel prev": Cancel(market=0, id=1),
        "cancel next": Cancel(market=0, id=3),
        "add same level": NewOrder(id=4, price=20, qty=5, **sell),
        "add same id": NewOrder(id=2, price=20, qty=6, **sell),
        "cancel same id": Cancel(market=0, id=2),
        "cross emptied level": NewOrder(market=0, id=50, account=2, price=22, qty=1,
                                        side=Side.BUY),
        "modify next": Modify(market=0, id=3, qty=8),
        "add other side": NewOrder(market=0, id=5, account=2, price=20, qty=1, side=Side.BUY),
    }[follower]
    commands = [*book, *cancels, Cancel(market=0, id=target), follow,
                Query(market=0, levels=2),
                NewOrder(market=0, id=60, account=2, price=30, qty=30, side=Side.BUY),
                Query(market=0, levels=2)]
    run_engine(SMALL, commands)


def test_a_modify_that_moves_its_order_to_the_back_takes_four_clocks() -> None:
    """A larger quantity sends an order with a successor to the back of its level: FOUND
    emits `modified` and writes the quantity, the next clock takes the order out of its place
    (its pointers were read in FOUND) and writes the level's total, the next clears its next
    pointer and reads the tail, and the link stage appends it behind the tail beside the next
    command's decode: 4 in all (5 with a state of its own for the append, 9 when the move
    re-read the order's row and emitted last). A sweep then shows the new order of the level."""
    sell = dict(market=0, account=1, side=Side.SELL)
    book: list[Command] = [NewOrder(id=i, price=20, qty=i, **sell) for i in (1, 2, 3, 4)]
    moves: list[Command] = [Modify(market=0, id=i, qty=10 + i) for i in (2, 1, 3, 4, 2)]
    taken_at: list[int] = []
    run_engine(SMALL, [*book, *moves,
                       NewOrder(market=0, id=50, account=2, price=20, qty=30, side=Side.BUY),
                       Query(market=0, levels=1)], taken_at=taken_at)
    gaps = [b - a for a, b in itertools.pairwise(taken_at[4:9])]
    assert gaps[:3] == [4] * 3, gaps  # the fourth moves the tail: it keeps its place


MOVE_FOLLOWERS = {
    "cancel the moved order": Cancel(market=0, id=2),
    "modify the moved order": Modify(market=0, id=2, qty=5),
    "move the moved order's predecessor": Modify(market=0, id=4, qty=20),
    "add to the level": NewOrder(market=0, id=7, account=1, price=20, qty=6, side=Side.SELL),
    "cross the level": NewOrder(market=0, id=50, account=2, price=20, qty=15, side=Side.BUY),
    "query": Query(market=0, levels=1),
}


@pytest.mark.parametrize("ready", [1.0, 0.3])
@pytest.mark.parametrize("follower", MOVE_FOLLOWERS)
def test_a_command_right_after_a_move_sees_its_link(follower: str, ready: float) -> None:
    """The link stage appends a moved order behind its level's tail beside the next command's
    decode, as it does a resting order: a command right after it that reads the order's row,
    the level's tail or total sees the append through the stage's forwarding. A sweep of the
    level afterwards shows a wrong pointer as a wrong fill."""
    sell = dict(market=0, account=1, side=Side.SELL)
    book: list[Command] = [NewOrder(id=i, price=20, qty=i, **sell) for i in (1, 2, 3, 4)]
    sweep = NewOrder(market=0, id=60, account=3, price=20, qty=100, side=Side.BUY,
                     tif=TimeInForce.IOC)
    run_engine(SMALL, [*book, Modify(market=0, id=2, qty=12), MOVE_FOLLOWERS[follower], sweep,
                       Query(market=0, levels=1)], ready=ready, seed=5)


@pytest.mark.parametrize("follower", ["add same level", "cancel other", "modify same",
                                      "modify other", "cross the level", "query"])
def test_a_command_right_after_a_modify_sees_its_total(follower: str) -> None:
    """A modify that keeps its order's place emits and writes the quantity in its last clock;
    the total stage changes the level's total beside the next command's decode. A command
    right after it that reads that total (an order resting on the level takes it from the
    stage's forward; the others read it a clock later) shows a wrong total as a wrong fill or
    query row."""
    sell = dict(market=0, account=1, side=Side.SELL)
    book: list[Command] = [NewOrder(id=i, price=20, qty=i, **sell) for i in (1, 2, 3)]
    book.append(NewOrder(id=9, price=25, qty=4, **sell))
    follow: Command = {
        "add same level": NewOrder(id=4, price=20, qty=5, **sell),
        "cancel other": Cancel(market=0, id=3),
        "modify same": Modify(market=0, id=2, qty=8),
        "modify other": Modify(market=0, id=1, qty=7),
        "cross the level": NewOrder(market=0, id=50, account=2, price=20, qty=2, side=Side.BUY),
        "query": Query(market=0, levels=2),
    }[follower]
    commands = [*book, Modify(market=0, id=2, qty=1), follow, Query(market=0, levels=2),
                NewOrder(market=0, id=60, account=2, price=30, qty=40, side=Side.BUY),
                Query(market=0, levels=2)]
    run_engine(SMALL, commands)
    for seed in range(4):  # the modify's event waiting for room
        run_engine(SMALL, commands, ready=0.1, seed=seed)


def test_a_top_of_book_query_waits_for_no_bitmap_query() -> None:
    """A query of depth 1 with both best levels cached: its row comes out 5 clocks after the
    query's decode clock (best bid, best ask, their two totals, the row); the next levels, which
    would tell a deeper query's row whether it is the last, are not searched for."""
    book = [NewOrder(market=0, id=1, account=1, price=10, qty=3, side=Side.BUY),
            NewOrder(market=0, id=2, account=1, price=20, qty=4, side=Side.SELL)]
    taken_at: list[int] = []
    run_engine(SMALL, [*book, Query(market=0, levels=1), Query(market=0, levels=2)],
               taken_at=taken_at)
    # The second add's event leaves in its decode clock, which takes the query.
    assert taken_at[2] - taken_at[1] == 1 + 5, taken_at


TAKE_FROM_DECODE_CASES = {
    # (the commands between the book and the taker, clocks from its `accepted` to its fill)
    "nothing": ([NewOrder(id=3, price=26, qty=4, **SELL_1)], 1),
    # the link stage writes the new best level's head in the taker's decode clock
    "a new best level": ([NewOrder(id=3, price=22, qty=4, **SELL_1)], 3),
    # the unlink stage writes the level's head in the taker's decode clock
    "its head canceled": ([Cancel(market=0, id=1)], 3),
    # the new best level's head reaches the memory in the taker's decode clock: forwarded
    "a new best level, then an order elsewhere": (
        [NewOrder(id=3, price=22, qty=4, **SELL_1),
         NewOrder(market=1, id=4, account=1, price=9, qty=1, side=Side.BUY)], 1),
    # the total stage writes the level's total in the taker's decode clock
    "a modify of its head": ([Modify(market=0, id=1, qty=1)], 2),
    # the taker before went into the level by its head (TAKE_HEAD, the level found by its
    # search ahead) and filled that order in part: the copy started from that read
    "a level a taker left its head on": (
        [NewOrder(id=3, price=26, qty=4, **SELL_1),
         NewOrder(market=0, id=40, account=3, price=26, qty=6, side=Side.BUY)], 1),
    # the best level emptied by cancels, then found by a resting order's search: its head is
    # not cached (no write to it, no taker went in since)
    "a best level found by a search": (
        [NewOrder(id=3, price=26, qty=4, **SELL_1), Cancel(market=0, id=1),
         Cancel(market=0, id=2),
         NewOrder(market=0, id=40, account=3, price=20, qty=6, side=Side.BUY)], 2),
}


@pytest.mark.parametrize("before", TAKE_FROM_DECODE_CASES)
def test_a_taker_goes_into_the_cached_best_level_from_its_decode(before: str) -> None:
    """A taker whose opposite best level is cached with its head's slot reads the head's
    order row and the level's total in its decode clock, so its first fill comes in the clock
    after its `accepted`. When a stage writes that level in the taker's decode clock (the read
    would miss the write), or the level's head is not cached (the level was found by a
    search and its head neither written nor read by a taker going in since), the taker reads
    the level's head in its decode
    clock (2 clocks: the head's row, the fill) or a clock later (3)."""
    book: list[Command] = [NewOrder(id=1, price=24, qty=2, **SELL_1),
                           NewOrder(id=2, price=24, qty=3, **SELL_1)]
    between, clocks = TAKE_FROM_DECODE_CASES[before]
    taker = NewOrder(market=0, id=50, account=2, price=30, qty=9, side=Side.BUY)
    commands = [*book, *between, taker, Query(market=0, levels=2)]
    model = MatchingModel(SMALL)
    ahead = sum(len(model.execute(c)) for c in commands[:len(book) + len(between)])
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    accepted, first_fill = taken_at[ahead], taken_at[ahead + 1]
    assert first_fill - accepted == clocks, taken_at


FOK_CASES = {
    # (the FOK taker's quantity and self-trade prevention, the commands before it, the clocks
    # from its `accepted` to its first event after it; None: events checked, clocks not)
    "covered by the best level": (4, StpMode.NONE, [], 2),
    # the link stage writes the level's total and tail in the taker's decode clock
    "an order resting on the best level just before": (
        4, StpMode.NONE, [NewOrder(id=3, price=24, qty=1, **SELL_1)], 5),
    # the scan goes order by order: the old way
    "under self-trade prevention": (4, StpMode.CANCEL_TAKER, [], 6),
    "covered by the second level": (7, StpMode.NONE, [], None),
    "not fillable": (12, StpMode.NONE, [], None),
}


@pytest.mark.parametrize("case", FOK_CASES)
def test_a_fok_taker_checks_the_cached_best_levels_total_from_its_decode(case: str) -> None:
    """A FOK order (without self-trade prevention) whose opposite best level is cached and
    crosses reads that level's total and head in its decode clock: when the total covers the
    order, its first fill comes 2 clocks after its `accepted` (the total's compare, then the
    fill), where the scan and the take from the level took 5. Else the scan goes on from the
    next level as before, and a level written by a stage in the decode clock, or a FOK under
    self-trade prevention, takes the old way."""
    qty, stp, between, clocks = FOK_CASES[case]
    book: list[Command] = [NewOrder(id=1, price=24, qty=2, **SELL_1),
                           NewOrder(id=2, price=24, qty=3, **SELL_1),
                           NewOrder(id=4, price=26, qty=4, **SELL_1)]
    taker = NewOrder(market=0, id=50, account=1 if stp != StpMode.NONE else 2, price=30,
                     qty=qty, side=Side.BUY, tif=TimeInForce.FOK, stp=stp)
    if stp != StpMode.NONE:  # a maker of another account ahead of the taker's own orders
        book.insert(0, NewOrder(market=0, id=5, account=3, price=24, qty=9, side=Side.SELL))
    commands = [*book, *between, taker, Query(market=0, levels=2)]
    model = MatchingModel(SMALL)
    ahead = sum(len(model.execute(c)) for c in commands[:len(book) + len(between)])
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    if clocks is not None:
        accepted, first = taken_at[ahead], taken_at[ahead + 1]
        assert first - accepted == clocks, taken_at


@pytest.mark.parametrize("before", ["nothing", "a taker whose search ahead is on its way"])
def test_a_taker_changes_word_on_its_search_aheads_first_answer(before: str) -> None:
    """A taker that exhausts its level, with nothing more in the level's bitmap word, goes on
    with the search ahead asked when it entered the level: the first answer decides as it
    comes out of the bitmap (the second, for the wrap, counts only when the first found
    nothing past a wrapped level), so the next level's fill comes 5 clocks after the last
    one. A search ahead goes out even while an earlier taker's answers are on their way
    (those are dropped as they come), so a taker right behind another does the same."""
    book: list[Command] = [NewOrder(id=1, price=20, qty=5, **SELL_1),
                           NewOrder(id=2, price=40, qty=5, **SELL_1)]  # another word
    between: list[Command] = {
        "nothing": [],
        "a taker whose search ahead is on its way": [
            NewOrder(market=0, id=30, account=3, price=20, qty=1, side=Side.BUY)],
    }[before]
    taker = NewOrder(market=0, id=50, account=2, price=45, qty=9, side=Side.BUY)
    commands = [*book, *between, taker, Query(market=0, levels=2)]
    model = MatchingModel(SMALL)
    ahead = sum(len(model.execute(c)) for c in commands[:len(book) + len(between)])
    taken_at: list[int] = []
    run_engine(SMALL, commands, taken_at=taken_at)
    accepted, first_fill, second_fill = taken_at[ahead:ahead + 3]
    assert first_fill - accepted == 1, taken_at
    assert second_fill - first_fill == 5, taken_at


@pytest.mark.parametrize("freed_by", ["a fill", "a cancel"])
def test_the_last_free_slot_is_handed_out_in_the_clock_after_it_is_freed(freed_by: str) -> None:
    """A freed slot reaches the free list a clock late (from registers, for timing); when it
    is the only free slot, an order resting in the very next clock takes it on its way. A
    cancel frees its order's slot in the clock that takes the next command (without the slot
    on its way handed out, the order after it overwrites another order's row: the sweep's
    fills name the wrong maker); a taker frees a filled maker's a clock before it ends."""
    config = MatchingConfig(markets=1, levels=64, orders=8, ids=64)
    book: list[Command] = [NewOrder(id=i, price=30 + i, qty=1, **SELL_1) for i in range(8)]
    frees: Command = {"a fill": NewOrder(market=0, id=20, account=2, price=30, qty=1,  # IOC:
                                         side=Side.BUY, tif=TimeInForce.IOC),  # a full book
                      "a cancel": Cancel(market=0, id=3)}[freed_by]
    rests = [NewOrder(market=0, id=21, account=2, price=20, qty=4, side=Side.BUY),
             NewOrder(market=0, id=22, account=2, price=21, qty=4, side=Side.BUY)]  # full
    # A sweep of every resting sell order, whose fills name each maker's id (a slot handed out
    # twice would have overwritten another order's row).
    sweep = NewOrder(market=0, id=23, account=3, price=40, qty=20, side=Side.BUY,
                     tif=TimeInForce.IOC)
    run_engine(config, [*book, frees, *rests, sweep, Query(market=0, levels=8)])
    model = MatchingModel(config)
    for command in [*book, frees]:
        model.execute(command)
    events = model.execute(rests[0]) + model.execute(rests[1])
    assert [type(e).__name__ for e in events] == ["Accepted", "Rejected"], events


def test_a_walk_takes_its_next_levels_from_the_word_it_searched() -> None:
    """A query's and a mass cancel's walks search level after level in the book's order; each
    bitmap answer brings the rest of its word, so the next levels in that word come without a
    query (the walk's next search answers in the clock it is asked). SMALL's words are 8
    levels: bids 16 to 22 are one word, asks 24 to 30 the next."""
    buy = dict(market=0, account=1, qty=1, side=Side.BUY)
    sell = dict(market=0, account=1, qty=1, side=Side.SELL)
    book: list[Command] = [NewOrder(id=i, price=p, **buy) for i, p in enumerate([22, 20, 18, 16])]
    book += [NewOrder(id=10 + i, price=p, **sell) for i, p in enumerate([24, 26, 28, 30])]
    taken_at: list[int] = []
    run_engine(SMALL, [*book, Query(market=0, levels=4)], taken_at=taken_at)
    rows = [b - a for a, b in itertools.pairwise(taken_at[-4:])]
    # The first row's next levels come from bitmap queries (the best levels are cached,
    # without their words); the next rows' from the words: their two totals, the next bid and
    # ask, the row. Without the words every row waits for two queries.
    assert rows[:2] == [5, 5], rows
    twice = [NewOrder(id=i, price=p, **buy) for i, p in enumerate([22, 22, 20, 20, 18, 18])]
    taken_at = []
    run_engine(SMALL, [*twice, MassCancelAccount(market=0, account=1)], taken_at=taken_at)
    cancels = [b - a for a, b in itertools.pairwise(taken_at[-7:-1])]  # its six cancels
    # Within a level, an order canceled every clock (its successor's row read beside it, its
    # unlink beside the successor's turn); 22 -> 20 takes the answer of the bitmap query made
    # when the walk came to 22 (the best level, cached without its word): 4 clocks (the
    # answer, the level's head, its row, its turn); 20 -> 18 comes from the word, whose next
    # level's head was read ahead beside 20's first order: its row is read beside the level's
    # last order, one clock.
    assert [cancels[i] for i in (0, 2, 4)] == [1, 1, 1], cancels
    assert cancels[3] == 1, cancels
    assert cancels[1] == 4, cancels
    # Levels of one order each, in one word: the walk leaves 22 (cached) 3 clocks after it
    # asked the bitmap, whose answer takes 4: 5 clocks; from 21, the word's first level
    # (whose MASS_HEAD read the next level's head too), each move reads the head of the
    # level after its next, and the walk goes a level per clock.
    singles = [NewOrder(id=i, price=p, **buy) for i, p in enumerate([22, 21, 20, 19, 18, 17])]
    taken_at = []
    run_engine(SMALL, [*singles, MassCancelAccount(market=0, account=1)], taken_at=taken_at)
    cancels = [b - a for a, b in itertools.pairwise(taken_at[-7:-1])]
    assert cancels == [QUERY_LATENCY + 1, 1, 1, 1, 1], cancels


def unit_bids(*orders: tuple[int, int, int]) -> list[Command]:
    """Bids of quantity 1 in market 0, each given as (id, price, account)."""
    return [NewOrder(market=0, id=i, price=p, account=a, qty=1, side=Side.BUY)
            for i, p, a in orders]


def test_a_mass_cancel_that_moves_on_leaves_no_stale_next_pointer() -> None:
    """A mass cancel cancels the last order of level 22 (after an order it passes) and, in the
    next clock, having moved on in the word, the first of level 21, which has a successor.
    The unlink stage writes the predecessor's next pointer in that clock, on the pointers' one
    write port, where the cancel clears the canceled order's own next pointer: the order waits
    a clock. Without the wait the clear was lost, and the slot, handed out again to an order
    alone on its level, led a sweep on into level 21's successor (a bid, filled as an ask).
    Eight slots, so that the freed ones are the ones handed out; level 23 first, so that the
    walk comes to 22 from a query, which brings the word."""
    config = MatchingConfig(markets=1, levels=64, orders=8, ids=64)
    sell = dict(market=0, qty=1, side=Side.SELL)
    book = unit_bids((1, 23, 2), (2, 22, 2), (3, 22, 1), (4, 21, 1), (5, 21, 2))
    book += [NewOrder(id=6 + i, price=50 + i, account=2, **sell) for i in range(3)]
    again = [NewOrder(id=10, price=40, account=3, **sell),
             NewOrder(id=11, price=41, account=3, **sell)]
    sweep = NewOrder(market=0, id=12, account=4, price=41, qty=5, side=Side.BUY,
                     tif=TimeInForce.IOC)
    run_engine(config, [*book, MassCancelAccount(market=0, account=1), *again, sweep,
                        Query(market=0, levels=4)])


def test_a_mass_cancel_reads_no_head_kept_from_an_earlier_one() -> None:
    """The walk keeps the head of the level after its own as it reads it ahead; a later mass
    cancel must read that head again. Here the first walk (after level 21, the cached best,
    a query brings the word of 20 and 19) keeps level 19's head (order 3) while it passes
    level 20's two orders; order 3 is canceled; the second walk comes to level 19 from 20
    the same way, and must start it at order 4."""
    book = unit_bids((5, 21, 3), (1, 20, 3), (2, 20, 3), (3, 19, 2), (4, 19, 2))
    run_engine(SMALL, [*book, MassCancelAccount(market=0, account=1), Cancel(market=0, id=3),
                       MassCancelMarket(market=0)])


@pytest.mark.parametrize("ready", [1.0, 0.2])
def test_a_mass_cancel_takes_out_runs_of_neighbours(ready: float) -> None:
    """A mass cancel frees an order in the clock it reads it, and reads its successor's row in
    that clock too: the successor's turn is beside the unlink stage that rewrites its prev
    pointer and its level's total (both forwarded), and when the successor is canceled too
    the stage leaves the predecessor's next pointer to the successor's unlink. Runs of the
    account's orders next to each other, at a level's head and tail, between others' orders,
    and levels it empties (the best level's cache then stale); with the event stream always
    ready and backpressured (an order whose event waits holds its turn). Sweeps and queries
    afterwards show a wrong pointer or total as a wrong event, and the orders resting after
    the cancel reuse the freed slots (a next pointer left set would link them wrongly)."""
    accounts = [1, 1, 2, 1, 1, 2, 2, 1]
    book: list[Command] = [NewOrder(market=0, id=i, account=a, price=20, qty=i + 1, side=Side.SELL)
                           for i, a in enumerate(accounts)]
    book += [NewOrder(market=0, id=20 + i, account=1, price=17 + i, qty=1, side=Side.SELL)
             for i in range(3)]  # levels the cancel empties, the best one first
    book.append(NewOrder(market=0, id=30, account=2, price=26, qty=5, side=Side.SELL))
    # Then every free slot taken, each by an order alone on its level (so each is its level's
    # tail: a next pointer left set in a freed slot would send the sweep below to a wrong
    # order), and everything swept.
    config = MatchingConfig(markets=1, levels=64, orders=16, ids=64)
    reuse = [NewOrder(market=0, id=50 + i, account=4, price=p, qty=1, side=Side.SELL)
             for i, p in enumerate([21, 22, 23, 24, 25, 27, 28, 29, 31, 32, 33, 34])]
    commands = [*book, MassCancelAccount(market=0, account=1), Query(market=0, levels=3),
                NewOrder(market=0, id=40, account=3, price=20, qty=4, side=Side.BUY), *reuse,
                NewOrder(market=0, id=41, account=3, price=40, qty=40, side=Side.BUY),
                Query(market=0, levels=3)]
    model = MatchingModel(config)
    assert not [e for c in commands for e in model.execute(c) if isinstance(e, Rejected)]
    run_engine(config, commands, ready=ready, seed=3)


def test_a_walk_does_not_use_a_word_from_an_earlier_command() -> None:
    """The word a walk keeps is a snapshot of its command's book: a later command's walk from
    the same level must not take it. A query leaves the word of the second best bid (21)
    behind; a taker then exhausts the best bid and stops in 21, which becomes the best level
    without a search (the taker's own search ahead found it); a bid rests at 19, between 21
    and 17 in the same word; a query walking on from 21 must find 19, which the old word
    does not have."""
    buy = dict(market=0, account=1, side=Side.BUY)
    book: list[Command] = [NewOrder(id=1, price=23, qty=1, **buy),
                           NewOrder(id=2, price=21, qty=5, **buy),
                           NewOrder(id=3, price=17, qty=1, **buy),
                           NewOrder(id=4, price=30, qty=1, market=0, account=1, side=Side.SELL)]
    commands = [*book, Query(market=0, levels=2),
                NewOrder(market=0, id=50, account=2, price=0, qty=2, side=Side.SELL,
                         type=OrderType.MARKET, tif=TimeInForce.IOC),
                NewOrder(id=5, price=19, qty=1, **buy), Query(market=0, levels=3)]
    run_engine(SMALL, commands)


def test_engine_needs_two_slots() -> None:
    with pytest.raises(ValueError, match="at least 2 order slots, not 1"):
        MatchingEngine(MatchingConfig(markets=1, levels=64, orders=1, ids=4))


@pytest.mark.parametrize("lowest", [1, 40, 63, 81])
def test_window_wrap_edges(lowest: int) -> None:
    """Levels are addressed by price modulo the level count: orders at the window's first and
    last ticks and on both sides of the address wrap, walked by queries, sweeps, FOK scans and
    mass cancels in both directions."""
    levels = SMALL.levels
    wrap = (lowest // levels + 1) * levels  # the price whose address is 0
    prices = sorted({lowest, lowest + 1, wrap - 1, wrap, wrap + 1, lowest + levels - 1})
    commands: list[Command] = [SetWindow(market=1, lowest=lowest)]
    next_id = iter(range(1, 1000))

    def ladder(side: Side, account: int = 1) -> None:
        for price in prices:
            commands.append(NewOrder(market=1, id=next(next_id), account=account, price=price, qty=2,
                                     side=side))

    ladder(Side.BUY)
    commands += [Query(market=1, levels=255), Query(market=1, levels=2),
                 NewOrder(market=1, id=next(next_id), account=2, qty=2 * len(prices) - 1,
                          side=Side.SELL, type=OrderType.MARKET, tif=TimeInForce.FOK),
                 NewOrder(market=1, id=next(next_id), account=2, qty=2 * len(prices) - 1,
                          side=Side.SELL, type=OrderType.MARKET)]
    ladder(Side.SELL)
    commands += [Query(market=1, levels=255),
                 NewOrder(market=1, id=next(next_id), account=1, qty=3, side=Side.BUY,
                          type=OrderType.MARKET, stp=StpMode.CANCEL_MAKER),
                 NewOrder(market=1, id=next(next_id), account=2, price=wrap, qty=5, side=Side.BUY,
                          tif=TimeInForce.FOK)]
    ladder(Side.BUY, account=3)
    commands += [Query(market=1, levels=255), SetWindow(market=1, lowest=lowest + 1),
                 SetWindow(market=1, lowest=max(0, lowest - 1)), MassCancelAccount(market=1, account=1),
                 Query(market=1, levels=255), MassCancelMarket(market=1), Query(market=1, levels=1)]
    run_engine(SMALL, commands, seed=lowest)


@pytest.mark.parametrize("seed", range(4))
def test_level_changes_within_a_word_under_backpressure(seed: int) -> None:
    """A fill that waits for room in the event queue is retried with its level's total read
    again, so the level change's early read of the next level's row must wait for the fill to
    go out: the taker here sweeps levels of the same word under heavy backpressure, stops
    inside a level, new orders go onto the levels it emptied, and queries read every total."""
    sell = dict(market=0, account=1, side=Side.SELL)
    commands: list[Command] = [NewOrder(id=10 * p + i, price=p, qty=1 + i + p % 3, **sell)
                               for p in (16, 17, 19, 20, 22, 23) for i in range(2)]
    commands += [NewOrder(market=0, id=250, account=2, price=40, qty=21, side=Side.BUY),
                 Query(market=0, levels=8),
                 NewOrder(market=0, id=251, account=3, price=17, qty=5, side=Side.SELL),
                 NewOrder(market=0, id=252, account=3, price=20, qty=5, side=Side.SELL),
                 Query(market=0, levels=8),
                 NewOrder(market=0, id=253, account=2, price=40, qty=100, side=Side.BUY),
                 Query(market=0, levels=8)]
    run_engine(SMALL, commands, ready=0.1, seed=seed)


@pytest.mark.parametrize("lowest", [12, 77])
@pytest.mark.parametrize("taker", [Side.SELL, Side.BUY])
def test_a_sweep_through_the_word_that_holds_the_wrap(taker: Side, lowest: int) -> None:
    """The level addresses of the word holding the window's base (SMALL: 8 levels a word) are
    walked in two parts: those before the wrap first, those past it last, after every other
    word. A taker that starts before the wrap in that word and finds nothing in the other
    words gets, from the search ahead, the word again with its best level still set: past the
    wrap it must not go back to that level (exhausted) once the levels past the wrap are."""
    levels = SMALL.levels
    base = lowest % levels

    def price(addr: int) -> int:
        return lowest + (addr - base) % levels

    # A seller walks bids from base - 1 down to 0, then from the top down to base; a buyer
    # walks asks from base up to the top, then from 0 up to base - 1. Two makers on the first
    # level keep it set while the search ahead asks (its second query goes out beside the
    # first fill).
    makers = ([base - 3, base - 3, base + 1, base + 2] if taker == Side.SELL
              else [base + 1, base + 1, base - 4, base - 2])
    commands: list[Command] = [SetWindow(market=0, lowest=lowest)]
    commands += [NewOrder(market=0, id=i + 1, account=1, price=price(a), qty=2,
                          side=taker.opposite)
                 for i, a in enumerate(makers)]
    limit = lowest if taker == Side.SELL else lowest + levels - 1
    commands += [NewOrder(market=0, id=9, account=2, price=limit, qty=12, side=taker),
                 Query(market=0, levels=4)]
    run_engine(SMALL, commands, seed=lowest)


def test_a_larger_configuration_elaborates() -> None:
    """Beyond the ULX3S configuration: 8 markets x 4,096 levels x 32,768 orders, 2^17 ids."""
    from amaranth.back import rtlil

    config = MatchingConfig(markets=8, levels=4096, orders=32768, ids=1 << 17)
    engine = MatchingEngine(config)
    text = rtlil.convert(engine, name="big_engine")
    assert engine.init_cycles == 1 << 17
    assert "order_info" in text and "level_qty" in text
