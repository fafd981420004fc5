"""The link controller: the device's decisions on every frame it receives (spec: docs/link.md).

It is the gateware of :class:`~ocee.host.link.device.DeviceEmulator`'s receiving rules (``_handle``,
``_take_sequenced``, ``_control``, ``_nak``): for each frame summary from the
:class:`~.receiver.LinkReceiver` it decides, in one clock, whether the frame's commands are taken
(the command FIFO's pending bytes committed) or not (rolled back), what the transmitter must do
(drop acknowledged frames, go back on a NAK, owe an ACK, send a NAK or a STATUS), whether a
directive moves the event stream, and which counters count it. It owns the link's state: the
epoch, the next frame number expected, the lap of the last good sequenced frame, the last NAK
sent, and the status counters.

A ``RESET`` control asks the appliance for a reset of everything, the controller included (so it
cannot answer the request itself): the appliance keeps the request's tag across the reset, and the
fresh controller sends the reply (``reply_pending`` / ``reply_tag`` / ``reply_done``).
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ocee.host.link.wire import (
    CONTROL,
    LINK_VERSION,
    SET_STREAM,
    STATUS,
    ControlOp,
    DirectiveCode,
    FrameKind,
)
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.engine import STREAM_START
from ocee.hw.protocol import PROTOCOL_VERSION

from .receiver import RX_FRAME

__all__ = ["LinkController"]

_HALF = 0x8000  # a frame number d ahead of the expected one with d < _HALF is ahead, else behind

_COUNTERS = ("commands", "events", "rx_frames", "tx_frames", "framing_errors", "crc_errors",
             "overflows", "sequence_errors", "retransmits", "line_errors")


class LinkController(wiring.Component):
    """Decides on each received frame and keeps the link's state and counters.

    Parameters
    ----------
    config
        The engine's capacities, reported in the status's ``DEVICE_INFO``.
    fifo_bytes, max_frame, tx_window
        The link's parameters, reported in the status (the credit window is ``fifo_bytes``).
    version
        The protocol version reported (tests use another to see the host refuse it).

    Members
    -------
    i_frame : ``In(stream.Signature(RX_FRAME))``
        Frame summaries; each is taken in the clock it is offered.
    fifo_commit, fifo_rollback : ``Out(1)``
        The command FIFO's pending bytes (the frame's payload) are taken or discarded.
    busy : ``In(1)``
        Commands or events are still in the device (FIFO, engine, event framing): a directive
        must wait.
    consumed : ``In(16)``
        Command bytes taken out of the FIFO: the credit is ``consumed + fifo_bytes``.
    o_set_stream : ``Out(stream.Signature(STREAM_START))``
        A ``SET_STREAM`` directive for the engine.
    epoch, rx_expected, credit : ``Out``
        For the transmitter's headers.
    peer_ack_valid, peer_ack, nak_valid, nak_ack, nak_lap, owe_ack, send_nak_valid,
    send_nak_lap, send_status_valid, status : ``Out``
        Requests to the transmitter (strobes with their arguments).
    tx_frame, retransmit, command_taken, event_sent, line_error : ``In(1)``
        Strobes counted in the status.
    event_seq, batch : ``In(32)``
        The engine's next event number and batch number, for the status.
    boot_id : ``In(32)``
        Drawn by the appliance at every reset.
    reset_request : ``Out(1)``
        A ``RESET`` control was accepted: the appliance resets everything.
    reset_tag : ``Out(16)``
        Beside ``reset_request``: the request's tag, for the reply after the reset.
    reply_pending, reply_tag : ``In``
        After such a reset: the tag of the ``RESET`` request to answer.
    reply_done : ``Out(1)``
        The reply has been sent.
    """

    def __init__(self, config: MatchingConfig, *, fifo_bytes: int, max_frame: int, tx_window: int,
                 version: int = PROTOCOL_VERSION) -> None:
        self.config = config
        self.fifo_bytes = fifo_bytes
        self.max_frame = max_frame
        self.tx_window = tx_window
        self.version = version
        super().__init__({
            "i_frame": In(stream.Signature(RX_FRAME)),
            "fifo_commit": Out(1),
            "fifo_rollback": Out(1),
            "busy": In(1),
            "consumed": In(16),
            "o_set_stream": Out(stream.Signature(STREAM_START)),
            "epoch": Out(8),
            "rx_expected": Out(16),
            "credit": Out(16),
            "peer_ack_valid": Out(1),
            "peer_ack": Out(16),
            "nak_valid": Out(1),
            "nak_ack": Out(16),
            "nak_lap": Out(3),
            "owe_ack": Out(1),
            "send_nak_valid": Out(1),
            "send_nak_lap": Out(3),
            "send_status_valid": Out(1),
            "status": Out(STATUS),
            "tx_frame": In(1),
            "retransmit": In(1),
            "command_taken": In(1),
            "event_sent": In(1),
            "line_error": In(1),
            "event_seq": In(32),
            "batch": In(32),
            "boot_id": In(32),
            "reset_request": Out(1),
            "reset_tag": Out(16),
            "reply_pending": In(1),
            "reply_tag": In(16),
            "reply_done": Out(1),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        cfg = self.config
        counters = {name: Signal(32, name=name) for name in _COUNTERS}

        def count(name: str) -> None:
            m.d.sync += counters[name].eq(counters[name] + 1)

        # Strobes from elsewhere, counted here. Several may land in one clock: each counter
        # has its own adder.
        for strobe, name in ((self.tx_frame, "tx_frames"), (self.retransmit, "retransmits"),
                             (self.command_taken, "commands"), (self.event_sent, "events"),
                             (self.line_error, "line_errors")):
            with m.If(strobe):
                count(name)

        epoch = self.epoch
        expected = self.rx_expected
        rx_lap = Signal(3)  # the lap of the last good sequenced frame
        nak_sent = Signal()  # a NAK has been sent for (nak_expected, nak_sent_lap)
        nak_expected = Signal(16)
        nak_sent_lap = Signal(3)
        m.d.comb += self.credit.eq(self.consumed + self.fifo_bytes)

        def nak(lap: Any) -> None:
            """Ask for frame `expected` again, once per (expected, lap)."""
            with m.If(~nak_sent | (nak_expected != expected) | (nak_sent_lap != lap)):
                m.d.sync += [nak_sent.eq(1), nak_expected.eq(expected), nak_sent_lap.eq(lap)]
                m.d.comb += [self.send_nak_valid.eq(1), self.send_nak_lap.eq(lap)]

        def take() -> None:
            """The sequenced frame is taken: the next one is expected, and acknowledged."""
            m.d.sync += expected.eq(expected + 1)
            m.d.comb += self.owe_ack.eq(1)

        # The status record, sent one clock after the request so that it shows the request's
        # effect (an OPEN's epoch).
        status_due = Signal()
        status_tag = Signal(16)
        status = self.status
        m.d.comb += [
            status.tag.eq(status_tag),
            status.info.version.eq(self.version),
            status.info.markets.eq(cfg.markets),
            status.info.log2_levels.eq(cfg.log2_levels),
            status.info.log2_orders.eq(cfg.log2_orders),
            status.info.log2_ids.eq(cfg.log2_ids),
            status.epoch.eq(epoch),
            status.fifo_bytes.eq(self.fifo_bytes),
            status.max_frame.eq(self.max_frame),
            status.tx_window.eq(self.tx_window),
            status.link_version.eq(LINK_VERSION),
            status.boot_id.eq(self.boot_id),
            status.event_seq.eq(self.event_seq),
            status.batch.eq(self.batch),
            self.send_status_valid.eq(status_due),
        ]
        for name in _COUNTERS:
            m.d.comb += getattr(status, name).eq(counters[name])
        with m.If(status_due):
            m.d.sync += status_due.eq(0)

        # The reply to a RESET request, from the other side of the reset.
        with m.If(self.reply_pending & ~status_due):
            m.d.sync += [status_due.eq(1), status_tag.eq(self.reply_tag)]
            m.d.comb += self.reply_done.eq(1)

        # A directive for the engine waits here until the engine takes it.
        with m.If(self.o_set_stream.ready):
            m.d.sync += self.o_set_stream.valid.eq(0)

        frame = self.i_frame.payload
        header = frame.header
        kind = header.kind.as_value()
        control = data.View(CONTROL, frame.args[:CONTROL.size])
        directive = data.View(SET_STREAM, frame.args[:SET_STREAM.size])
        sequenced = (kind == FrameKind.DATA.value) | (kind == FrameKind.DIRECTIVE.value)
        known = (kind >= FrameKind.DATA.value) & (kind <= FrameKind.STATUS.value)
        distance = Signal(16)
        m.d.comb += distance.eq(header.seq - expected)

        m.d.comb += self.i_frame.ready.eq(~self.reply_pending)
        with m.If(self.i_frame.valid & self.i_frame.ready):
            m.d.comb += self.fifo_rollback.eq(1)  # unless the frame's commands are taken below
            with m.If(frame.framing_error | frame.crc_error | ~known):
                with m.If(frame.crc_error & ~frame.framing_error & known):
                    count("crc_errors")
                with m.Else():
                    count("framing_errors")
                with m.If(epoch != 0):
                    nak(rx_lap)  # the damaged frame may have been the last of a burst
            with m.Else():
                count("rx_frames")
                with m.If(kind == FrameKind.CONTROL.value):
                    with m.If(frame.length != CONTROL.size // 8):
                        count("framing_errors")
                    with m.Else():
                        fresh = control.boot_id == self.boot_id
                        op = control.op.as_value()
                        reset = (op == ControlOp.RESET.value) & fresh & (control.arg == epoch)
                        with m.If((op == ControlOp.OPEN.value) & fresh & (epoch == 0)
                                  & (control.arg != 0)):
                            m.d.sync += epoch.eq(control.arg)
                        with m.If(reset):
                            m.d.comb += [self.reset_request.eq(1),  # the reply comes after it
                                         self.reset_tag.eq(control.tag)]
                        with m.Else():
                            m.d.sync += [status_due.eq(1), status_tag.eq(control.tag)]
                with m.Elif(kind == FrameKind.STATUS.value):
                    count("framing_errors")  # a kind the device never receives
                with m.Elif((epoch == 0) | (header.epoch != epoch)):
                    with m.If(sequenced):
                        count("sequence_errors")
                        m.d.comb += self.owe_ack.eq(1)  # carries our epoch: 0 after a reset
                    with m.Elif(header.poll):
                        m.d.comb += self.owe_ack.eq(1)
                with m.Else():
                    m.d.comb += [self.peer_ack_valid.eq(1), self.peer_ack.eq(header.ack)]
                    with m.If(kind == FrameKind.NAK.value):
                        m.d.comb += [self.nak_valid.eq(1), self.nak_ack.eq(header.ack),
                                     self.nak_lap.eq(header.lap)]
                    with m.Elif(kind == FrameKind.ACK.value):
                        with m.If(header.poll):
                            m.d.comb += self.owe_ack.eq(1)
                    with m.Else():
                        m.d.sync += rx_lap.eq(header.lap)
                        with m.If(distance != 0):
                            count("sequence_errors")
                            with m.If(distance < _HALF):
                                nak(header.lap)  # a frame before this one was lost
                            with m.Else():
                                m.d.comb += self.owe_ack.eq(1)  # a retransmission: ack again
                        with m.Elif(kind == FrameKind.DATA.value):
                            with m.If(frame.split_error):
                                count("framing_errors")
                            with m.Elif(frame.overflow):
                                count("overflows")  # the host overran its credit: not taken
                            with m.Else():
                                m.d.comb += [self.fifo_commit.eq(1), self.fifo_rollback.eq(0)]
                                take()
                        with m.Elif(self.busy | self.o_set_stream.valid):
                            count("overflows")  # a directive waits for the device to be idle
                        with m.Elif(directive.code.as_value() == DirectiveCode.SET_STREAM.value):
                            with m.If(frame.length != SET_STREAM.size // 8):
                                count("framing_errors")
                            with m.Else():
                                m.d.sync += [self.o_set_stream.valid.eq(1),
                                             self.o_set_stream.payload.seq.eq(directive.seq),
                                             self.o_set_stream.payload.batch.eq(directive.batch)]
                                take()
                        with m.Else():
                            take()  # an unknown directive is taken and does nothing
        return m
