"""The ``ocee`` command: one entry point, a subcommand per job.

Exit status: 0 success, 1 a failure while running (a check that did not hold), 2 bad usage or
bad input (argparse's convention; a malformed command line names its line and field).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import COMMAND_CODEC, Command

from .board_cli import add_board_parser
from .flowgen import FlowParams, generate_commands, generate_flow
from .hw_cli import add_hw_commands
from .jsonl import CommandSyntaxError, command_to_json, format_event, read_commands
from .link.errors import LinkError
from .progress import Progress
from .replay import (
    BACKENDS,
    RUN_BACKENDS,
    BackendError,
    LinkBackend,
    ReplaySummary,
    replay,
    replay_all,
)

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input or arguments: reported on one line, exit status 2."""


# -- Shared options -------------------------------------------------------------------------------


def _add_capacity(parser: argparse.ArgumentParser, markets: bool = True) -> None:
    d = MatchingConfig()
    group = parser.add_argument_group("device capacity")
    if markets:
        group.add_argument("--markets", type=int, default=d.markets, metavar="N",
                           help=f"order books on the device (default {d.markets})")
    group.add_argument("--levels", type=int, default=d.levels, metavar="N",
                       help=f"price levels per side, a power of two (default {d.levels})")
    group.add_argument("--orders", type=int, default=d.orders, metavar="N",
                       help=f"resting orders, a power of two (default {d.orders})")
    group.add_argument("--ids", type=int, default=d.ids, metavar="N",
                       help=f"order ids are 0 .. N-1, a power of two (default {d.ids})")


def _config(args: argparse.Namespace, markets: int | None = None) -> MatchingConfig:
    try:
        return MatchingConfig(markets=markets if markets is not None else args.markets,
                              levels=args.levels, orders=args.orders, ids=args.ids)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _flow(args: argparse.Namespace, config: MatchingConfig) -> FlowParams:
    try:
        return FlowParams(commands=args.commands, seed=args.seed, markets=args.flow_markets,
                          batch_every=args.batch_every, rare=getattr(args, "rare", FlowParams.rare),
                          depth=getattr(args, "depth", FlowParams.depth), config=config)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _add_hashing_stages(parser: argparse.ArgumentParser, rounds_default: list[int] | None,
                        slices_help: str) -> None:
    """The hashing stages a benchmark measures: Keccak rings (K rounds per clock, C contexts)
    and slice-serial cores (W slices per clock), with a permutation each or one shared, and
    the stage's queue depth."""
    default = "" if rounds_default is None else f" (default {' '.join(map(str, rounds_default))})"
    parser.add_argument("--rounds-per-cycle", type=int, nargs="+", default=rounds_default,
                        metavar="K", help=f"Keccak rings of K rounds per clock to measure{default}")
    parser.add_argument("--contexts", type=int, nargs="+", default=[1], metavar="C",
                        help="contexts (permutations in flight) of each ring (default 1)")
    parser.add_argument("--slices-per-clock", type=int, nargs="+", metavar="W",
                        help=f"slice-serial Keccak cores of W slices per clock to measure, "
                             f"{slices_help}")
    parser.add_argument("--shared", action="store_true",
                        help="also measure each ring and core with one permutation shared by the "
                             "leaf hasher and the accumulator (the boards' choice)")
    parser.add_argument("--queue-depth", type=int, default=8, metavar="N",
                        help="the stage's queues (default 8; the boards build 2)")


def _add_flow(parser: argparse.ArgumentParser, commands: int) -> None:
    group = parser.add_argument_group("generated flow")
    group.add_argument("--commands", type=int, default=commands, metavar="N",
                       help=f"commands to generate (default {commands:,})")
    group.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    group.add_argument("--flow-markets", type=int, default=4, metavar="M",
                       help="markets the flow trades on (default 4)")
    group.add_argument("--batch-every", type=int, default=1000, metavar="N",
                       help="close a batch after N commands (default 1000)")


