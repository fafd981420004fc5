"""A realistic, reproducible order flow for tests, benchmarks and demos (``ocee gen``).

Per market, a mid price drifts in a random walk. Market makers quote ladders around it and
re-quote (cancel, modify up and down, mass cancel); takers cross with limit, IOC, FOK and market
orders. A small share of the flow exercises the rare paths on purpose: post-only orders that would
cross, self-trades under every prevention mode, duplicate and unknown ids, prices outside the
window, window moves, depth queries. A batch is closed every ``batch_every`` commands.

The generator runs its own :class:`MatchingModel` (without hashing) to know which of its orders
rest, so cancels and modifies name live orders and ids are recycled within the device's id range,
the way a host sequencer allocates them. The same seed gives the same flow.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    Cancel,
    Canceled,
    CloseBatch,
    Command,
    Fill,
    MassCancelAccount,
    MassCancelMarket,
    Modify,
    NewOrder,
    OrderType,
    Query,
    SetWindow,
    Side,
    StpMode,
    TimeInForce,
)

__all__ = ["FlowParams", "generate_commands", "generate_flow"]

_BUY, _SELL = Side.BUY, Side.SELL
_RARE = 0.01


@dataclass(frozen=True)
class FlowParams:
    commands: int
    seed: int = 0
    markets: int = 1
    batch_every: int = 1000  # a close_batch after this many other commands
    makers: int = 6  # accounts 1 .. makers quote; the next `takers` accounts take
    takers: int = 24
    depth: int = 150  # resting orders per market the makers aim to keep
    #: The share of commands on the rare paths (queries, mass cancels, duplicate and unknown ids,
    #: malformed commands, window moves); the other paths keep their shares among the rest. Flows
    #: that stress a rare path (mass cancels beside re-quotes, say) raise it.
    rare: float = _RARE
    config: MatchingConfig = field(default_factory=MatchingConfig)

    def __post_init__(self) -> None:
        if self.commands < 0:
            raise ValueError(f"commands must be non-negative, not {self.commands}")
        if not 1 <= self.markets <= self.config.markets:
            raise ValueError(f"markets must be between 1 and the device's {self.config.markets}, "
                             f"not {self.markets}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, not {self.depth}")
        if not 0.0 <= self.rare <= 1.0:
            raise ValueError(f"rare must be a share between 0 and 1, not {self.rare}")
        if self.batch_every < 1:
            raise ValueError(f"batch_every must be at least 1, not {self.batch_every}")
        if self.config.levels < 64:
            raise ValueError(f"the flow needs a window of at least 64 levels, not "
                             f"{self.config.levels}")
        if self.markets * self.depth * 2 > self.config.orders:
            raise ValueError(f"{self.markets} markets x depth {self.depth} do not fit in "
                             f"{self.config.orders} resting orders with room to spare")


class _LiveSet:
    """Live order ids of one market, with O(1) random choice and removal."""

    __slots__ = ("ids", "where")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.where: dict[int, int] = {}

    def add(self, order_id: int) -> None:
        self.where[order_id] = len(self.ids)
        self.ids.append(order_id)

    def discard(self, order_id: int) -> None:
        i = self.where.pop(order_id, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != order_id:
            self.ids[i] = last
            self.where[last] = i

    def __len__(self) -> int:
        return len(self.ids)


class _Flow:
    def __init__(self, p: FlowParams) -> None:
        self.p = p
        self.rng = random.Random(p.seed)
        self.model = MatchingModel(p.config, hash_events=False)
        levels = p.config.levels
        self.mids = [levels / 2 for _ in range(p.markets)]
        self.live = [_LiveSet() for _ in range(p.markets)]
        self.free_ids: deque[int] = deque(range(p.config.ids))
        self.lowest = [0] * p.markets
        self.pending: int | None = None  # an id taken from free_ids for the command being built

    # -- Id bookkeeping, from what the model says happened --

    def _new_id(self) -> int:
        self.pending = self.free_ids.popleft()
        return self.pending

    def _settle(self, command: Command) -> None:
        """Execute ``command`` on the model; retire ids that stopped resting, recycle unused ones."""
        pending, self.pending = self.pending, None
        for ev in self.model.execute(command):
            if isinstance(ev, Fill):
                if ev.maker_remaining == 0:
                    self._retire(ev.market, ev.maker)
            elif isinstance(ev, Canceled):
                self._retire(ev.market, ev.id)
        if pending is not None:
            resting = self.model.resting(pending)
            if resting is None:
                self.free_ids.append(pending)
            else:
                self.live[resting[0]].add(pending)

    def _retire(self, market: int, order_id: int) -> None:
        live = self.live[market]
        if order_id in live.where:
            live.discard(order_id)
            self.free_ids.append(order_id)

    # -- Order flow --

    def _price(self, market: int, side: Side, offset: int) -> int:
        """A price ``offset`` ticks away from the mid on ``side``'s passive side, in the window."""
        mid = self.mids[market]
        price = int(mid) - offset if side is _BUY else int(mid) + 1 + offset
        low = self.lowest[market]
        return min(max(price, low), low + self.p.config.levels - 1)

    def _maker_quote(self, market: int) -> Command:
        rng = self.rng
        side = _BUY if rng.random() < 0.5 else _SELL
        offset = min(int(rng.expovariate(0.35)), 40)
        post_only = rng.random() < 0.2
        if post_only and rng.random() < 0.1:
            offset = -rng.randint(1, 3)  # a post-only order that would cross
        return NewOrder(market=market, id=self._new_id(), account=rng.randint(1, self.p.makers),
                        side=side, price=self._price(market, side, offset),
                        qty=rng.choice((1, 2, 5, 10, 10, 20, 25, 50, 100)), post_only=post_only)

    def _taker(self, market: int) -> Command:
        rng = self.rng
        p = self.p
        side = _BUY if rng.random() < 0.5 else _SELL
        if rng.random() < 0.08:  # a maker account taking: self-trade cases
            account = rng.randint(1, p.makers)
        else:
            account = p.makers + 1 + rng.randrange(p.takers)
        stp = rng.choice(list(StpMode)) if rng.random() < 0.3 else StpMode.NONE
        qty = rng.choice((1, 2, 3, 5, 8, 10, 15, 20, 40, 80))
        kind = rng.random()
        if kind < 0.25:
            return NewOrder(market=market, id=self._new_id(), account=account, side=side,
                            type=OrderType.MARKET, qty=qty, stp=stp,
                            tif=TimeInForce.FOK if rng.random() < 0.2 else TimeInForce.IOC)
        tif = TimeInForce.IOC if kind < 0.6 else TimeInForce.FOK if kind < 0.75 else TimeInForce.GTC
        through = rng.randint(0, 4)  # how many ticks past the touch the limit reaches
        return NewOrder(market=market, id=self._new_id(), account=account, side=side,
                        price=self._price(market, side.opposite, through), qty=qty,
                        tif=tif, stp=stp)

    def _requote(self, market: int) -> Command:
        rng = self.rng
        live = self.live[market]
        order_id = rng.choice(live.ids)
        if rng.random() < 0.7:
            return Cancel(market=market, id=order_id)
        resting = self.model.resting(order_id)
        assert resting is not None
        qty = resting[4]
        choice = rng.random()
        new_qty = (0 if choice < 0.1 else rng.randint(1, max(qty - 1, 1)) if choice < 0.55
                   else qty + rng.randint(1, 50))
        return Modify(market=market, id=order_id, qty=new_qty)

    def _rare(self, market: int) -> Command:
        rng = self.rng
        p = self.p
        r = rng.random()
        if r < 0.25:
            return Query(market=market, levels=rng.randint(1, 8))
        if r < 0.45:
            return MassCancelAccount(market=market, account=rng.randint(1, p.makers))
        if r < 0.50:
            return MassCancelMarket(market=market)
        if r < 0.60:  # an id that rests already: a duplicate
            live = self.live[market]
            dup = rng.choice(live.ids) if len(live) else 0
            return NewOrder(market=market, id=dup, account=1, side=_BUY,
                            price=self._price(market, _BUY, 5), qty=1)
        if r < 0.70:  # an id that rests nowhere: unknown
            return Cancel(market=market, id=self.free_ids[-1])
        if r < 0.75:  # a malformed command: quantity 0
            return NewOrder(market=market, id=self._new_id(), side=_BUY,
                            price=self._price(market, _BUY, 2), qty=0)
        if r < 0.80:  # a price outside the window
            low = self.lowest[market]
            return NewOrder(market=market, id=self._new_id(), account=1, side=_SELL,
                            price=low + p.config.levels + rng.randint(0, 10), qty=1)
        # Move the window by a few ticks; rejected when a resting order would fall outside.
        lowest = max(0, self.lowest[market] + rng.randint(-3, 3))
        return SetWindow(market=market, lowest=lowest)

    def step(self) -> Command:
        rng = self.rng
        p = self.p
        market = rng.randrange(p.markets)
        # The mid drifts; it stays well inside the window so quotes land in it.
        levels = p.config.levels
        low = self.lowest[market]
        margin = max(8, min(48, levels // 8))
        if rng.random() < 0.05:
            self.mids[market] = min(max(self.mids[market] + rng.choice((-1, 1)), low + margin),
                                    low + levels - margin)
        # Makers build the book up to about `depth` orders and then mostly re-quote it.
        live = len(self.live[market])
        thin = live < p.depth
        r = rng.random()
        if r < p.rare:
            command = self._rare(market)
        else:
            # The other paths share the rest as they share 0.99 at the default; the default's
            # draws are used as drawn, so a seed gives the flow it gave before `rare` existed.
            if p.rare != _RARE:
                r = _RARE + (r - p.rare) * (1 - _RARE) / (1 - p.rare)
            if live < 4 or r < (0.60 if thin else 0.36):
                command = self._maker_quote(market)
            elif r < 0.78:
                command = self._requote(market)
            else:
                command = self._taker(market)
        self._settle(command)
        self.lowest[market] = self.model.lowest(market)
        return command


def generate_flow(params: FlowParams) -> Iterator[Command]:
    """``params.commands`` commands, ending with a close_batch when there are any."""
    flow = _Flow(params)
    since_batch = 0
    for n in range(params.commands):
        if since_batch == params.batch_every or n == params.commands - 1:
            since_batch = 0
            command: Command = CloseBatch()
            flow.model.execute(command)
        else:
            since_batch += 1
            command = flow.step()
        yield command


def generate_commands(params: FlowParams, quiet: bool = False,
                      stream: TextIO | None = None) -> list[Command]:
    """The whole flow as a list, with a progress line on ``stream`` (stderr) unless ``quiet``."""
    from .progress import Progress

    progress = Progress(params.commands, "generating", stream=stream, enabled=not quiet)
    commands = []
    for n, command in enumerate(generate_flow(params), start=1):
        commands.append(command)
        if not n % 4096:
            progress.update(n)
    progress.update(len(commands))
    progress.finish()
    return commands
