"""The reference model, rule by rule: one or more hand-written cases for every rule and reason."""

from __future__ import annotations

from typing import Any

import pytest

from ocee.host.jsonl import parse_command
from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.merkle import merkle_root
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    COMMAND_CODEC,
    Accepted,
    BatchClosed,
    Book,
    Canceled,
    Event,
    Fill,
    MassCanceled,
    Modified,
    NewOrder,
    Rejected,
    Side,
    TimeInForce,
    WindowSet,
)

SMALL = MatchingConfig(markets=2, levels=64, orders=8, ids=32)


def brief(ev: Event) -> tuple[Any, ...]:
    """An event without its market and seq, compact enough to write expectations by hand."""
    if isinstance(ev, Accepted):
        return ("accepted", ev.id)
    if isinstance(ev, Fill):
        return ("fill", ev.maker, ev.taker, ev.price, ev.qty, ev.maker_remaining, ev.taker_remaining)
    if isinstance(ev, Canceled):
        return ("canceled", ev.id, ev.qty, ev.reason.name.lower())
    if isinstance(ev, Rejected):
        return ("rejected", ev.id, ev.reason.name.lower())
    if isinstance(ev, Modified):
        return ("modified", ev.id, ev.qty, ev.requeued)
    if isinstance(ev, Book):
        return ("book", ev.rank, ev.bid_price, ev.bid_qty, ev.ask_price, ev.ask_qty, ev.last)
    if isinstance(ev, WindowSet):
        return ("window", ev.lowest)
    if isinstance(ev, MassCanceled):
        return ("mass", ev.account, ev.count, ev.whole_market)
    assert isinstance(ev, BatchClosed)
    return ("batch", ev.batch, ev.count)


class Book_:
    """A model driven by JSON-ish commands: ``b.do(op="new", ...)`` returns brief events."""

    def __init__(self, config: MatchingConfig = SMALL) -> None:
        self.model = MatchingModel(config)

    def do(self, **command: Any) -> list[tuple[Any, ...]]:
        command.setdefault("market", 0)
        return [brief(e) for e in self.model.execute(parse_command(command))]

    def sell(self, id: int, price: int, qty: int, **kw: Any) -> list[tuple[Any, ...]]:
        return self.do(op="new", id=id, side="sell", price=price, qty=qty, **kw)

    def buy(self, id: int, price: int, qty: int, **kw: Any) -> list[tuple[Any, ...]]:
        return self.do(op="new", id=id, side="buy", price=price, qty=qty, **kw)

    def market(self, id: int, side: str, qty: int, **kw: Any) -> list[tuple[Any, ...]]:
        return self.do(op="new", id=id, side=side, type="market", qty=qty, **kw)

    def levels(self, side: Side, market: int = 0) -> list[tuple[int, list[tuple[int, int]]]]:
        return [(lv.price, [(o.id, o.qty) for o in lv.orders])
                for lv in self.model.book(market, side)]


# -- Priority and prices ---------------------------------------------------------------------------


def test_price_then_time_priority_at_the_makers_price() -> None:
    b = Book_()
    b.sell(1, 41, 5)
    b.sell(2, 41, 5)
    b.sell(3, 40, 5)
    assert b.buy(4, 41, 12) == [
        ("accepted", 4),
        ("fill", 3, 4, 40, 5, 0, 7),   # the better price first, at its own price
        ("fill", 1, 4, 41, 5, 0, 2),   # then the older order at the next price
        ("fill", 2, 4, 41, 2, 3, 0),
    ]
    assert b.levels(Side.SELL) == [(41, [(2, 3)])]
    assert b.model.level_qty(0, Side.SELL, 41) == 3


def test_a_better_limit_trades_at_the_makers_price_and_rests_its_remainder() -> None:
    b = Book_()
    b.buy(1, 40, 3)
    assert b.sell(2, 30, 5) == [("accepted", 2), ("fill", 1, 2, 40, 3, 0, 2)]
    assert b.levels(Side.SELL) == [(30, [(2, 2)])] and b.levels(Side.BUY) == []
    assert b.model.resting(2) == (0, Side.SELL, 30, 0, 2)


