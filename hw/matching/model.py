"""The reference model of the matching device: the executable specification of the gateware.

:class:`MatchingModel` executes :mod:`~ocee.hw.protocol` commands and returns the events the
device emits, bit for bit, including each batch's Merkle root. The gateware, the virtual board
and the host are all checked against it. The rules, in the order the device applies them:

Every command
    Produces at least one event. Events are numbered by ``seq`` (per device, from 0, modulo
    2**32). A command is either rejected, with no effect but its ``rejected`` event, or accepted
    and executed whole.

Validation (first failing rule wins)
    1. ``malformed``: the market is not below ``markets`` (not checked for close batch); an id is
       not below ``ids``; a new order's quantity is 0; a post-only order is a market order or not
       GTC; a query asks for 0 levels; a window would end past tick 2**32; on the byte path, an
       unknown opcode or an enumeration field holding no value (time in force 3).
    2. ``duplicate_id``: a new order's id names a resting order (on any market).
       ``unknown_id``: a cancel's or modify's id names no resting order of that market.
    3. ``price_outside_window``: a limit price outside ``[lowest, lowest + levels)``, or a window
       that would leave a resting order outside it.
    4. ``book_full``: a GTC limit order arrives while ``orders`` orders rest. (Checked before
       matching so that a rejected command changes nothing, even one that would not rest.)

New order
    ``accepted``, then: a post-only order whose price crosses the opposite best is canceled
    (``post_only_would_cross``); a FOK order that cannot be filled entirely right now is
    canceled (``fok_not_fillable``) with nothing else happening, self-trade prevention included;
    otherwise the order takes liquidity from the opposite side best price first, oldest order
    first within a price, each ``fill`` at the maker's price. A limit order stops at its price; a
    market order at the end of the book. What remains then rests at the back of its level (GTC
    limit), or is canceled: ``market_remainder`` (market orders, GTC or IOC),
    ``ioc_remainder`` (IOC limit). A FOK order never has a remainder.

Self-trade prevention (the taker's mode, when the next maker has the taker's account)
    ``none``: they trade. ``cancel_maker``: the maker is canceled (``self_trade``) and matching
    goes on. ``cancel_taker``: the taker's remainder is canceled (``self_trade``) and it does not
    rest. ``cancel_both``: the maker, then the taker's remainder, are canceled. A FOK order is
    fillable when the quantity it would reach under its mode covers it: under ``cancel_maker``
    the other accounts' orders at crossing prices; under ``cancel_taker`` and ``cancel_both`` the
    orders ahead of the first own order.

Cancel, modify
    ``cancel``: ``canceled`` (``user``) with the open quantity. ``modify`` to quantity 0 is a
    cancel. A smaller or equal quantity keeps the order's time priority; a larger one moves it
    to the back of its level (``requeued``). Either way ``modified`` with the new quantity.

Mass cancel
    By account within a market, or the whole market: ``canceled`` (``mass_cancel``) for each
    order in book order (bids best price first, then asks best price first, oldest first within
    a level), then ``mass_canceled`` with the count (possibly 0).

Set window
    Moves a market's window to ``[lowest, lowest + levels)``; ``window_set``.

Query
    ``book`` rows of rank 0, 1, ... holding the rank-th best bid and ask level (price and total
    quantity; quantity 0 where a side has no such level), as many rows as the deeper side has,
    at least one and at most ``levels``; the last row has ``last`` set.

Close batch
    ``batch_closed`` with the batch number, the number of events since the previous batch
    event, and their Merkle root (see :mod:`ocee.hw.hashing.leaf`). The market is ignored and
    reported as 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..hashing.leaf import event_leaf
from ..hashing.merkle import MerkleAccumulator
from ..protocol import (
    COMMAND_CODEC,
    Accepted,
    BatchClosed,
    Book,
    Cancel,
    Canceled,
    CancelReason,
    CloseBatch,
    Command,
    Event,
    Fill,
    MassCancelAccount,
    MassCanceled,
    MassCancelMarket,
    Modified,
    Modify,
    NewOrder,
    Opcode,
    OrderType,
    ProtocolError,
    Query,
    Rejected,
    RejectReason,
    SetWindow,
    Side,
    StpMode,
    TimeInForce,
    WindowSet,
)
from .config import MatchingConfig

__all__ = ["BookLevel", "MatchingModel", "RestingOrder"]

_U32 = (1 << 32) - 1

_BUY, _SELL = Side.BUY, Side.SELL
_LIMIT, _MARKET = OrderType.LIMIT, OrderType.MARKET
_GTC, _IOC, _FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
_STP_NONE, _CANCEL_TAKER, _CANCEL_MAKER, _CANCEL_BOTH = (
    StpMode.NONE, StpMode.CANCEL_TAKER, StpMode.CANCEL_MAKER, StpMode.CANCEL_BOTH)


# -- Book structures ------------------------------------------------------------------------------
# They mirror the gateware's: per side an occupancy bitmap over the window (bit i: a level at
# price lowest + i) and per level a doubly linked list of orders in time priority.


class _Order:
    __slots__ = ("account", "id", "level", "market", "next", "prev", "qty", "side")

    def __init__(self, id: int, market: int, account: int, side: Side, qty: int,
                 level: _Level) -> None:
        self.id = id
        self.market = market
        self.account = account
        self.side = side
        self.qty = qty
        self.level = level
        self.prev: _Order | None = None
        self.next: _Order | None = None


class _Level:
    __slots__ = ("book", "head", "index", "qty", "tail")

    def __init__(self, book: _BookSide, index: int) -> None:
        self.book = book
        self.index = index
        self.head: _Order | None = None
        self.tail: _Order | None = None
        self.qty = 0  # total open quantity, what FOK and queries read

    def append(self, order: _Order) -> None:
        order.prev = self.tail
        order.next = None
        if self.tail is None:
            self.head = order
        else:
            self.tail.next = order
        self.tail = order

    def unlink(self, order: _Order) -> None:
        if order.prev is None:
            self.head = order.next
        else:
            order.prev.next = order.next
        if order.next is None:
            self.tail = order.prev
        else:
            order.next.prev = order.prev

    def orders(self) -> Iterator[_Order]:
        order = self.head
        while order is not None:
            yield order
            order = order.next


class _BookSide:
    __slots__ = ("descending", "levels", "occupancy")

    def __init__(self, descending: bool) -> None:
        self.descending = descending  # bids: the best level is the highest price
        self.levels: dict[int, _Level] = {}
        self.occupancy = 0

    def best(self) -> int:
        """Index of the best level; the side must not be empty."""
        occ = self.occupancy
        return occ.bit_length() - 1 if self.descending else (occ & -occ).bit_length() - 1

    def indices(self) -> Iterator[int]:
        """Level indices in priority order, best first."""
        occ = self.occupancy
        while occ:
            i = occ.bit_length() - 1 if self.descending else (occ & -occ).bit_length() - 1
            yield i
            occ ^= 1 << i


class _Market:
    __slots__ = ("asks", "bids", "lowest")

    def __init__(self) -> None:
        self.lowest = 0
        self.bids = _BookSide(descending=True)
        self.asks = _BookSide(descending=False)


# -- Snapshots for tests and for restoring a device -----------------------------------------------


@dataclass(frozen=True)
class RestingOrder:
    id: int
    account: int
    qty: int


@dataclass(frozen=True)
class BookLevel:
    price: int
    orders: tuple[RestingOrder, ...]  # in time priority

    @property
    def qty(self) -> int:
        return sum(o.qty for o in self.orders)


class MatchingModel:
    """The matching device, executed in Python. See the module docstring for the rules.

    ``hash_events=False`` skips hashing, so that a benchmark can time the matching alone: batch
    roots are then all zero, which no device ever emits. Everything else is unchanged.
    """

    def __init__(self, config: MatchingConfig | None = None, *, hash_events: bool = True) -> None:
        self.config = config = config or MatchingConfig()
        self._markets = [_Market() for _ in range(config.markets)]
        self._orders: dict[int, _Order] = {}
        self._seq = 0
        self._batch_number = 0
        self._batch = MerkleAccumulator()
        self._batch_count = 0
        self._hash_events = hash_events
        self._out: list[Event] = []
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            NewOrder: self._new_order,
            Cancel: self._cancel,
            Modify: self._modify,
            MassCancelAccount: self._mass_cancel,
            MassCancelMarket: self._mass_cancel,
            SetWindow: self._set_window,
            Query: self._query,
            CloseBatch: self._close_batch,
        }

    # -- Entry points ------------------------------------------------------------------------------

    def execute(self, command: Command) -> list[Event]:
        """Execute one command; the events it produced, in order."""
        self._out = []
        self._handlers[type(command)](command)
        return self._out

    def execute_bytes(self, raw: bytes) -> list[Event]:
        """Execute one command record as the device receives it off the wire.

        An unknown opcode or an enumeration field with no valid value is a malformed command (it
        is rejected); a record whose length does not match its opcode is a link-level error and
        raises :class:`ProtocolError`.
        """
        if not raw:
            raise ProtocolError("empty command record")
        try:
            cls = COMMAND_CODEC.class_of_tag(raw[0])
        except ProtocolError:
            self._out = []
            self._reject(raw[1] if len(raw) > 1 else 0, 0, raw[0], RejectReason.MALFORMED)
            return self._out
        _, fields = COMMAND_CODEC.unpack_fields(raw)
        try:
            command = COMMAND_CODEC.from_fields(cls, fields)
        except ProtocolError:
            self._out = []
            self._reject(fields["market"], fields.get("id", 0), raw[0], RejectReason.MALFORMED)
            return self._out
        return self.execute(command)

    # -- State, read only ------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The sequence number the next event will carry."""
        return self._seq

    @property
    def batch_number(self) -> int:
        """The number the next batch-closed event will carry."""
        return self._batch_number

    @property
    def resting_count(self) -> int:
        return len(self._orders)

    def lowest(self, market: int) -> int:
        return self._markets[market].lowest

    def book(self, market: int, side: Side) -> list[BookLevel]:
        """One side of a market's book, best level first, each level's orders oldest first."""
        m = self._markets[market]
        book = m.bids if side is _BUY else m.asks
        return [BookLevel(m.lowest + i,
                          tuple(RestingOrder(o.id, o.account, o.qty) for o in book.levels[i].orders()))
                for i in book.indices()]

    def level_qty(self, market: int, side: Side, price: int) -> int:
        """The aggregate the device keeps per level (0 for an empty level)."""
        m = self._markets[market]
        book = m.bids if side is _BUY else m.asks
        level = book.levels.get(price - m.lowest)
        return level.qty if level is not None else 0

    def resting(self, order_id: int) -> tuple[int, Side, int, int, int] | None:
        """(market, side, price, account, open qty) of a resting order, or None."""
        o = self._orders.get(order_id)
        if o is None:
            return None
        return (o.market, o.side, self._markets[o.market].lowest + o.level.index, o.account, o.qty)

    # -- Emission ----------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        event.seq = self._seq
        self._seq = (self._seq + 1) & _U32
        self._out.append(event)
        if self._hash_events:
            self._batch.add(event_leaf(event))
        else:
            self._batch_count += 1

    def _reject(self, market: int, order_id: int, op: int, reason: RejectReason) -> None:
        self._emit(Rejected(market, 0, order_id, op, reason))

    # -- Commands ----------------------------------------------------------------------------------

    def _new_order(self, c: NewOrder) -> None:
        cfg = self.config
        op = Opcode.NEW_ORDER.value
        if (c.market >= cfg.markets or c.id >= cfg.ids or c.qty == 0
                or (c.post_only and (c.type is _MARKET or c.tif is not _GTC))):
            return self._reject(c.market, c.id, op, RejectReason.MALFORMED)
        if c.id in self._orders:
            return self._reject(c.market, c.id, op, RejectReason.DUPLICATE_ID)
        m = self._markets[c.market]
        is_limit = c.type is _LIMIT
        index = c.price - m.lowest
        if is_limit and not 0 <= index < cfg.levels:
            return self._reject(c.market, c.id, op, RejectReason.PRICE_OUTSIDE_WINDOW)
        if is_limit and c.tif is _GTC and len(self._orders) >= cfg.orders:
            return self._reject(c.market, c.id, op, RejectReason.BOOK_FULL)

        self._emit(Accepted(c.market, 0, c.id, c.account, c.price if is_limit else 0, c.qty,
                            c.side, c.type, c.tif, c.post_only, c.stp))
        buy = c.side is _BUY
        opposite = m.asks if buy else m.bids
        limit = index if is_limit else None
        if c.post_only:
            if opposite.occupancy and self._crosses(buy, opposite.best(), index):
                return self._emit(Canceled(c.market, 0, c.id, c.qty,
                                           CancelReason.POST_ONLY_WOULD_CROSS))
        elif c.tif is _FOK and not self._fillable(c, opposite, limit):
            return self._emit(Canceled(c.market, 0, c.id, c.qty, CancelReason.FOK_NOT_FILLABLE))

        remaining = self._take(c, m, opposite, limit)
        if remaining <= 0:
            return None  # filled, or canceled by self-trade prevention (remaining < 0)
        if not is_limit:
            self._emit(Canceled(c.market, 0, c.id, remaining, CancelReason.MARKET_REMAINDER))
        elif c.tif is _IOC:
            self._emit(Canceled(c.market, 0, c.id, remaining, CancelReason.IOC_REMAINDER))
        else:
            assert c.tif is _GTC, "a FOK order found fillable must fill entirely"
            self._rest(c, m, index, remaining)
        return None

    @staticmethod
    def _crosses(buy: bool, best: int, limit: int | None) -> bool:
        return limit is None or (best <= limit if buy else best >= limit)

    def _fillable(self, c: NewOrder, opposite: _BookSide, limit: int | None) -> bool:
        need = c.qty
        buy = c.side is _BUY
        for i in opposite.indices():
            if not self._crosses(buy, i, limit):
                break
            level = opposite.levels[i]
            if c.stp is _STP_NONE:
                need -= level.qty
            else:
                for o in level.orders():
                    if o.account == c.account:
                        if c.stp is _CANCEL_MAKER:
                            continue
                        return False  # the taker would stop here, short of its quantity
                    need -= o.qty
                    if need <= 0:
                        return True
            if need <= 0:
                return True
        return False

    def _take(self, c: NewOrder, m: _Market, opposite: _BookSide, limit: int | None) -> int:
        """Match ``c`` against ``opposite``; its remainder, or -1 if STP canceled the taker."""
        remaining = c.qty
        buy = c.side is _BUY
        stp = c.stp
        account = c.account
        levels = opposite.levels
        emit = self._emit
        market = c.market
        while remaining and opposite.occupancy:
            i = opposite.best()
            if limit is not None and (i > limit if buy else i < limit):
                break
            level = levels[i]
            price = m.lowest + i
            order = level.head
            while order is not None and remaining:
                nxt = order.next
                if stp is not _STP_NONE and order.account == account:
                    if stp is not _CANCEL_TAKER:  # cancel_maker, cancel_both
                        emit(Canceled(market, 0, order.id, order.qty, CancelReason.SELF_TRADE))
                        self._remove(order)
                    if stp is not _CANCEL_MAKER:  # cancel_taker, cancel_both
                        emit(Canceled(market, 0, c.id, remaining, CancelReason.SELF_TRADE))
                        return -1
                    order = nxt
                    continue
                qty = order.qty if order.qty < remaining else remaining
                order.qty -= qty
                level.qty -= qty
                remaining -= qty
                emit(Fill(market, 0, order.id, c.id, order.account, account, price, qty,
                          order.qty, remaining, c.side))
                if not order.qty:
                    self._remove(order)
                order = nxt
        return remaining

    def _rest(self, c: NewOrder, m: _Market, index: int, qty: int) -> None:
        book = m.bids if c.side is _BUY else m.asks
        level = book.levels.get(index)
        if level is None:
            level = book.levels[index] = _Level(book, index)
            book.occupancy |= 1 << index
        order = _Order(c.id, c.market, c.account, c.side, qty, level)
        level.append(order)
        level.qty += qty
        self._orders[c.id] = order

    def _remove(self, order: _Order) -> None:
        """Take a resting order off its level, with whatever quantity it still has."""
        level = order.level
        level.unlink(order)
        level.qty -= order.qty
        del self._orders[order.id]
        if level.head is None:
            book = level.book
            del book.levels[level.index]
            book.occupancy &= ~(1 << level.index)

    def _find(self, c: Cancel | Modify) -> _Order | None:
        """The resting order a cancel or modify names, or None after rejecting the command."""
        if c.market >= self.config.markets or c.id >= self.config.ids:
            self._reject(c.market, c.id, c.OP.value, RejectReason.MALFORMED)
            return None
        order = self._orders.get(c.id)
        if order is None or order.market != c.market:
            self._reject(c.market, c.id, c.OP.value, RejectReason.UNKNOWN_ID)
            return None
        return order

    def _cancel(self, c: Cancel) -> None:
        order = self._find(c)
        if order is not None:
            self._emit(Canceled(c.market, 0, order.id, order.qty, CancelReason.USER))
            self._remove(order)

    def _modify(self, c: Modify) -> None:
        order = self._find(c)
        if order is None:
            return
        if c.qty == 0:
            self._emit(Canceled(c.market, 0, order.id, order.qty, CancelReason.USER))
            self._remove(order)
            return
        level = order.level
        level.qty += c.qty - order.qty
        requeued = c.qty > order.qty
        if requeued and level.tail is not order:
            level.unlink(order)
            level.append(order)
        order.qty = c.qty
        self._emit(Modified(c.market, 0, order.id, c.qty, requeued))

    def _mass_cancel(self, c: MassCancelAccount | MassCancelMarket) -> None:
        if c.market >= self.config.markets:
            return self._reject(c.market, 0, c.OP.value, RejectReason.MALFORMED)
        m = self._markets[c.market]
        account = c.account if isinstance(c, MassCancelAccount) else None
        doomed = [o for book in (m.bids, m.asks) for i in book.indices()
                  for o in book.levels[i].orders() if account is None or o.account == account]
        for o in doomed:
            self._emit(Canceled(c.market, 0, o.id, o.qty, CancelReason.MASS_CANCEL))
            self._remove(o)
        self._emit(MassCanceled(c.market, 0, account or 0, len(doomed), account is None))
        return None

    def _set_window(self, c: SetWindow) -> None:
        op = Opcode.SET_WINDOW.value
        levels = self.config.levels
        if c.market >= self.config.markets or c.lowest + levels > 1 << 32:
            return self._reject(c.market, 0, op, RejectReason.MALFORMED)
        m = self._markets[c.market]
        for book in (m.bids, m.asks):
            occ = book.occupancy
            if occ:
                low = m.lowest + (occ & -occ).bit_length() - 1
                high = m.lowest + occ.bit_length() - 1
                if low < c.lowest or high >= c.lowest + levels:
                    return self._reject(c.market, 0, op, RejectReason.PRICE_OUTSIDE_WINDOW)
        shift = c.lowest - m.lowest
        for book in (m.bids, m.asks):
            book.occupancy = book.occupancy >> shift if shift >= 0 else book.occupancy << -shift
            moved = {}
            for i, level in book.levels.items():
                level.index = i - shift
                moved[level.index] = level
            book.levels = moved
        m.lowest = c.lowest
        self._emit(WindowSet(c.market, 0, c.lowest))
        return None

    def _query(self, c: Query) -> None:
        if c.market >= self.config.markets or c.levels == 0:
            return self._reject(c.market, 0, Opcode.QUERY.value, RejectReason.MALFORMED)
        m = self._markets[c.market]
        sides = []
        for book in (m.bids, m.asks):
            rows: list[tuple[int, int]] = []
            for i in book.indices():
                if len(rows) == c.levels:
                    break
                rows.append((m.lowest + i, book.levels[i].qty))
            sides.append(rows)
        bids, asks = sides
        count = max(1, len(bids), len(asks))
        for rank in range(count):
            bid_price, bid_qty = bids[rank] if rank < len(bids) else (0, 0)
            ask_price, ask_qty = asks[rank] if rank < len(asks) else (0, 0)
            self._emit(Book(c.market, 0, rank, bid_price, bid_qty, ask_price, ask_qty,
                            rank == count - 1))
        return None

    def _close_batch(self, c: CloseBatch) -> None:
        if self._hash_events:
            count, root = self._batch.count, self._batch.root()
        else:
            count, root = self._batch_count, bytes(32)
        event = BatchClosed(0, self._seq, self._batch_number, count, root)
        self._seq = (self._seq + 1) & _U32
        self._out.append(event)  # the batch event is no leaf: it is not added to any batch
        self._batch.reset()
        self._batch_count = 0
        self._batch_number = (self._batch_number + 1) & _U32
