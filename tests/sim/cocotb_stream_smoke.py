"""cocotb bench of ``AddConstant`` (defined with its model in ``test_stream_smoke.py``).

Run from pytest through :func:`ocee.sim.runner.build_and_test`; parameters (``payloads``,
``addend``, ``idle``, ``backpressure``) come from :func:`ocee.sim.runner.load_params`.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles
from test_stream_smoke import WORD, add_constant

from ocee.sim.runner import load_params
from ocee.sim.stream import StreamDriver, StreamSink, reset, start_clock


class TB:
    """Clock, reset, a driver on ``i_data``, a sink on ``o_data`` and an in-order scoreboard."""

    def __init__(self, dut: Any, *, addend: int, idle: float, backpressure: float, seed: int) -> None:
        self.dut = dut
        self.addend = addend
        start_clock(dut.clk)
        self.source = StreamDriver(dut, "i_data", dut.clk, idle_probability=idle,
                                   rng=random.Random(f"{seed}-idle"))
        self.sink = StreamSink(dut, "o_data", dut.clk, backpressure_probability=backpressure,
                               rng=random.Random(f"{seed}-backpressure"))
        self.expected: deque[int] = deque()
        self.checked = 0

    async def reset(self) -> None:
        await reset(self.dut, self.dut.clk)

    def send(self, payload: int) -> None:
        self.expected.append(add_constant(payload, self.addend))
        self.source.send_nowait(payload)

    async def check(self, count: int) -> None:
        """Compare the next ``count`` payloads out with the model's, in order."""
        for _ in range(count):
            got = await self.sink.recv()
            expected = self.expected.popleft()
            assert got == expected, f"word {self.checked}: got {got:#x}, expected {expected:#x}"
            self.checked += 1

    async def finish(self) -> None:
        """Everything sent was taken and checked, and nothing more comes out."""
        await self.source.wait_idle()
        await ClockCycles(self.dut.clk, 20)
        assert not self.expected, f"{len(self.expected)} words never came out"
        assert self.sink.empty(), f"{self.sink.queue.qsize()} words came out unchecked"
        assert self.source.sent == self.sink.received == self.checked
        assert self.dut.o_data__valid.value == 0, "the block offers a word nobody sent"


@cocotb.test(timeout_time=1, timeout_unit="ms")  # 100k cycles: ~20x what 2000 words need
async def payloads_arrive_once_in_order_transformed(dut: Any) -> None:
    params = load_params()
    tb = TB(dut, addend=params["addend"], idle=params["idle"], backpressure=params["backpressure"],
            seed=cocotb.RANDOM_SEED)
    await tb.reset()

    rng = random.Random(cocotb.RANDOM_SEED)
    all_ones = (1 << WORD.size) - 1
    payloads = [0, all_ones, all_ones >> 1, 1]  # the adder's carry chain wraps on the first two
    payloads += [rng.getrandbits(WORD.size) for _ in range(params["payloads"] - len(payloads))]
    checker = cocotb.start_soon(tb.check(len(payloads)))
    for payload in payloads:
        tb.send(payload)
    await checker
    await tb.finish()
    assert tb.checked == len(payloads)
    dut._log.info("%d words checked", tb.checked)