@contextlib.contextmanager
def _open_in(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdin
    else:
        try:
            with open(path, encoding="utf-8") as f:
                yield f
        except OSError as e:
            raise UsageError(f"cannot read {path}: {e.strerror}") from None


@contextlib.contextmanager
def _open_out(path: str | None) -> Iterator[IO[str]]:
    if path is None or path == "-":
        yield sys.stdout
    else:
        try:
            with open(path, "w", encoding="utf-8") as f:
                yield f
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None


# -- Subcommands ----------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.link is None and args.backend in RUN_BACKENDS:
        return _replay_run(args, config)
    try:
        backend = LinkBackend(args.link) if args.link else BACKENDS[args.backend](config)
    except BackendError as e:
        print(f"ocee replay: {e}", file=sys.stderr)
        return EXIT_FAILURE
    summary = ReplaySummary() if args.summary else None
    try:
        with _open_in(args.file) as src, _open_out(args.output) as out:
            write = out.write
            commands: Iterable[Command] = read_commands(src)
            if args.link:
                # The whole file is checked before the first command goes out: a device never
                # executes part of a file that turns out to be bad.
                commands = list(commands)
            for events in replay(commands, backend, summary=summary):
                for ev in events:
                    write(format_event(ev) + "\n")
    except CommandSyntaxError as e:
        raise UsageError(f"{args.file}: {e}") from None
    except LinkError as e:
        print(f"ocee replay: the link to {args.link} failed: {type(e).__name__}: {e}",
              file=sys.stderr)
        return EXIT_FAILURE
    finally:
        backend.close()
    if summary is not None:
        print(summary.render(args.link or args.backend), file=sys.stderr)
    return EXIT_OK


def _replay_run(args: argparse.Namespace, config: MatchingConfig) -> int:
    """``replay`` through a backend that runs the whole list at once (the RTL under Verilator).

    Every command is read first. A malformed line behaves as with the model: the lines before it
    run and their events are printed, then the error names the line and field (exit status 2).
    """
    commands: list[Command] = []
    syntax_error: CommandSyntaxError | None = None
    with _open_in(args.file) as src:
        try:
            commands.extend(read_commands(src))
        except CommandSyntaxError as e:
            syntax_error = e
    backend = RUN_BACKENDS[args.backend](config, sys.stderr)
    summary = ReplaySummary() if args.summary else None
    try:
        events = replay_all(commands, backend, summary=summary)
    except BackendError as e:
        print(f"ocee replay: {e}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        backend.close()
    with _open_out(args.output) as out:
        out.writelines(format_event(ev) + "\n" for ev in events)
    if syntax_error is not None:
        raise UsageError(f"{args.file}: {syntax_error}")
    if summary is not None:
        print(summary.render(args.link or args.backend), file=sys.stderr)
    return EXIT_OK


def cmd_gen(args: argparse.Namespace) -> int:
    config = _config(args, markets=max(args.flow_markets, MatchingConfig().markets))
    params = _flow(args, config)
    with _open_out(args.output) as out:
        for command in generate_flow(params):
            out.write(json.dumps(command_to_json(command), separators=(",", ":")) + "\n")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(args.link, commands=args.commands, seed=args.seed, markets=args.flow_markets,
                batch_every=args.batch_every, quiet=args.quiet)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()} "
            f"({platform.python_implementation()}), {platform.system()} {platform.machine()}")


