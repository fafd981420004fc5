"""Stream drivers for testbenches in Amaranth's simulator: random idle gaps and backpressure."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any


async def send(ctx: Any, port: Any, payloads: Iterable[Any], rng: random.Random,
               idle: float = 0.0, raw: bool = False) -> None:
    """Offer each payload on ``port`` (a stream the DUT takes), idling with probability ``idle``
    before each. ``raw``: payloads are integers for the whole payload's bits."""
    target = port.payload.as_value() if raw else port.payload
    for payload in payloads:
        while rng.random() < idle:
            await ctx.tick()
        ctx.set(target, payload)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)


async def receive(ctx: Any, port: Any, count: int, out: list[Any], rng: random.Random,
                  ready: float = 1.0, convert: Callable[[Any], Any] = lambda x: x,
                  raw: bool = False, max_clocks: int | None = None) -> None:
    """Take ``count`` payloads from ``port`` (a stream the DUT drives) into ``out``, asserting
    ready with probability ``ready`` each clock; fail after ``max_clocks`` rather than wait for
    ever on a DUT that lost something."""
    source = port.payload.as_value() if raw else port.payload
    clocks = 0
    while len(out) < count:
        clocks += 1
        if max_clocks is not None and clocks > max_clocks:
            raise AssertionError(f"{len(out)} of {count} payloads after {max_clocks} clocks")
        taking = rng.random() < ready
        ctx.set(port.ready, taking)
        _, _, valid, payload = await ctx.tick().sample(port.valid, source)
        if taking and valid:
            out.append(convert(payload))


def simulate(dut: Any, *testbenches: Callable[[Any], Any]) -> None:
    """Run ``testbenches`` against ``dut`` on a 100 MHz clock until they have all returned."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in testbenches:
        sim.add_testbench(bench)
    sim.run()
