"""Driving commands through a backend and summarising what came back.

A backend executes commands and returns the device's events. ``Backend`` executes one command at
a time (the reference model; the link transports of issue 5 will too). ``RunBackend`` executes a
whole command list in one go and returns the event stream: the engine RTL under Verilator
(:mod:`ocee.sim.rtl`) runs the list in one simulator run, and cannot tell which command each event
came from, since the device does not mark where one command's events end. Everything above these
two interfaces (the CLI, the demo, the checks) is the same for every backend.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import BatchClosed, Canceled, Command, Event, Fill, Rejected

from .jsonl import EVENT_NAMES, OP_NAMES

__all__ = ["BACKENDS", "RUN_BACKENDS", "Backend", "BackendError", "LinkBackend", "ModelBackend",
           "ReplaySummary",
           "RunBackend", "replay", "replay_all"]


class Backend(Protocol):
    """Something that executes commands the way the matching device does."""

    def execute(self, command: Command) -> list[Event]: ...

    def close(self) -> None: ...


class ModelBackend:
    """The reference model, in process."""

    def __init__(self, config: MatchingConfig) -> None:
        self.model = MatchingModel(config)

    def execute(self, command: Command) -> list[Event]:
        return self.model.execute(command)

    def close(self) -> None:
        pass


class RunBackend(Protocol):
    """Something that executes a whole command list in one go and returns all its events."""

    def run(self, commands: Sequence[Command]) -> list[Event]: ...

    def close(self) -> None: ...


class BackendError(Exception):
    """A backend could not execute the commands (a build or a simulator that failed)."""


BACKENDS: dict[str, Callable[[MatchingConfig], Backend]] = {"model": ModelBackend}


class LinkBackend:
    """A device reached through the link layer (docs/link.md): ``sim://`` (the virtual board),
    ``model://``, ``serial://...`` or any pyserial URL. The device reports its own capacities.
    :meth:`stream` pipelines the commands as far as the device's credit allows; :meth:`execute`
    is one round trip per command."""

    def __init__(self, url: str) -> None:
        from .link import LinkError, open_link

        try:
            self._link = open_link(url)
        except LinkError as e:
            raise BackendError(f"cannot open {url}: {e}") from None

    def execute(self, command: Command) -> list[Event]:
        return self._link.execute(command)

    def stream(self, commands: Iterable[Command]) -> Iterator[tuple[Command, list[Event]]]:
        for done in self._link.stream(commands):
            assert not isinstance(done.command, bytes)
            yield done.command, done.events

    def close(self) -> None:
        self._link.close()


def _rtl_backend(config: MatchingConfig, status: TextIO | None) -> RunBackend:
    from ocee.sim.rtl import RtlBackend  # Verilator and cocotb: only when asked for

    return RtlBackend(config, status=status)


#: Whole-list backends, built from the config and a stream for status and progress lines.
RUN_BACKENDS: dict[str, Callable[[MatchingConfig, TextIO | None], RunBackend]] = {"rtl": _rtl_backend}


@dataclass
class ReplaySummary:
    commands: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    cancels: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)
    fill_qty: int = 0
    batches: list[BatchClosed] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, command: Command, events: Iterable[Event]) -> None:
        self.add_command(command)
        self.add_events(events)

    def add_command(self, command: Command) -> None:
        self.commands[OP_NAMES[type(command)]] += 1

    def add_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.events[EVENT_NAMES[type(ev)]] += 1
            if isinstance(ev, Fill):
                self.fill_qty += ev.qty
            elif isinstance(ev, Canceled):
                self.cancels[ev.reason.name.lower()] += 1
            elif isinstance(ev, Rejected):
                self.rejects[ev.reason.name.lower()] += 1
            elif isinstance(ev, BatchClosed):
                self.batches.append(ev)

    @property
    def command_count(self) -> int:
        return sum(self.commands.values())

    @property
    def event_count(self) -> int:
        return sum(self.events.values())

    def render(self, backend: str, batch_lines: int = 5) -> str:
        rate = self.command_count / self.seconds if self.seconds > 0 else 0.0

        def counts(c: Counter[str]) -> str:
            return ", ".join(f"{k} {v:,}" for k, v in c.most_common()) or "none"

        lines = [
            f"backend        {backend}",
            f"commands       {self.command_count:,} ({counts(self.commands)})",
            f"events         {self.event_count:,} ({counts(self.events)})",
            f"fills          {self.events['fill']:,}, volume {self.fill_qty:,}",
            f"cancels        {counts(self.cancels)}",
            f"rejects        {counts(self.rejects)}",
            f"batches        {len(self.batches):,}",
        ]
        shown = self.batches[-batch_lines:]
        if len(self.batches) > len(shown):
            lines.append(f"  ... {len(self.batches) - len(shown):,} earlier batches")
        lines += [f"  batch {b.batch:>6} {b.count:>7,} events root "
                  f"0x{b.root.hex()}" for b in shown]
        lines.append(f"time           {self.seconds:.2f} s, {rate:,.0f} commands/s")
        return "\n".join(lines)


def replay(commands: Iterable[Command], backend: Backend,
           on_events: Callable[[Command, list[Event]], None] | None = None,
           summary: ReplaySummary | None = None) -> Iterator[list[Event]]:
    """Execute ``commands`` in order, yielding each command's events."""
    start = time.perf_counter()
    try:
        if isinstance(backend, LinkBackend):
            pairs: Iterable[tuple[Command, list[Event]]] = backend.stream(commands)
        else:
            pairs = ((command, backend.execute(command)) for command in commands)
        for command, events in pairs:
            if summary is not None:
                summary.add(command, events)
            if on_events is not None:
                on_events(command, events)
            yield events
    finally:
        if summary is not None:
            summary.seconds += time.perf_counter() - start


def replay_all(commands: Sequence[Command], backend: RunBackend,
               summary: ReplaySummary | None = None) -> list[Event]:
    """Execute ``commands`` in one run of ``backend``; every event, in order."""
    start = time.perf_counter()
    try:
        events = backend.run(commands)
    finally:
        if summary is not None:
            summary.seconds += time.perf_counter() - start
    if summary is not None:
        for command in commands:
            summary.add_command(command)
        summary.add_events(events)
    return events
