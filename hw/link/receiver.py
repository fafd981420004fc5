"""The receiving side of the device's link: decoded frame bodies in, checked frames out.

:class:`LinkReceiver` takes a body's bytes from the SLIP decoder and, by the time the body's end
arrives, knows everything the link controller needs to decide on it, without storing the body:

- the header (its first 8 bytes) and the first 9 payload bytes (a ``CONTROL`` or a ``SET_STREAM``);
- whether its CRC-32 checks (the CRC unit runs over the body, trailing CRC included, and a good
  body leaves it at the residue: nothing is compared byte by byte);
- for a ``DATA`` frame, whether its payload splits into command records (docs/link.md: a payload
  that ends inside a record of a valid opcode is a framing error), tracked record by record as the
  bytes pass;
- and, for a ``DATA`` frame, its payload is already in the command FIFO as *pending* bytes,
  which the controller then commits (the frame is taken) or rolls back (anything else).

Payload bytes are written behind a 5-byte delay: a body's last 4 bytes are its CRC, and the byte
before them, the payload's last, is only known to be last at the END, where it is written with
the FIFO's ``last`` mark (the command assembler needs it to delimit a record with no valid
opcode). The receiver holds the next body back until the controller has taken the summary, so
one decision is made at a time and the FIFO's pending bytes are always one frame's.
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from ocee.host.link.wire import FRAME_HEADER, HEADER_SIZE, MIN_FRAME, FrameKind
from ocee.hw.protocol import COMMAND_CODEC

from .layouts import DECODED_BYTE

__all__ = ["ARGS_BYTES", "RX_FRAME", "LinkReceiver"]

#: Payload bytes kept for the controller: a CONTROL payload is 8, a SET_STREAM one 9.
ARGS_BYTES = 9

#: What the receiver reports for each non-empty body, at its end.
RX_FRAME = data.StructLayout({
    "header":        FRAME_HEADER,
    "args":          8 * ARGS_BYTES,  # the first payload bytes; zero beyond the payload
    "length":        16,              # payload bytes (body minus header and CRC)
    "framing_error": 1,   # a bad escape, too short or too long: nothing else here is valid
    "crc_error":     1,   # the CRC does not check: nothing else here is valid
    "split_error":   1,   # DATA: the payload ends inside a command record
    "overflow":      1,   # DATA: the payload did not fit the command FIFO's free room
})

_DELAY = 5  # the CRC's 4 bytes and the payload's last byte


def _record_sizes() -> list[int]:
    """Command record sizes by first byte; 0 for a byte that is no opcode."""
    sizes = [0] * 256
    for op in COMMAND_CODEC.tag_enum:
        sizes[op.value] = COMMAND_CODEC.size_of_tag(op.value)
    return sizes


class LinkReceiver(wiring.Component):
    """Checks each frame body as it passes, keeps what the controller needs, queues commands.

    Members
    -------
    i : ``In(stream.Signature(DECODED_BYTE))``
        The SLIP decoder's output.
    o_frame : ``Out(stream.Signature(RX_FRAME))``
        One summary per body. The controller commits or rolls back the FIFO's pending bytes in
        the clock it takes one; the next body is held back until it does.
    fifo_w_data, fifo_w_last, fifo_w_en : ``Out``
        The command FIFO's pending write port (payload bytes of ``DATA`` frames).
    fifo_w_free : ``In(16)``
        The FIFO's free room, pending bytes counted as used.
    """

    def __init__(self, *, max_frame: int = 256) -> None:
        if max_frame < MIN_FRAME:
            raise ValueError(f"max_frame must be at least {MIN_FRAME}, not {max_frame}")
        self.max_frame = max_frame
        super().__init__({
            "i": In(stream.Signature(DECODED_BYTE)),
            "o_frame": Out(stream.Signature(RX_FRAME)),
            "fifo_w_data": Out(8),
            "fifo_w_last": Out(1),
            "fifo_w_en": Out(1),
            "fifo_w_free": In(16),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.crc = check = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()

        item = self.i.payload
        count = Signal(range(self.max_frame + 2))  # body bytes so far
        header = Signal(8 * HEADER_SIZE)
        args = Signal(8 * ARGS_BYTES)
        delay = Signal(8 * _DELAY)  # the last 5 bytes, oldest in the low byte
        oldest = delay[:8]
        kind = header[:4]
        is_data = kind == FrameKind.DATA.value
        overflow = Signal()

        # Record tracking over the payload bytes written to the FIFO.
        sizes = Array(Const(size, 8) for size in _record_sizes())
        left = Signal(8)  # bytes left in the current record; 0 at a record's start
        tail = Signal()  # a record with no valid opcode: it runs to the end of the payload

        def track(byte: Any) -> tuple[Any, Any]:
            """``left`` and ``tail`` after ``byte``."""
            next_left, next_tail = Signal(8), Signal()
            m.d.comb += [next_left.eq(left), next_tail.eq(tail)]
            with m.If(~tail & (left == 0)):
                size = sizes[byte]
                with m.If(size == 0):
                    m.d.comb += next_tail.eq(1)
                with m.Else():
                    m.d.comb += next_left.eq(size - 1)
            with m.Elif(~tail):
                m.d.comb += next_left.eq(left - 1)
            return next_left, next_tail

        def write(byte: Any, last: Any) -> tuple[Any, Any]:
            """Queue a payload byte of a DATA frame (if there is room); ``left``, ``tail`` after."""
            next_left, next_tail = track(byte)
            with m.If(is_data):
                with m.If(self.fifo_w_free == 0):
                    m.d.sync += overflow.eq(1)
                with m.Elif(~overflow):
                    m.d.comb += [self.fifo_w_data.eq(byte), self.fifo_w_last.eq(last),
                                 self.fifo_w_en.eq(1)]
                m.d.sync += [left.eq(next_left), tail.eq(next_tail)]
            return next_left, next_tail

        frame = self.o_frame.payload
        with m.FSM():
            with m.State("BODY"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & ~item.end):
                    m.d.comb += [check.data.eq(item.data), check.valid.eq(1),
                                 check.start.eq(count == 0)]
                    m.d.sync += [count.eq(count + 1), delay.eq(Cat(delay[8:], item.data))]
                    with m.If(count < HEADER_SIZE):
                        m.d.sync += header.word_select(count[:3], 8).eq(item.data)
                    with m.Elif(count < HEADER_SIZE + ARGS_BYTES):
                        m.d.sync += args.word_select((count - HEADER_SIZE)[:4], 8).eq(item.data)
                    with m.If(count >= MIN_FRAME + 1):  # the oldest byte is payload, not last
                        write(oldest, 0)
                with m.Elif(self.i.valid):
                    length = count - MIN_FRAME
                    long_enough = count >= MIN_FRAME
                    next_left, next_tail = left, tail
                    with m.If(count > MIN_FRAME):  # the payload's last byte
                        next_left, next_tail = write(oldest, 1)
                    m.d.sync += [
                        frame.header.eq(header),
                        frame.length.eq(length),
                        frame.framing_error.eq(item.error | ~long_enough),
                        frame.crc_error.eq(~item.error & long_enough & ~check.match_detected),
                        frame.split_error.eq(is_data & ~next_tail & (next_left != 0)),
                        frame.overflow.eq(is_data & (overflow | ((count > MIN_FRAME)
                                                                 & (self.fifo_w_free == 0)))),
                    ]
                    # Bytes past the payload are CRC bytes: clear them out of the arguments.
                    for i in range(ARGS_BYTES):
                        m.d.sync += frame.args.word_select(i, 8).eq(
                            Mux(length > i, args.word_select(i, 8), 0))
                    m.next = "REPORT"
            with m.State("REPORT"):
                m.d.comb += self.o_frame.valid.eq(1)
                with m.If(self.o_frame.ready):
                    m.d.sync += [count.eq(0), overflow.eq(0), left.eq(0), tail.eq(0),
                                 header.eq(0), args.eq(0)]
                    m.next = "BODY"
        return m
