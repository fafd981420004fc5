"""cocotb bench of the hashing stage under Verilator: events in, events with roots out.

Run from ``test_hashing_verilator.py`` through :func:`ocee.sim.runner.build_and_test`; its
parameters (:func:`ocee.sim.runner.load_params`): ``inputs`` and ``expected``, event records as
integers of the EVENT layout's bits (JSON strings), and the ``idle`` and ``backpressure``
probabilities of the command and event streams.
"""

from __future__ import annotations

import random
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles

from ocee.sim.runner import load_params
from ocee.sim.stream import StreamDriver, StreamSink, reset, start_clock


@cocotb.test(timeout_time=50, timeout_unit="ms")
async def events_pass_through_with_roots(dut: Any) -> None:
    params = load_params()
    inputs = [int(x) for x in params["inputs"]]
    expected = [int(x) for x in params["expected"]]
    start_clock(dut.clk)
    source = StreamDriver(dut, "i_event", dut.clk, idle_probability=params["idle"],
                          rng=random.Random(f"{cocotb.RANDOM_SEED}-idle"))
    sink = StreamSink(dut, "o_event", dut.clk, backpressure_probability=params["backpressure"],
                      rng=random.Random(f"{cocotb.RANDOM_SEED}-backpressure"))
    await reset(dut, dut.clk)
    for value in inputs:
        source.send_nowait(value)
    for i, want in enumerate(expected):
        got = await sink.recv()
        assert got == want, f"event {i}: got {got:#x}, expected {want:#x}"
    await source.wait_idle()
    await ClockCycles(dut.clk, 50)
    assert sink.empty(), f"{sink.queue.qsize()} events came out that the model does not emit"
