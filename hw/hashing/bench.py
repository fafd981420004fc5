"""Cycles per event of the hashing stage, measured in Amaranth's simulator (``ocee bench hashing``).

The events are a generated flow's, as the matching model emits them without roots; the input is
offered back to back and the output always taken, so the figure is the stage's own throughput.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from amaranth.sim import Simulator

from ..protocol import EVENT_CODEC, Event
from .batch_hasher import BatchHasher

__all__ = ["HashingThroughput", "measure_batch_hasher"]


@dataclass(frozen=True)
class HashingThroughput:
    rounds_per_cycle: int
    events: int
    cycles: int

    @property
    def cycles_per_event(self) -> float:
        return self.cycles / self.events


def measure_batch_hasher(events: list[Event], rounds_per_cycle: int) -> HashingThroughput:
    dut = BatchHasher(rounds_per_cycle)
    done = {"cycles": 0, "out": 0}

    async def producer(ctx: Any) -> None:
        for event in events:
            ctx.set(dut.i_event.payload.as_value(), int.from_bytes(EVENT_CODEC.pack(event), "little"))
            ctx.set(dut.i_event.valid, 1)
            await ctx.tick().until(dut.i_event.ready)
        ctx.set(dut.i_event.valid, 0)

    async def consumer(ctx: Any) -> None:
        ctx.set(dut.o_event.ready, 1)
        cycles = 0
        while done["out"] < len(events):
            _, _, valid = await ctx.tick().sample(dut.o_event.valid)
            cycles += 1
            done["out"] += int(valid)
        done["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return HashingThroughput(rounds_per_cycle, len(events), done["cycles"])
