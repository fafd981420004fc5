"""Conversions between the link's byte streams and the engine's records.

A record on the wire is the little-endian serialisation of its layout, truncated after the body
member its tag selects (:mod:`ocee.hw.protocol`); so the bytes of a record are the low bits of the
layout, byte 0 (the tag) first. Both blocks take their record sizes from the protocol's codecs,
the definition the host packs and unpacks with, never from a table written by hand.
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import COMMAND, COMMAND_CODEC, EVENT, EVENT_CODEC
from .layouts import BODY_BYTE, EVENT_BYTE, TAGGED_EVENT

__all__ = [
    "COMMAND_BYTES",
    "COMMAND_SIZES",
    "EVENT_BYTES",
    "EVENT_HEADER_BYTES",
    "EVENT_SIZES",
    "CommandAssembler",
    "EventSerializer",
]

#: The size in bytes of each opcode's command record, and of each kind's event record.
COMMAND_SIZES: dict[int, int] = {cls.OP.value: COMMAND_CODEC.size(cls)
                                 for cls in COMMAND_CODEC.classes}
EVENT_SIZES: dict[int, int] = {cls.KIND.value: EVENT_CODEC.size(cls)
                               for cls in EVENT_CODEC.classes}
#: The longest record of each direction.
COMMAND_BYTES = max(COMMAND_SIZES.values())
EVENT_BYTES = max(EVENT_SIZES.values())
#: An event record with its header and no body: what an event of no known kind is sent as.
EVENT_HEADER_BYTES = EVENT["body"].offset // 8


class CommandAssembler(wiring.Component):
    """Assembles the bytes of ``DATA`` payloads into command records for the engine.

    A record's length follows from its first byte, the opcode (docs/link.md, "Records in DATA
    payloads"); its bytes fill the :data:`~ocee.hw.protocol.COMMAND` layout from bit 0, the
    bits beyond the record zero. A first byte that is no valid opcode starts a record that runs
    to the end of the payload (the byte with ``last`` set): it is emitted with ``header.op`` =
    that byte and ``header.market`` = its second byte (0 if it has none), every other bit zero,
    and the engine rejects it as malformed, as the reference model's ``execute_bytes`` does.

    Members
    -------
    i : In(stream.Signature(BODY_BYTE))
        Payload bytes from the command FIFO; ``last`` marks the last byte of a ``DATA`` payload.
    o : Out(stream.Signature(COMMAND))
        One record per command.
    consumed : Out(16)
        Bytes taken from ``i`` since reset, modulo 2**16: the link's credits count them.

    A payload that ends inside a record of a valid opcode is a framing error that the receiver
    discards before the FIFO commits it, so it never comes here; if it did, the record would end
    at ``last``, zero-filled, so that the next payload still starts with a record.

    Latency and throughput: ``o`` is a register, valid in the clock after a record's last byte;
    in that clock the first byte of the next record is taken if ``o`` is taken too. So a record
    of *n* bytes takes *n* clocks, back to back, while ``o`` is ready.

    Resources: the record register (``8 * COMMAND_BYTES`` flip-flops, each byte loaded from
    ``i`` or cleared), a byte index and the 16-bit count.
    """

    def __init__(self) -> None:
        super().__init__({
            "i": In(stream.Signature(BODY_BYTE)),
            "o": Out(stream.Signature(COMMAND)),
            "consumed": Out(16),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        byte = self.i.payload.data
        record = Signal(8 * COMMAND_BYTES)
        index = Signal(range(COMMAND_BYTES + 1))  # the place in its record of the next byte
        known = Signal()  # the record in progress has a valid opcode ...
        last_index = Signal(range(COMMAND_BYTES))  # ... and ends with this byte

        # What a first byte says of its record.
        opcode_known = Signal()
        opcode_last_index = Signal(range(COMMAND_BYTES))
        with m.Switch(byte):
            for opcode, size in COMMAND_SIZES.items():
                with m.Case(opcode):
                    m.d.comb += [opcode_known.eq(1), opcode_last_index.eq(size - 1)]

        first = index == 0
        record_known = Mux(first, opcode_known, known)
        record_last_index = Mux(first, opcode_last_index, last_index)
        ends = self.i.payload.last | (record_known & (index == record_last_index))

        take = self.i.valid & self.i.ready
        m.d.comb += [
            self.i.ready.eq(~self.o.valid | self.o.ready),
            self.o.payload.as_value().eq(record[:COMMAND.size]),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += self.consumed.eq(self.consumed + 1)
            with m.If(ends):
                m.d.sync += [self.o.valid.eq(1), index.eq(0)]
            with m.Elif(index != COMMAND_BYTES):  # an unknown record's index stops at the end
                m.d.sync += index.eq(index + 1)
            with m.If(first):
                m.d.sync += [known.eq(opcode_known), last_index.eq(opcode_last_index),
                             record.eq(byte)]  # and the rest of the record zero
            for k in range(1, COMMAND_BYTES):
                # An unknown record keeps its second byte only: the market of its rejection.
                with m.If((index == k) & (known | (k == 1))):
                    m.d.sync += record.word_select(k, 8).eq(byte)
        return m


class EventSerializer(wiring.Component):
    """Sends each event as its record bytes, for the transmitter to pack into ``DATA`` frames.

    An event's record is the first *n* bytes of its :data:`~ocee.hw.protocol.EVENT` layout, *n*
    the size of its kind's record (:data:`~ocee.hw.protocol.EVENT_CODEC`). An event of no known
    kind never comes from the engine; if one did, its header alone would be sent, so the frame
    around it stays well formed.

    Members
    -------
    i : In(stream.Signature(TAGGED_EVENT))
        Events, each with ``end``: it is the last event of its command.
    o : Out(stream.Signature(EVENT_BYTE))
        The record bytes, byte 0 first: ``first`` and ``last`` on the record's first and last
        byte, its ``length`` in bytes and the event's ``end`` on every byte.

    Latency and throughput: ``o`` is a register (a shift register holding the event), valid in
    the clock after an event is taken; the next event is taken in the clock that takes the last
    byte, so records go out back to back, one byte per clock while ``o`` is ready.

    Resources: the shift register (``8 * EVENT_BYTES`` flip-flops, each loaded or shifted),
    a byte index and the record's length.
    """

    def __init__(self) -> None:
        super().__init__({
            "i": In(stream.Signature(TAGGED_EVENT)),
            "o": Out(stream.Signature(EVENT_BYTE)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        event = self.i.payload.event
        pending = Signal(8 * EVENT_BYTES)  # the record's bytes not yet sent, the next one lowest
        index = Signal(range(EVENT_BYTES))
        length = Signal.like(self.o.payload.length)
        last_index = Signal(range(EVENT_BYTES))
        end = Signal()

        kind_length = Signal.like(length)
        with m.Switch(event.header.kind):
            for kind, size in EVENT_SIZES.items():
                with m.Case(kind):
                    m.d.comb += kind_length.eq(size)
            with m.Default():
                m.d.comb += kind_length.eq(EVENT_HEADER_BYTES)

        last = index == last_index
        m.d.comb += [
            self.o.payload.data.eq(pending[:8]),
            self.o.payload.first.eq(index == 0),
            self.o.payload.last.eq(last),
            self.o.payload.length.eq(length),
            self.o.payload.end.eq(end),
            self.i.ready.eq(~self.o.valid | (self.o.ready & last)),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.o.valid.eq(1),
                pending.eq(event),
                index.eq(0),
                length.eq(kind_length),
                last_index.eq(kind_length - 1),
                end.eq(self.i.payload.end),
            ]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(last):
                m.d.sync += self.o.valid.eq(0)
            with m.Else():
                m.d.sync += [pending.eq(pending[8:]), index.eq(index + 1)]
        return m