def cmd_bench(args: argparse.Namespace) -> int:
    config = _config(args)
    params = _flow(args, config)
    print(f"machine: {_machine()}", file=sys.stderr)
    commands = generate_commands(params, args.quiet)
    rows: list[tuple[str, float, int]] = []
    for label, hashing in (("matching only", False), ("matching + event hashing", True)):
        best = float("inf")
        events = 0
        for _ in range(args.repeat):
            model = MatchingModel(config, hash_events=hashing)
            execute = model.execute
            events = 0
            start = time.perf_counter()
            for command in commands:
                events += len(execute(command))
            best = min(best, time.perf_counter() - start)
        rows.append((label, best, events))
        print(f"{label}: {len(commands) / best:,.0f} commands/s", file=sys.stderr)
    print(f"reference model, {len(commands):,} generated commands (seed {params.seed}, "
          f"{params.markets} markets), best of {args.repeat}")
    print(f"machine: {_machine()}\n")
    print("| mode | seconds | commands/s | events/s |")
    print("|---|---:|---:|---:|")
    for label, seconds, events in rows:
        print(f"| {label} | {seconds:.2f} | {len(commands) / seconds:,.0f} | "
              f"{events / seconds:,.0f} |")
    return EXIT_OK


def cmd_bench_hashing(args: argparse.Namespace) -> int:
    from ocee.hw.hashing.bench import measure_batch_hasher, measure_keccak, measure_slice_serial

    # Rings of K rounds per clock and C contexts, or slice-serial cores of W slices per clock.
    options: list[tuple[int, int, int | None]] = (
        [(1, 1, w) for w in args.slices_per_clock] if args.slices_per_clock else
        [(k, c, None) for k in args.rounds_per_cycle for c in args.contexts])
    print("Keccak core in Amaranth's simulator, input back to back, output always ready\n")
    if args.slices_per_clock:
        print("| slices per clock | clocks per permutation | permutation every |\n|---:|---:|---:|")
    else:
        print("| rounds per cycle | contexts | clocks per permutation | permutation every | "
              "one-block digest every |\n|---:|---:|---:|---:|---:|")
    for k, c, w in options:
        try:
            if w is not None:
                latency, period = measure_slice_serial(w)
                print(f"| {w} | {latency} | {period:g} |", flush=True)
                continue
            core = measure_keccak(k, c)
        except ValueError as e:
            raise UsageError(str(e)) from None
        print(f"| {k} | {c} | {core.permutation_latency} | {core.permutation_period:g} | "
              f"{core.digest_period:g} |", flush=True)
    config = _config(args)
    params = _flow(args, config)
    model = MatchingModel(config, hash_events=False)
    events = [e for c in generate_flow(params) for e in model.execute(c)]
    print(f"\nhashing stage (BatchHasher) in Amaranth's simulator: {len(events):,} events of a "
          f"{params.commands:,}-command flow (seed {params.seed}), input back to back, output "
          f"always ready\n")
    print("| Keccak | permutations | queues | events | cycles | "
          "cycles per event |\n|---|---|---:|---:|---:|---:|")
    for k, c, w in options:
        for shared in (False, True) if args.shared else (False,):
            try:
                result = measure_batch_hasher(events, k, c, shared=shared,
                                              queue_depth=args.queue_depth, slices_per_clock=w)
            except ValueError as e:
                raise UsageError(str(e)) from None
            keccak = f"{w} slices/clock" if w else f"{k} round(s)/clock x {c} context(s)"
            print(f"| {keccak} | {'one shared' if shared else 'two'} | {args.queue_depth} | "
                  f"{result.events:,} | {result.cycles:,} | {result.cycles_per_event:.2f} |",
                  flush=True)
    return EXIT_OK