def test_a_limit_stops_at_its_price() -> None:
    b = Book_()
    b.sell(1, 10, 1)
    b.sell(2, 11, 1)
    assert b.buy(3, 10, 5) == [("accepted", 3), ("fill", 1, 3, 10, 1, 0, 4)]
    assert b.levels(Side.BUY) == [(10, [(3, 4)])]


# -- Time in force and order types ------------------------------------------------------------------


def test_ioc_remainder_is_canceled() -> None:
    b = Book_()
    b.sell(1, 10, 2)
    assert b.buy(2, 12, 5, tif="ioc") == [
        ("accepted", 2), ("fill", 1, 2, 10, 2, 0, 3), ("canceled", 2, 3, "ioc_remainder")]
    assert b.model.resting_count == 0


@pytest.mark.parametrize("tif", ["gtc", "ioc"])
def test_market_orders_never_rest(tif: str) -> None:
    b = Book_()
    b.buy(1, 20, 2)
    b.buy(2, 5, 1)
    assert b.market(3, "sell", 10, tif=tif) == [
        ("accepted", 3), ("fill", 1, 3, 20, 2, 0, 8), ("fill", 2, 3, 5, 1, 0, 7),
        ("canceled", 3, 7, "market_remainder")]
    assert b.market(4, "sell", 1) == [("accepted", 4), ("canceled", 4, 1, "market_remainder")]
    assert b.model.resting_count == 0


def test_fok_exactly_fillable_and_one_short() -> None:
    b = Book_()
    b.sell(1, 10, 3)
    b.sell(2, 11, 4)
    before = b.levels(Side.SELL)
    assert b.buy(3, 11, 8, tif="fok") == [("accepted", 3), ("canceled", 3, 8, "fok_not_fillable")]
    assert b.buy(4, 10, 4, tif="fok") == [("accepted", 4), ("canceled", 4, 4, "fok_not_fillable")]
    assert b.levels(Side.SELL) == before
    assert b.buy(5, 11, 7, tif="fok") == [
        ("accepted", 5), ("fill", 1, 5, 10, 3, 0, 4), ("fill", 2, 5, 11, 4, 0, 0)]
    b.sell(6, 30, 2)
    assert b.market(7, "buy", 3, tif="fok") == [("accepted", 7), ("canceled", 7, 3, "fok_not_fillable")]
    assert b.market(8, "buy", 2, tif="fok") == [("accepted", 8), ("fill", 6, 8, 30, 2, 0, 0)]


def test_fok_under_self_trade_prevention() -> None:
    b = Book_()
    b.sell(1, 10, 5, account=7)   # the taker's own order, first in priority
    b.sell(2, 10, 5, account=8)
    # cancel_maker: own orders do not count, the others' 5 do; on execution the own is canceled.
    assert b.buy(3, 10, 6, tif="fok", account=7, stp="cancel_maker") == [
        ("accepted", 3), ("canceled", 3, 6, "fok_not_fillable")]
    assert b.levels(Side.SELL) == [(10, [(1, 5), (2, 5)])]  # nothing happened
    assert b.buy(4, 10, 5, tif="fok", account=7, stp="cancel_maker") == [
        ("accepted", 4), ("canceled", 1, 5, "self_trade"), ("fill", 2, 4, 10, 5, 0, 0)]
    # cancel_taker / cancel_both: the taker would stop at its own order, so nothing ahead of it.
    b.sell(5, 11, 5, account=7)
    b.sell(6, 12, 5, account=8)
    for stp in ("cancel_taker", "cancel_both"):
        assert b.buy(10, 12, 1, tif="fok", account=7, stp=stp) == [
            ("accepted", 10), ("canceled", 10, 1, "fok_not_fillable")]
    assert b.levels(Side.SELL) == [(11, [(5, 5)]), (12, [(6, 5)])]
    # With no own order in the way the same FOK fills; stp none ignores accounts altogether.
    assert b.buy(11, 12, 10, tif="fok", account=7) == [
        ("accepted", 11), ("fill", 5, 11, 11, 5, 0, 5), ("fill", 6, 11, 12, 5, 0, 0)]


