"""The 8N1 UART (ocee.hw.link.uart) in Amaranth's simulator: loopback with backpressure, a
bit-level line driver at +-2% baud mismatch, framing errors and resynchronisation, glitches,
overrun, and the transmitter's bit timing."""

from __future__ import annotations

import random
from typing import Any

import pytest
from amaranth import Module
from amaranth.sim import Simulator
from streams import receive, send

from ocee.hw.link.uart import UART, UARTReceiver, UARTTransmitter, uart_divisor

BAUD = 1_000_000  # the tests set clk_freq = divisor * BAUD; only the ratio matters


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """The line levels of one 8N1 frame: start, 8 data bits LSB first, stop."""
    return [0, *((byte >> i) & 1 for i in range(8)), stop]


class Strobes:
    """Counts the receiver's one-clock strobes, from a background process."""

    def __init__(self, dut: Any) -> None:
        self.dut = dut
        self.framing_errors = 0
        self.overruns = 0

    async def process(self, ctx: Any) -> None:
        async for _, _, framing_error, overrun in ctx.tick().sample(self.dut.framing_error,
                                                                    self.dut.overrun):
            self.framing_errors += framing_error
            self.overruns += overrun


def run(dut: Any, divisor: int, *benches: Any, processes: tuple[Any, ...] = (),
        timeout_bits: int = 2000) -> None:
    """Simulate until every bench returns; fail if that takes more than ``timeout_bits`` bit
    periods (a lost byte would otherwise leave a receiving bench waiting for ever)."""
    sim = Simulator(dut)
    sim.add_clock(1 / (divisor * BAUD))
    for bench in benches:
        sim.add_testbench(bench)
    for process in processes:
        sim.add_process(process)

    async def watchdog(ctx: Any) -> None:
        await ctx.delay(timeout_bits / BAUD)
        raise AssertionError(f"the testbenches did not finish in {timeout_bits} bit periods")

    sim.add_process(watchdog)
    sim.run()


async def drive_line(ctx: Any, pin: Any, levels: list[int], bit_time: float) -> None:
    """Drive ``pin`` through ``levels``, each ``bit_time`` seconds (any value: not tied to the
    design clock, as a real line is not)."""
    for level in levels:
        ctx.set(pin, level)
        await ctx.delay(bit_time)


# -- Construction ---------------------------------------------------------------------------------


def test_divisor_is_the_rounded_clocks_per_bit() -> None:
    assert uart_divisor(30_000_000, 3_000_000) == 10
    assert uart_divisor(48_000_000, 3_000_000) == 16
    assert uart_divisor(12_000_000, 3_000_000) == 4
    assert UART(30_000_000, 3_000_000).divisor == 10


def test_a_clock_that_cannot_make_the_baud_rate_is_refused() -> None:
    # 25 MHz / 3 Mbaud = 8.33: the divisor 8 gives 3.125 Mbaud, 4.2% fast.
    with pytest.raises(ValueError, match=r"a 25,000,000 Hz clock cannot make 3,000,000 baud: "
                                         r"the nearest divisor 8 gives 3,125,000 baud \(\+4.2%"):
        UART(25_000_000, 3_000_000)


def test_too_few_clocks_per_bit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"gives 3.33 clocks per bit at 3,000,000 baud; the UART "
                                         r"needs at least 4"):
        UARTReceiver(10_000_000, 3_000_000)


@pytest.mark.parametrize("value", [0, -1, 3.0e6, True])
def test_bad_parameters_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match=r"baud must be a positive integer, not"):
        UARTTransmitter(30_000_000, value)


# -- Loopback -------------------------------------------------------------------------------------


class Loopback(UART):
    """A UART whose ``tx_pin`` drives its own ``rx_pin``."""

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.uart = super().elaborate(platform)
        m.d.comb += self.rx_pin.eq(self.tx_pin)
        return m


@pytest.mark.parametrize(("divisor", "idle", "ready"), [
    (4, 0.0, 1.0), (5, 0.3, 0.5), (10, 0.0, 0.3), (16, 0.5, 1.0),
])
def test_loopback_of_random_bytes(divisor: int, idle: float, ready: float) -> None:
    dut = Loopback(divisor * BAUD, BAUD)
    rng = random.Random(divisor)
    data = [rng.randrange(256) for _ in range(40)]
    data[:4] = [0x00, 0xFF, 0xC0, 0x55]
    got: list[int] = []
    strobes = Strobes(dut)

    async def tx(ctx: Any) -> None:
        await send(ctx, dut.tx, data, rng, idle=idle)

    async def rx(ctx: Any) -> None:
        await receive(ctx, dut.rx, len(data), got, rng, ready=ready)

    run(dut, divisor, tx, rx, processes=(strobes.process,))
    assert got == data
    assert (strobes.framing_errors, strobes.overruns) == (0, 0)


# -- Receiver against a bit-level line -----------------------------------------------------------


