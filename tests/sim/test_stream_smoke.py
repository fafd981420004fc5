# amaranth: UnusedElaboratable=no
"""The simulation chain end to end: Amaranth -> Verilog -> Verilator -> cocotb -> pytest.

A small stream block with a 150-bit payload runs under Verilator with random idle gaps and
backpressure (bench: ``cocotb_stream_smoke.py``); two more tests prove that a failing or empty
bench fails the pytest test.
"""

# No ``from __future__ import annotations``: wiring.Component reads its members from live annotations.
from pathlib import Path
from typing import Any

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ocee.sim.runner import SimulationFailed, build_and_test

HERE = Path(__file__).resolve().parent

TAG_BITS = 22
VALUE_BITS = 128
WORD = data.StructLayout({"tag": TAG_BITS, "value": VALUE_BITS})
ADDEND = 0xF00D_CAFE_0000_0001_8000_0000_DEAD_BEEF


def add_constant(payload: int, addend: int) -> int:
    """Golden model of :class:`AddConstant` on a word's bits: ``value + addend`` (mod 2**128)."""
    offset, mask = int(WORD["value"].offset), (1 << VALUE_BITS) - 1
    value = ((payload >> offset) + addend) & mask
    return (payload & ~(mask << offset)) | (value << offset)


class AddConstant(wiring.Component):
    """Adds a constant to the ``value`` field of each word; ``tag`` passes through.

    Latency one clock, throughput one word per clock. A two-entry skid buffer keeps the input's
    ready and the output's valid and payload registered.

    Members
    -------
    i_data : ``In(stream.Signature(WORD))``
    o_data : ``Out(stream.Signature(WORD))``
    """

    i_data: In(stream.Signature(WORD))
    o_data: Out(stream.Signature(WORD))

    def __init__(self, addend: int) -> None:
        if not 0 <= addend < 1 << VALUE_BITS:
            raise ValueError(f"addend must fit {VALUE_BITS} bits, not {addend:#x}")
        self.addend = addend
        super().__init__()

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        result = Signal(WORD)
        m.d.comb += [result.tag.eq(self.i_data.p.tag),
                     result.value.eq(self.i_data.p.value + self.addend)]  # truncated to 128 bits
        skid = Signal(WORD)
        skid_valid = Signal()
        m.d.comb += self.i_data.ready.eq(~skid_valid)
        with m.If(self.o_data.ready | ~self.o_data.valid):
            with m.If(skid_valid):
                m.d.sync += [self.o_data.payload.eq(skid), self.o_data.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o_data.payload.eq(result), self.o_data.valid.eq(self.i_data.valid)]
        with m.Elif(self.i_data.valid & ~skid_valid):
            m.d.sync += [skid.eq(result), skid_valid.eq(1)]
        return m


def run_smoke_bench(*, testcase: str = "payloads_arrive_once_in_order_transformed", **params: Any) -> Any:
    return build_and_test(AddConstant(ADDEND), name="stream_smoke", test_module="cocotb_stream_smoke",
                          python_path=[HERE], testcase=testcase, seed=20261124,
                          params={"payloads": 2000, "addend": ADDEND, "idle": 0.0, "backpressure": 0.0,
                                  **params})


def test_model() -> None:
    offset = WORD["value"].offset
    assert WORD.size == 150
    assert add_constant(5, 7) == 5 + (7 << offset)
    assert add_constant(((1 << VALUE_BITS) - 1) << offset | 3, 2) == 1 << offset | 3  # wraps, tag kept


def test_addend_must_fit() -> None:
    with pytest.raises(ValueError, match="addend must fit 128 bits, not 0x1"):
        AddConstant(1 << VALUE_BITS)


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5)])
def test_stream_under_verilator(idle: float, backpressure: float) -> None:
    result = run_smoke_bench(idle=idle, backpressure=backpressure)
    assert (result.tests, result.failed) == (1, 0)


def test_wrong_model_fails_the_pytest_test() -> None:
    """The bench's scoreboard, handed a model that is off by one, must fail this test."""
    with pytest.raises(SimulationFailed, match=r"1 of 1 cocotb tests failed:\n.*word 0: got 0x") as failure:
        run_smoke_bench(payloads=50, addend=ADDEND + 1)
    assert failure.value.result is not None
    assert failure.value.result.failed == 1


def test_bench_that_runs_nothing_fails() -> None:
    with pytest.raises(SimulationFailed, match="no cocotb test ran"):
        run_smoke_bench(testcase="no_such_test")