def test_post_only() -> None:
    b = Book_()
    b.sell(1, 10, 5)
    assert b.buy(2, 10, 1, post_only=True) == [("accepted", 2), ("canceled", 2, 1, "post_only_would_cross")]
    assert b.buy(3, 11, 1, post_only=True) == [("accepted", 3), ("canceled", 3, 1, "post_only_would_cross")]
    assert b.buy(4, 9, 1, post_only=True) == [("accepted", 4)]
    assert b.levels(Side.BUY) == [(9, [(4, 1)])]
    assert b.sell(5, 9, 1, post_only=True) == [("accepted", 5), ("canceled", 5, 1, "post_only_would_cross")]


# -- Self-trade prevention ----------------------------------------------------------------------------


def _stp_book() -> Book_:
    b = Book_()
    b.sell(1, 10, 2, account=5)  # own
    b.sell(2, 10, 2, account=6)
    return b


def test_stp_none_trades_with_itself() -> None:
    b = _stp_book()
    assert b.buy(3, 10, 3, account=5) == [
        ("accepted", 3), ("fill", 1, 3, 10, 2, 0, 1), ("fill", 2, 3, 10, 1, 1, 0)]


def test_stp_cancel_taker() -> None:
    b = _stp_book()
    assert b.buy(3, 10, 3, account=5, stp="cancel_taker") == [
        ("accepted", 3), ("canceled", 3, 3, "self_trade")]
    assert b.levels(Side.SELL) == [(10, [(1, 2), (2, 2)])]
    assert b.levels(Side.BUY) == []  # a GTC taker canceled this way does not rest


def test_stp_cancel_maker_goes_on_matching() -> None:
    b = _stp_book()
    assert b.buy(3, 10, 3, account=5, stp="cancel_maker") == [
        ("accepted", 3), ("canceled", 1, 2, "self_trade"), ("fill", 2, 3, 10, 2, 0, 1)]
    assert b.levels(Side.BUY) == [(10, [(3, 1)])]


def test_stp_cancel_both_cancels_maker_then_taker() -> None:
    b = Book_()
    b.sell(1, 10, 2, account=6)
    b.sell(2, 10, 2, account=5)
    assert b.buy(3, 10, 5, account=5, stp="cancel_both") == [
        ("accepted", 3), ("fill", 1, 3, 10, 2, 0, 3), ("canceled", 2, 2, "self_trade"),
        ("canceled", 3, 3, "self_trade")]
    assert b.model.resting_count == 0


# -- Cancel and modify ------------------------------------------------------------------------------


def test_cancel_and_unknown_ids() -> None:
    b = Book_()
    b.sell(1, 10, 2)
    b.sell(2, 10, 2, market=1)
    assert b.do(op="cancel", id=1) == [("canceled", 1, 2, "user")]
    assert b.do(op="cancel", id=1) == [("rejected", 1, "unknown_id")]     # already gone
    assert b.do(op="cancel", id=9) == [("rejected", 9, "unknown_id")]     # never existed
    assert b.do(op="cancel", id=2) == [("rejected", 2, "unknown_id")]     # another market's
    b.buy(3, 10, 2, market=1)                                             # fills id 2
    assert b.do(op="modify", id=2, qty=1, market=1) == [("rejected", 2, "unknown_id")]


def test_modify_keeps_priority_when_not_growing() -> None:
    b = Book_()
    b.sell(1, 10, 5)
    b.sell(2, 10, 5)
    assert b.do(op="modify", id=1, qty=3) == [("modified", 1, 3, False)]
    assert b.do(op="modify", id=1, qty=3) == [("modified", 1, 3, False)]
    assert b.model.level_qty(0, Side.SELL, 10) == 8
    assert b.buy(3, 10, 4) == [("accepted", 3), ("fill", 1, 3, 10, 3, 0, 1), ("fill", 2, 3, 10, 1, 4, 0)]


def test_modify_larger_moves_to_the_back() -> None:
    b = Book_()
    b.sell(1, 10, 5)
    b.sell(2, 10, 5)
    assert b.do(op="modify", id=1, qty=6) == [("modified", 1, 6, True)]
    assert b.levels(Side.SELL) == [(10, [(2, 5), (1, 6)])]
    assert b.model.level_qty(0, Side.SELL, 10) == 11
    assert b.do(op="modify", id=1, qty=0) == [("canceled", 1, 6, "user")]
    assert b.levels(Side.SELL) == [(10, [(2, 5)])]


