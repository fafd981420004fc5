"""A cocotb testbench for the matching engine, checked event by event against the reference model.

The reference model is the engine's specification: for each command record the engine must emit
exactly ``MatchingModel(config, hash_events=False).execute_bytes(record)``, bit for bit, reserved
bits zero. :class:`EngineTB` owns everything a bench of the engine needs to hold it to that: the
clock, reset, the wait for ``ready``, a command driver with random idle gaps, an event sink with
random backpressure, and an in-order scoreboard running its own model. The tests, the RTL replay
backend (:mod:`ocee.sim.rtl`) and the benchmark (:mod:`ocee.sim.engine_bench`) all drive the
engine through it, so they agree on when the engine may take commands and on what a mismatch is.

A typical cocotb test::

    tb = EngineTB(dut, config, idle_probability=0.3, backpressure_probability=0.5, seed=1)
    await tb.start()            # clock, reset, wait for ready
    for command in commands:
        tb.send(command)        # a Command, or a raw record (bytes) such as an unknown opcode
    await tb.finish()           # every expected event came out and matched, nothing extra

A mismatch fails the running cocotb test at once with a message that names the command (index and
JSON form), the event's index within the command and in the whole run, and the expected and
received events decoded field by field. ``stamps=True`` also records, per command, the clock at
which the engine took it and those at which its events were taken (:meth:`EngineTB.timings`).

Timing: the engine's ``ready`` output rises once its initialisation after reset is done, which may
take up to ``max(ids, 2 * markets * levels)`` clocks; :meth:`EngineTB.start` polls it every few
hundred clocks (a timer, not a coroutine per clock) and only then starts the driver. Payloads are
integers of the layouts' bits: a command record's bytes little-endian, zero-extended to the COMMAND
layout; an expected event is ``int.from_bytes(EVENT_CODEC.pack(event), "little")``.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge, Timer

from ocee.host.jsonl import command_to_json, event_to_json
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import COMMAND, COMMAND_CODEC, EVENT, EVENT_CODEC, Command, Event, ProtocolError

from .stream import StreamDriver, StreamSink, reset

__all__ = [
    "COMMAND_BITS",
    "EVENT_BITS",
    "CommandTiming",
    "EngineTB",
    "ScoreboardError",
    "command_payload",
    "decode_event",
    "describe_command",
    "describe_event",
    "event_diff",
    "event_payload",
    "init_clocks",
]

COMMAND_BITS: int = COMMAND.size
EVENT_BITS: int = EVENT.size


class ScoreboardError(AssertionError):
    """The engine's events differ from the model's: a wrong, missing or extra event, or a stall."""


# -- Payloads and their readable forms ---------------------------------------------------------------


def command_payload(raw: bytes) -> int:
    """The ``i_command`` payload of a command record: its bytes little-endian, zero-extended."""
    payload = int.from_bytes(raw, "little")
    if payload >> COMMAND_BITS:
        raise ValueError(f"command record {raw.hex(' ')} does not fit the {COMMAND_BITS}-bit COMMAND layout")
    return payload


def event_payload(event: Event) -> int:
    """The ``o_event`` payload the engine must emit for ``event``: reserved bits zero."""
    return int.from_bytes(EVENT_CODEC.pack(event), "little")


def decode_event(payload: int) -> Event | None:
    """The event a payload holds, or None when its kind or an enumeration field is no value.

    Only the bits of the record its kind selects are read; :func:`event_diff` reports the rest.
    """
    kind = payload & 0xFF
    try:
        size = EVENT_CODEC.size_of_tag(kind)
        raw = (payload & ((1 << 8 * size) - 1)).to_bytes(size, "little")
        return EVENT_CODEC.unpack(raw)
    except ProtocolError:
        return None


def describe_event(payload: int) -> str:
    """An event payload in its JSON Lines form, or as hex when it is no valid event."""
    event = decode_event(payload)
    if event is None:
        return f"no valid event: {payload:#x} (kind byte {payload & 0xFF})"
    return json.dumps(event_to_json(event), separators=(",", ":"))


def describe_command(raw: bytes) -> str:
    """A command record in its JSON Lines form, or its bytes and fields when it decodes to none."""
    try:
        return json.dumps(command_to_json(COMMAND_CODEC.unpack(raw)), separators=(",", ":"))
    except ProtocolError as e:
        try:
            _, fields = COMMAND_CODEC.unpack_fields(raw)
        except ProtocolError:
            return f"raw record {raw.hex(' ')} ({e})"
        return f"raw record {raw.hex(' ')} ({e}; fields {fields})"


def event_diff(expected: int, got: int) -> list[str]:
    """Field-by-field differences between two event payloads, one line each."""
    want_kind, got_kind = expected & 0xFF, got & 0xFF
    if want_kind != got_kind:
        return [f"kind: expected {_kind_name(want_kind)}, got {_kind_name(got_kind)}"]
    lines = []
    covered = 0
    cls = EVENT_CODEC.class_of_tag(want_kind)
    for f in EVENT_CODEC.fields(cls):
        mask = ((1 << f.width) - 1) << f.offset
        covered |= mask
        a, b = (expected & mask) >> f.offset, (got & mask) >> f.offset
        if a != b:
            lines.append(f"{f.name}: expected {_field_text(f.enum, a)}, got {_field_text(f.enum, b)}")
    reserved = (expected ^ got) & ~covered
    if reserved:
        lines.append(f"reserved bits (must be zero) differ: {reserved:#x}")
    return lines


def _kind_name(kind: int) -> str:
    try:
        return EVENT_CODEC.class_of_tag(kind).__name__
    except ProtocolError:
        return f"{kind} (no event kind)"


def _field_text(enum: Any, value: int) -> str:
    if enum is None:
        return str(value)
    try:
        return f"{enum(value).name.lower()} ({value})"
    except ValueError:
        return f"{value} (no {enum.__name__})"


def init_clocks(config: MatchingConfig) -> int:
    """The longest the engine may take to raise ``ready`` after reset (its contract)."""
    return max(config.ids, 2 * config.markets * config.levels)


# -- The testbench -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandTiming:
    """When the engine took one command and emitted its events, in clocks since :meth:`EngineTB.start`.

    A clock is counted at each rising edge; a transfer is stamped with the clock in which its
    handshake (valid and ready) was sampled, so ``first_event - accepted`` is the latency from
    acceptance to the first event (0 would be an event in the same clock as the command).
    """

    index: int
    accepted: int
    events: tuple[int, ...]

    @property
    def first_event(self) -> int:
        return self.events[0]

    @property
    def last_event(self) -> int:
        return self.events[-1]

    @property
    def latency(self) -> int:
        return self.events[0] - self.accepted


@dataclass(frozen=True)
class _Expected:
    command: int  # index of the command in this run
    index: int  # index of the event within its command
    count: int  # events of that command
    payload: int


class EngineTB:
    """Clock, reset, a command driver, an event sink and an in-order scoreboard for the engine.

    ``dut`` is the cocotb handle of a built :class:`~ocee.hw.matching.engine.MatchingEngine`
    (ports ``clk``, ``rst``, ``ready``, ``i_command__*``, ``o_event__*``).

    - ``idle_probability``, ``backpressure_probability``: the driver idles before each command
      with that probability per clock; the sink holds ready low with that probability per clock.
    - ``seed``: seeds the gaps and the backpressure (use ``cocotb.RANDOM_SEED`` to reproduce).
    - ``model``: the scoreboard's model (default ``MatchingModel(config, hash_events=False)``).
      ``check=False`` runs no scoreboard: events are only collected (``keep_events``), for
      backends that report what the RTL does rather than judge it.
    - ``keep_events``: keep every event payload taken, in order, in :attr:`events`.
    - ``stamps``: record per-transfer clocks for :meth:`timings` (one more coroutine per clock).
    - ``stall_clocks``: :meth:`finish` fails when neither a command nor an event moved for this
      many clocks while something is outstanding (default: generous for the config).
    - ``label``: prefixed to every failure message (a scenario name).
    """

    def __init__(self, dut: Any, config: MatchingConfig, *, idle_probability: float = 0.0,
                 backpressure_probability: float = 0.0, seed: int | str = 0,
                 model: MatchingModel | None = None, check: bool = True, keep_events: bool = False,
                 stamps: bool = False, stall_clocks: int | None = None, label: str = "",
                 period_ns: int = 10) -> None:
        self.dut = dut
        self.config = config
        self.check = check
        self.model = model if model is not None else MatchingModel(config, hash_events=False)
        self.keep_events = keep_events
        self.stamps = stamps
        self.label = label
        self.period_ns = period_ns
        # The longest silent stretch a correct engine has is a scan of the whole book (a FOK
        # check, a window check); ten clocks per order and level is far above any design.
        self.stall_clocks = stall_clocks if stall_clocks is not None else (
            10 * (config.orders + 2 * config.levels) + 10_000)
        self._idle = idle_probability
        self._backpressure = backpressure_probability
        self._seed = seed
        self.commands: list[bytes] = []
        """Every command record sent, in order."""
        self.events: list[int] = []
        """Every event payload taken (with ``keep_events``)."""
        self.received = 0
        """Events taken from the engine."""
        self.checked = 0
        """Events compared with the model and found equal."""
        self.cycle = 0
        """Clocks since :meth:`start` returned (counted with ``stamps``)."""
        self.started_ns = 0.0
        """Simulation time when :meth:`start` returned."""
        self.last_event_ns: float | None = None
        """Simulation time when the last event taken so far was handed to the bench."""
        self.accepted_at: list[int] = []
        self.event_at: list[int] = []
        self._expected: deque[_Expected] = deque()
        self._expected_total = 0
        self._event_counts: list[int] = []
        self._failure: ScoreboardError | None = None
        self._source: StreamDriver | None = None
        self._sink: StreamSink | None = None

    # -- Start and stop ------------------------------------------------------------------------

    async def start(self, *, reset_cycles: int = 4) -> None:
        """Start the clock, reset the engine and wait for ``ready``; then start driving.

        Returns right after a rising edge, the driver and sink running from the next one.
        """
        dut = self.dut
        dut.i_command__valid.value = 0
        dut.o_event__ready.value = 0
        # The clock in C (cocotb's GPI clock): a Python clock costs two coroutine wake-ups per
        # cycle, a large share of a bench that runs hundreds of thousands of cycles.
        Clock(dut.clk, self.period_ns, unit="ns", impl="gpi").start()
        await reset(dut, dut.clk, reset_cycles)
        limit = 2 * init_clocks(self.config) + 1000
        poll = 256
        waited = 0
        while True:
            await ReadOnly()
            if dut.ready.value == 1:
                break
            if waited > limit:
                raise self._error(f"ready did not rise within {waited:,} clocks after reset "
                                  f"(the contract allows {init_clocks(self.config):,})")
            await Timer(poll * self.period_ns, unit="ns")
            await RisingEdge(dut.clk)
            waited += poll
        await RisingEdge(dut.clk)
        self._source = StreamDriver(dut, "i_command", dut.clk, idle_probability=self._idle,
                                    rng=random.Random(f"{self._seed}-idle"))
        self._sink = StreamSink(dut, "o_event", dut.clk, backpressure_probability=self._backpressure,
                                rng=random.Random(f"{self._seed}-backpressure"))
        self.started_ns = get_sim_time("ns")
        cocotb.start_soon(self._consume())
        if self.stamps:
            cocotb.start_soon(self._stamp())

    @property
    def source(self) -> StreamDriver:
        if self._source is None:
            raise RuntimeError("EngineTB.start() has not run yet")
        return self._source

    @property
    def sink(self) -> StreamSink:
        if self._sink is None:
            raise RuntimeError("EngineTB.start() has not run yet")
        return self._sink

    def send(self, command: Command | bytes, expected: Sequence[Event] | None = None) -> list[Event]:
        """Queue a command (a record, or its raw bytes) and its expected events; returns them.

        The expected events are the model's unless ``expected`` is given (for tests of the bench
        itself). Returns at once; the driver offers queued commands in order.
        """
        raw = command if isinstance(command, bytes) else COMMAND_CODEC.pack(command)
        payload = command_payload(raw)
        index = len(self.commands)
        self.commands.append(raw)
        events: list[Event] = []
        if self.check:
            events = list(self.model.execute_bytes(raw)) if expected is None else list(expected)
            for k, event in enumerate(events):
                self._expected.append(_Expected(index, k, len(events), event_payload(event)))
            self._expected_total += len(events)
            self._event_counts.append(len(events))
        self.source.send_nowait(payload)
        return events

    async def drain(self) -> None:
        """Wait until every command sent so far is taken and all its expected events came out."""
        if not self.check:
            raise RuntimeError("drain needs the scoreboard (check=True) to know what to wait for")
        await self._wait_for(lambda: self.source.idle and not self._expected, "drain")

    async def finish(self, *, settle_clocks: int = 50, quiet_clocks: int | None = None,
                     events_hint: int | None = None) -> None:
        """Wait until every command is taken and every expected event has come out and matched,
        then ``settle_clocks`` more to catch extra events; fail on anything left over.

        Without a scoreboard (``check=False``) nothing is judged: the run ends ``quiet_clocks``
        clocks (default ``stall_clocks``) after the last event once every command was taken, or
        as soon as ``events_hint`` events (say, the model's count) have come out. Commands the
        engine never takes still fail the test.
        """
        if self.check:
            await self._wait_for(lambda: self.source.idle and not self._expected, "finish")
        else:
            await self._wait_for(lambda: self.source.idle, "finish")
            hint = events_hint
            await self._wait_quiet(quiet_clocks if quiet_clocks is not None else self.stall_clocks,
                                   until=None if hint is None else lambda: self.sink.received >= hint)
        if settle_clocks > 0:
            await Timer(settle_clocks * self.period_ns, unit="ns")
        self._raise_failure()  # an extra event fails in the consumer, as soon as it is taken
        await RisingEdge(self.dut.clk)

    # -- Results --------------------------------------------------------------------------------

    def timings(self) -> list[CommandTiming]:
        """Per command: when it was taken and when each of its events was (needs ``stamps``
        and a scoreboard, which says how many events each command has)."""
        if not self.stamps or not self.check:
            raise RuntimeError("timings need stamps=True and the scoreboard (check=True)")
        out = []
        position = 0
        for index, count in enumerate(self._event_counts):
            if index >= len(self.accepted_at) or position + count > len(self.event_at):
                break
            out.append(CommandTiming(index, self.accepted_at[index],
                                     tuple(self.event_at[position:position + count])))
            position += count
        return out

    # -- Internals ------------------------------------------------------------------------------

    def _error(self, message: str) -> ScoreboardError:
        prefix = f"[{self.label}] " if self.label else ""
        error = ScoreboardError(prefix + message)
        if self._failure is None:
            self._failure = error
        return error

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _consume(self) -> None:
        sink = self.sink
        while True:
            payload = await sink.recv()
            self._take(payload)

    def _take(self, payload: int) -> None:
        self.received += 1
        self.last_event_ns = get_sim_time("ns")
        if self.keep_events:
            self.events.append(payload)
        if not self.check:
            return
        if not self._expected:
            raise self._error(
                f"extra event {self.received - 1} (the model expects {self._expected_total} after "
                f"{len(self.commands)} commands, last command {len(self.commands) - 1}: "
                f"{describe_command(self.commands[-1])}):\n  got      {describe_event(payload)}")
        want = self._expected.popleft()
        if payload != want.payload:
            raise self._error(self._mismatch(want, payload))
        self.checked += 1

    def _mismatch(self, want: _Expected, got: int) -> str:
        diff = "\n    ".join(event_diff(want.payload, got))
        return (f"command {want.command} {describe_command(self.commands[want.command])}: "
                f"event {want.index} of its {want.count} (event {self.received - 1} of the run) "
                f"differs\n  expected {describe_event(want.payload)}\n  got      {describe_event(got)}"
                f"\n  differences:\n    {diff}")

    async def _stamp(self) -> None:
        dut = self.dut
        c_valid, c_ready = dut.i_command__valid, dut.i_command__ready
        e_valid, e_ready = dut.o_event__valid, dut.o_event__ready
        edge, read_only = RisingEdge(dut.clk), ReadOnly()
        while True:
            await edge
            self.cycle += 1
            await read_only
            if c_valid.value == 1 and c_ready.value == 1:
                self.accepted_at.append(self.cycle)
            if e_valid.value == 1 and e_ready.value == 1:
                self.event_at.append(self.cycle)

    async def _wait_for(self, done: Callable[[], bool], what: str) -> None:
        """Poll ``done`` every few clocks; fail if nothing moves for ``stall_clocks``."""
        poll = 64
        still = 0
        progress = (self.source.sent, self.sink.received)
        while not done():
            self._raise_failure()
            await Timer(poll * self.period_ns, unit="ns")
            now = (self.source.sent, self.sink.received)
            if now != progress:
                progress, still = now, 0
                continue
            still += poll
            if still >= self.stall_clocks:
                raise self._error(self._stall_message(what))
        self._raise_failure()

    async def _wait_quiet(self, clocks: int, until: Callable[[], bool] | None = None) -> None:
        """Wait until no event came out for ``clocks``, or until ``until()`` holds."""
        poll = 64
        still = 0
        received = self.sink.received
        while still < clocks and not (until is not None and until()):
            await Timer(poll * self.period_ns, unit="ns")
            if self.sink.received != received:
                received, still = self.sink.received, 0
            else:
                still += poll

    def _stall_message(self, what: str) -> str:
        sent, total = self.source.sent, len(self.commands)
        lines = [f"{what}: nothing moved for {self.stall_clocks:,} clocks: the engine took {sent} of "
                 f"{total} commands and emitted {self.received} events"
                 + (f" of the {self._expected_total} the model expects" if self.check else "")]
        if self.check and self._expected:
            want = self._expected[0]
            lines.append(f"  next expected: command {want.command} "
                         f"{describe_command(self.commands[want.command])}, event {want.index} of "
                         f"its {want.count}: {describe_event(want.payload)}")
        if sent < total:
            lines.append(f"  next command waiting to be taken: {sent} "
                         f"{describe_command(self.commands[sent])}")
        return "\n".join(lines)
