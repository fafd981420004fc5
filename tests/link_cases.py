"""Cases shared by the link suites on the emulator (tests/link/) and on the virtual board
(tests/sim/test_appliance_link.py)."""

from __future__ import annotations

from ocee.hw.protocol import Cancel, CloseBatch, NewOrder, Query, SetWindow, Side

#: A short script touching matching, queries, cancels, a window and a batch.
SCRIPT = [
    NewOrder(market=0, id=1, account=1, side=Side.SELL, price=150, qty=5),
    NewOrder(market=0, id=2, account=1, side=Side.SELL, price=151, qty=5),
    NewOrder(market=0, id=17, account=3, side=Side.BUY, price=151, qty=7),
    Query(market=0, levels=3),
    Cancel(market=0, id=2),
    Cancel(market=0, id=2),
    SetWindow(market=1, lowest=5000),
    NewOrder(market=1, id=3, account=2, side=Side.BUY, price=5100, qty=1),
    CloseBatch(),
]

#: Byte fault rates, each per byte and per direction; together about 3.3e-3 of the bytes are damaged.
RATES = {"corrupt": 1e-3, "drop": 1e-3, "duplicate": 1e-3, "truncate": 2.5e-4}