# -- Rejections ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [
    {"op": "new", "market": 2, "id": 1, "side": "buy", "price": 1, "qty": 1},
    {"op": "new", "id": 32, "side": "buy", "price": 1, "qty": 1},
    {"op": "new", "id": 1, "side": "buy", "price": 1, "qty": 0},
    {"op": "new", "id": 1, "side": "buy", "type": "market", "qty": 1, "post_only": True},
    {"op": "new", "id": 1, "side": "buy", "price": 1, "qty": 1, "tif": "ioc", "post_only": True},
    {"op": "new", "id": 1, "side": "buy", "price": 1, "qty": 1, "tif": "fok", "post_only": True},
    {"op": "cancel", "market": 5, "id": 1},
    {"op": "cancel", "id": 40},
    {"op": "modify", "id": 40, "qty": 1},
    {"op": "mass_cancel", "market": 2},
    {"op": "mass_cancel", "market": 2, "account": 1},
    {"op": "query", "levels": 0},
    {"op": "query", "market": 2},
    {"op": "set_window", "lowest": 2**32 - 63},
    {"op": "set_window", "market": 2, "lowest": 0},
])
def test_malformed_commands_are_rejected_and_change_nothing(command: dict[str, Any]) -> None:
    b = Book_()
    b.sell(1, 10, 2)
    before = (b.levels(Side.SELL), b.model.batch_number)
    events = b.do(**command)
    assert len(events) == 1 and events[0][0] == "rejected" and events[0][2] == "malformed"
    assert (b.levels(Side.SELL), b.model.batch_number) == before
    assert b.model.seq == 2  # the order's accepted event, then the rejection


