"""SLIP framing (RFC 1055) of the link's frame bodies: the first and last blocks of the device link.

On the wire a body is sent byte for byte except ``END`` (0xC0), sent as ``ESC`` 0xDC, and ``ESC``
(0xDB), sent as ``ESC`` 0xDD; an ``END`` closes it (docs/link.md, "Framing"). The host's side of
the same rules is :func:`ocee.host.link.wire.encode_frame` and
:class:`~ocee.host.link.wire.FrameDecoder`.
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import BODY_BYTE, DECODED_BYTE

__all__ = ["END", "ESC", "ESC_END", "ESC_ESC", "SlipDecoder", "SlipEncoder"]

END = 0xC0
ESC = 0xDB
#: The byte after ``ESC`` that stands for an ``END`` in the body.
ESC_END = 0xDC
#: The byte after ``ESC`` that stands for an ``ESC`` in the body.
ESC_ESC = 0xDD


class SlipDecoder(wiring.Component):
    """Decodes the wire bytes into bodies, flagging the ones that break the framing rules.

    The decoder does not store a body: it passes each decoded byte on as it comes, and the
    receiver behind it, which has to buffer the body anyway (for the CRC check), discards what an
    error marks. So a body costs no memory here, only the one bit of escape state and a length
    count.

    Members
    -------
    i : In(stream.Signature(8))
        Wire bytes.
    o : Out(stream.Signature(DECODED_BYTE))
        Each decoded byte of a body (``end`` = 0), then, for the body's ``END``, one item with
        ``end`` = 1 (``data`` = 0). ``error`` is 0 on the decoded bytes; on the end item it is 1
        when the body had an ``ESC`` followed by anything but 0xDC or 0xDD (an ``ESC`` right
        before the ``END`` included), or more than ``max_body`` decoded bytes. An invalid escape
        sequence produces no byte, and bytes beyond ``max_body`` are dropped, so at most
        ``max_body`` bytes precede an end item. Two ``END`` bytes in a row (an empty body, which
        a sender may send at any time) produce nothing.

    Latency and throughput: ``o`` is a register, one clock behind ``i``; one wire byte per clock
    while ``o`` is ready, with backpressure in both directions (``i.ready`` is low only while an
    item waits on ``o``).
    """

    def __init__(self, max_body: int) -> None:
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ValueError(f"max_body must be a positive integer, not {max_body!r}")
        self.max_body = max_body
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(DECODED_BYTE)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        byte = self.i.payload
        out = self.o.payload
        in_body = Signal()  # a wire byte other than END came since the last END
        escaped = Signal()  # the previous wire byte was an ESC
        error = Signal()  # the body so far broke a framing rule
        decoded = Signal(range(self.max_body + 1))  # decoded bytes of the body so far

        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def emit(value: Any) -> None:
            m.d.sync += in_body.eq(1)
            with m.If(decoded == self.max_body):
                m.d.sync += error.eq(1)
            with m.Else():
                m.d.sync += [self.o.valid.eq(1), out.data.eq(value), out.end.eq(0),
                             out.error.eq(0), decoded.eq(decoded + 1)]

        with m.If(self.i.valid & self.i.ready):
            with m.If(byte == END):
                with m.If(in_body):
                    m.d.sync += [self.o.valid.eq(1), out.data.eq(0), out.end.eq(1),
                                 out.error.eq(error | escaped)]
                m.d.sync += [in_body.eq(0), escaped.eq(0), error.eq(0), decoded.eq(0)]
            with m.Elif(escaped):
                m.d.sync += escaped.eq(0)
                with m.If((byte == ESC_END) | (byte == ESC_ESC)):
                    emit(Mux(byte == ESC_END, END, ESC))
                with m.Else():
                    m.d.sync += error.eq(1)
            with m.Elif(byte == ESC):
                m.d.sync += [in_body.eq(1), escaped.eq(1)]
            with m.Else():
                emit(byte)
        return m


class SlipEncoder(wiring.Component):
    """Encodes bodies into wire bytes: escapes ``END`` and ``ESC``, and ends each body with ``END``.

    Members
    -------
    i : In(stream.Signature(BODY_BYTE))
        Body bytes; ``last`` marks the last byte of a body.
    o : Out(stream.Signature(8))
        Wire bytes: 0xC0 as 0xDB 0xDC, 0xDB as 0xDB 0xDD, any other byte as itself, and an
        ``END`` after the byte with ``last`` set.

    With ``end_after_reset`` the first wire byte after reset is an ``END`` (docs/link.md: the
    device sends one when it comes out of reset), which closes whatever the host's decoder holds
    of a frame cut off by the reset.

    Latency and throughput: ``o`` follows ``i`` in the same clock (no register: the wire bytes
    are selected from the body byte on offer, which is held until its last wire byte is taken).
    One wire byte per clock while ``o`` is ready, so a body byte takes 1 to 3 clocks.
    """

    def __init__(self, end_after_reset: bool = True) -> None:
        self.end_after_reset = bool(end_after_reset)
        super().__init__({
            "i": In(stream.Signature(BODY_BYTE)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        byte = self.i.payload.data
        escape = (byte == END) | (byte == ESC)
        sent = self.o.valid & self.o.ready

        # Each state sends one wire byte of the body byte on offer; the body byte is taken with
        # its last wire byte.
        with m.FSM(init="RESET_END" if self.end_after_reset else "BYTE"):
            with m.State("RESET_END"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(END)]
                with m.If(self.o.ready):
                    m.next = "BYTE"
            with m.State("BYTE"):
                m.d.comb += [self.o.valid.eq(self.i.valid),
                             self.o.payload.eq(Mux(escape, ESC, byte))]
                with m.If(sent):
                    with m.If(escape):
                        m.next = "ESCAPED"
                    with m.Elif(self.i.payload.last):
                        m.next = "END"
                    with m.Else():
                        m.d.comb += self.i.ready.eq(1)
            with m.State("ESCAPED"):
                m.d.comb += [self.o.valid.eq(1),
                             self.o.payload.eq(Mux(byte == END, ESC_END, ESC_ESC))]
                with m.If(sent):
                    with m.If(self.i.payload.last):
                        m.next = "END"
                    with m.Else():
                        m.d.comb += self.i.ready.eq(1)
                        m.next = "BYTE"
            with m.State("END"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(END)]
                with m.If(self.o.ready):
                    m.d.comb += self.i.ready.eq(1)
                    m.next = "BYTE"
        return m