@pytest.mark.parametrize("divisor", [4, 10, 16])
@pytest.mark.parametrize("mismatch", [-0.02, 0.0, +0.02])
def test_receiver_tolerates_baud_mismatch(divisor: int, mismatch: float) -> None:
    """Frames back to back (one stop bit, no idle) from a sender 2% slow or fast."""
    dut = UARTReceiver(divisor * BAUD, BAUD)
    rng = random.Random(7)
    data = [rng.randrange(256) for _ in range(30)] + [0x00, 0xFF]
    got: list[int] = []
    strobes = Strobes(dut)
    bit_time = 1 / BAUD * (1 + mismatch)

    async def line(ctx: Any) -> None:
        await ctx.delay(3 / BAUD)
        await drive_line(ctx, dut.rx_pin, [b for byte in data for b in frame_bits(byte)], bit_time)

    async def rx(ctx: Any) -> None:
        await receive(ctx, dut.rx, len(data), got, rng)

    run(dut, divisor, line, rx, processes=(strobes.process,))
    assert got == data
    assert (strobes.framing_errors, strobes.overruns) == (0, 0)


def test_missing_stop_bit_is_a_framing_error_then_the_receiver_resynchronises() -> None:
    divisor = 10
    dut = UARTReceiver(divisor * BAUD, BAUD)
    got: list[int] = []
    strobes = Strobes(dut)
    bit_time = 1 / BAUD

    async def line(ctx: Any) -> None:
        await ctx.delay(2 * bit_time)
        await drive_line(ctx, dut.rx_pin, frame_bits(0x12), bit_time)
        # A frame with a low stop bit, then the line stays low for 3 more bits (a short break):
        # one error, not one per bit period.
        await drive_line(ctx, dut.rx_pin, [*frame_bits(0xA5, stop=0), 0, 0, 0], bit_time)
        await drive_line(ctx, dut.rx_pin, [1], bit_time / 2)
        for byte in (0x34, 0x56):
            await drive_line(ctx, dut.rx_pin, frame_bits(byte), bit_time)

    async def rx(ctx: Any) -> None:
        await receive(ctx, dut.rx, 3, got, random.Random(1))

    run(dut, divisor, line, rx, processes=(strobes.process,))
    assert got == [0x12, 0x34, 0x56]
    assert (strobes.framing_errors, strobes.overruns) == (1, 0)


@pytest.mark.parametrize("divisor", [4, 10, 16])
def test_a_glitch_shorter_than_half_a_bit_is_not_a_start_bit(divisor: int) -> None:
    dut = UARTReceiver(divisor * BAUD, BAUD)
    got: list[int] = []
    strobes = Strobes(dut)
    clock = 1 / (divisor * BAUD)

    async def line(ctx: Any) -> None:
        await ctx.delay(5 * clock + clock / 3)
        for _ in range(3):  # low for one clock less than half a bit, three times
            ctx.set(dut.rx_pin, 0)
            await ctx.delay((divisor // 2 - 1) * clock)
            ctx.set(dut.rx_pin, 1)
            await ctx.delay(2 / BAUD)
        await drive_line(ctx, dut.rx_pin, [*frame_bits(0x81), 1], 1 / BAUD)
        await ctx.delay(2 / BAUD)

    async def rx(ctx: Any) -> None:
        ctx.set(dut.rx.ready, 1)
        for _ in range(divisor * 30):
            _, _, valid, payload = await ctx.tick().sample(dut.rx.valid, dut.rx.payload)
            if valid:
                got.append(payload)

    run(dut, divisor, line, rx, processes=(strobes.process,))
    assert got == [0x81]
    assert (strobes.framing_errors, strobes.overruns) == (0, 0)


def test_overrun_drops_the_new_byte_and_keeps_the_one_waiting() -> None:
    divisor = 8
    dut = UARTReceiver(divisor * BAUD, BAUD)
    got: list[int] = []
    strobes = Strobes(dut)

    async def line(ctx: Any) -> None:
        await ctx.delay(2 / BAUD)
        await drive_line(ctx, dut.rx_pin, frame_bits(0x11) + frame_bits(0x22) + frame_bits(0x33),
                         1 / BAUD)

    async def rx(ctx: Any) -> None:
        await ctx.delay(40 / BAUD)  # nobody takes anything for 4 frames: 0x22 and 0x33 are lost
        await receive(ctx, dut.rx, 1, got, random.Random(1))
        await ctx.delay(12 / BAUD)
        assert not ctx.get(dut.rx.valid)

    run(dut, divisor, line, rx, processes=(strobes.process,))
    assert got == [0x11]
    assert (strobes.framing_errors, strobes.overruns) == (0, 2)


# -- Transmitter bit timing -----------------------------------------------------------------------


@pytest.mark.parametrize("divisor", [4, 10])
def test_transmitter_frames_back_to_back(divisor: int) -> None:
    """Every bit lasts exactly ``divisor`` clocks and frames follow without idle time."""
    dut = UARTTransmitter(divisor * BAUD, BAUD)
    data = [0x00, 0xFF, 0x5A, 0xC0]
    levels: list[int] = []

    async def tx(ctx: Any) -> None:
        await send(ctx, dut.tx, data, random.Random(1))

    async def line(ctx: Any) -> None:
        assert ctx.get(dut.tx_pin) == 1  # idle high from reset
        while not levels or len(levels) < (len(data) * 10 + 2) * divisor:
            _, _, pin = await ctx.tick().sample(dut.tx_pin)
            levels.append(pin)

    run(dut, divisor, tx, line)
    start = levels.index(0)
    expected = [b for byte in data for b in frame_bits(byte) for _ in range(divisor)]
    assert levels[start:start + len(expected)] == expected
    assert set(levels[start + len(expected):]) == {1}
