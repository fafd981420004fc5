"""Properties of the reference model over random command sequences (hypothesis).

Besides invariants (quantity conserved, book never crossed, sequence numbers contiguous, replay
deterministic, rejections without effect), the model is compared event for event with a second,
deliberately naive implementation written from the rules in the model's docstring: sorted lists,
no bitmaps, no linked lists.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_matching_rules import brief  # pytest puts tests/ on sys.path

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    Accepted,
    BatchClosed,
    Cancel,
    Canceled,
    CloseBatch,
    Command,
    Fill,
    MassCancelAccount,
    MassCancelMarket,
    Modified,
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

CONFIG = MatchingConfig(markets=2, levels=32, orders=8, ids=32)

# -- Strategy ---------------------------------------------------------------------------------------

# Mostly valid commands on a small id pool and a narrow price band, so that orders cross, cancels
# and modifies find live orders and the book fills up; each invalid value is rare but present.
_ids = st.sampled_from([*range(20)] * 3 + [CONFIG.ids, CONFIG.ids + 1])
_markets = st.sampled_from([0] * 6 + [1] * 3 + [CONFIG.markets])
_prices = st.sampled_from([*range(12, 20)] * 6 + [0, 31, 32, 40])
_qty = st.sampled_from([*range(1, 7)] * 5 + [0])

_new = st.builds(
    NewOrder, market=_markets, id=_ids, account=st.integers(0, 3), price=_prices, qty=_qty,
    side=st.sampled_from(Side), type=st.sampled_from([OrderType.LIMIT] * 5 + [OrderType.MARKET]),
    tif=st.sampled_from([TimeInForce.GTC] * 4 + [TimeInForce.IOC, TimeInForce.FOK]),
    post_only=st.sampled_from([False] * 6 + [True]),
    stp=st.sampled_from([StpMode.NONE] * 3 + list(StpMode)))
_kinds: dict[str, st.SearchStrategy[Any]] = {
    "new": _new,
    "cancel": st.builds(Cancel, market=_markets, id=_ids),
    "modify": st.builds(Modify, market=_markets, id=_ids, qty=st.integers(0, 8)),
    "mass_account": st.builds(MassCancelAccount, market=_markets, account=st.integers(0, 3)),
    "mass_market": st.builds(MassCancelMarket, market=_markets),
    "window": st.builds(SetWindow, market=_markets, lowest=st.sampled_from([0, 0, 4, 8, 12, 13,
                                                                            2**32 - 8])),
    "query": st.builds(Query, market=_markets, levels=st.sampled_from([0, 1, 2, 5])),
    "close": st.builds(CloseBatch),
}
_weights = ["new"] * 24 + ["cancel"] * 6 + ["modify"] * 6 + ["mass_account", "mass_market",
                                                               "window", "query", "close"]
_command: st.SearchStrategy[Command] = st.sampled_from(_weights).flatmap(lambda k: _kinds[k])
_flows = st.lists(_command, min_size=40, max_size=200)

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- The naive implementation -----------------------------------------------------------------------


@dataclass
class _Order:
    id: int
    market: int
    account: int
    side: Side
    price: int
    qty: int
    arrival: int


@dataclass
class Naive:
    config: MatchingConfig
    orders: dict[int, _Order] = field(default_factory=dict)
    lowest: list[int] = field(default_factory=list)
    clock: Any = field(default_factory=itertools.count)
    since_batch: int = 0
    batch: int = 0

    def __post_init__(self) -> None:
        self.lowest = [0] * self.config.markets

    def side(self, market: int, side: Side) -> list[_Order]:
        """Resting orders of one side in priority order."""
        sign = -1 if side is Side.BUY else 1
        return sorted((o for o in self.orders.values() if o.market == market and o.side is side),
                      key=lambda o: (sign * o.price, o.arrival))

    def levels(self, market: int, side: Side) -> list[tuple[int, int]]:
        out: dict[int, int] = {}
        for o in self.side(market, side):
            out[o.price] = out.get(o.price, 0) + o.qty
        return list(out.items())

    def execute(self, c: Command) -> list[tuple[Any, ...]]:
        out = self._execute(c)
        self.since_batch = 0 if out and out[-1][0] == "batch" else self.since_batch + len(out)
        return out

    def _execute(self, c: Command) -> list[tuple[Any, ...]]:
        cfg = self.config
        if isinstance(c, CloseBatch):
            self.batch += 1
            return [("batch", self.batch - 1, self.since_batch)]
        if c.market >= cfg.markets:
            return [("rejected", getattr(c, "id", 0), "malformed")]
        if isinstance(c, Query):
            if c.levels == 0:
                return [("rejected", 0, "malformed")]
            bids = self.levels(c.market, Side.BUY)[:c.levels]
            asks = self.levels(c.market, Side.SELL)[:c.levels]
            n = max(1, len(bids), len(asks))
            return [("book", r, *(bids[r] if r < len(bids) else (0, 0)),
                     *(asks[r] if r < len(asks) else (0, 0)), r == n - 1) for r in range(n)]
        if isinstance(c, SetWindow):
            if c.lowest + cfg.levels > 1 << 32:
                return [("rejected", 0, "malformed")]
            prices = [o.price for o in self.orders.values() if o.market == c.market]
            if any(not c.lowest <= p < c.lowest + cfg.levels for p in prices):
                return [("rejected", 0, "price_outside_window")]
            self.lowest[c.market] = c.lowest
            return [("window", c.lowest)]
        if isinstance(c, MassCancelAccount | MassCancelMarket):
            account = c.account if isinstance(c, MassCancelAccount) else None
            doomed = [o for s in (Side.BUY, Side.SELL) for o in self.side(c.market, s)
                      if account is None or o.account == account]
            for o in doomed:
                del self.orders[o.id]
            return [("canceled", o.id, o.qty, "mass_cancel") for o in doomed] + [
                ("mass", account or 0, len(doomed), account is None)]
        if c.id >= cfg.ids:
            return [("rejected", c.id, "malformed")]
        if isinstance(c, Cancel | Modify):
            o = self.orders.get(c.id)
            if o is None or o.market != c.market:
                return [("rejected", c.id, "unknown_id")]
            if isinstance(c, Cancel) or c.qty == 0:
                del self.orders[c.id]
                return [("canceled", c.id, o.qty, "user")]
            grows = c.qty > o.qty
            if grows:
                o.arrival = next(self.clock)
            o.qty = c.qty
            return [("modified", c.id, c.qty, grows)]
        return self._new(c)

    def _new(self, c: NewOrder) -> list[tuple[Any, ...]]:
        cfg = self.config
        limit = c.type is OrderType.LIMIT
        if c.qty == 0 or (c.post_only and (not limit or c.tif is not TimeInForce.GTC)):
            return [("rejected", c.id, "malformed")]
        if c.id in self.orders:
            return [("rejected", c.id, "duplicate_id")]
        if limit and not self.lowest[c.market] <= c.price < self.lowest[c.market] + cfg.levels:
            return [("rejected", c.id, "price_outside_window")]
        if limit and c.tif is TimeInForce.GTC and len(self.orders) >= cfg.orders:
            return [("rejected", c.id, "book_full")]
        out: list[tuple[Any, ...]] = [("accepted", c.id)]
        buy = c.side is Side.BUY

        def crosses(o: _Order) -> bool:
            return not limit or (o.price <= c.price if buy else o.price >= c.price)

        makers = [o for o in self.side(c.market, c.side.opposite) if crosses(o)]
        if c.post_only and makers:
            return [*out, ("canceled", c.id, c.qty, "post_only_would_cross")]
        if c.tif is TimeInForce.FOK:
            reach = 0
            for o in makers:
                if c.stp is not StpMode.NONE and o.account == c.account:
                    if c.stp is StpMode.CANCEL_MAKER:
                        continue
                    break
                reach += o.qty
            if reach < c.qty:
                return [*out, ("canceled", c.id, c.qty, "fok_not_fillable")]
        left = c.qty
        for o in makers:
            if not left:
                break
            if c.stp is not StpMode.NONE and o.account == c.account:
                if c.stp in (StpMode.CANCEL_MAKER, StpMode.CANCEL_BOTH):
                    del self.orders[o.id]
                    out.append(("canceled", o.id, o.qty, "self_trade"))
                if c.stp in (StpMode.CANCEL_TAKER, StpMode.CANCEL_BOTH):
                    return [*out, ("canceled", c.id, left, "self_trade")]
                continue
            q = min(left, o.qty)
            o.qty -= q
            left -= q
            out.append(("fill", o.id, c.id, o.price, q, o.qty, left))
            if not o.qty:
                del self.orders[o.id]
        if left:
            if not limit:
                out.append(("canceled", c.id, left, "market_remainder"))
            elif c.tif is TimeInForce.IOC:
                out.append(("canceled", c.id, left, "ioc_remainder"))
            else:
                self.orders[c.id] = _Order(c.id, c.market, c.account, c.side, c.price, left,
                                           next(self.clock))
        return out


# -- Properties ---------------------------------------------------------------------------------


def _snapshot(model: MatchingModel) -> Any:
    return [(model.lowest(m), model.book(m, Side.BUY), model.book(m, Side.SELL))
            for m in range(CONFIG.markets)]


@SETTINGS
@given(_flows)
def test_model_equals_the_naive_implementation(flow: list[Command]) -> None:
    model = MatchingModel(CONFIG, hash_events=False)
    naive = Naive(CONFIG)
    for command in flow:
        assert [brief(e) for e in model.execute(command)] == naive.execute(command), command
        for m in range(CONFIG.markets):
            for side in Side:
                # Every resting order, in priority order: price, then time.
                assert [(lv.price, o.id, o.qty) for lv in model.book(m, side) for o in lv.orders] \
                    == [(o.price, o.id, o.qty) for o in naive.side(m, side)]


@SETTINGS
@given(_flows)
def test_invariants(flow: list[Command]) -> None:
    model = MatchingModel(CONFIG)
    accepted: dict[int, int] = {}  # open quantity of each live accepted order, by id
    seq = 0
    for command in flow:
        before = _snapshot(model)
        events = model.execute(command)
        assert events, "every command produces an event"
        assert [e.seq for e in events] == list(range(seq, seq + len(events)))
        seq += len(events)
        if isinstance(events[0], Rejected):
            assert len(events) == 1 and _snapshot(model) == before
        for e in events:
            if isinstance(e, Accepted):
                accepted[e.id] = e.qty
            elif isinstance(e, Fill):
                # Conservation: each side's remaining quantity drops by exactly the fill.
                assert accepted[e.maker] - e.qty == e.maker_remaining
                assert accepted[e.taker] - e.qty == e.taker_remaining
                accepted[e.maker] = e.maker_remaining
                accepted[e.taker] = e.taker_remaining
            elif isinstance(e, Canceled):
                assert accepted.pop(e.id) == e.qty
            elif isinstance(e, Modified):
                accepted[e.id] = e.qty
        # Every accepted order ends filled, canceled or resting with its open quantity.
        for order_id, qty in list(accepted.items()):
            resting = model.resting(order_id)
            if qty == 0:
                assert resting is None
                del accepted[order_id]
            else:
                assert resting is not None and resting[4] == qty
        assert model.resting_count == len(accepted) <= CONFIG.orders
        for m in range(CONFIG.markets):
            bids, asks = model.book(m, Side.BUY), model.book(m, Side.SELL)
            if bids and asks:
                assert bids[0].price < asks[0].price, "the book is crossed"
            for side, levels in ((Side.BUY, bids), (Side.SELL, asks)):
                for lv in levels:
                    assert model.level_qty(m, side, lv.price) == lv.qty > 0
                    assert model.lowest(m) <= lv.price < model.lowest(m) + CONFIG.levels
            assert [lv.price for lv in bids] == sorted((lv.price for lv in bids), reverse=True)
            assert [lv.price for lv in asks] == sorted(lv.price for lv in asks)


@settings(max_examples=60, deadline=None)
@given(_flows)
def test_replay_is_deterministic(flow: list[Command]) -> None:
    a, b = MatchingModel(CONFIG), MatchingModel(CONFIG)
    events_a = [e for c in flow for e in a.execute(c)]
    events_b = [e for c in flow for e in b.execute(c)]
    assert events_a == events_b
    assert any(isinstance(e, BatchClosed) for e in events_a) or not any(
        isinstance(c, CloseBatch) for c in flow)
