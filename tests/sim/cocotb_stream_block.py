"""cocotb bench of a block with one input stream and one output stream, under Verilator.

Run from pytest through :func:`ocee.sim.runner.build_and_test`; its parameters
(:func:`ocee.sim.runner.load_params`): ``i_port`` and ``o_port``, the streams' names;
``inputs`` and ``expected``, payloads as integers of the streams' bits (JSON strings); and the
``idle`` and ``backpressure`` probabilities of the input and output streams.
"""

from __future__ import annotations

import random
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles

from ocee.sim.runner import load_params
from ocee.sim.stream import StreamDriver, StreamSink, reset, start_clock


@cocotb.test(timeout_time=200, timeout_unit="ms")
async def outputs_equal_the_expected(dut: Any) -> None:
    params = load_params()
    inputs = [int(x) for x in params["inputs"]]
    expected = [int(x) for x in params["expected"]]
    start_clock(dut.clk)
    source = StreamDriver(dut, params["i_port"], dut.clk, idle_probability=params["idle"],
                          rng=random.Random(f"{cocotb.RANDOM_SEED}-idle"))
    sink = StreamSink(dut, params["o_port"], dut.clk,
                      backpressure_probability=params["backpressure"],
                      rng=random.Random(f"{cocotb.RANDOM_SEED}-backpressure"))
    await reset(dut, dut.clk)
    for value in inputs:
        source.send_nowait(value)
    for i, want in enumerate(expected):
        got = await sink.recv()
        assert got == want, f"output {i}: got {got:#x}, expected {want:#x}"
    await source.wait_idle()
    await ClockCycles(dut.clk, 300)
    assert sink.empty(), f"{sink.queue.qsize()} outputs came out that were not expected"