def test_byte_path_rejects_unknown_opcodes_and_invalid_enums() -> None:
    model = MatchingModel(SMALL)
    (ev,) = model.execute_bytes(bytes([0x63, 1, 0, 0, 0, 0]))
    assert isinstance(ev, Rejected) and (ev.op, ev.market, ev.reason.name) == (0x63, 1, "MALFORMED")
    raw = bytearray(COMMAND_CODEC.pack(NewOrder(market=0, id=3, side=Side.BUY, price=1, qty=1,
                                                tif=TimeInForce.FOK)))
    tif = next(f for f in COMMAND_CODEC.fields(NewOrder) if f.name == "tif")
    raw[tif.offset // 8] |= 3 << (tif.offset % 8)  # FOK (2) becomes 3, no time in force
    (ev,) = model.execute_bytes(bytes(raw))
    assert isinstance(ev, Rejected) and (ev.id, ev.op, ev.reason.name) == (3, 1, "MALFORMED")
    (ev,) = model.execute_bytes(COMMAND_CODEC.pack(parse_command({"op": "cancel", "market": 0, "id": 3})))
    assert isinstance(ev, Rejected) and ev.reason.name == "UNKNOWN_ID"


def test_duplicate_ids_across_markets() -> None:
    b = Book_()
    b.sell(1, 10, 2)
    assert b.buy(1, 5, 1, market=1) == [("rejected", 1, "duplicate_id")]
    assert b.market(1, "buy", 1) == [("rejected", 1, "duplicate_id")]
    b.do(op="cancel", id=1)
    assert b.buy(1, 5, 1, market=1) == [("accepted", 1)]  # free again once the order is gone


def test_prices_outside_the_window() -> None:
    b = Book_()
    assert b.buy(1, 64, 1) == [("rejected", 1, "price_outside_window")]
    assert b.buy(2, 63, 1) == [("accepted", 2)]
    assert b.do(op="set_window", lowest=50) == [("window", 50)]
    assert b.sell(3, 49, 1) == [("rejected", 3, "price_outside_window")]
    assert b.sell(4, 113, 1) == [("accepted", 4)]
    assert b.sell(5, 114, 1) == [("rejected", 5, "price_outside_window")]


def test_book_full_is_checked_before_matching_and_only_for_gtc_limits() -> None:
    b = Book_(MatchingConfig(markets=2, levels=64, orders=4, ids=32))
    for i in range(4):
        assert b.sell(i, 10 + i, 1) == [("accepted", i)]
    assert b.buy(9, 13, 1) == [("rejected", 9, "book_full")]       # would fill, still rejected
    assert b.buy(9, 13, 1, tif="ioc") == [("accepted", 9), ("fill", 0, 9, 10, 1, 0, 0)]
    assert b.buy(10, 5, 1) == [("accepted", 10)]                     # a slot is free again
    assert b.market(11, "buy", 1) == [("accepted", 11), ("fill", 1, 11, 11, 1, 0, 0)]


# -- Mass cancel, window, query, batches ------------------------------------------------------------


def test_mass_cancel_in_book_order() -> None:
    b = Book_()
    b.buy(1, 9, 1, account=3)
    b.buy(2, 10, 1, account=4)
    b.buy(3, 10, 1, account=3)
    b.sell(4, 12, 1, account=3)
    b.sell(5, 11, 1, account=3)
    b.sell(6, 11, 1, account=4, market=1)
    assert b.do(op="mass_cancel", account=3) == [
        ("canceled", 3, 1, "mass_cancel"), ("canceled", 1, 1, "mass_cancel"),
        ("canceled", 5, 1, "mass_cancel"), ("canceled", 4, 1, "mass_cancel"), ("mass", 3, 4, False)]
    assert b.do(op="mass_cancel", account=3) == [("mass", 3, 0, False)]
    assert b.do(op="mass_cancel") == [("canceled", 2, 1, "mass_cancel"), ("mass", 0, 1, True)]
    assert b.model.resting(6) is not None  # the other market is untouched


def test_set_window_keeps_the_book_and_refuses_to_strand_orders() -> None:
    b = Book_()
    b.buy(1, 20, 2)
    b.sell(2, 30, 2)
    assert b.do(op="set_window", lowest=21) == [("rejected", 0, "price_outside_window")]
    assert b.do(op="set_window", lowest=10) == [("window", 10)]
    assert b.do(op="set_window", lowest=0) == [("window", 0)]
    assert b.do(op="set_window", lowest=15) == [("window", 15)]
    assert b.levels(Side.BUY) == [(20, [(1, 2)])] and b.levels(Side.SELL) == [(30, [(2, 2)])]
    assert b.buy(3, 30, 3) == [("accepted", 3), ("fill", 2, 3, 30, 2, 0, 1)]
    assert b.do(op="set_window", lowest=0) == [("window", 0)]
    assert b.do(op="query", levels=3) == [("book", 0, 30, 1, 0, 0, False), ("book", 1, 20, 2, 0, 0, True)]


def test_query_rows() -> None:
    b = Book_()
    assert b.do(op="query", levels=5) == [("book", 0, 0, 0, 0, 0, True)]
    b.buy(1, 10, 1)
    b.buy(2, 10, 2)
    b.buy(3, 8, 4)
    b.buy(4, 7, 1)
    b.sell(5, 12, 6)
    assert b.do(op="query") == [("book", 0, 10, 3, 12, 6, True)]
    assert b.do(op="query", levels=2) == [("book", 0, 10, 3, 12, 6, False), ("book", 1, 8, 4, 0, 0, True)]
    assert b.do(op="query", levels=9) == [
        ("book", 0, 10, 3, 12, 6, False), ("book", 1, 8, 4, 0, 0, False), ("book", 2, 7, 1, 0, 0, True)]


def test_batches_count_events_since_the_last_batch() -> None:
    model = MatchingModel(SMALL)
    events: list[Event] = []
    for command in ({"op": "new", "market": 0, "id": 1, "side": "sell", "price": 10, "qty": 1},
                    {"op": "new", "market": 0, "id": 2, "side": "buy", "price": 10, "qty": 1},
                    {"op": "close_batch"}, {"op": "close_batch"},
                    {"op": "query", "market": 0}, {"op": "close_batch", "market": 200}):
        events += model.execute(parse_command(command))
    batches = [e for e in events if isinstance(e, BatchClosed)]
    assert [(e.batch, e.count, e.market) for e in batches] == [(0, 3, 0), (1, 0, 0), (2, 1, 0)]
    assert batches[0].root == merkle_root([event_leaf(e) for e in events[:3]])
    assert batches[1].root == bytes(32)
    assert batches[2].root == event_leaf(events[5])
    assert [e.seq for e in events] == list(range(len(events)))
