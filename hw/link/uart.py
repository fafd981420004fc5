"""The physical layer of the host link: an 8N1 UART (docs/link.md: 3 Mbaud, 8 data bits, no
parity, 1 stop bit, least significant bit first, the line idle high).

Why our own: amaranth-stdio (whose ``AsyncSerial`` would be the obvious choice) is not published
on PyPI (only a 2021 placeholder release, version 0), and this project installs only from
registries. The two halves below are small, and tested against a bit-level model of the line at
the baud mismatches a real link sees.

The bit period is a whole number of design clocks, ``divisor = round(clk_freq / baud)``. Both
ends of a UART link resynchronise on every start bit, so the error of that rounding, plus the
other end's, must stay well inside the half-bit margin the receiver has at the end of a frame
(sampling the stop bit 9.5 bit periods after the start edge): :func:`uart_divisor` rejects
clock/baud pairs that are off by more than :data:`MAX_BAUD_ERROR`, which leaves the rest of the
margin to the host's UART and to the synchroniser's and start detection's one-clock jitter.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MAX_BAUD_ERROR", "MIN_DIVISOR", "UART", "UARTReceiver", "UARTTransmitter", "uart_divisor"]

#: The largest relative baud error (of ``clk_freq / divisor`` against ``baud``) we accept.
MAX_BAUD_ERROR = 0.02
#: The fewest clocks per bit. Below 4 the one-clock jitter of start detection (plus the 2-flop
#: synchroniser's sampling) is more than a quarter bit, and mid-bit sampling has no margin left.
MIN_DIVISOR = 4


def uart_divisor(clk_freq: int, baud: int) -> int:
    """Clocks per bit for ``baud`` at ``clk_freq`` Hz; :class:`ValueError` when the pair does not
    make a usable UART (too few clocks per bit, or a rounded bit period too far from ``baud``)."""
    for name, value in (("clk_freq", clk_freq), ("baud", baud)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"a {clk_freq:,} Hz clock gives {clk_freq / baud:.2f} clocks per bit at "
                         f"{baud:,} baud; the UART needs at least {MIN_DIVISOR}: raise the clock "
                         f"or lower the baud rate")
    error = clk_freq / divisor / baud - 1
    if abs(error) > MAX_BAUD_ERROR:
        raise ValueError(f"a {clk_freq:,} Hz clock cannot make {baud:,} baud: the nearest divisor "
                         f"{divisor} gives {clk_freq / divisor:,.0f} baud ({error:+.1%}, more than "
                         f"{MAX_BAUD_ERROR:.0%}); choose a clock that is a multiple of the baud "
                         f"rate")
    return divisor


class UARTReceiver(wiring.Component):
    """The receiving half: bytes from ``rx_pin`` onto the ``rx`` stream.

    ``rx_pin`` passes through a 2-flop synchroniser (it is asynchronous to the design clock). A
    falling edge on the idle line starts a frame; half a bit later the line must still be low
    (mid-bit verification), so a glitch shorter than half a bit is ignored. The 8 data bits are
    sampled at their centres, and the stop bit must be high: if it is low the byte is dropped,
    ``framing_error`` pulses and the receiver waits for the line to go high before it looks for
    the next start bit (so a break, or a sender at the wrong baud rate, gives one error per low
    stretch rather than a stream of garbage bytes).

    The received byte is offered on ``rx`` at the centre of the stop bit, and held until taken:
    the next frame takes 10 bit periods to arrive, which is the consumer's time budget. A byte
    that arrives while the previous one is still not taken is dropped (a stream's payload must
    not change until it is taken) and ``overrun`` pulses.

    Members
    -------
    rx : Out(stream.Signature(8))
        Received bytes.
    rx_pin : In(1)
        The serial line, idle high; asynchronous.
    framing_error : Out(1)
        One-clock strobe: a frame ended with a low stop bit; its byte was dropped.
    overrun : Out(1)
        One-clock strobe: a byte arrived while ``rx`` still held the previous one; it was dropped.
    """

    def __init__(self, clk_freq: int, baud: int) -> None:
        self.divisor = uart_divisor(clk_freq, baud)
        super().__init__({
            "rx": Out(stream.Signature(8)),
            "rx_pin": In(1, init=1),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        divisor = self.divisor

        line = Signal(init=1)  # reset to idle, so that reset does not look like a start bit
        m.submodules.sync_rx = FFSynchronizer(self.rx_pin, line, init=1)

        timer = Signal(range(divisor))
        bits = Signal(range(8))
        shreg = Signal(8)
        tick = timer == 0
        with m.If(~tick):
            m.d.sync += timer.eq(timer - 1)

        with m.If(self.rx.ready):
            m.d.sync += self.rx.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # The first sample is half a bit after the edge, at the start bit's centre.
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    with m.If(line):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(divisor - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [timer.eq(divisor - 1), shreg.eq(Cat(shreg[1:], line)),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    with m.If(~line):
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                    with m.Elif(self.rx.valid & ~self.rx.ready):
                        m.d.comb += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [self.rx.payload.eq(shreg), self.rx.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """The transmitting half: bytes from the ``tx`` stream onto ``tx_pin``.

    Each byte goes out as a start bit (low), 8 data bits least significant first and a stop bit
    (high), each ``divisor`` clocks long. ``tx.ready`` is high while the line is idle and in the
    last clock of a stop bit, so bytes offered back to back go out back to back: one byte per
    ``10 * divisor`` clocks. ``tx_pin`` comes straight from a register (no glitches) and is high
    from reset on.

    Members
    -------
    tx : In(stream.Signature(8))
        Bytes to send.
    tx_pin : Out(1)
        The serial line, idle high.
    """

    def __init__(self, clk_freq: int, baud: int) -> None:
        self.divisor = uart_divisor(clk_freq, baud)
        super().__init__({
            "tx": In(stream.Signature(8)),
            "tx_pin": Out(1, init=1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        divisor = self.divisor

        timer = Signal(range(divisor))
        left = Signal(range(11))  # bits of the frame not yet finished; 0: idle
        shreg = Signal(10, init=0x3FF)  # the frame, LSB on the line; ones shift in (idle high)
        m.d.comb += self.tx_pin.eq(shreg[0])

        last_clock = (left == 0) | ((left == 1) & (timer == 0))
        m.d.comb += self.tx.ready.eq(last_clock)
        with m.If(self.tx.valid & last_clock):
            m.d.sync += [shreg.eq(Cat(Const(0, 1), self.tx.payload, Const(1, 1))),
                         timer.eq(divisor - 1), left.eq(10)]
        with m.Elif(left != 0):
            with m.If(timer == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], Const(1, 1))), timer.eq(divisor - 1),
                             left.eq(left - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UART(wiring.Component):
    """Both halves of the 8N1 UART, in the ``sync`` domain, for ``clk_freq`` Hz and ``baud``.

    ``divisor`` (clocks per bit) is checked at construction: :class:`ValueError` when the clock
    gives fewer than :data:`MIN_DIVISOR` clocks per bit or a baud error above
    :data:`MAX_BAUD_ERROR`. The halves are independent (full duplex); see
    :class:`UARTReceiver` and :class:`UARTTransmitter` for their timing.

    Members
    -------
    rx : Out(stream.Signature(8))
        Bytes received from the line.
    tx : In(stream.Signature(8))
        Bytes to send.
    rx_pin : In(1)
        Receive line, idle high; asynchronous (synchronised inside).
    tx_pin : Out(1)
        Transmit line, idle high.
    framing_error : Out(1)
        Strobe: a received frame had a low stop bit (its byte is dropped).
    overrun : Out(1)
        Strobe: a byte arrived while ``rx`` still held the previous one (the new byte is dropped).
    """

    def __init__(self, clk_freq: int, baud: int) -> None:
        self.clk_freq = clk_freq
        self.baud = baud
        self.divisor = uart_divisor(clk_freq, baud)
        super().__init__({
            "rx": Out(stream.Signature(8)),
            "tx": In(stream.Signature(8)),
            "rx_pin": In(1, init=1),
            "tx_pin": Out(1, init=1),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.clk_freq, self.baud)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.clk_freq, self.baud)
        wiring.connect(m, wiring.flipped(self.rx), receiver.rx)
        wiring.connect(m, wiring.flipped(self.tx), transmitter.tx)
        m.d.comb += [receiver.rx_pin.eq(self.rx_pin), self.tx_pin.eq(transmitter.tx_pin),
                     self.framing_error.eq(receiver.framing_error),
                     self.overrun.eq(receiver.overrun)]
        return m
