"""Board top levels (ocee.hw.boards): every board elaborates with the loopback design, the PLL
dividers match Project Trellis' and icestorm's tools, bad clocks are refused, and the loopback
echoes bytes through the UART in simulation."""

from __future__ import annotations

import random
from typing import Any

import pytest
from amaranth import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator
from streams import receive

from ocee.hw.boards import (
    BOARDS,
    BoardTop,
    DesignUnavailable,
    Loopback,
    PulseStretcher,
    ecp5_pll,
    get_board,
    ice40_pll,
)
from ocee.hw.link.uart import UART


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_board_elaborates_with_the_loopback(name: str) -> None:
    board = BOARDS[name]
    plan = board.platform().build(BoardTop(board, "loopback"), name="top", do_build=False)
    rtlil = plan.files["top.il"]
    rtlil = rtlil if isinstance(rtlil, str) else rtlil.decode()
    assert ("EHXPLLL" if board.family == "ecp5" else "SB_PLL40_PAD") in rtlil
    constraints = plan.files["top.lpf" if board.family == "ecp5" else "top.pcf"]
    constraints = constraints if isinstance(constraints, str) else constraints.decode()
    for subsignal in ("rx", "tx"):
        assert f"uart_0__{subsignal}__io" in constraints


def test_pll_dividers_are_those_of_the_vendor_tools() -> None:
    # `ecppll -i 25 -o 30`, `ecppll -i 100 -o 48`, `icepll -i 12 -o 30` (YoWASP builds).
    pll = ecp5_pll(25_000_000, 30_000_000)
    assert pll is not None and (pll.clki_div, pll.clkfb_div, pll.clkop_div) == (5, 6, 20)
    pll = ecp5_pll(100_000_000, 48_000_000)
    assert pll is not None and (pll.clki_div, pll.clkfb_div, pll.clkop_div) == (25, 12, 12)
    pll40 = ice40_pll(12_000_000, 30_000_000)
    assert pll40 is not None and (pll40.divr, pll40.divf, pll40.divq) == (0, 79, 5)
    assert pll40.filter_range(12_000_000) == 1


def test_a_clock_the_pll_cannot_make_is_refused_with_the_nearest() -> None:
    # 48 MHz from 25 MHz needs CLKI_DIV 25: a 1 MHz PFD, below the ECP5's 3.125 MHz.
    assert ecp5_pll(25_000_000, 48_000_000) is None
    with pytest.raises(ValueError, match=r"the ULX3S 85F's PLL cannot make 48 MHz exactly from "
                                         r"its 25 MHz oscillator; whole MHz it can make near "
                                         r"there: .*45, 50, .*60"):
        BoardTop("ulx3s-85f", "loopback", clk_mhz=48)


def test_a_clock_that_cannot_make_the_baud_rate_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a 35,000,000 Hz clock cannot make 3,000,000 baud"):
        BoardTop("ulx3s-85f", "loopback", clk_mhz=35)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no board 'ulx3s'; the boards are ulx3s-85f, "):
        get_board("ulx3s")
    with pytest.raises(ValueError, match=r"no design 'echo'; the designs are appliance, loopback"):
        BoardTop("ulx3s-85f", "echo")


def test_the_appliance_is_not_built_for_the_icebreaker() -> None:
    with pytest.raises(DesignUnavailable, match=r"the appliance design is not built for the "
                                                r"iCEBreaker: the appliance does not fit"):
        BoardTop("icebreaker", "appliance")


def test_pulse_stretcher() -> None:
    dut = PulseStretcher(3)
    seen: list[int] = []

    async def bench(ctx: Any) -> None:
        for cycle in range(40):
            ctx.set(dut.i, cycle == 2)
            ctx.set(dut.tick, cycle % 5 == 0)
            _, _, o = await ctx.tick().sample(dut.o)
            seen.append(o)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # On from the clock after the pulse, off after the third tick after it (cycles 5, 10, 15).
    assert seen == [0] * 3 + [1] * 13 + [0] * 24


class _EchoThroughUART(Elaboratable):
    """A host-side UART talking to the loopback design behind the board's UART, pin to pin."""

    def __init__(self, clk_freq: int, baud: int) -> None:
        self.host = UART(clk_freq, baud)
        self.device = UART(clk_freq, baud)
        self.design = Loopback()

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.host = self.host
        m.submodules.device = self.device
        m.submodules.design = self.design
        wiring.connect(m, self.device.rx, self.design.rx)
        wiring.connect(m, self.design.tx, self.device.tx)
        m.d.comb += [self.device.rx_pin.eq(self.host.tx_pin),
                     self.host.rx_pin.eq(self.device.tx_pin)]
        return m


def test_loopback_echoes_bytes_through_the_uart() -> None:
    """Bytes sent back to back come back in order, while the host reads slowly at first (the
    FIFO holds them)."""
    dut = _EchoThroughUART(30_000_000, 3_000_000)
    rng = random.Random(5)
    data = [rng.randrange(256) for _ in range(24)]
    got: list[int] = []

    async def host_tx(ctx: Any) -> None:
        for byte in data:
            ctx.set(dut.host.tx.payload, byte)
            ctx.set(dut.host.tx.valid, 1)
            await ctx.tick().until(dut.host.tx.ready)
        ctx.set(dut.host.tx.valid, 0)

    async def host_rx(ctx: Any) -> None:
        await receive(ctx, dut.host.rx, len(data), got, rng)

    sim = Simulator(dut)
    sim.add_clock(1 / 30e6)
    sim.add_testbench(host_tx)
    sim.add_testbench(host_rx)
    sim.run()
    assert got == data
