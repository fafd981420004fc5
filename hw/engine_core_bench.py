"""Clocks per command and per event of the engine core (matching + hashing), measured on the
composition in Amaranth's simulator.

``ocee bench core`` runs a generated flow's command records through
:class:`~ocee.hw.engine_core.EngineCore`, once per hashing stage asked for, and through the
matching engine alone: commands are offered back to back from the clock the engine is ready, and
events are taken in the clock they appear (``o_event.ready`` always high), so the figures are
the composition's own pace, nothing derived from the two blocks' separate figures. Every event,
batch roots included, is compared with the reference model's as it comes out
(:class:`~ocee.hw.matching.model.MatchingModel`, with hashing for the core); a run that differs,
emits an extra event or stalls raises :class:`CoreBenchFailed` instead of giving a figure.

Counted per run (:class:`CoreThroughput`):

- ``clocks``: from the clock edge at which the first command is offered to the edge that takes
  the last event, both counted.
- ``held``: edges at which the matching engine had an event at its output that the hashing
  stage did not take (the engine's ``o_event.valid`` high, ``ready`` low): the clocks the
  stage held the engine back. The host side is always ready, so the stage alone causes them.
- ``taken``: the clock each command was taken at, from which :func:`clocks_by_kind` tells
  where the clocks go: the clocks from one command's taking to the next's are the first's
  (commands are offered back to back, so the engine takes the next as soon as it is done).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amaranth.sim import Simulator

from .engine_core import EngineCore
from .hashing.batch_hasher import check_batch_hasher
from .matching.config import MatchingConfig
from .matching.engine import MatchingEngine
from .matching.model import MatchingModel
from .protocol import (
    COMMAND_CODEC,
    EVENT,
    EVENT_CODEC,
    Cancel,
    Canceled,
    CloseBatch,
    Event,
    Fill,
    MassCancelAccount,
    MassCancelMarket,
    Modified,
    Modify,
    NewOrder,
    Query,
    Rejected,
    SetWindow,
)

__all__ = ["CoreBenchFailed", "CoreHashing", "CoreThroughput", "ExpectedEvent", "KindClocks",
           "clocks_by_kind", "expected_events", "measure_core"]

#: Clocks watched after the last expected event for one the model does not emit.
SETTLE_CLOCKS = 100


class CoreBenchFailed(RuntimeError):
    """The gateware disagreed with the reference model, or stalled: the run gives no figure."""


@dataclass(frozen=True)
class CoreHashing:
    """The engine core's hashing stage: a ``rounds_per_cycle`` x ``contexts`` Keccak ring, or the
    slice-serial core at ``slices_per_clock``; a permutation each for leaves and tree, or one
    ``shared``; queues of ``queue_depth`` (see :class:`~ocee.hw.engine_core.EngineCore`)."""

    rounds_per_cycle: int = 1
    contexts: int = 1
    slices_per_clock: int | None = None
    shared: bool = False
    queue_depth: int = 8

    @classmethod
    def from_core_arguments(cls, arguments: Mapping[str, Any]) -> CoreHashing:
        """The stage that ``EngineCore(config, **arguments)`` builds (e.g. the boards',
        :data:`~ocee.hw.boards.BOARD_HASHING`)."""
        return cls(rounds_per_cycle=arguments.get("rounds_per_cycle", 1),
                   contexts=arguments.get("hash_contexts", 1),
                   slices_per_clock=arguments.get("hash_slices_per_clock"),
                   shared=arguments.get("hash_shared_permutation", False),
                   queue_depth=arguments.get("hash_queue_depth", 8))

    def check(self) -> None:
        """Raise ValueError naming the argument that makes no hashing stage."""
        check_batch_hasher(self.rounds_per_cycle, self.queue_depth, self.contexts,
                           slices_per_clock=self.slices_per_clock)

    def core(self, config: MatchingConfig) -> EngineCore:
        return EngineCore(config, rounds_per_cycle=self.rounds_per_cycle,
                          hash_contexts=self.contexts, hash_queue_depth=self.queue_depth,
                          hash_shared_permutation=self.shared,
                          hash_slices_per_clock=self.slices_per_clock)

    @property
    def keccak(self) -> str:
        """The permutation, as ``ocee bench hashing`` names it."""
        if self.slices_per_clock is not None:
            return f"{self.slices_per_clock} slices/clock"
        return f"{self.rounds_per_cycle} round(s)/clock x {self.contexts} context(s)"

    def __str__(self) -> str:
        return (f"{self.keccak}, {'one shared permutation' if self.shared else 'a permutation each'}"
                f", queues of {self.queue_depth}")

    @property
    def permutation_clocks(self) -> int:
        """Clocks one permutation takes (the stall watchdog's unit)."""
        if self.slices_per_clock is not None:
            return 25 * 64 // self.slices_per_clock + 1
        return 24 // self.rounds_per_cycle


@dataclass(frozen=True)
class CoreThroughput:
    hashing: CoreHashing | None
    """None: the matching engine alone."""
    commands: int
    events: int
    clocks: int
    """From the edge that offers the first command to the edge that takes the last event."""
    held: int
    """Edges at which the hashing stage held an event at the engine's output (0 alone)."""
    taken: tuple[int, ...] = ()
    """The clock (counted as ``clocks`` is) at which each command was taken."""

    @property
    def clocks_per_command(self) -> float:
        return self.clocks / self.commands

    @property
    def clocks_per_event(self) -> float:
        return self.clocks / self.events

    def events_per_second(self, clock_hz: float) -> float:
        return clock_hz / self.clocks_per_event


@dataclass(frozen=True)
class ExpectedEvent:
    command: int
    """The index of the command that emits it."""
    event: Event
    payload: int
    """The event's bits on ``o_event.payload``."""


def expected_events(records: Sequence[bytes], config: MatchingConfig,
                    hashed: bool) -> list[ExpectedEvent]:
    """The reference model's events for ``records``: with batch roots when ``hashed`` (the
    engine core), with zero roots otherwise (the matching engine alone)."""
    model = MatchingModel(config, hash_events=hashed)
    return [ExpectedEvent(i, e, int.from_bytes(EVENT_CODEC.pack(e), "little"))
            for i, raw in enumerate(records) for e in model.execute_bytes(raw)]


def measure_core(records: Sequence[bytes], config: MatchingConfig, hashing: CoreHashing | None,
                 *, expected: Sequence[ExpectedEvent] | None = None,
                 progress: Callable[[int], None] | None = None) -> CoreThroughput:
    """Run the command ``records`` through the engine core with ``hashing`` (None: the matching
    engine alone) and count clocks; check every event against ``expected`` (default
    :func:`expected_events`). ``progress`` is called with the number of events out so far.

    Raises :class:`CoreBenchFailed` on a wrong, missing or extra event.
    """
    if not records:
        raise ValueError("the bench needs at least one command")
    if expected is None:
        expected = expected_events(records, config, hashed=hashing is not None)
    dut: Any
    if hashing is None:
        dut = engine = MatchingEngine(config)
        label = "the matching engine"
    else:
        hashing.check()
        dut = hashing.core(config)
        engine = dut.engine
        label = f"the engine core ({hashing})"
    # The longest silence of a correct engine is a scan of the whole book (as the Verilator
    # bench allows, sim/engine_tb.py); a batch close then folds up to 32 levels of the tree one
    # hash at a time, two permutations each when shared.
    quiet_limit = 10 * (config.orders + 2 * config.levels) + 10_000
    if hashing is not None:
        quiet_limit += 200 * hashing.permutation_clocks
    payloads = [int.from_bytes(raw, "little") for raw in records]
    counts = {"clocks": 0, "held": 0}
    taken_clocks: list[int] = []

    async def bench(ctx: Any) -> None:
        command = dut.i_command
        command_payload = command.payload.as_value()
        event_payload = dut.o_event.payload.as_value()
        ctx.set(dut.o_event.ready, 1)
        await ctx.tick().until(dut.ready)
        sent = got = clock = held = quiet = 0
        taken_at: list[int] = []
        ctx.set(command_payload, payloads[0])
        ctx.set(command.valid, 1)
        while got < len(expected):
            # Sampled at the edge, before it takes effect: what that edge transfers.
            # (Signals only: an expression would be evaluated the slow way every clock.)
            _, _, taken, valid, bits, engine_valid, engine_ready = await ctx.tick().sample(
                command.ready, dut.o_event.valid, event_payload, engine.o_event.valid,
                engine.o_event.ready)
            clock += 1
            held += engine_valid and not engine_ready
            quiet += 1
            if sent < len(payloads) and taken:
                sent += 1
                taken_at.append(clock)
                quiet = 0
                if sent < len(payloads):
                    ctx.set(command_payload, payloads[sent])
                else:
                    ctx.set(command.valid, 0)
            if valid:
                want = expected[got]
                if bits != want.payload:
                    raise CoreBenchFailed(
                        f"{label}: event {got} (of command {want.command}: "
                        f"{_command(records[want.command])}) differs from the model's:\n"
                        f"  expected {want.event}\n  received {_event(bits)}")
                got += 1
                quiet = 0
                if progress is not None:
                    progress(got)
            if quiet > quiet_limit:
                waiting = (f"command {sent} of {len(payloads)} waits to be taken"
                           if sent < len(payloads) else "every command was taken")
                raise CoreBenchFailed(
                    f"{label} stalled: {got} of {len(expected)} events after {clock:,} clocks, "
                    f"none for {quiet_limit:,}; {waiting}; the next expected is "
                    f"{expected[got].event}")
        counts["clocks"], counts["held"] = clock, held
        taken_clocks.extend(taken_at)
        for _ in range(SETTLE_CLOCKS):
            _, _, valid, bits = await ctx.tick().sample(dut.o_event.valid, event_payload)
            if valid:
                raise CoreBenchFailed(f"{label}: an event the model does not emit, after the "
                                      f"{len(expected)} it does: {_event(bits)}")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return CoreThroughput(hashing, len(records), len(expected), counts["clocks"], counts["held"],
                          tuple(taken_clocks))


@dataclass(frozen=True)
class KindClocks:
    kind: str
    commands: int
    clocks: int
    """From the taking of each command of the kind to the taking of the command after it."""
    events: int

    @property
    def clocks_per_command(self) -> float:
        return self.clocks / self.commands


def _kind(record: bytes, events: Sequence[Event]) -> str:
    """What a command is, and what it came to (from the model's events)."""
    command = COMMAND_CODEC.unpack(record)
    if any(isinstance(e, Rejected) for e in events):
        return "rejected"
    if isinstance(command, NewOrder):
        if any(isinstance(e, Fill) for e in events):
            return "new order, fills"
        if any(isinstance(e, Canceled) for e in events):
            return "new order, canceled without a fill"
        return "new order, rests"
    if isinstance(command, Modify):
        if any(isinstance(e, Canceled) for e in events):
            return "modify to 0 (cancel)"
        larger = any(isinstance(e, Modified) and e.requeued for e in events)
        return "modify, larger (to the back)" if larger else "modify, smaller (keeps its place)"
    names: list[tuple[type, str]] = [
        (Cancel, "cancel"), (MassCancelAccount, "mass cancel"), (MassCancelMarket, "mass cancel"),
        (Query, "query"), (SetWindow, "set window"), (CloseBatch, "close batch")]
    return next((name for kind, name in names if isinstance(command, kind)), type(command).__name__)


def clocks_by_kind(records: Sequence[bytes], expected: Sequence[ExpectedEvent],
                   taken: Sequence[int]) -> list[KindClocks]:
    """Where a run's clocks went, by kind of command, most clocks first: each command's clocks
    are those from its taking to the next command's (the last command, which nothing follows,
    is left out). ``taken``: :attr:`CoreThroughput.taken` of the run."""
    if len(taken) != len(records):
        raise ValueError(f"{len(taken)} taking clocks for {len(records)} commands")
    events: list[list[Event]] = [[] for _ in records]
    for e in expected:
        events[e.command].append(e.event)
    totals: dict[str, list[int]] = {}
    for i in range(len(records) - 1):
        row = totals.setdefault(_kind(records[i], events[i]), [0, 0, 0])
        row[0] += 1
        row[1] += taken[i + 1] - taken[i]
        row[2] += len(events[i])
    rows = [KindClocks(kind, n, clocks, count) for kind, (n, clocks, count) in totals.items()]
    return sorted(rows, key=lambda r: (-r.clocks, r.kind))


def _event(bits: int) -> str:
    raw = bits.to_bytes((EVENT.size + 7) // 8, "little")
    try:
        return str(EVENT_CODEC.unpack(raw[:EVENT_CODEC.size_of_tag(raw[0])]))
    except Exception as error:  # an event the codec cannot read is itself the finding
        return f"<undecodable {bits:#x}: {error}>"


def _command(raw: bytes) -> str:
    try:
        return str(COMMAND_CODEC.unpack(raw))
    except Exception:  # a malformed record, as a flow may hold on purpose
        return f"<record {raw.hex()}>"