def cmd_bench_rtl(args: argparse.Namespace) -> int:
    from ocee.sim.engine_bench import BenchSizes, measure_engine, render_tables
    from ocee.sim.runner import SimulationFailed

    config = _config(args)
    sizes = BenchSizes(commands=args.commands, sweep_levels=args.sweep_levels,
                       sweep_depth=args.sweep_depth, samples=args.samples)
    try:
        sizes.check(config)
        print(f"machine: {_machine()}", file=sys.stderr)
        result = measure_engine(config, sizes, status=sys.stderr)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except SimulationFailed as e:
        print(f"ocee bench rtl: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(render_tables(result))
    return EXIT_OK


class _FirstUpdateProgress:
    """A :class:`Progress` line that starts at the first update, so that its rate leaves out
    what comes before (the engine's init)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.bar: Progress | None = None

    def update(self, done: int) -> None:
        if self.bar is None:
            self.bar = Progress(self.total, self.label, stream=sys.stderr, enabled=self.enabled)
        self.bar.update(done)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.finish()


def cmd_bench_core(args: argparse.Namespace) -> int:
    from ocee.hw.boards import BOARD_HASHING
    from ocee.hw.engine_core_bench import (
        CoreBenchFailed,
        CoreHashing,
        CoreThroughput,
        ExpectedEvent,
        clocks_by_kind,
        expected_events,
        measure_core,
    )

    config = _config(args)
    params = _flow(args, config)
    if args.commands < 1:
        raise UsageError(f"--commands must be at least 1, not {args.commands}")
    if any(mhz <= 0 for mhz in args.mhz):
        raise UsageError(f"--mhz takes clock frequencies above 0, not {args.mhz}")
    # Rings of K rounds per clock and C contexts, slice-serial cores of W slices per clock, each
    # with a permutation for leaves and one for the tree and, with --shared, one for both; the
    # boards' stage when asked or when no Keccak is named.
    own = [CoreHashing(k, c, queue_depth=args.queue_depth)
           for k in args.rounds_per_cycle or () for c in args.contexts]
    own += [CoreHashing(slices_per_clock=w, queue_depth=args.queue_depth)
            for w in args.slices_per_clock or ()]
    stages: list[CoreHashing] = []
    if args.boards or not (own or args.by_kind):
        stages.append(CoreHashing.from_core_arguments(BOARD_HASHING))
    for option in own:
        stages += [option, dataclasses.replace(option, shared=True)] if args.shared else [option]
    try:
        for option in stages:
            option.check()
    except ValueError as e:
        raise UsageError(str(e)) from None
    records = [COMMAND_CODEC.pack(c) for c in generate_flow(params)]
    print(f"machine: {_machine()}", file=sys.stderr)
    print(f"engine core ({config.markets} markets, {config.levels} levels, {config.orders} "
          f"orders, {config.ids} ids) in Amaranth's simulator: {len(records):,} generated commands "
          f"(seed {params.seed}, {params.markets} markets, a batch closed every "
          f"{params.batch_every}) offered back to back, events always taken, every event and "
          f"root checked against the model\n")
    print("| hashing stage | permutations | queues | commands | events | clocks | "
          "clocks per command | clocks per event | clocks the stage held the engine | "
          + " | ".join(f"events/s at {mhz:g} MHz" for mhz in args.mhz) + " |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(args.mhz), flush=True)
    started = time.perf_counter()
    alone: CoreThroughput | None = None
    alone_expected: list[ExpectedEvent] = []
    for stage in [None, *stages]:
        expected = expected_events(records, config, hashed=stage is not None)
        label = ("engine alone" if stage is None else
                 f"{stage.keccak}{', shared' if stage.shared else ''}")
        print(f"{'the matching engine alone' if stage is None else f'the engine core: {stage}'}: "
              f"{len(expected):,} events after the engine's init", file=sys.stderr, flush=True)
        bar = _FirstUpdateProgress(len(expected), label, enabled=not args.quiet)
        try:
            result: CoreThroughput = measure_core(records, config, stage, expected=expected,
                                                  progress=bar.update)
        except CoreBenchFailed as e:
            print(f"ocee bench core: {e}", file=sys.stderr)
            return EXIT_FAILURE
        finally:
            bar.finish()
        if stage is None:
            columns = ["the matching engine alone", "—", "—", "—"]
        else:
            columns = [stage.keccak, "one shared" if stage.shared else "two",
                       str(stage.queue_depth), f"{result.held:,}"]
        rates = " | ".join(f"{result.events_per_second(mhz * 1e6):,.0f}" for mhz in args.mhz)
        print(f"| {' | '.join(columns[:3])} | {result.commands:,} | {result.events:,} | "
              f"{result.clocks:,} | {result.clocks_per_command:.2f} | "
              f"{result.clocks_per_event:.2f} | {columns[3]} | {rates} |", flush=True)
        if stage is None:
            alone, alone_expected = result, expected
    print(f"{1 + len(stages)} runs in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if args.by_kind and alone is not None:
        rows = clocks_by_kind(records, alone_expected, alone.taken)
        counted = sum(r.clocks for r in rows)
        commands = sum(r.commands for r in rows)
        print("\nthe matching engine alone, by kind of command (each command's clocks: from its "
              "taking to the next's; the last command left out)\n")
        print("| command | commands | clocks | share of clocks | clocks per command | "
              "events per command |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r.kind} | {r.commands:,} | {r.clocks:,} | {100 * r.clocks / counted:.1f}% | "
                  f"{r.clocks_per_command:.2f} | {r.events / r.commands:.2f} |")
        print(f"| all | {commands:,} | {counted:,} | 100% | {counted / commands:.2f} | "
              f"{sum(r.events for r in rows) / commands:.2f} |")
    return EXIT_OK


def cmd_vectors(args: argparse.Namespace) -> int:
    from .vectors import render_vectors  # builds a few thousand hashes: only when asked

    text = render_vectors()
    if args.check:
        try:
            with open(args.output, encoding="utf-8") as f:
                committed = f.read()
        except OSError as e:
            raise UsageError(f"cannot read {args.output}: {e.strerror}") from None
        if committed != text:
            print(f"ocee vectors: {args.output} differs from what the model generates now; "
                  f"run `ocee vectors` to rewrite it", file=sys.stderr)
            return EXIT_FAILURE
        print(f"{args.output} is up to date", file=sys.stderr)
        return EXIT_OK
    directory = os.path.dirname(args.output)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with _open_out(args.output) as out:
        out.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_hw_synth(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ocee.hw.synthesis import BLOCKS, SynthesisError, synthesize, synthesize_only

    if args.synth_only:
        # Options of place and route, or of its Fmax: refused rather than silently ignored.
        given = [option for option, present in (("--freq", args.freq is not None),
                                                ("--speed", args.speed is not None),
                                                ("--nextpnr-args", bool(args.nextpnr_args)),
                                                ("--require-target", args.require_target))
                 if present]
        if given:
            raise UsageError(f"--synth-only runs yosys alone: {', '.join(given)} "
                             f"{'applies' if len(given) == 1 else 'apply'} to place and route "
                             f"(nextpnr), which it does not run")
    freq = 125.0 if args.freq is None else args.freq
    speed = 6 if args.speed is None else args.speed
    try:
        component = BLOCKS[args.block](args.rounds_per_cycle, args.contexts,
                                       args.slices_per_clock)
    except ValueError as e:
        raise UsageError(str(e)) from None
    keccak = (f"slices per clock {args.slices_per_clock}" if args.slices_per_clock else
              f"rounds per cycle {args.rounds_per_cycle}, contexts {args.contexts}")
    block = f"{args.block} " + (f"w={args.slices_per_clock}" if args.slices_per_clock else
                                f"k={args.rounds_per_cycle} c={args.contexts}")
    workdir = Path(args.keep) if args.keep else None
    if args.synth_only:
        print(f"ocee hw synth: {args.block} ({keccak}) for the LFE5U-85F: yosys only, no place "
              f"and route", file=sys.stderr)
        try:
            cells = synthesize_only(component, block, synth_opts=args.synth_opts, workdir=workdir)
        except SynthesisError as e:
            print(f"ocee hw synth: {e}", file=sys.stderr)
            return EXIT_FAILURE
        print(cells.HEADER)
        print(cells.row())
        print(f"yosys's cells before packing, not placed or routed: no Fmax. LUT4 as nextpnr "
              f"counts them (its TRELLIS_COMB, the figure without --synth-only) = "
              f"{cells.lut4:,} LUT4 + 2 x {cells.ccu2c:,} CCU2C + 6 x {cells.lutram:,} "
              f"TRELLIS_DPR16X4 = {cells.luts_as_nextpnr:,} (packing adds a few per carry chain); "
              f"{cells.seconds:.0f} s", file=sys.stderr)
        return EXIT_OK
    print(f"ocee hw synth: {args.block} ({keccak}) on "
          f"LFE5U-85F speed {speed}, target {freq:g} MHz: yosys + nextpnr, this takes "
          f"minutes", file=sys.stderr)
    try:
        report = synthesize(component, block, target_mhz=freq, speed=speed,
                            synth_opts=args.synth_opts,
                            nextpnr_args=shlex.split(args.nextpnr_args),
                            workdir=workdir)
    except SynthesisError as e:
        print(f"ocee hw synth: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print("| block | Fmax MHz | LUT4 | FF | DP16KD |\n|---|---:|---:|---:|---:|")
    print(report.row())
    verdict = "meets" if report.meets_target else "MISSES"
    print(f"{verdict} {freq:g} MHz; {report.seconds:.0f} s", file=sys.stderr)
    return EXIT_FAILURE if args.require_target and not report.meets_target else EXIT_OK


# -- Parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocee",
        description="ocee: FPGA-offloaded order matching, with a Python host and Ethereum "
                    "settlement. Commands and events are JSON Lines (docs/protocol.md).")
    parser.add_argument("--version", action="version", version="ocee 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("replay", help="run a command file through a backend, print its events",
                       description="Read commands as JSON Lines from FILE (- for stdin) and write "
                                   "the device's events as JSON Lines.")
    p.add_argument("file", metavar="FILE", help="commands, one JSON object per line; - for stdin")
    p.add_argument("--backend", choices=sorted([*BACKENDS, *RUN_BACKENDS]), default="model",
                   help="what executes the commands: the reference model (default), or the engine "
                        "RTL under Verilator (rtl: builds it on first use, minutes)")
    p.add_argument("--link", metavar="URL",
                   help="drive a device through the link layer instead: model:// (the device "
                        "emulator), serial:///dev/ttyUSB0?baud=3000000, socket://HOST:PORT; the "
                        "device's own capacities apply")
    p.add_argument("-o", "--output", metavar="FILE", help="write events here (default stdout)")
    p.add_argument("--summary", action="store_true", help="print a summary on stderr at the end")
    _add_capacity(p)
    p.set_defaults(run=cmd_replay)

    p = sub.add_parser("gen", help="generate a realistic order flow as JSON Lines",
                       description="Market makers quoting around a drifting mid, takers crossing "
                                   "with limit, market, IOC and FOK orders, cancels, modifies, "
                                   "post-only and self-trade cases, and a few rejected commands.")
    p.add_argument("--markets", dest="flow_markets", type=int, default=1, metavar="M",
                   help="markets the flow trades on (default 1)")
    p.add_argument("--commands", type=int, required=True, metavar="N", help="how many commands")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--batch-every", type=int, default=1000, metavar="N",
                   help="close a batch after N commands (default 1000)")
    p.add_argument("--rare", type=float, default=FlowParams.rare, metavar="P",
                   help=f"share of commands on the rare paths: queries, mass cancels, duplicate "
                        f"and unknown ids, malformed commands, window moves (default "
                        f"{FlowParams.rare}; 0.2 stresses mass cancels)")
    p.add_argument("--depth", type=int, default=FlowParams.depth, metavar="N",
                   help=f"resting orders per market the makers aim to keep (default "
                        f"{FlowParams.depth}); markets x depth x 2 must fit in --orders, so a "
                        f"small device needs a small depth (a flow generated for more --orders "
                        f"than the device replaying it has fills its book)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (default stdout)")
    _add_capacity(p, markets=False)
    p.set_defaults(run=cmd_gen)

    p = sub.add_parser("demo", help="the main job: a generated flow through the device, checked",
                       description="Start the virtual board (the appliance's RTL under Verilator; "
                                   "the first build takes a few minutes), stream a generated flow "
                                   "through it with progress, check every event and batch root "
                                   "against the reference model, and print throughput, latency "
                                   "percentiles, batch roots and the device's counters. Exit "
                                   "status 1 if anything differs.")
    _add_flow(p, commands=100_000)
    p.add_argument("--link", default="sim://", metavar="URL",
                   help="the device: sim://[?markets=N&levels=N&...] (default sim://, the "
                        "virtual board), model://, serial:///dev/ttyUSB0?baud=3000000")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(run=cmd_demo)

    bench = sub.add_parser("bench", help="measure throughput (reference model, hashing stage, engine "
                                             "RTL, engine core)",
                           description="Benchmarks; each prints a Markdown table for docs/.")
    bench_sub = bench.add_subparsers(dest="bench_target", required=True, metavar="TARGET")
    p = bench_sub.add_parser("model", help="the reference model's commands/s",
                             description="Time the reference model on a generated flow, matching "
                                         "alone and with every event hashed.")
    _add_flow(p, commands=1_000_000)
    p.add_argument("--repeat", type=int, default=1, metavar="N", help="best of N runs (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_capacity(p)
    p.set_defaults(run=cmd_bench)
    p = bench_sub.add_parser("hashing", help="the hashing stage's cycles per event (simulated)",
                             description="Run a generated flow's events through the hashing "
                                         "gateware in Amaranth's simulator and count clocks.")
    _add_flow(p, commands=300)
    _add_hashing_stages(p, rounds_default=[1, 2, 3],
                        slices_help="instead of rings (the boards build 8)")
    _add_capacity(p)
    p.set_defaults(run=cmd_bench_hashing)
    p = bench_sub.add_parser("rtl", help="the engine RTL's clocks per command and fill, and latency",
                             description="Build the matching engine under Verilator and count "
                                         "clocks at its ports: back-to-back adds, modifies and "
                                         "cancels, sweeps through many orders and levels, and the "
                                         "latency from a command's acceptance to its first event. "
                                         "Every event is checked against the reference model.")
    p.add_argument("--commands", type=int, default=1000, metavar="N",
                   help="orders added, modified twice and canceled back to back (default 1000)")
    p.add_argument("--sweep-levels", type=int, default=64, metavar="N",
                   help="price levels a sweeping taker goes through (default 64)")
    p.add_argument("--sweep-depth", type=int, default=4, metavar="N",
                   help="orders per level in the dense sweep (default 4)")
    p.add_argument("--samples", type=int, default=20, metavar="N",
                   help="commands of each kind in the latency measurement (default 20)")
    _add_capacity(p)
    p.set_defaults(run=cmd_bench_rtl)

    p = bench_sub.add_parser(
        "core", help="the engine core's clocks per command and event (simulated)",
        description="Run a generated flow's commands back to back through the engine core "
                    "(matching engine + hashing stage) in Amaranth's simulator, take every event "
                    "at once, check each (batch roots included) against the reference model, and "
                    "count clocks: per command, per event, and those the hashing stage held the "
                    "engine back. The matching engine alone runs the same flow first. With no "
                    "Keccak option, the boards' hashing stage is measured (8 slices per clock, "
                    "one shared permutation, queues of 2: about 400 clocks per event, about 4 "
                    "minutes for the default flow, most of it simulating the slice-serial core).")
    _add_flow(p, commands=200)
    _add_hashing_stages(p, rounds_default=None, slices_help="beside the rings, if any")
    p.add_argument("--boards", action="store_true",
                   help="also measure the boards' hashing stage (hw/boards.py; measured anyway "
                        "when no ring or core is named)")
    p.add_argument("--by-kind", action="store_true",
                   help="also print where the matching engine's clocks go, by kind of command "
                        "(the boards' hashing stage is then measured only with --boards)")
    p.add_argument("--mhz", type=float, nargs="+", default=[30.0, 32.9], metavar="F",
                   help="clocks to express events/s at (default 30, the boards', and 32.9, the "
                        "matching engine's out-of-context Fmax at commit 9295cf4)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _add_capacity(p)
    p.set_defaults(run=cmd_bench_core)

    p = sub.add_parser("vectors", help="write (or check) the shared test vectors",
                       description="Generate the commands -> events -> leaves -> roots test "
                                   "vectors that the gateware, host and contracts are checked "
                                   "against.")
    p.add_argument("-o", "--output", default="tests/vectors/batches.json", metavar="FILE",
                   help="the vectors file (default tests/vectors/batches.json)")
    p.add_argument("--check", action="store_true",
                   help="compare with the file instead of writing it; exit 1 if it differs")
    p.set_defaults(run=cmd_vectors)

    hw = sub.add_parser("hw", help="gateware tools: synthesis figures, board builds, programming",
                        description="Hardware tools for the gateware.")
    hw_sub = hw.add_subparsers(dest="hw_command", required=True, metavar="HW_COMMAND")
    p = hw_sub.add_parser("synth", help="area and Fmax of one block on an ECP5-85F",
                          description="Out-of-context synthesis (yosys) and place and route "
                                      "(nextpnr) of one block with the YoWASP tools; prints a "
                                      "Markdown row for docs/.")
    p.add_argument("block", choices=["matching-engine", "keccak-f1600", "leaf-hasher", "batch-hasher"])
    p.add_argument("--rounds-per-cycle", type=int, default=1, metavar="K",
                   help="Keccak rounds per clock, a divisor of 24 (default 1)")
    p.add_argument("--contexts", type=int, default=1, metavar="C",
                   help="Keccak contexts: permutations in flight, a divisor of 24 / K "
                        "(default 1)")
    p.add_argument("--slices-per-clock", type=int, metavar="W",
                   help="the slice-serial Keccak permutation at W slices per clock instead of "
                        "the ring (the boards build 8)")
    p.add_argument("--freq", type=float, metavar="MHZ", help="clock target (default 125)")
    p.add_argument("--speed", type=int, choices=[6, 7, 8], help="speed grade (default 6)")
    p.add_argument("--keep", metavar="DIR", help="keep the netlists and logs in DIR")
    p.add_argument("--nextpnr-args", default="", metavar="ARGS",
                   help="more options for nextpnr, e.g. '--router router2 "
                        "--placer-heap-beta 0.5' for a congested block")
    p.add_argument("--synth-opts", default="-nowidelut", metavar="OPTS",
                   help="options for yosys's synth_ecp5 (default '-nowidelut': LUT4s only, as "
                        "board builds; '' lets yosys use wider LUTs)")
    p.add_argument("--require-target", action="store_true",
                   help="exit 1 when the block misses the clock target")
    p.add_argument("--synth-only", action="store_true",
                   help="run yosys alone, for blocks nextpnr cannot place and route in "
                        "reasonable time: cell counts from yosys's `stat -json`, no Fmax. Its "
                        "LUT4 column is LUT4 + 2 x CCU2C + 6 x TRELLIS_DPR16X4, the LUTs "
                        "nextpnr's TRELLIS_COMB counts (the LUT4 figure without this option) "
                        "before packing; the raw LUT4, CCU2C and LUT RAM counts follow. "
                        "--freq, --speed, --nextpnr-args and --require-target are refused "
                        "with it")
    p.set_defaults(run=cmd_hw_synth)
    add_hw_commands(hw_sub)  # build, flash, report

    add_board_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except UsageError as e:
        print(f"ocee {args.command}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (`ocee replay ... | head`): not an error of ours.
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter exit quiet
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"ocee {args.command}: interrupted", file=sys.stderr)
        return 130


def _entry() -> Any:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
