"""The generated flow is reproducible, stays in the device's ranges and covers every path."""

from __future__ import annotations

from collections import Counter

import pytest

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    Canceled,
    CancelReason,
    CloseBatch,
    MassCancelAccount,
    MassCancelMarket,
    Modify,
    NewOrder,
    OrderType,
    Query,
    Rejected,
    RejectReason,
    SetWindow,
    StpMode,
    TimeInForce,
)


@pytest.fixture(scope="module")
def flow() -> list:
    return list(generate_flow(FlowParams(commands=30_000, seed=11, markets=3, batch_every=500)))


def test_same_seed_same_flow(flow: list) -> None:
    again = list(generate_flow(FlowParams(commands=30_000, seed=11, markets=3, batch_every=500)))
    assert again == flow
    other = list(generate_flow(FlowParams(commands=2_000, seed=12, markets=3)))
    assert other != flow[:2_000]


def test_flow_covers_every_command_and_order_kind(flow: list) -> None:
    kinds = Counter(type(c) for c in flow)
    for cls in (NewOrder, Modify, MassCancelAccount, MassCancelMarket, SetWindow, Query, CloseBatch):
        assert kinds[cls] > 0, cls
    orders = [c for c in flow if isinstance(c, NewOrder)]
    assert {(o.type, o.tif) for o in orders} >= {
        (OrderType.LIMIT, TimeInForce.GTC), (OrderType.LIMIT, TimeInForce.IOC),
        (OrderType.LIMIT, TimeInForce.FOK), (OrderType.MARKET, TimeInForce.IOC),
        (OrderType.MARKET, TimeInForce.FOK)}
    assert {o.stp for o in orders} == set(StpMode)
    assert any(o.post_only for o in orders)
    assert {c.market for c in flow if not isinstance(c, CloseBatch)} == {0, 1, 2}
    assert sum(isinstance(c, CloseBatch) for c in flow) == 30_000 // 501 + 1
    assert isinstance(flow[-1], CloseBatch)


def test_flow_exercises_every_reason_and_stays_in_range(flow: list) -> None:
    config = MatchingConfig()
    model = MatchingModel(config, hash_events=False)
    reasons: Counter = Counter()
    most_resting = 0
    for c in flow:
        for ev in model.execute(c):
            if isinstance(ev, Canceled | Rejected):
                reasons[ev.reason] += 1
        most_resting = max(most_resting, model.resting_count)
        assert getattr(c, "id", 0) < config.ids
    assert set(CancelReason) <= set(reasons)
    assert {RejectReason.UNKNOWN_ID, RejectReason.DUPLICATE_ID, RejectReason.MALFORMED,
            RejectReason.PRICE_OUTSIDE_WINDOW} <= set(reasons)
    assert 100 < most_resting < config.orders  # a book with depth, which never fills up


@pytest.mark.parametrize("rare", [0.0, 0.2, 1.0])
def test_rare_sets_the_share_of_rare_commands(rare: float) -> None:
    """Queries, mass cancels and window moves are 70% of the rare paths and come from no other."""
    commands = [c for c in generate_flow(FlowParams(commands=20_000, seed=5, markets=2, rare=rare))
                if not isinstance(c, CloseBatch)]
    kinds = Counter(type(c) for c in commands)
    share = sum(kinds[k] for k in (Query, MassCancelAccount, MassCancelMarket, SetWindow)) / len(commands)
    assert abs(share - 0.7 * rare) < 0.02
    assert kinds[MassCancelAccount] > 0 if rare else kinds[MassCancelAccount] == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"commands": -1}, "commands must be non-negative, not -1"),
    ({"commands": 1, "markets": 5}, "markets must be between 1 and the device's 4, not 5"),
    ({"commands": 1, "batch_every": 0}, "batch_every must be at least 1, not 0"),
    ({"commands": 1, "depth": 0}, "depth must be at least 1, not 0"),
    ({"commands": 1, "rare": -0.1}, "rare must be a share between 0 and 1, not -0.1"),
    ({"commands": 1, "rare": 1.5}, "rare must be a share between 0 and 1, not 1.5"),
    ({"commands": 1, "config": MatchingConfig(levels=32)}, "window of at least 64 levels"),
    ({"commands": 1, "config": MatchingConfig(orders=256)}, "do not fit in 256 resting orders"),
])
def test_params_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowParams(**kwargs)
