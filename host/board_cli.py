"""``ocee board sim``: the virtual board, the appliance's RTL under Verilator, served until Ctrl-C.

It listens on a TCP socket on 127.0.0.1 (``--port``, any free port by default) or a
pseudo-terminal (``--pty``) and prints the URL to open with ``ocee replay --link URL``; any host
that opens a board opens it the same way (:mod:`ocee.sim.board`). The appliance's capacities and
link parameters are those of the ``sim://`` URL, with the appliance's defaults.

Exit status: 0 after Ctrl-C (or, with ``--once``, when the client leaves); 1 when the appliance is
not available, the build fails or the board fails; 2 for bad parameters.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_board_parser", "cmd_board_sim"]

#: Options of `ocee board sim` that configure the appliance: (option, sim:// parameter, help).
_APPLIANCE_OPTIONS = [
    ("--markets", "markets", "order books"),
    ("--levels", "levels", "price levels per side, a power of two"),
    ("--orders", "orders", "resting orders, a power of two"),
    ("--ids", "ids", "order ids are 0 .. N-1, a power of two"),
    ("--fifo", "fifo", "the command FIFO in bytes (the host's credit), a power of two"),
    ("--frame", "frame", "the longest frame body in bytes"),
    ("--window", "window", "event frames sent before an acknowledgement is needed"),
]


def add_board_parser(subparsers: Any) -> None:
    """Add ``board sim`` to the ``ocee`` command's subparsers."""
    board = subparsers.add_parser("board", help="run a board: the virtual one (the RTL under Verilator)",
                                  description="Boards the host can open.")
    board_sub = board.add_subparsers(dest="board_command", required=True, metavar="BOARD_COMMAND")
    p = board_sub.add_parser(
        "sim", help="serve the virtual board on a TCP port or a pty until Ctrl-C",
        description="Build the appliance's RTL with Verilator (cached; the first build of a "
                    "configuration takes minutes), run it behind a TCP socket on 127.0.0.1 or a "
                    "pseudo-terminal, and print the URL to open. Bytes reach the appliance's byte "
                    "path directly (no UART), one per clock.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="a pseudo-terminal instead of a TCP socket")
    where.add_argument("--port", type=int, default=0, metavar="N",
                       help="the TCP port (default: any free one)")
    p.add_argument("--once", action="store_true", help="TCP: exit when the first client disconnects")
    group = p.add_argument_group("appliance configuration (default: the appliance's own)")
    for option, _, text in _APPLIANCE_OPTIONS:
        group.add_argument(option, type=int, metavar="N", help=text)
    p.set_defaults(run=cmd_board_sim)


def cmd_board_sim(args: argparse.Namespace) -> int:
    from ocee.sim.board import BoardError, VirtualBoard, appliance_verilog

    def fail(message: object, status: int) -> int:
        print(f"ocee board sim: {message}", file=sys.stderr)
        return status

    if args.once and args.pty:
        return fail("--once applies to a TCP board only (a pty stays open)", 2)
    params = {name: value for _, name, _ in _APPLIANCE_OPTIONS
              if (value := getattr(args, name)) is not None}
    try:
        verilog = appliance_verilog(params, on_convert=_announce_conversion)
        board = VirtualBoard(verilog, kind="pty" if args.pty else "tcp", port=args.port, once=args.once,
                             name="appliance", on_build=_announce_build)
    except ValueError as e:
        return fail(e, 2)
    except BoardError as e:
        return fail(e, 1)
    try:
        board.start()
    except BoardError as e:
        return fail(e, 1)
    url = board.url
    print(f"virtual board listening on {url} — open it with: ocee replay --link {url} FILE", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how the board is meant to stop
        board.wait()
    try:
        stats = board.stop()
    except BoardError as e:
        return fail(e, 1)
    if stats is not None:
        print(f"ocee board sim: {stats.clocks:,} clocks in {stats.seconds:.1f} s "
              f"({stats.clocks_per_second:,.0f} clocks/s); {stats.bytes_in:,} bytes in, "
              f"{stats.bytes_out:,} bytes out", file=sys.stderr)
    return 0


def _announce_conversion() -> None:
    print("ocee board sim: converting the appliance to Verilog", file=sys.stderr, flush=True)


def _announce_build(log: Path) -> None:
    print(f"ocee board sim: building the appliance with Verilator; the first build of a "
          f"configuration takes minutes (log: {log})", file=sys.stderr, flush=True)
