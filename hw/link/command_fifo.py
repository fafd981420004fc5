"""The command FIFO: command record bytes between the link receiver and the engine.

The receiver cannot know whether a ``DATA`` frame is good before its CRC, which is its last
bytes; it writes the payload as it arrives, behind the CRC's delay, and only at the frame's end
commits the bytes (the frame is good and in sequence) or rolls them back. So the FIFO's writes
are *pending* until committed, and the reader never sees a byte of a frame that may yet be
discarded (docs/link.md, "Flow control").
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import BODY_BYTE

__all__ = ["MAX_DEPTH", "MIN_DEPTH", "CommandFifo"]

MIN_DEPTH = 16
#: docs/link.md caps the FIFO the device advertises at 2**15 - 1 bytes, so that the host's credit
#: arithmetic modulo 2**16 stays unambiguous: the largest power of two below is 2**14.
MAX_DEPTH = 1 << 14


class CommandFifo(wiring.Component):
    """A byte FIFO in block RAM whose writes become readable only when committed.

    Members
    -------
    w_data : In(8)
    w_last : In(1)
        The byte to append, and whether it is the last byte of its ``DATA`` payload (the
        :class:`~ocee.hw.link.records.CommandAssembler` needs it to end a record with no valid
        opcode).
    w_en : In(1)
        Append ``w_data`` and ``w_last`` as a pending byte. Never raised while ``w_free`` is 0.
    commit : In(1)
        The pending bytes become readable, including a byte written in the same clock.
    rollback : In(1)
        Discard the pending bytes, including a byte written in the same clock. Not raised with
        ``commit``; if it is, the rollback wins.
    w_free : Out(range(depth + 1))
        Bytes that can be written: ``depth`` less the pending bytes and the committed bytes not
        yet taken from ``o``.
    level : Out(range(depth + 1))
        Committed bytes not yet taken from ``o``.
    o : Out(stream.Signature(BODY_BYTE))
        The committed bytes, in order.

    Latency and throughput: ``w_free`` and ``level`` count every write, commit, rollback and read
    of the clocks before. A committed byte reaches ``o`` two clocks after the clock that commits
    it (the block RAM's read address, then its registered output); from then on ``o`` delivers
    one byte per clock while it is ready, whatever the write side does in the meantime. A byte's
    place is free again once it is taken from ``o``.

    Resources: ``depth`` rows of 9 bits in block RAM (an ECP5 DP16KD holds 2048 of them), with
    one write and one read port, and three pointers of ``log2(depth) + 1`` bits.
    """

    def __init__(self, depth: int) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth & (depth - 1) \
                or not MIN_DEPTH <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be a power of two between {MIN_DEPTH} and {MAX_DEPTH}, "
                             f"not {depth!r}")
        self.depth = depth
        super().__init__({
            "w_data": In(8),
            "w_last": In(1),
            "w_en": In(1),
            "commit": In(1),
            "rollback": In(1),
            "w_free": Out(range(depth + 1)),
            "level": Out(range(depth + 1)),
            "o": Out(stream.Signature(BODY_BYTE)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        depth = self.depth
        row_bits = depth.bit_length() - 1
        # A read whose row is written in the same clock returns undefined data, and none is used:
        # a byte is read only once committed, in a clock after its write (see `fetching`).
        m.submodules.ring = ring = Memory(shape=BODY_BYTE, depth=depth, init=[],
                                          attrs={"no_rw_check": 1})
        write = ring.write_port()
        read = ring.read_port()

        # Byte counters modulo 2 * depth, so that a full ring and an empty one differ:
        # taken <= fetched <= committed <= written <= taken + depth.
        written = Signal(row_bits + 1)  # every byte written, pending ones included
        committed = Signal(row_bits + 1)
        fetched = Signal(row_bits + 1)  # read from the ring: taken from `o`, or on it now
        taken = Signal(row_bits + 1)
        m.d.comb += [
            taken.eq(fetched - self.o.valid),
            self.w_free.eq(depth - (written - taken)[:row_bits + 1]),
            self.level.eq((committed - taken)[:row_bits + 1]),
        ]

        m.d.comb += [
            write.addr.eq(written[:row_bits]),
            write.data.data.eq(self.w_data),
            write.data.last.eq(self.w_last),
            write.en.eq(self.w_en),
        ]
        written_next = (written + self.w_en)[:row_bits + 1]
        with m.If(self.rollback):
            m.d.sync += written.eq(committed)
        with m.Else():
            m.d.sync += written.eq(written_next)
            with m.If(self.commit):
                m.d.sync += committed.eq(written_next)

        # The read port's data register is the output register: it is read (enabled) whenever
        # `o` is empty or being emptied, and holds the byte on offer otherwise.
        advance = ~self.o.valid | self.o.ready
        fetching = advance & (fetched != committed)
        m.d.comb += [
            read.addr.eq(fetched[:row_bits]),
            read.en.eq(advance),
            self.o.payload.eq(read.data),
        ]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(fetched != committed)
        m.d.sync += fetched.eq(fetched + fetching)
        return m
