"""cocotb drivers and monitors for Amaranth streams (``amaranth.lib.stream``) in a simulator.

Amaranth emits a stream member ``x`` as the ports ``x__payload``, ``x__valid`` and ``x__ready``;
these classes take the DUT handle and the member's name. Payloads are Python integers of the
payload's bits (a ``data.StructLayout`` field at offset ``o`` and width ``w`` is
``(payload >> o) & ((1 << w) - 1)``), of any width.

Timing: each class acts once per clock cycle. Right after a rising edge it writes what it drives
(valid and payload, or ready); in the read-only phase of the same time step, when the DUT's logic
has settled, it samples ``valid and ready``. A handshake sampled there is the transfer taken at the
next rising edge. That holds on any simulator, whichever values it shows at the edge itself, as
long as the bench only writes signals right after rising edges (as these classes do).

A typical bench::

    clock = start_clock(dut.clk)
    source = StreamDriver(dut, "i_cmd", dut.clk, idle_probability=0.3, rng=random.Random(1))
    sink = StreamSink(dut, "o_evt", dut.clk, backpressure_probability=0.5, rng=random.Random(2))
    await reset(dut, dut.clk)
    for command in commands:
        await source.send(command)
    event = await sink.recv()
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge

__all__ = ["StreamDriver", "StreamMonitor", "StreamSink", "reset", "start_clock"]


def start_clock(clock: Any, period_ns: float = 10.0) -> Clock:
    """Start a free-running clock on ``clock`` (e.g. ``dut.clk``) and return it."""
    driver = Clock(clock, period_ns, unit="ns")
    driver.start()
    return driver


async def reset(dut: Any, clock: Any, cycles: int = 4) -> None:
    """Hold the default domain's synchronous reset ``dut.rst`` for ``cycles`` rising edges.

    Returns right after the last of them, with reset released for the next edge: the first
    cycle in which the DUT runs. Start sending only then (a stream that reads ready during reset
    would lose what it offers).
    """
    if cycles < 1:
        raise ValueError(f"reset needs at least one cycle, not {cycles}")
    dut.rst.value = 1
    await ClockCycles(clock, cycles)
    dut.rst.value = 0


def _check_probability(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), not {value!r}")
    return float(value)


def _port(dut: Any, port: str, member: str) -> Any:
    try:
        return getattr(dut, f"{port}__{member}")
    except AttributeError:
        raise AttributeError(f"the DUT has no stream port {port!r} (no signal {port}__{member})") from None


class StreamDriver:
    """Offers payloads on the stream ``port`` that the DUT takes (an ``In(stream.Signature)``).

    Follows the stream rules: valid never waits on ready, and once valid is asserted it and the
    payload hold until the DUT takes it. Before offering each payload it idles for a random number
    of cycles: each cycle with probability ``idle_probability`` (a mean gap of ``p / (1 - p)``
    cycles). ``send`` queues a payload; transfers run back to back while the queue holds more.

    ``rng`` (default: seeded with 0) decides the gaps. Attributes: ``sent``, the number of
    payloads the DUT has taken.
    """

    def __init__(self, dut: Any, port: str, clock: Any, *, idle_probability: float = 0.0,
                 rng: random.Random | None = None) -> None:
        self.port = port
        self.sent = 0
        self._payload = _port(dut, port, "payload")
        self._valid = _port(dut, port, "valid")
        self._ready = _port(dut, port, "ready")
        self._clock = clock
        self._idle = _check_probability("idle_probability", idle_probability)
        self._rng = rng if rng is not None else random.Random(0)
        self._queue: deque[int] = deque()
        self._drained = Event()
        self._drained.set()
        self._valid.value = 0
        self._task = cocotb.start_soon(self._run())

    async def send(self, payload: int) -> None:
        """Queue ``payload``; returns at once (see :meth:`wait_idle` for when it is taken)."""
        self.send_nowait(payload)

    def send_nowait(self, payload: int) -> None:
        """Queue ``payload`` (an integer of the payload's bits)."""
        width = len(self._payload)
        if not 0 <= payload < 1 << width:
            raise ValueError(f"payload {payload:#x} does not fit {self.port}'s {width} bits")
        self._queue.append(payload)
        self._drained.clear()

    @property
    def idle(self) -> bool:
        """Whether every queued payload has been taken."""
        return not self._queue

    async def wait_idle(self) -> None:
        """Wait until the DUT has taken every queued payload."""
        while self._queue:
            await self._drained.wait()

    async def _run(self) -> None:
        offering = False
        taken = False
        while True:
            await RisingEdge(self._clock)
            if taken:
                self._queue.popleft()
                self.sent += 1
                offering = False
                if not self._queue:
                    self._drained.set()
            if not offering and self._queue and not self._rng.random() < self._idle:
                self._payload.value = self._queue[0]
                self._valid.value = 1
                offering = True
            elif not offering:
                self._valid.value = 0
            await ReadOnly()
            taken = offering and self._ready.value == 1


class StreamMonitor:
    """Records the payload of every transfer on the stream ``port``, without driving anything.

    Payloads go to ``queue`` (a cocotb :class:`~cocotb.queue.Queue` of ints, read with
    :meth:`recv`), in order. Attributes: ``received``, the number of transfers seen.

    With ``check_rules`` (the default) it also checks the producer against Amaranth's stream rule
    2: once valid is asserted, valid and the payload hold until a transfer. A violation fails the
    running cocotb test. (Turn it off for a stream whose producer is reset while it waits.)
    """

    def __init__(self, dut: Any, port: str, clock: Any, *, check_rules: bool = True) -> None:
        self.port = port
        self.received = 0
        self.check_rules = check_rules
        self.queue: Queue[int] = Queue()
        self._payload = _port(dut, port, "payload")
        self._valid = _port(dut, port, "valid")
        self._ready = _port(dut, port, "ready")
        self._clock = clock
        self._task = cocotb.start_soon(self._run())

    async def recv(self) -> int:
        """The next payload, waiting for it if none is queued."""
        return await self.queue.get()

    def recv_nowait(self) -> int:
        """The next payload; raises :class:`cocotb.queue.QueueEmpty` if none is queued."""
        return self.queue.get_nowait()

    def empty(self) -> bool:
        return self.queue.empty()

    def _drive(self) -> bool:
        """Called right after each rising edge; whether this monitor lets a transfer happen."""
        return True

    async def _run(self) -> None:
        waiting: int | None = None  # a payload offered in the previous cycle and not taken
        while True:
            await RisingEdge(self._clock)
            accepting = self._drive()
            await ReadOnly()
            if self._valid.value != 1:
                if waiting is not None and self.check_rules:
                    raise AssertionError(f"{self.port}: valid fell before payload {waiting:#x} was taken")
                continue
            value = self._payload.value
            if not value.is_resolvable:
                raise AssertionError(f"{self.port}: valid with an unresolved payload {value}")
            payload = value.to_unsigned()
            if waiting is not None and payload != waiting and self.check_rules:
                raise AssertionError(f"{self.port}: payload changed from {waiting:#x} to {payload:#x} "
                                     "while waiting for ready")
            if accepting and self._ready.value == 1:
                self.queue.put_nowait(payload)
                self.received += 1
                waiting = None
            else:
                waiting = payload


class StreamSink(StreamMonitor):
    """Takes payloads from the stream ``port`` that the DUT offers (an ``Out(stream.Signature)``).

    Drives ready, low with probability ``backpressure_probability`` each cycle (independently of
    valid, which the stream rules allow), and queues every payload taken like a
    :class:`StreamMonitor` (which also checks the DUT's side of the stream rules).
    """

    def __init__(self, dut: Any, port: str, clock: Any, *, backpressure_probability: float = 0.0,
                 rng: random.Random | None = None, check_rules: bool = True) -> None:
        self._backpressure = _check_probability("backpressure_probability", backpressure_probability)
        self._rng = rng if rng is not None else random.Random(0)
        _port(dut, port, "ready").value = 0
        super().__init__(dut, port, clock, check_rules=check_rules)

    def _drive(self) -> bool:
        ready = not self._rng.random() < self._backpressure
        self._ready.value = int(ready)
        return ready
