"""The device's sending side of the link: event records into frames, go-back-N retransmission.

The gateware of the transmitter in :class:`ocee.host.link.device.DeviceEmulator` (``_add_event``,
``_close_frame``, ``_send_queued``, ``_go_back``, ``_take_ack``, ``_send``, ``poll``; spec:
docs/link.md). Event records are packed into ``DATA`` frames as they arrive and each frame is kept
in block RAM until the host acknowledges it; the link controller (which receives the host's
frames) tells it what the host acknowledged, when to go back, and which ``NAK``, ``ACK`` and
``STATUS`` frames to send::

    i_event ─► frame builder ─► frame buffer: tx_window slots ─┐
                                   (block RAM)                  ├─► sender ─► CRC ─► o_body
    controller: status, NAK, ACK requests, peer acks ──────────┘   header built when sent
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ocee.host.link.wire import CRC_SIZE, FRAME_HEADER, HEADER_SIZE, STATUS, FrameKind

from .layouts import BODY_BYTE, EVENT_BYTE

if TYPE_CHECKING:
    from ocee.hw.protocol import ShapedEnum
else:
    from amaranth.lib.enum import Enum as ShapedEnum

__all__ = ["MAX_EVENTS_PER_FRAME", "LinkTransmitter"]

#: Event records per DATA frame: the width of ``ends``.
MAX_EVENTS_PER_FRAME = 32
_ENDS_SIZE = MAX_EVENTS_PER_FRAME // 8
_STATUS_SIZE = STATUS.size // 8


class _Phase(ShapedEnum, shape=2):
    IDLE = 0
    PREFIX = 1   # the header, then `ends` or the status record: out of the prefix shift register
    RECORDS = 2  # a DATA frame's records: out of the frame buffer
    CRC = 3


class LinkTransmitter(wiring.Component):
    """Packs event records into ``DATA`` frames, keeps them until acknowledged, sends every frame.

    Parameters
    ----------
    max_frame
        The longest body sent, header to CRC (128 to 4096, as the emulator's): a ``DATA`` frame
        holds up to ``max_frame - 16`` bytes of records.
    tx_window
        Frames kept for retransmission (a power of two, 1 to 128: a frame's slot is the low bits
        of its ``seq``). The frame being built takes a slot too.
    rto_cycles
        The retransmission timeout in clocks: it must exceed a round trip of a full window.
    ack_delay_cycles
        How long an owed ``ACK`` waits for a frame that would carry the acknowledgement anyway:
        commands just received produce events within this time, and their frame carries the ack
        and the credit, so an ``ACK`` goes out only when no events come.

    Members
    -------
    i_event : In(stream.Signature(EVENT_BYTE))
        Event records, a byte at a time, as the event serializer sends them. ``ready`` depends
        combinationally on ``valid``, ``first`` and ``length``.
    o_body : Out(stream.Signature(BODY_BYTE))
        Frame bodies: 8-byte header, payload, CRC-32 little-endian, ``last`` on the CRC's last
        byte. A SLIP encoder turns them into wire bytes.
    epoch, rx_expected, credit : In(8), In(16), In(16)
        The link controller's state, copied into the ``epoch``, ``ack`` and ``credit`` fields of
        each header in the clock its frame is chosen for sending.
    peer_ack_valid, peer_ack : In(1), In(16)
        A strobe: a good frame of the current epoch acknowledged every frame before ``peer_ack``.
        Those frames are dropped; an ``ack`` outside the range of the frames sent and not yet
        acknowledged is ignored.
    nak_valid, nak_ack, nak_lap : In(1), In(16), In(3)
        A strobe: a ``NAK`` arrived. It triggers a go-back if ``nak_ack`` is the oldest
        unacknowledged frame (after a ``peer_ack`` in the same clock) and ``nak_lap`` is the
        current lap; a ``NAK`` about an earlier lap is already answered.
    owe_ack : In(1)
        A strobe: the controller owes the host an acknowledgement. Any frame chosen after the
        strobe pays it; an ``ACK`` frame goes out once it has been owed for ``ack_delay_cycles``
        clocks in which no frame was being built. An ``ACK`` is owed as well while the epoch is
        not 0 and ``credit`` differs from the one in the last frame sent.
    send_nak_valid, send_nak_lap : In(1), In(3)
        A strobe: send a ``NAK`` about ``send_nak_lap``. One is kept pending, the newest.
    send_status_valid, status : In(1), In(STATUS)
        A strobe: send a ``STATUS`` frame with ``status`` (latched in that clock) as payload.
        One is kept pending, the newest: a request made while the previous one still waits
        replaces it (a request during a reply's transmission is sent after it).
    tx_frame : Out(1)
        A strobe per frame started, of any kind (the ``tx_frames`` counter), in the clock after
        the frame is chosen.
    retransmit : Out(1)
        A strobe per ``DATA`` frame started again (the ``retransmits`` counter), with its
        ``tx_frame``.
    building : Out(1)
        A frame holds events that are not yet closed into a frame.

    Framing: a ``DATA`` payload is ``ends`` (bit *i*: record *i* is the last event of its
    command) then up to 32 records. A frame is closed when it holds 32 records, when the next
    record would not fit, and when no byte is offered at a record boundary after a record that
    ends its command (so an isolated command's events leave at once, and a pause in the middle
    of a command does not split its events across frames). While every slot holds a frame that
    is not acknowledged, ``i_event`` is not ready: the engine stalls.

    Sending, by priority: ``STATUS``, then ``NAK``, then ``DATA`` (the frames not yet sent in
    this lap, oldest first: after a go-back every unacknowledged frame again, in order), then
    ``ACK``. Frames are numbered 0, 1, 2, ... mod 2**16 from reset. A go-back (on a ``NAK`` as
    above, or when the oldest unacknowledged frame has waited ``rto_cycles`` clocks) increments
    the lap; frames acknowledged during a go-back are not sent again.

    Timer: one timer, restarted whenever the oldest unacknowledged frame is (re)sent or changes
    (an acknowledgement, as TCP does), and at each go-back. After an acknowledgement the new
    oldest frame may have been sent earlier than the restart: it times out late, never early.

    Throughput: one body byte per clock while ``o_body.ready``, and no idle clock between
    frames (the next frame is chosen in the clock the last CRC byte is taken): a frame of ``n``
    body bytes takes ``n`` clocks. One event byte per clock into the frame being built, none
    lost at a frame boundary (the full frame is closed and the next one started in the same
    clock). Latency, with the sender idle: an isolated command's frame closes in the clock after
    its last event byte and its first body byte is offered two clocks later; a ``STATUS`` or
    ``NAK`` is offered two clocks after its request.

    Resources: the frame buffer, ``tx_window`` rows of ``max_frame - 16`` bytes each rounded up
    to a power of two (16 x 256 bytes by default: two ECP5 DP16KD); per slot, ``ends`` and the
    record bytes in distributed RAM; the ``STATUS`` record twice in registers (the one latched
    and the one being sent, 2 x 496 bits). The defaults, out of context on an LFE5U-85F-6
    (nextpnr seed 1): about 1,640 LUT4, 1,330 flip-flops, 2 DP16KD, 75 MHz; the longest path
    runs from an acknowledgement through the NAK check to the go-back.
    """

    def __init__(self, *, max_frame: int = 256, tx_window: int = 16, rto_cycles: int,
                 ack_delay_cycles: int = 256) -> None:
        if isinstance(max_frame, bool) or not isinstance(max_frame, int) \
                or not 128 <= max_frame <= 4096:
            raise ValueError(f"max_frame must be between 128 and 4096, not {max_frame!r}")
        if isinstance(tx_window, bool) or not isinstance(tx_window, int) \
                or not 1 <= tx_window <= 128 or tx_window & (tx_window - 1):
            raise ValueError(f"tx_window must be a power of two between 1 and 128, "
                             f"not {tx_window!r}")
        if isinstance(rto_cycles, bool) or not isinstance(rto_cycles, int) or rto_cycles < 1:
            raise ValueError(f"rto_cycles must be a positive integer, not {rto_cycles!r}")
        if isinstance(ack_delay_cycles, bool) or not isinstance(ack_delay_cycles, int) \
                or ack_delay_cycles < 0:
            raise ValueError(f"ack_delay_cycles must be a non-negative integer, "
                             f"not {ack_delay_cycles!r}")
        self.max_frame = max_frame
        self.tx_window = tx_window
        self.rto_cycles = rto_cycles
        self.ack_delay_cycles = ack_delay_cycles
        #: Bytes of event records a DATA frame holds.
        self.record_bytes = max_frame - HEADER_SIZE - _ENDS_SIZE - CRC_SIZE
        super().__init__({
            "i_event": In(stream.Signature(EVENT_BYTE)),
            "o_body": Out(stream.Signature(BODY_BYTE)),
            "epoch": In(8),
            "rx_expected": In(16),
            "credit": In(16),
            "peer_ack_valid": In(1),
            "peer_ack": In(16),
            "nak_valid": In(1),
            "nak_ack": In(16),
            "nak_lap": In(3),
            "owe_ack": In(1),
            "send_nak_valid": In(1),
            "send_nak_lap": In(3),
            "send_status_valid": In(1),
            "status": In(STATUS),
            "tx_frame": Out(1),
            "retransmit": Out(1),
            "building": Out(1),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        window = self.tx_window
        record_bytes = self.record_bytes
        slot_bits = (window - 1).bit_length()
        offset_bits = (record_bytes - 1).bit_length()

        def slot(seq: Any) -> Any:
            return seq[:slot_bits]

        # The frame buffer: slot s holds the records of the frames whose seq is s mod tx_window,
        # at rows Cat(offset, s). Per slot, `ends` and the record bytes, written when it closes.
        m.submodules.buffer = buffer = Memory(shape=8, depth=window << offset_bits, init=[])
        buffer_write = buffer.write_port()
        buffer_read = buffer.read_port()
        slot_info = data.StructLayout({"ends": MAX_EVENTS_PER_FRAME,
                                       "length": range(record_bytes + 1)})
        m.submodules.slot_infos = slot_infos = Memory(shape=slot_info, depth=window, init=[])
        info_write = slot_infos.write_port()
        info_read = slot_infos.read_port(domain="comb")

        # Frames by seq, mod 2**16: acknowledged < oldest <= sent in this lap < send_seq <= never
        # sent < fresh_seq <= closed, not sent < next_seq, the frame being built (if `building`).
        oldest = Signal(16)
        send_seq = Signal(16)
        fresh_seq = Signal(16)
        next_seq = Signal(16)
        lap = Signal(3)

        # Acknowledgements and go-backs -----------------------------------------------------------

        unacked_sent = Signal(16)
        ack_distance = Signal(16)
        ack_taken = Signal()
        oldest_next = Signal(16)
        m.d.comb += [
            unacked_sent.eq(fresh_seq - oldest),
            ack_distance.eq(self.peer_ack - oldest),
            ack_taken.eq(self.peer_ack_valid & (ack_distance != 0)
                         & (ack_distance <= unacked_sent)),
            oldest_next.eq(Mux(ack_taken, self.peer_ack, oldest)),
        ]
        timer = Signal(range(self.rto_cycles))
        timed_out = Signal()
        nak_taken = Signal()
        go_back = Signal()
        m.d.comb += [
            timed_out.eq((unacked_sent != 0) & (timer == self.rto_cycles - 1)),
            # Judged after this clock's ack, as the emulator takes a NAK's ack field first.
            nak_taken.eq(self.nak_valid & (self.nak_ack == oldest_next)
                         & (self.nak_lap == lap) & (fresh_seq != oldest_next)),
            go_back.eq(timed_out | nak_taken),
        ]
        m.d.sync += [oldest.eq(oldest_next), lap.eq(lap + go_back)]

        # Frame builder ----------------------------------------------------------------------------

        building = Signal()
        in_record = Signal()  # a record's first byte is in, its last is not
        last_ended = Signal()  # the frame's latest complete record ends its command
        write_offset = Signal(range(record_bytes + 1))
        events = Signal(range(MAX_EVENTS_PER_FRAME))
        ends = Signal(MAX_EVENTS_PER_FRAME)
        sending_data = Signal()  # the sender reads slot(sending_seq) of the buffer
        sending_seq = Signal(16)
        event = self.i_event.payload

        space_left = Signal(range(record_bytes + 1), init=record_bytes)  # record bytes free
        in_use = Signal(16)  # slots held by closed frames
        fits = Signal()
        close_before = Signal()  # close the frame being built before this clock's byte
        starting = Signal()  # this clock's byte would start a new frame
        byte_seq = Signal(16)
        room = Signal()
        # `fits` and `room` come straight from registers, not through `close_before`: they are
        # on the path to `i_event.ready`, which the serializer sees in the same clock.
        m.d.comb += [
            fits.eq(event.length <= space_left),
            close_before.eq(building & ~in_record & Mux(
                self.i_event.valid, event.first & ~fits, last_ended)),
            starting.eq(~building | close_before),
            byte_seq.eq(next_seq + close_before),
            in_use.eq(next_seq - oldest),
            # The new frame needs a slot: one not held by an unacknowledged frame, nor by an
            # acknowledged one whose retransmission is still being read out of it.
            room.eq(Mux(close_before,
                        (in_use < window - 1)
                        & ~(sending_data & (slot(sending_seq) == slot(next_seq + 1))),
                        (in_use < window)
                        & ~(sending_data & (slot(sending_seq) == slot(next_seq))))),
            self.i_event.ready.eq(~starting | room),
            self.building.eq(building),
        ]
        taken = self.i_event.valid & self.i_event.ready
        byte_offset = Mux(starting, 0, write_offset)
        byte_events = Mux(starting, 0, events)
        byte_ends = Mux(starting, 0, ends)
        ends_after = Signal.like(ends)
        m.d.comb += ends_after.eq(byte_ends | (event.end << byte_events))
        record_done = taken & event.last
        close_after = record_done & (byte_events == MAX_EVENTS_PER_FRAME - 1)
        m.d.comb += [
            buffer_write.addr.eq(Cat(byte_offset[:offset_bits], slot(byte_seq))),
            buffer_write.data.eq(event.data),
            buffer_write.en.eq(taken),
            info_write.addr.eq(slot(next_seq)),
            info_write.en.eq(close_before | close_after),
        ]
        with m.If(close_after):
            m.d.comb += [info_write.data.ends.eq(ends_after),
                         info_write.data.length.eq(byte_offset + 1)]
        with m.Else():
            m.d.comb += [info_write.data.ends.eq(ends), info_write.data.length.eq(write_offset)]
        m.d.sync += next_seq.eq(next_seq + (close_before | close_after))
        with m.If(taken):
            m.d.sync += [
                building.eq(~close_after),
                in_record.eq(~event.last),
                write_offset.eq(byte_offset + 1),
                space_left.eq(Mux(starting, record_bytes, space_left) - 1),
                events.eq(byte_events + event.last),
                ends.eq(Mux(event.last, ends_after, byte_ends)),
            ]
            with m.If(event.last):
                m.d.sync += last_ended.eq(event.end)
        with m.Elif(close_before):
            m.d.sync += building.eq(0)

        # What to send next ------------------------------------------------------------------------

        status_pending = Signal()
        status_record = Signal(STATUS)
        nak_pending = Signal()
        nak_lap = Signal(3)
        ack_owed = Signal()
        credit_sent = Signal(16)
        ack_wait = Signal(range(self.ack_delay_cycles + 1))

        phase = Signal(_Phase)
        crc_index = Signal(2)
        transfer = self.o_body.valid & self.o_body.ready
        frame_ends = (phase == _Phase.CRC) & (crc_index == CRC_SIZE - 1) & self.o_body.ready
        choosing = (phase == _Phase.IDLE) | frame_ends

        ack_wanted = Signal()
        ack_due = Signal()
        m.d.comb += [
            ack_wanted.eq(ack_owed | ((self.epoch != 0) & (self.credit != credit_sent))),
            # Wait while a frame is built: it will carry the acknowledgement and the credit.
            ack_due.eq(ack_wanted & ~building & (ack_wait == self.ack_delay_cycles)),
        ]
        pick_status = Signal()
        pick_nak = Signal()
        pick_data = Signal()
        pick_ack = Signal()
        pick = Signal()
        m.d.comb += [
            pick_status.eq(choosing & status_pending),
            pick_nak.eq(choosing & ~status_pending & nak_pending),
            pick_data.eq(choosing & ~status_pending & ~nak_pending & (send_seq != next_seq)),
            pick_ack.eq(choosing & ~status_pending & ~nak_pending & (send_seq == next_seq)
                        & ack_due),
            pick.eq(pick_status | pick_nak | pick_data | pick_ack),
        ]

        with m.If(self.send_status_valid):
            m.d.sync += [status_pending.eq(1), status_record.eq(self.status)]
        with m.Elif(pick_status):
            m.d.sync += status_pending.eq(0)
        with m.If(self.send_nak_valid):
            m.d.sync += [nak_pending.eq(1), nak_lap.eq(self.send_nak_lap)]
        with m.Elif(pick_nak):
            m.d.sync += nak_pending.eq(0)
        # Every frame carries the acknowledgement; one owed in the clock a frame is chosen may
        # be for a rx_expected that frame does not yet carry.
        m.d.sync += ack_owed.eq(self.owe_ack | (ack_owed & ~pick))
        with m.If(pick):
            m.d.sync += credit_sent.eq(self.credit)
        with m.If(pick | ~ack_wanted | building):
            m.d.sync += ack_wait.eq(0)
        with m.Elif(ack_wait != self.ack_delay_cycles):
            m.d.sync += ack_wait.eq(ack_wait + 1)

        # Sequence numbers after this clock's choice, ack and go-back.
        # Whether the ack passes send_seq, with and without this clock's choice, computed apart
        # from the choice (a long path otherwise).
        sent_this_lap = Signal(16)
        acked_unsent = Signal()
        m.d.comb += [
            sent_this_lap.eq(send_seq - oldest),
            acked_unsent.eq(Mux(pick_data, sent_this_lap + 1 < ack_distance,
                                sent_this_lap < ack_distance)),
        ]
        with m.If(go_back):
            m.d.sync += send_seq.eq(oldest_next)
        with m.Elif(ack_taken & acked_unsent):
            m.d.sync += send_seq.eq(self.peer_ack)  # acknowledged before being sent again
        with m.Else():
            m.d.sync += send_seq.eq(send_seq + pick_data)
        first_send = pick_data & (send_seq == fresh_seq)
        m.d.sync += [
            fresh_seq.eq(fresh_seq + first_send),
            self.tx_frame.eq(pick),
            self.retransmit.eq(pick_data & ~first_send),
        ]
        with m.If(go_back | ack_taken | (pick_data & (send_seq == oldest)) | (unacked_sent == 0)):
            m.d.sync += timer.eq(0)
        with m.Else():
            m.d.sync += timer.eq(timer + 1)

        # Sender --------------------------------------------------------------------------------

        header = Signal(FRAME_HEADER)
        m.d.comb += [
            header.epoch.eq(self.epoch),
            header.ack.eq(self.rx_expected),
            header.credit.eq(self.credit),
        ]
        with m.If(pick_status):
            m.d.comb += header.kind.eq(FrameKind.STATUS)
        with m.Elif(pick_nak):
            m.d.comb += [header.kind.eq(FrameKind.NAK), header.lap.eq(nak_lap)]
        with m.Elif(pick_data):
            m.d.comb += [header.kind.eq(FrameKind.DATA), header.lap.eq(lap),
                         header.seq.eq(send_seq)]
        with m.Else():
            m.d.comb += header.kind.eq(FrameKind.ACK)

        prefix = Signal(8 * (HEADER_SIZE + _STATUS_SIZE))  # the next byte is prefix[:8]
        prefix_left = Signal(range(HEADER_SIZE + _STATUS_SIZE + 1))  # counting the offered byte
        records_left = Signal(range(record_bytes + 1))  # ... after the prefix
        record_offset = Signal(offset_bits)  # the offered record byte's row in its slot
        m.d.comb += info_read.addr.eq(slot(send_seq))

        m.submodules.crc = crc_unit = crc.catalog.CRC32_ISO_HDLC(data_width=8).create()
        m.d.comb += [
            crc_unit.start.eq(pick),
            crc_unit.data.eq(self.o_body.payload.data),
            crc_unit.valid.eq(transfer & (phase != _Phase.CRC)),
        ]
        # The buffer row of the record byte offered in the next clock: read one clock ahead.
        reading_on = (phase == _Phase.RECORDS) & self.o_body.ready
        m.d.comb += buffer_read.addr.eq(
            Cat(Mux(reading_on, record_offset + 1, record_offset)[:offset_bits],
                slot(sending_seq)))

        with m.Switch(phase):
            with m.Case(_Phase.PREFIX):
                m.d.comb += self.o_body.payload.data.eq(prefix[:8])
            with m.Case(_Phase.RECORDS):
                m.d.comb += self.o_body.payload.data.eq(buffer_read.data)
            with m.Case(_Phase.CRC):
                m.d.comb += self.o_body.payload.data.eq(crc_unit.crc.word_select(crc_index, 8))
        m.d.comb += [
            self.o_body.valid.eq(phase != _Phase.IDLE),
            self.o_body.payload.last.eq((phase == _Phase.CRC) & (crc_index == CRC_SIZE - 1)),
        ]

        with m.If(transfer):
            with m.Switch(phase):
                with m.Case(_Phase.PREFIX):
                    m.d.sync += [prefix.eq(prefix[8:]), prefix_left.eq(prefix_left - 1)]
                    with m.If(prefix_left == 1):
                        m.d.sync += phase.eq(Mux(records_left != 0, _Phase.RECORDS, _Phase.CRC))
                with m.Case(_Phase.RECORDS):
                    m.d.sync += [record_offset.eq(record_offset + 1),
                                 records_left.eq(records_left - 1)]
                    with m.If(records_left == 1):
                        m.d.sync += [phase.eq(_Phase.CRC), sending_data.eq(0)]
                with m.Case(_Phase.CRC):
                    m.d.sync += crc_index.eq(crc_index + 1)
                    with m.If(crc_index == CRC_SIZE - 1):
                        m.d.sync += phase.eq(_Phase.IDLE)
        with m.If(pick):
            m.d.sync += [phase.eq(_Phase.PREFIX), crc_index.eq(0), record_offset.eq(0),
                         sending_data.eq(pick_data), sending_seq.eq(send_seq)]
            with m.If(pick_status):
                m.d.sync += [prefix.eq(Cat(header, status_record)),
                             prefix_left.eq(HEADER_SIZE + _STATUS_SIZE), records_left.eq(0)]
            with m.Elif(pick_data):
                m.d.sync += [prefix.eq(Cat(header, info_read.data.ends)),
                             prefix_left.eq(HEADER_SIZE + _ENDS_SIZE),
                             records_left.eq(info_read.data.length)]
            with m.Else():
                m.d.sync += [prefix.eq(header), prefix_left.eq(HEADER_SIZE), records_left.eq(0)]
        return m
