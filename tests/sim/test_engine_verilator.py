# amaranth: UnusedElaboratable=no
"""The matching engine under Verilator (cocotb), checked event for event against the reference model.

The bench (``cocotb_engine.py``, on :class:`ocee.sim.engine_tb.EngineTB`) runs every command
through its own ``MatchingModel(config, hash_events=False)`` and compares each event payload, bit
for bit, in order; a run ends only when nothing is missing and nothing extra came out.

- Hand-written edge cases for every rule and reason, on a small configuration in which the book
  fills up and the window's edges are a few ticks away (one cocotb test per scenario, each from
  reset).
- Generated flows sized to that configuration, with random idle gaps and backpressure: 60,000
  commands in all, one of them generated for a larger book so that ``book_full`` is common, one
  with a fifth of its commands rare (mass cancels above all).
- The default configuration elaborates, builds and runs a short flow and one rich in mass
  cancels; a configuration beyond it (8 markets x 4,096 levels x 32,768 orders) runs a flow.
- A wrong expectation (a corrupted, a missing or an extra event, a model of another configuration)
  fails the pytest test, with a message naming the command, the event and the differing fields.
- ``ocee replay --backend rtl`` prints what ``--backend model`` prints, and ``ocee bench rtl``
  runs and prints well-formed, positive figures.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from ocee.host.cli import main
from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.jsonl import command_to_json, parse_command
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.engine import MatchingEngine
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    COMMAND_CODEC,
    Canceled,
    CancelReason,
    EventKind,
    NewOrder,
    Rejected,
    RejectReason,
)
from ocee.sim.rtl import engine_name
from ocee.sim.runner import BenchResult, SimulationFailed, build_and_test

HERE = Path(__file__).resolve().parent

#: Small enough that the book fills (64 orders) and both window edges are reachable (64 levels).
SMALL = MatchingConfig(markets=2, levels=64, orders=64, ids=256)
MAX32 = 2**32 - 1


# -- Commands, written as their JSON Lines form --------------------------------------------------------


def cmd(op: str, **fields: Any) -> bytes:
    """A command record from its JSON form; ``market`` defaults to 0."""
    if op != "close_batch":
        fields.setdefault("market", 0)
    return COMMAND_CODEC.pack(parse_command({"op": op, **fields}))


def sell(id: int, price: int, qty: int, **kw: Any) -> bytes:
    return cmd("new", id=id, side="sell", price=price, qty=qty, **kw)


def buy(id: int, price: int, qty: int, **kw: Any) -> bytes:
    return cmd("new", id=id, side="buy", price=price, qty=qty, **kw)


def market(id: int, side: str, qty: int, **kw: Any) -> bytes:
    return cmd("new", id=id, side=side, type="market", qty=qty, **kw)


def query(levels: int = 1, **kw: Any) -> bytes:
    return cmd("query", levels=levels, **kw)


def with_tif_3(record: bytes) -> bytes:
    """A new order record whose time in force field holds 3, which is no value."""
    raw = bytearray(record)
    tif = next(f for f in COMMAND_CODEC.fields(NewOrder) if f.name == "tif")
    raw[tif.offset // 8] |= 3 << (tif.offset % 8)
    return bytes(raw)


def full_book(config: MatchingConfig = SMALL) -> list[bytes]:
    """``orders`` resting orders, on both markets and sides, none crossing."""
    out = []
    for i in range(config.orders):
        m, k = i % 2, i // 2
        out.append(buy(i, k % 20, 1 + i % 3, market=m) if k % 2 else sell(i, 40 + k % 20, 2, market=m))
    return out


def _stp_book(own_first: bool = True) -> list[bytes]:
    own, other = sell(1, 10, 2, account=5), sell(2, 10, 2, account=6)
    return [own, other] if own_first else [cmd("new", id=1, side="sell", price=10, qty=2, account=6),
                                           cmd("new", id=2, side="sell", price=10, qty=2, account=5)]


#: Each scenario runs on a freshly reset engine. They follow tests/test_matching_rules.py, rule by
#: rule, and add the edges that only the gateware can get wrong (field widths, window ends, ids
#: at the top of their range, 64-bit level totals, a full book, long sweeps).
EDGE_CASES: dict[str, list[bytes]] = {
    # Priority and prices.
    "price_time_priority": [sell(1, 41, 5), sell(2, 41, 5), sell(3, 40, 5), buy(4, 41, 12), query(3)],
    "better_limit_rests_remainder": [buy(1, 40, 3), sell(2, 30, 5), query(2)],
    "limit_stops_at_its_price": [sell(1, 10, 1), sell(2, 11, 1), buy(3, 10, 5), query(2)],
    "partial_fill_keeps_maker": [sell(1, 10, 7), buy(2, 10, 3), buy(3, 10, 3), buy(4, 10, 3), query()],
    "sweep_levels_and_orders": [
        *(sell(10 + i, 20 + i // 3, 1 + i % 4) for i in range(30)),
        buy(100, 63, 60), query(5),
        *(buy(110 + i, 30 - i // 4, 2) for i in range(20)),
        market(200, "sell", 1000), query(),
    ],
    # Time in force and order types.
    "ioc_remainder": [sell(1, 10, 2), buy(2, 12, 5, tif="ioc"), buy(3, 9, 1, tif="ioc"), query()],
    "market_remainder_gtc_and_ioc": [
        buy(1, 20, 2), buy(2, 5, 1), market(3, "sell", 10), market(4, "sell", 1),
        sell(5, 30, 1), market(6, "buy", 3, tif="ioc"), query()],
    "market_order_price_is_ignored": [
        sell(1, 10, 1), cmd("new", id=2, side="buy", type="market", qty=1, tif="ioc"),
        market(3, "buy", 1), query()],
    "fok_fillable_and_not": [
        sell(1, 10, 3), sell(2, 11, 4), buy(3, 11, 8, tif="fok"), buy(4, 10, 4, tif="fok"),
        buy(5, 11, 7, tif="fok"), sell(6, 30, 2), market(7, "buy", 3, tif="fok"),
        market(8, "buy", 2, tif="fok"), market(9, "sell", 1, tif="fok"), query()],
    "fok_under_stp": [
        sell(1, 10, 5, account=7), sell(2, 10, 5, account=8),
        buy(3, 10, 6, tif="fok", account=7, stp="cancel_maker"),
        buy(4, 10, 5, tif="fok", account=7, stp="cancel_maker"),
        sell(5, 11, 5, account=7), sell(6, 12, 5, account=8),
        buy(10, 12, 1, tif="fok", account=7, stp="cancel_taker"),
        buy(11, 12, 1, tif="fok", account=7, stp="cancel_both"),
        buy(12, 12, 10, tif="fok", account=7), query(3)],
    "fok_stp_counts_orders_ahead_of_own": [
        sell(1, 10, 3, account=8), sell(2, 10, 3, account=7), sell(3, 11, 3, account=8),
        buy(4, 11, 3, tif="fok", account=7, stp="cancel_taker"),
        buy(5, 11, 4, tif="fok", account=7, stp="cancel_both"),
        buy(6, 11, 6, tif="fok", account=7, stp="cancel_maker"),
        buy(7, 11, 7, tif="fok", account=7, stp="cancel_maker"), query(2)],
    "post_only": [
        sell(1, 10, 5), buy(2, 10, 1, post_only=True), buy(3, 11, 1, post_only=True),
        buy(4, 9, 1, post_only=True), sell(5, 9, 1, post_only=True), sell(6, 11, 1, post_only=True),
        buy(7, 0, 1, post_only=True), query(2)],
    # Self-trade prevention.
    "stp_none_trades_with_itself": [*_stp_book(), buy(3, 10, 3, account=5), query()],
    "stp_cancel_taker": [*_stp_book(), buy(3, 10, 3, account=5, stp="cancel_taker"), query()],
    "stp_cancel_taker_after_fills": [
        *_stp_book(own_first=False), buy(3, 10, 3, account=5, stp="cancel_taker"), query()],
    "stp_cancel_maker_goes_on": [
        *_stp_book(), sell(4, 11, 2, account=5), sell(5, 11, 2, account=9),
        buy(3, 11, 5, account=5, stp="cancel_maker"), query(2)],
    "stp_cancel_both": [*_stp_book(own_first=False), buy(3, 10, 5, account=5, stp="cancel_both"), query()],
    "stp_market_order": [
        *_stp_book(own_first=False), market(3, "buy", 9, account=5, stp="cancel_maker"),
        *_stp_book(), market(4, "buy", 9, account=5, stp="cancel_taker", tif="ioc"), query()],
    # Cancel and modify.
    "cancel_and_unknown_ids": [
        sell(1, 10, 2), sell(2, 10, 2, market=1), cmd("cancel", id=1), cmd("cancel", id=1),
        cmd("cancel", id=9), cmd("cancel", id=2), buy(3, 10, 2, market=1),
        cmd("modify", id=2, qty=1, market=1), cmd("modify", id=3, qty=1)],
    "modify_smaller_equal_larger_zero": [
        sell(1, 10, 5), sell(2, 10, 5), sell(3, 10, 5),
        cmd("modify", id=1, qty=3), cmd("modify", id=1, qty=3), query(),
        cmd("modify", id=1, qty=6), cmd("modify", id=1, qty=7), query(),
        cmd("modify", id=2, qty=0), query(), buy(4, 10, 8), query(),
        cmd("modify", id=1, qty=MAX32), query()],
    # Rejections.
    "malformed": [
        sell(1, 10, 2),
        cmd("new", market=2, id=1, side="buy", price=1, qty=1),
        cmd("new", market=255, id=1, side="buy", price=1, qty=1),
        cmd("new", id=256, side="buy", price=1, qty=1),
        cmd("new", id=MAX32, side="buy", price=1, qty=1),
        cmd("new", id=1, side="buy", price=1, qty=0),
        cmd("new", id=1, side="buy", type="market", qty=1, post_only=True),
        cmd("new", id=1, side="buy", price=1, qty=1, tif="ioc", post_only=True),
        cmd("new", id=1, side="buy", price=1, qty=1, tif="fok", post_only=True),
        cmd("cancel", market=5, id=1), cmd("cancel", id=256), cmd("modify", id=300, qty=1),
        cmd("mass_cancel", market=2), cmd("mass_cancel", market=2, account=1),
        cmd("query", levels=0), cmd("query", market=2),
        cmd("set_window", lowest=2**32 - 63), cmd("set_window", market=2, lowest=0),
        query(2)],
    "malformed_raw_records": [
        sell(1, 10, 2),
        bytes([0x63, 1, 0, 0, 0, 0]),                      # no such opcode
        bytes([0x00, 0]),                                  # opcode 0 is unused
        bytes([0xFF, 7]) + bytes(17),                      # a long record with opcode 255
        with_tif_3(buy(3, 10, 1, tif="fok")),              # time in force 3
        with_tif_3(buy(1, 10, 1)),                         # tif 3 wins over duplicate_id
        with_tif_3(cmd("new", market=3, id=4, side="buy", price=1, qty=1)),
        query()],
    "duplicate_ids_across_markets": [
        sell(1, 10, 2), buy(1, 5, 1, market=1), market(1, "buy", 1), buy(1, 5, 0, market=1),
        cmd("cancel", id=1), buy(1, 5, 1, market=1), query(market=1)],
    "ids_at_the_top_of_their_range": [
        sell(255, 10, 1, account=MAX32), buy(254, 10, 1, account=MAX32 - 1),
        sell(255, 10, 1), cmd("modify", id=255, qty=MAX32), cmd("cancel", id=255)],
    "prices_outside_the_window": [
        buy(1, 64, 1), buy(2, 63, 1), buy(3, MAX32, 1), cmd("set_window", lowest=50),
        sell(3, 49, 1), sell(4, 113, 1), sell(5, 114, 1), sell(6, 0, 1), query(2)],
    "window_at_the_top_of_the_price_range": [
        cmd("set_window", lowest=2**32 - 64), buy(1, MAX32, 3), sell(2, 2**32 - 64, 1),
        buy(3, 2**32 - 65, 1), query(2), cmd("set_window", lowest=2**32 - 63),
        cmd("set_window", lowest=2**32 - 100), query(2), sell(4, 2**32 - 101, 1)],
    "book_full": [
        *full_book(), buy(200, 45, 1), buy(200, 45, 1, post_only=True), buy(200, 40, 1, tif="ioc"),
        market(201, "sell", 1), buy(202, 40, 5, tif="fok"), sell(203, 1, 1, tif="fok"),
        buy(204, 30, 1), cmd("cancel", id=5), buy(204, 30, 1), buy(205, 31, 1),
        cmd("modify", id=204, qty=9), query(5), query(5, market=1)],
    # Mass cancel, window, query, batches.
    "mass_cancel_by_account_in_book_order": [
        buy(1, 9, 1, account=3), buy(2, 10, 1, account=4), buy(3, 10, 1, account=3),
        sell(4, 12, 1, account=3), sell(5, 11, 1, account=3), sell(6, 11, 1, account=4, market=1),
        cmd("mass_cancel", account=3), cmd("mass_cancel", account=3), cmd("mass_cancel", account=0),
        query(2), query(market=1)],
    "mass_cancel_market": [
        *(sell(i, 20 + i % 5, 1 + i, account=i % 3) for i in range(12)),
        *(buy(20 + i, 10 - i % 4, 2, account=i % 3) for i in range(8)),
        sell(40, 30, 1, market=1), cmd("mass_cancel"), cmd("mass_cancel"), query(),
        query(market=1), buy(0, 25, 1), query()],
    "set_window_accepted_and_rejected": [
        buy(1, 20, 2), sell(2, 30, 2), cmd("set_window", lowest=21), cmd("set_window", lowest=10),
        cmd("set_window", lowest=0), cmd("set_window", lowest=15), query(2), buy(3, 30, 3),
        cmd("set_window", lowest=0), query(3), cmd("set_window", lowest=31), cmd("set_window", lowest=0),
        cmd("set_window", market=1, lowest=1000), buy(4, 1000, 1, market=1), sell(5, 1063, 1, market=1),
        cmd("set_window", market=1, lowest=1001), cmd("set_window", market=1, lowest=999),
        query(2, market=1)],
    "queries_of_every_depth": [
        query(5), buy(1, 10, 1), buy(2, 10, 2), buy(3, 8, 4), buy(4, 7, 1), sell(5, 12, 6), query(),
        query(2), query(9), query(255), sell(6, 63, 1), sell(7, 62, 1), buy(8, 0, 1), query(255),
        query(3, market=1)],
    "level_totals_wider_than_32_bits": [
        buy(1, 10, MAX32), buy(2, 10, MAX32), buy(3, 10, MAX32), sell(4, 11, MAX32), query(2),
        sell(5, 10, MAX32, tif="ioc"), query(), market(6, "sell", MAX32), query()],
    "close_batch": [
        sell(1, 10, 1), buy(2, 10, 1), cmd("close_batch"), cmd("close_batch"), query(),
        cmd("close_batch", market=200), cmd("cancel", id=7), cmd("close_batch", market=1)],
}


# -- Running the bench ----------------------------------------------------------------------------------


def run_engine(config: MatchingConfig, testcase: str | list[str], seed: int = 1,
               build_args: tuple[str, ...] = (), **params: Any) -> BenchResult:
    return build_and_test(MatchingEngine(config), name=engine_name(config), test_module="cocotb_engine",
                          python_path=[HERE], testcase=testcase, seed=seed, build_args=build_args,
                          params={"config": asdict(config), **params})


def test_edge_cases_reach_every_event_kind_and_reason() -> None:
    """On the model: the scenarios produce every event kind and every cancel and reject reason
    (a scenario that stopped testing what its name says fails here, before any RTL runs)."""
    seen: set[Any] = set()
    for records in EDGE_CASES.values():
        model = MatchingModel(SMALL, hash_events=False)
        for raw in records:
            for event in model.execute_bytes(raw):
                seen.add(type(event).KIND)
                if isinstance(event, (Canceled, Rejected)):
                    seen.add(event.reason)
    assert seen >= {*EventKind, *CancelReason, *RejectReason}
    assert len(full_book()) == SMALL.orders


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.4, 0.6)])
def test_edge_cases(idle: float, backpressure: float) -> None:
    result = run_engine(SMALL, [f"edge_case/name={name}" for name in EDGE_CASES],
                        idle=idle, backpressure=backpressure)
    assert (result.tests, result.failed) == (len(EDGE_CASES), 0)


#: Generated flows on the small engine: 60,000 commands in all. ``full_book`` is generated for a
#: book four times larger than the engine's: the engine is full after a quarter of its commands
#: (about 1,600 ``book_full`` rejections), and the generator's cancels often name orders the
#: engine refused (about 1,300 ``unknown_id``). ``mass_cancels`` puts a fifth of its commands on
#: the rare paths (about 1,000 mass cancels among re-quotes, where the usual flows have one per
#: 400 commands): the 1M soak found a mass cancel's bug that the other flows here missed, and
#: this one finds it (it fails on 8f8659b, the engine before the fix).
FLOWS = {
    "back_to_back": dict(commands=20_000, seed=11, idle=0.0, backpressure=0.0),
    "gaps_and_backpressure": dict(commands=15_000, seed=12, idle=0.3, backpressure=0.5),
    "full_book": dict(commands=15_000, seed=13, idle=0.1, backpressure=0.3,
                      flow_config=MatchingConfig(markets=2, levels=64, orders=256, ids=256), depth=40),
    "mass_cancels": dict(commands=10_000, seed=14, idle=0.2, backpressure=0.3, rare=0.2),
}


@pytest.mark.parametrize("name", list(FLOWS))
def test_generated_flow(name: str) -> None:
    spec = dict(FLOWS[name])
    idle, backpressure = spec.pop("idle"), spec.pop("backpressure")
    flow_config = spec.pop("flow_config", SMALL)
    flow = {"markets": 2, "depth": 16, "batch_every": 500, **spec, "flow_config": asdict(flow_config)}
    result = run_engine(SMALL, "command_flow", seed=spec["seed"], flow=flow, idle=idle,
                        backpressure=backpressure)
    assert (result.tests, result.failed) == (1, 0)


@pytest.mark.parametrize(("commands", "rare"), [(1_500, FlowParams.rare), (6_000, 0.2)],
                         ids=["usual", "mass_cancels"])
def test_default_configuration_runs_a_flow(commands: int, rare: float) -> None:
    """The default (ULX3S) configuration elaborates, builds, initialises and runs a flow: the usual
    one, and one with a fifth of its commands rare (about 300 mass cancels, walking books of 32
    levels to a bitmap word, the 1M soak's geometry, where the small engine's words hold 8)."""
    config = MatchingConfig()
    result = run_engine(config, "command_flow", seed=3, idle=0.2, backpressure=0.2,
                        flow={"commands": commands, "seed": 3, "markets": 4, "batch_every": 300,
                              "rare": rare})
    assert (result.tests, result.failed) == (1, 0)


def test_a_larger_configuration_runs_a_flow() -> None:
    """Beyond the ULX3S: 8 markets x 4,096 levels a side x 32,768 orders, 2^17 ids (bitmap words
    of 64 levels, a 131,072-clock init) builds, initialises and runs a flow on all 8 markets."""
    config = MatchingConfig(markets=8, levels=4096, orders=32768, ids=1 << 17)
    # A short run on a build of its own, so the C++ compiler goes unoptimised (-O0): 158 s to
    # build and 29 s to run against 256 s and 11 s (2026-12-02, nothing else running).
    result = run_engine(config, "command_flow", seed=5, build_args=("-CFLAGS", "-O0"), idle=0.1,
                        backpressure=0.2,
                        flow={"commands": 3_000, "seed": 5, "markets": 8, "batch_every": 500,
                              "rare": 0.05})
    assert (result.tests, result.failed) == (1, 0)


def rejections(count: int) -> list[bytes]:
    """Commands every engine must reject as malformed before it touches a book, then a close batch.

    The tests of the bench itself use these, so that they hold even while the engine's matching
    is broken: they prove that the bench fails, not that the engine works.
    """
    kinds = [cmd("query", market=2), cmd("mass_cancel", market=3), cmd("set_window", market=2, lowest=0),
             cmd("query", levels=0), cmd("new", market=9, id=0, side="buy", price=1, qty=1)]
    return [kinds[k % len(kinds)] for k in range(count - 1)] + [cmd("close_batch")]


@pytest.mark.parametrize(("tamper", "expected_message"), [
    ("flip_seq", r'(?s)command 40 \{"op":"query","market":2\}: event 0 of its 1 \(event 40 of the run\) '
                 r"differs\n  expected \{.*\n  got      \{.*\n  differences:\n    seq: expected 41, got 40"),
    ("missing", r"finish: nothing moved for [\d,]+ clocks: the engine took 60 of 60 commands and "
                r"emitted 60 events of the 61 the model expects\n  next expected: command 59 "
                r'\{"op":"close_batch"\}, event 1 of its 2: \{"ev":"batch"'),
    ("extra", r"extra event 59 \(the model expects 59 after 60 commands, last command 59: "
              r'\{"op":"close_batch"\}\):\n  got      \{"ev":"batch","market":0,"seq":59,"batch":0,'
              r'"count":59,'),
])
def test_a_wrong_expectation_fails_with_a_readable_message(tamper: str, expected_message: str) -> None:
    """A wrong, a missing and an extra event: the bench names the command, the event and the field."""
    with pytest.raises(SimulationFailed, match=expected_message) as failure:
        run_engine(SMALL, "command_flow", commands=[r.hex() for r in rejections(60)], tamper=tamper,
                   event=40, idle=0.3, backpressure=0.3)
    assert "1 of 1 cocotb tests failed" in str(failure.value)
    assert failure.value.result is not None and failure.value.result.failed == 1


def test_the_bench_passes_commands_every_engine_rejects() -> None:
    """The control for the test above: the same commands, untampered, pass."""
    result = run_engine(SMALL, "command_flow", commands=[r.hex() for r in rejections(60)], idle=0.3,
                        backpressure=0.3)
    assert (result.tests, result.failed) == (1, 0)


def test_a_model_of_another_configuration_fails() -> None:
    """A scoreboard expecting 4 markets on a 2-market engine: a command on market 2 differs."""
    with pytest.raises(SimulationFailed, match=r'(?s)command 0 \{"op":"query","market":2\}: event 0 '
                                               r".*kind: expected Book, got Rejected"):
        run_engine(SMALL, "command_flow", commands=[r.hex() for r in rejections(10)],
                   model_config=asdict(MatchingConfig(markets=4, levels=64, orders=64, ids=256)))


# -- The replay backend and the benchmark ------------------------------------------------------------

SMALL_OPTIONS = ["--markets", "2", "--levels", "64", "--orders", "64", "--ids", "256"]


def test_replay_backend_rtl_prints_what_the_model_prints(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    flow = generate_flow(FlowParams(commands=3_000, seed=8, markets=2, depth=16, config=SMALL,
                                    batch_every=250))
    src = tmp_path / "flow.jsonl"
    src.write_text("".join(json.dumps(command_to_json(c)) + "\n" for c in flow))
    assert main(["replay", *SMALL_OPTIONS, str(src)]) == 0
    from_model = capsys.readouterr().out
    assert main(["replay", "--backend", "rtl", "--summary", *SMALL_OPTIONS, str(src)]) == 0
    captured = capsys.readouterr()
    assert captured.out == from_model  # batch roots included: the engine core hashes each batch
    assert "backend        rtl" in captured.err and "commands       3,000" in captured.err

    # A malformed line: the lines before it run, the error names it, exit status 2.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"op":"new","market":0,"id":1,"side":"sell","price":10,"qty":4}\n'
                   '{"op":"query","market":0}\n'
                   '{"op":"new","market":0,"id":2,"side":"buy","price":10,"qty":"3"}\n'
                   '{"op":"close_batch"}\n')
    assert main(["replay", "--backend", "rtl", *SMALL_OPTIONS, str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().endswith(f"ocee replay: {bad}: line 3, field 'qty': expected an "
                                         f"integer, got \"3\"")
    assert [json.loads(x)["ev"] for x in captured.out.splitlines()] == ["accepted", "book"]


def test_bench_rtl_prints_positive_figures(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "rtl", *SMALL_OPTIONS, "--commands", "32", "--sweep-levels", "8",
                 "--samples", "3"]) == 0
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| back to back")
            and not line.startswith("| one taker") and not line.startswith("| latency,")]
    assert len(rows) == 4 + 2 + 8
    for name, *figures in rows:
        values = [float(f.replace(",", "")) for f in figures]
        assert values and all(v > 0 for v in values), name
        assert re.fullmatch(r" [a-z0-9 ,()x-]+ ", name), name


def test_bench_rtl_refuses_sizes_that_do_not_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "rtl", *SMALL_OPTIONS, "--commands", "1000"]) == 2
    assert "commands must be between 2 and 64" in capsys.readouterr().err
