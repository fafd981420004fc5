"""Clocks per command, per fill and to the first event, of the engine RTL under Verilator.

``ocee bench rtl`` builds the engine for a configuration and runs one bench
(:mod:`ocee.sim.cocotb_bench`) that counts clocks at the engine's ports, with commands offered back
to back and events always taken, so the figures are the engine's own. Every event is also checked
against the reference model (:class:`~ocee.sim.engine_tb.EngineTB`): a figure from an engine that
emits wrong events is no figure, and the bench fails instead.

The phases, on one engine in this order (:func:`bench_phases`):

1. ``commands`` non-crossing GTC adds (bids, four per level, spread over the markets and the
   lower half of the window), back to back: clocks per command is the spacing of their
   acceptances.
2. a smaller quantity for each (keeps priority), then 3. a larger one (to the back of its level),
   4. a cancel of each: the same measure.
5. one market order sweeping ``sweep_depth`` orders on each of ``sweep_levels`` adjacent levels, and
   6. one sweeping an order on every fourth level: clocks per fill (the spacing of the fills) and
   clocks for the whole command.
7. commands of each kind sent alone into an idle engine, ``samples`` of each: the latency from the
   clock the command is taken to the clock its first event is (0 would be the same clock).

This is a script, not a test: the figures go to ``docs/`` by hand, and tests only check that the
bench runs and that its figures are well formed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any, TextIO

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.protocol import (
    COMMAND_CODEC,
    Cancel,
    CloseBatch,
    Command,
    Modify,
    NewOrder,
    OrderType,
    Query,
    Side,
    TimeInForce,
)

from .rtl import detached, engine_name, output_to
from .runner import SimulationFailed, build_and_test

__all__ = ["BenchPhase", "BenchSizes", "EngineBenchResult", "bench_phases", "measure_engine",
           "render_tables"]


@dataclass(frozen=True)
class BenchSizes:
    commands: int = 1000
    """Orders added, then modified twice, then canceled."""
    sweep_levels: int = 64
    sweep_depth: int = 4
    """Orders per level in the dense sweep."""
    samples: int = 20
    """Commands of each kind in the latency phase."""

    def check(self, config: MatchingConfig) -> None:
        """Raise ValueError naming the size that does not fit ``config``."""
        if not 2 <= self.commands <= min(config.orders, config.ids // 2):
            raise ValueError(f"commands must be between 2 and {min(config.orders, config.ids // 2)} "
                             f"(every order rests at once), not {self.commands}")
        if not 2 <= self.sweep_levels <= config.levels // 8:
            raise ValueError(f"sweep levels must be between 2 and {config.levels // 8} (an eighth of "
                             f"the window: the sparse sweep spaces them 4 ticks apart), not "
                             f"{self.sweep_levels}")
        if self.sweep_depth < 1 or self.sweep_depth * self.sweep_levels > config.orders:
            raise ValueError(f"sweep depth x levels must fit {config.orders} resting orders, not "
                             f"{self.sweep_depth} x {self.sweep_levels}")
        most = min(config.orders - 1, config.levels // 2 - 2)
        if not 1 <= self.samples <= most:
            raise ValueError(f"samples must be between 1 and {most}, not {self.samples}")


@dataclass(frozen=True)
class BenchPhase:
    name: str
    kind: str
    """``rate`` (back to back), ``sweep`` (the last command is measured) or ``latency`` (alone)."""
    commands: tuple[Command, ...]
    measured: str = ""
    """For latency phases: which kind of command the row is about."""


def bench_phases(config: MatchingConfig, sizes: BenchSizes) -> list[BenchPhase]:
    """The bench's commands, phase by phase (see the module docstring)."""
    sizes.check(config)
    n = sizes.commands
    half = config.levels // 2
    # Four orders per level, so that a larger modify really moves its order to the back.
    adds = tuple(NewOrder(market=k % config.markets, id=k, account=1 + k % 7, side=Side.BUY,
                          price=(k // (4 * config.markets)) % half, qty=100) for k in range(n))
    phases = [
        BenchPhase("non-crossing adds", "rate", adds),
        BenchPhase("modifies, smaller (keep priority)", "rate",
                   tuple(Modify(market=a.market, id=a.id, qty=50) for a in adds)),
        BenchPhase("modifies, larger (to the back)", "rate",
                   tuple(Modify(market=a.market, id=a.id, qty=80) for a in adds)),
        BenchPhase("cancels", "rate", tuple(Cancel(market=a.market, id=a.id) for a in adds)),
    ]
    next_id = n
    for name, levels, depth, spacing in (
            (f"{sizes.sweep_depth} orders x {sizes.sweep_levels} adjacent levels", sizes.sweep_levels,
             sizes.sweep_depth, 1),
            (f"1 order x {sizes.sweep_levels} levels 4 ticks apart", sizes.sweep_levels, 1, 4)):
        rest = []
        for level in range(levels):
            for _ in range(depth):
                rest.append(NewOrder(market=0, id=next_id, account=2, side=Side.SELL,
                                     price=half + spacing * level, qty=3))
                next_id += 1
        taker = NewOrder(market=0, id=next_id, account=3, side=Side.BUY, type=OrderType.MARKET,
                         tif=TimeInForce.IOC, qty=3 * len(rest))
        next_id += 1
        phases.append(BenchPhase(name, "sweep", (*rest, taker)))
    s = sizes.samples
    ids = range(next_id, next_id + s)
    big, takers = next_id + s, range(next_id + s + 1, next_id + 2 * s + 1)
    if takers.stop > config.ids:
        raise ValueError(f"the bench needs {takers.stop:,} order ids, the engine has {config.ids:,}")
    latency: list[tuple[str, list[Command]]] = [
        # The first add is a large bid that every crossing add below fills against.
        ("add (rests)", [NewOrder(market=0, id=big, side=Side.BUY, price=half - 1, qty=s),
                         *(NewOrder(market=0, id=i, side=Side.BUY, price=1 + k, qty=2)
                           for k, i in enumerate(ids))]),
        ("modify", [Modify(market=0, id=i, qty=3) for i in ids]),
        ("crossing add (fills)", [NewOrder(market=0, id=t, side=Side.SELL, price=1, qty=1,
                                           tif=TimeInForce.IOC) for t in takers]),
        ("cancel", [Cancel(market=0, id=i) for i in ids]),
        ("cancel of an unknown id", [Cancel(market=0, id=i) for i in ids]),
        ("query, depth 1", [Query(market=0, levels=1) for _ in range(s)]),
        ("malformed (query depth 0)", [Query(market=0, levels=0) for _ in range(s)]),
        ("close batch", [CloseBatch() for _ in range(s)]),
    ]
    phases += [BenchPhase(f"latency: {name}", "latency", tuple(commands), name)
               for name, commands in latency]
    return phases


@dataclass(frozen=True)
class RateRow:
    name: str
    commands: int
    clocks_per_command: float


@dataclass(frozen=True)
class SweepRow:
    name: str
    fills: int
    clocks_per_fill: float
    command_clocks: int
    """From the taker's acceptance to its last event."""


@dataclass(frozen=True)
class LatencyRow:
    name: str
    samples: int
    least: int
    average: float
    most: int


@dataclass(frozen=True)
class EngineBenchResult:
    config: MatchingConfig
    rates: list[RateRow]
    sweeps: list[SweepRow]
    latencies: list[LatencyRow]


Stamps = list[tuple[int, list[int]]]
"""Per command of a phase: the clock it was taken, the clocks its events were."""


def summarize(config: MatchingConfig, phases: Sequence[BenchPhase],
              stamps: dict[str, Stamps]) -> EngineBenchResult:
    """The figures from the bench's stamps (what :mod:`ocee.sim.cocotb_bench` records)."""
    rates, sweeps, latencies = [], [], []
    for phase in phases:
        got = stamps[phase.name]
        if phase.kind == "rate":
            first, last = got[0][0], got[-1][0]
            rates.append(RateRow(phase.name, len(got), (last - first) / (len(got) - 1)))
        elif phase.kind == "sweep":
            accepted, events = got[-1]
            fills = events[1:]  # accepted, then one fill per resting order
            sweeps.append(SweepRow(phase.name, len(fills), (fills[-1] - fills[0]) / max(len(fills) - 1, 1),
                                   events[-1] - accepted))
        else:
            waits = [events[0] - accepted for accepted, events in got]
            latencies.append(LatencyRow(phase.measured, len(waits), min(waits), mean(waits), max(waits)))
    return EngineBenchResult(config, rates, sweeps, latencies)


def measure_engine(config: MatchingConfig, sizes: BenchSizes, *, status: TextIO | None = None,
                   build_root: Path | None = None) -> EngineBenchResult:
    """Build the engine for ``config`` (cached), run the bench, return its figures.

    Raises ValueError for sizes that do not fit, :class:`SimulationFailed` when the engine's
    events differ from the model's or the run fails (the toolchain's log is named).
    """
    from ocee.hw.matching.engine import MatchingEngine

    phases = bench_phases(config, sizes)
    work = Path(tempfile.mkdtemp(prefix="ocee-bench-rtl-"))
    phases_file, stamps_file, log_path = work / "phases.json", work / "stamps.json", work / "sim.log"
    phases_file.write_text(json.dumps([
        {"name": p.name, "kind": p.kind, "commands": [COMMAND_CODEC.pack(c).hex() for c in p.commands]}
        for p in phases]))
    if status is not None:
        with detached(status) as out:
            print(f"bench rtl: building (cached after the first build) and running the engine; log "
                  f"{log_path}", file=out, flush=True)
    with open(log_path, "w") as log, output_to(log):
        try:
            build_and_test(MatchingEngine(config), name=engine_name(config),
                           test_module="ocee.sim.cocotb_bench", build_root=build_root, seed=1,
                           params={"config": asdict(config), "phases_file": str(phases_file),
                                   "stamps_file": str(stamps_file)})
        except SimulationFailed as e:
            raise SimulationFailed(f"{e}\n(the simulator's log: {log_path})", e.result) from None
    raw: dict[str, Any] = json.loads(stamps_file.read_text())
    shutil.rmtree(work, ignore_errors=True)
    stamps = {name: [(int(a), [int(e) for e in events]) for a, events in rows] for name, rows in raw.items()}
    return summarize(config, phases, stamps)


def render_tables(result: EngineBenchResult) -> str:
    """The figures as Markdown tables, for docs/."""
    c = result.config
    lines = [f"engine RTL under Verilator: {c.markets} markets, {c.levels} levels, {c.orders} orders, "
             f"{c.ids} ids; clocks counted at the engine's ports, commands back to back, events "
             f"always taken, every event checked against the model", "",
             "| back to back | commands | clocks per command |", "|---|---:|---:|"]
    lines += [f"| {r.name} | {r.commands:,} | {r.clocks_per_command:.2f} |" for r in result.rates]
    lines += ["", "| one taker sweeping | fills | clocks per fill | clocks for the command |",
              "|---|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.fills:,} | {r.clocks_per_fill:.2f} | {r.command_clocks:,} |"
              for r in result.sweeps]
    lines += ["", "| latency, command taken to first event (clocks) | samples | min | mean | max |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r.name} | {r.samples} | {r.least} | {r.average:.1f} | {r.most} |"
              for r in result.latencies]
    return "\n".join(lines)
