"""cocotb bench of the hashing stage under Verilator: events in, events with roots out.

Stimulus and expectations come from a JSON file named by OCEE_BENCH_VECTORS: ``inputs`` and
``expected`` are event records as integers of the EVENT layout's bits. Handshakes are sampled at
the rising edge, where signals still hold the values of the cycle that ends there.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge


async def _drive(dut: Any, inputs: list[int], rng: random.Random, idle: float) -> None:
    for value in inputs:
        while rng.random() < idle:
            dut.i_event__valid.value = 0
            await RisingEdge(dut.clk)
        dut.i_event__payload.value = value
        dut.i_event__valid.value = 1
        await RisingEdge(dut.clk)
        while not int(dut.i_event__ready.value):
            await RisingEdge(dut.clk)
    dut.i_event__valid.value = 0


@cocotb.test()
async def events_pass_through_with_roots(dut: Any) -> None:
    with open(os.environ["OCEE_BENCH_VECTORS"]) as f:
        vectors = json.load(f)
    inputs = [int(x) for x in vectors["inputs"]]
    expected = [int(x) for x in vectors["expected"]]
    rng = random.Random(vectors["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i_event__valid.value = 0
    dut.o_event__ready.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    got: list[int] = []
    cocotb.start_soon(_drive(dut, inputs, rng, vectors["idle"]))
    cycles = 0
    while len(got) < len(expected):
        ready = rng.random() >= vectors["backpressure"]
        dut.o_event__ready.value = int(ready)
        await RisingEdge(dut.clk)
        if ready and int(dut.o_event__valid.value):
            got.append(dut.o_event__payload.value.to_unsigned())
        cycles += 1
        assert cycles < 200 * len(expected) + 1000, "the stage stopped producing events"
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"event {i}: got {g:#x}, expected {e:#x}"
