"""``ocee demo``: a generated flow through a device, checked against the reference model.

The device is reached through the link layer like any other (docs/link.md); by default it is the
virtual board, ``sim://``, the appliance's RTL under Verilator. The flow is generated for the
capacities the device reports, streamed pipelined with :meth:`Link.stream`, and every command's
events, batch roots included, are compared with an independent reference model that hashes its
own events. The link's shadow model checks the events too; this check is the demo's own, made
from outside the link, so that a link bug that hid a difference from the shadow would still show.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import BatchClosed, Event

from .flowgen import FlowParams, generate_commands
from .link import Link, LinkError, open_link
from .progress import Progress
from .replay import ReplaySummary

__all__ = ["DemoResult", "percentile", "run_demo"]


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ascending ``sorted_values``, nearest rank."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n p / 100), at least 1
    return sorted_values[min(int(rank), len(sorted_values)) - 1]


@dataclass
class DemoResult:
    summary: ReplaySummary = field(default_factory=ReplaySummary)
    latencies: list[float] = field(default_factory=list)  # seconds, sorted once streaming ends
    mismatches: int = 0
    first_mismatch: str = ""
    roots_checked: int = 0

    @property
    def agrees(self) -> bool:
        return self.mismatches == 0


def run_demo(link: Link, params: FlowParams, *, quiet: bool = False,
             stream: TextIO | None = None) -> DemoResult:
    """Generate ``params``' flow, stream it through ``link`` and check it against the model."""
    err = stream or sys.stderr
    commands = generate_commands(params, quiet, err)

    reference = MatchingModel(params.config, hash_events=True)
    result = DemoResult()
    summary, latencies = result.summary, result.latencies
    progress = Progress(len(commands), "streaming ", stream=err, enabled=not quiet)
    start = time.perf_counter()
    n = 0
    for n, done in enumerate(link.stream(commands), start=1):
        assert not isinstance(done.command, bytes)  # the flow holds commands only
        events: list[Event] = done.events
        expected = reference.execute(done.command)
        if events != expected:
            result.mismatches += 1
            if not result.first_mismatch:
                result.first_mismatch = (f"command {n} {done.command!r}: the device sent "
                                         f"{events}, the reference model {expected}")
        result.roots_checked += sum(type(e) is BatchClosed for e in expected)
        summary.add(done.command, events)
        latencies.append(done.latency)
        if not n % 1024:
            progress.update(n)
    summary.seconds = time.perf_counter() - start
    progress.update(n)
    progress.finish()
    latencies.sort()
    return result


def render(result: DemoResult, link: Link, url: str) -> str:
    """The demo's report: the replay summary, latency percentiles, the device's counters."""
    lat = result.latencies
    counters = link.counters()
    stats = link.stats
    lines = [result.summary.render(url),
             "latency        " + ", ".join(
                 f"p{p:g} {percentile(lat, p) * 1e6:,.0f} us" for p in (50, 99, 99.9))
             + f", max {lat[-1] * 1e6 if lat else 0:,.0f} us (first frame out to last event in)",
             f"device         {link.device_info}",
             f"device counts  {counters.commands:,} commands, {counters.events:,} events, "
             f"{counters.rx_frames:,} frames in, {counters.tx_frames:,} out; errors: framing "
             f"{counters.framing_errors}, crc {counters.crc_errors}, sequence "
             f"{counters.sequence_errors}, overflows {counters.overflows}, line "
             f"{counters.line_errors}, retransmits {counters.retransmits}",
             f"host counts    {stats.frames_sent:,} frames out, {stats.frames_received:,} in, "
             f"{stats.retransmits} retransmits, {stats.timeouts} timeouts, {stats.resets} resets"]
    if result.agrees:
        lines.append(f"check          every event of {result.summary.command_count:,} commands and "
                     f"all {result.roots_checked:,} batch roots agree with the reference model")
    else:
        lines.append(f"check          FAILED: {result.mismatches:,} commands differ from the "
                     f"reference model; the first: {result.first_mismatch}")
    return "\n".join(lines)


def demo(url: str, commands: int, seed: int, markets: int, batch_every: int,
         quiet: bool) -> int:
    """``ocee demo``: 0 if the device agreed with the model, 1 if not or if the link failed."""
    print(f"ocee demo: connecting to {url}", file=sys.stderr, flush=True)
    try:
        link = open_link(url)
    except LinkError as e:
        print(f"ocee demo: cannot open {url}: {e}", file=sys.stderr)
        return 1
    with link:
        try:
            params = FlowParams(commands=commands, seed=seed, markets=markets,
                                batch_every=batch_every, config=link.config)
        except ValueError as e:
            print(f"ocee demo: {e}", file=sys.stderr)
            return 2
        print(f"ocee demo: {params.commands:,} generated commands on {params.markets} markets "
              f"(seed {params.seed}) through {url}: {link.config}", file=sys.stderr, flush=True)
        try:
            result = run_demo(link, params, quiet=quiet)
            print(render(result, link, url))
        except LinkError as e:
            print(f"ocee demo: the link failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    board = getattr(link.transport, "board", None)  # a virtual board, stopped with the link
    stats = getattr(board, "stats", None)
    if stats is not None and stats.clocks:
        n = max(result.summary.command_count, 1)
        print(f"virtual board  {stats.clocks:,} clocks in {stats.seconds:.1f} s "
              f"({stats.clocks_per_second / 1e6:.2f} M clocks/s); per command {stats.clocks / n:.0f} "
              f"clocks, {stats.bytes_in / n:.1f} bytes in, {stats.bytes_out / n:.1f} bytes out")
    return 0 if result.agrees else 1
