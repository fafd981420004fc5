"""The matching engine's RTL as a replay backend: a command list through Verilator, events back.

``ocee replay --backend rtl`` runs the same commands through the gateware that ``--backend model``
runs through the reference model, and prints the same JSON Lines when the gateware is right: that
is how a user (or CI) compares the two on any flow. Verilator builds the engine once per
configuration (the simulation runner caches builds by the Verilog's hash); a later run only
converts the design to Verilog again (about a second for a small configuration, eight for the
default one) and starts the simulator.

One simulator run executes the whole list (:func:`run_commands`): a cocotb bench
(:mod:`ocee.sim.cocotb_replay`) feeds the commands back to back and collects every event. Commands
and events travel through files in a work directory, not through the environment. Events are not
split by command: the device does not mark where one command's events end, so the backend
returns the run's event stream (:class:`RtlBackend` implements ``RunBackend`` of
:mod:`ocee.host.replay`). The run ends when every command has been taken and the engine has
emitted as many events as the model would, plus a thousand clocks for any extra one, or has gone
quiet for longer than the longest silent scan of a book if it emits fewer: either way its output
is reported as it is, for comparison with the model's.

What runs is the engine core (:class:`~ocee.hw.engine_core.EngineCore`): the matching engine
with the hashing stage behind it, so every batch root in the output was computed by the gateware
(Keccak at 4 rounds per clock here, for simulation speed; the roots do not depend on it).

The toolchain's output (Verilator, the compiler, cocotb's log) goes to ``sim.log`` in a temporary
work directory, deleted after a successful run and named in the error otherwise, so that stdout
stays free for the events; progress reaches stderr through a file the bench updates.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from ocee.host.progress import Progress
from ocee.host.replay import BackendError
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.protocol import COMMAND_CODEC, EVENT, Command, Event

from .engine_tb import decode_event, describe_event
from .runner import SimulationFailed, build_and_test

__all__ = ["EVENT_BYTES", "RtlBackend", "RtlError", "RtlRun", "detached", "engine_name",
           "output_to", "read_records", "run_commands", "write_records"]

#: Bytes of one event payload in the events file: the EVENT layout, little-endian.
EVENT_BYTES = (EVENT.size + 7) // 8


class RtlError(BackendError):
    """The RTL run failed: the build, the simulator, or the engine (a stall, an undecodable event)."""


def engine_name(config: MatchingConfig, prefix: str = "matching_engine") -> str:
    """The Verilog module name (and build directory prefix) of the engine for ``config``."""
    return (f"{prefix}_m{config.markets}_l{config.log2_levels}_o{config.log2_orders}"
            f"_i{config.log2_ids}")


#: Keccak rounds per clock of the engine core the backend runs (any divisor of 24 gives the same
#: roots; 4 simulates fastest under Verilator of those tried).
CORE_ROUNDS_PER_CYCLE = 4


# -- Record files ------------------------------------------------------------------------------------
# Commands: per record, one length byte then the record. Events: EVENT_BYTES per payload.


def write_records(path: Path, records: Sequence[bytes]) -> None:
    with open(path, "wb") as f:
        for raw in records:
            if not 0 < len(raw) < 256:
                raise ValueError(f"a command record is 1 to 255 bytes, not {len(raw)}")
            f.write(bytes([len(raw)]))
            f.write(raw)


def read_records(path: Path) -> list[bytes]:
    data = path.read_bytes()
    records = []
    i = 0
    while i < len(data):
        n = data[i]
        records.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return records


# -- Running -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RtlRun:
    """The outcome of one RTL run."""

    events: list[Event]
    """Every event the engine core emitted, in order, batch roots from its hashing stage."""
    cycles: int
    """Clocks from the first command offered (after ``ready``) to the end of the last event."""


def run_commands(commands: Sequence[Command | bytes], config: MatchingConfig, *,
                 build_root: Path | None = None, status: TextIO | None = None,
                 progress: bool = False) -> RtlRun:
    """Run ``commands`` (records, or raw command bytes) through the engine RTL under Verilator.

    ``status`` (say ``sys.stderr``) receives one line when the build and run start and, with
    ``progress``, a progress line while the simulator runs. Raises :class:`RtlError`.
    """
    records = [c if isinstance(c, bytes) else COMMAND_CODEC.pack(c) for c in commands]
    if not records:
        return RtlRun([], 0)
    work = Path(tempfile.mkdtemp(prefix="ocee-rtl-"))
    try:
        run = _run(records, config, work, build_root, status, progress)
    except RtlError:
        raise  # the work directory stays, with the log the error names
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return run


def _run(records: list[bytes], config: MatchingConfig, work: Path, build_root: Path | None,
         status: TextIO | None, progress: bool) -> RtlRun:
    from ocee.hw.engine_core import EngineCore

    files = {name: work / name for name in ("commands.bin", "events.bin", "result.json", "progress")}
    log_path = work / "sim.log"
    write_records(files["commands.bin"], records)
    params = {"config": asdict(config), "commands_file": str(files["commands.bin"]),
              "events_file": str(files["events.bin"]), "result_file": str(files["result.json"]),
              "progress_file": str(files["progress"])}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(detached(status)) if status is not None else None
        if out is not None:
            print(f"rtl: {len(records):,} commands through the engine ({_describe(config)}) under "
                  f"Verilator; a first build for a configuration takes minutes (log {log_path})",
                  file=out, flush=True)
        if out is not None and progress:
            stack.enter_context(_progress_from(files["progress"], len(records), out))
        log = stack.enter_context(open(log_path, "w"))
        stack.enter_context(output_to(log))
        try:
            build_and_test(EngineCore(config, rounds_per_cycle=CORE_ROUNDS_PER_CYCLE),
                           name=engine_name(config, "engine_core"),
                           test_module="ocee.sim.cocotb_replay", params=params,
                           build_root=build_root, seed=1)
        except SimulationFailed as e:
            raise RtlError(f"the RTL run failed: {e}\n(the simulator's log: {log_path})") from None
        except Exception as e:  # the build: Amaranth, Verilator, the compiler
            raise RtlError(f"building or starting the engine failed: {e}\n(log: {log_path})") from e
    payloads = files["events.bin"].read_bytes()
    result = json.loads(files["result.json"].read_text())
    events = []
    for k in range(0, len(payloads), EVENT_BYTES):
        payload = int.from_bytes(payloads[k:k + EVENT_BYTES], "little")
        event = decode_event(payload)
        if event is None:
            raise RtlError(f"event {k // EVENT_BYTES} of the run is no valid event: "
                           f"{describe_event(payload)} (files kept in {work})")
        events.append(event)
    return RtlRun(events, int(result["cycles"]))


class RtlBackend:
    """A ``RunBackend`` (:mod:`ocee.host.replay`): a whole command list through the engine RTL.

    ``status`` receives a line per run and, from ``progress_from`` commands on, a progress line;
    ``cycles`` adds up the clocks of the runs.
    """

    def __init__(self, config: MatchingConfig, *, status: TextIO | None = None,
                 progress_from: int = 10_000) -> None:
        self.config = config
        self.status = status
        self.progress_from = progress_from
        self.cycles = 0

    def run(self, commands: Sequence[Command]) -> list[Event]:
        result = run_commands(commands, self.config, status=self.status,
                              progress=len(commands) >= self.progress_from)
        self.cycles += result.cycles
        return result.events

    def close(self) -> None:
        pass


def _describe(config: MatchingConfig) -> str:
    return (f"{config.markets} markets, {config.levels} levels, {config.orders} orders, "
            f"{config.ids} ids")


@contextlib.contextmanager
def detached(stream: TextIO) -> Iterator[TextIO]:
    """A stream that writes where ``stream`` writes now, whatever later happens to its descriptor."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        yield stream  # not a descriptor (a test's capture buffer): redirections cannot touch it
        return
    stream.flush()
    with os.fdopen(os.dup(fd), "w", buffering=1) as copy:
        yield copy


@contextlib.contextmanager
def _progress_from(path: Path, total: int, stream: TextIO) -> Iterator[None]:
    """Show the simulator's progress (the count it writes to ``path``) on ``stream``."""
    # The bar starts with the first count, so that its rate leaves out the build and start-up.
    bar: list[Progress] = []
    stop = threading.Event()

    def show() -> None:
        try:
            done = int(path.read_text())
        except (OSError, ValueError):
            return
        if not bar:
            bar.append(Progress(total, "rtl", stream=stream))
        bar[0].update(done)

    def watch() -> None:
        while not stop.wait(0.5):
            show()

    thread = threading.Thread(target=watch, name="rtl-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show()
        if bar:
            bar[0].finish()


@contextlib.contextmanager
def output_to(log: TextIO) -> Iterator[None]:
    """Send stdout and stderr, the descriptors and Python's streams, to ``log`` for a while.

    The simulator and the compilers are child processes writing to the inherited descriptors,
    so redirecting ``sys.stdout`` alone would not keep their output off the events on stdout.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    saved_streams = sys.stdout, sys.stderr
    log.flush()
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        yield
    finally:
        log.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        sys.stdout, sys.stderr = saved_streams
