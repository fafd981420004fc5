"""The appliance: the engine core behind the host link, as one block with a byte stream each way.

This is the device a board carries (under a UART, :mod:`ocee.hw.boards`) and the virtual board
simulates (bytes straight from a pseudo-terminal or a socket, :mod:`ocee.sim.board`)::

    rx ─► SlipDecoder ─► LinkReceiver ─► CommandFifo ─► CommandAssembler ─► EngineCore
                              │  summaries       ▲ commit/rollback              │ events
                              ▼                  │                              ▼
                         LinkController ─────────┘ ─── requests ──►  CommandEnds ─► EventSerializer
                              │ set stream ──► EngineCore                        │
                              └── epoch, ack, credit, status ──► LinkTransmitter ◄┘
                                                                     │
    tx ◄─ SlipEncoder ◄──────────────────────────────────────────────┘

Everything but a few registers is under a reset that a ``RESET`` control request raises (a power
cycle, as docs/link.md wants). Those registers are what must survive it: the boot id (drawn from
a free-running counter when the first byte after power-up arrives, and at every ``RESET``) and the
tag of the ``RESET`` request, which the fresh controller answers.
"""

from __future__ import annotations

from typing import Any

from amaranth import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .engine_core import EngineCore
from .hashing.batch_hasher import check_batch_hasher
from .link.command_fifo import CommandFifo
from .link.controller import LinkController
from .link.ends import CommandEnds
from .link.receiver import LinkReceiver
from .link.records import CommandAssembler, EventSerializer
from .link.slip import SlipDecoder, SlipEncoder
from .link.transmitter import LinkTransmitter
from .matching.config import MatchingConfig
from .protocol import COMMAND, PROTOCOL_VERSION

__all__ = ["Appliance"]


class _Device(Elaboratable):
    """Everything that a ``RESET`` request resets."""

    def __init__(self, appliance: Appliance) -> None:
        self.a = appliance
        self.reset_request = Signal()
        self.reset_tag = Signal(16)
        self.reply_done = Signal()
        self.boot_id = Signal(32)
        self.reply_pending = Signal()
        self.reply_tag = Signal(16)
        self.line_error = Signal()

    def elaborate(self, platform: Any) -> Module:
        a = self.a
        m = Module()
        m.submodules.decoder = decoder = SlipDecoder(max_body=a.max_frame)
        m.submodules.receiver = receiver = LinkReceiver(max_frame=a.max_frame)
        m.submodules.fifo = fifo = CommandFifo(a.fifo_bytes)
        m.submodules.assembler = assembler = CommandAssembler()
        m.submodules.core = core = EngineCore(a.config, rounds_per_cycle=a.rounds_per_cycle,
                                              hash_contexts=a.hash_contexts,
                                              hash_queue_depth=a.hash_queue_depth,
                                              hash_shared_permutation=a.hash_shared_permutation,
                                              hash_slices_per_clock=a.hash_slices_per_clock)
        m.submodules.ends = ends = CommandEnds()
        m.submodules.serializer = serializer = EventSerializer()
        m.submodules.transmitter = tx = LinkTransmitter(max_frame=a.max_frame,
                                                        tx_window=a.tx_window,
                                                        rto_cycles=a.rto_cycles)
        m.submodules.encoder = encoder = SlipEncoder()
        m.submodules.controller = ctl = LinkController(a.config, fifo_bytes=a.fifo_bytes,
                                                       max_frame=a.max_frame,
                                                       tx_window=a.tx_window, version=a.version)

        # Bytes in, frames checked, commands queued.
        wiring.connect(m, wiring.flipped(a.rx), decoder.i)
        wiring.connect(m, decoder.o, receiver.i)
        m.d.comb += [
            fifo.w_data.eq(receiver.fifo_w_data), fifo.w_last.eq(receiver.fifo_w_last),
            fifo.w_en.eq(receiver.fifo_w_en), receiver.fifo_w_free.eq(fifo.w_free),
            fifo.commit.eq(ctl.fifo_commit), fifo.rollback.eq(ctl.fifo_rollback),
        ]
        wiring.connect(m, receiver.o_frame, ctl.i_frame)
        wiring.connect(m, fifo.o, assembler.i)

        # Commands executed, events tagged and framed. A register slice between the assembler
        # and the engine: the engine's ready comes from its decision in the clock it ends a
        # command (after a block RAM's output: in the take loop, a fill's compare), and without
        # the slice it ran on through the assembler and the FIFO's read side, the appliance's
        # critical path. The slice's ready is a register; it costs a clock of latency and no
        # throughput (the assembler takes a clock per byte of a record).
        m.submodules.command_slice = command_slice = SyncFIFOBuffered(width=COMMAND.size, depth=3)
        m.d.comb += [
            command_slice.w_data.eq(assembler.o.payload), command_slice.w_en.eq(assembler.o.valid),
            assembler.o.ready.eq(command_slice.w_rdy),
            core.i_command.payload.eq(command_slice.r_data),
            core.i_command.valid.eq(command_slice.r_rdy),
            command_slice.r_en.eq(core.i_command.ready),
        ]
        wiring.connect(m, ctl.o_set_stream, core.i_set_stream)
        wiring.connect(m, core.o_event, ends.i_event)
        m.d.comb += [ends.i_first.eq(core.o_event_first), ends.idle.eq(core.idle)]
        wiring.connect(m, ends.o_event, serializer.i)
        wiring.connect(m, serializer.o, tx.i_event)
        wiring.connect(m, tx.o_body, encoder.i)
        wiring.connect(m, encoder.o, wiring.flipped(a.tx))

        # The controller's view of the rest, and its requests to the transmitter.
        busy = (fifo.level != 0) | assembler.o.valid | command_slice.r_rdy | ~core.idle \
            | ends.o_event.valid \
            | serializer.o.valid | tx.building
        m.d.comb += [
            ctl.busy.eq(busy),
            ctl.consumed.eq(assembler.consumed),
            ctl.command_taken.eq(core.i_command.valid & core.i_command.ready),
            ctl.event_sent.eq(ends.o_event.valid & ends.o_event.ready),
            ctl.event_seq.eq(core.next_seq),
            ctl.batch.eq(core.next_batch),
            ctl.tx_frame.eq(tx.tx_frame),
            ctl.retransmit.eq(tx.retransmit),
            ctl.line_error.eq(self.line_error),
            tx.epoch.eq(ctl.epoch),
            tx.rx_expected.eq(ctl.rx_expected),
            tx.credit.eq(ctl.credit),
            tx.peer_ack_valid.eq(ctl.peer_ack_valid),
            tx.peer_ack.eq(ctl.peer_ack),
            tx.nak_valid.eq(ctl.nak_valid),
            tx.nak_ack.eq(ctl.nak_ack),
            tx.nak_lap.eq(ctl.nak_lap),
            tx.owe_ack.eq(ctl.owe_ack),
            tx.send_nak_valid.eq(ctl.send_nak_valid),
            tx.send_nak_lap.eq(ctl.send_nak_lap),
            tx.send_status_valid.eq(ctl.send_status_valid),
            tx.status.eq(ctl.status),
            ctl.boot_id.eq(self.boot_id),
            ctl.reply_pending.eq(self.reply_pending),
            ctl.reply_tag.eq(self.reply_tag),
            self.reset_request.eq(ctl.reset_request),
            self.reset_tag.eq(ctl.reset_tag),
            self.reply_done.eq(ctl.reply_done),
            a.ready.eq(core.ready),
        ]
        return m


class Appliance(wiring.Component):
    """The matching appliance behind its host link.

    Parameters
    ----------
    config
        The engine's capacities (default: the ULX3S configuration).
    rounds_per_cycle, hash_contexts, hash_queue_depth, hash_shared_permutation, hash_slices_per_clock
        Keccak rounds per clock, permutations in flight, queue depth, one permutation for
        leaves and tree in the hashing stage, and the slice-serial permutation instead of the
        round ring (see :class:`~ocee.hw.engine_core.EngineCore`).
    fifo_bytes
        The command FIFO, in bytes: the host's credit window (a power of two, below 2**15).
    max_frame, tx_window
        The longest frame body, and the event frames sent before an acknowledgement is needed.
    rto_cycles
        The device's retransmission timeout, in clocks.
    version
        The protocol version reported in the status (tests report another to see it refused).

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Bytes from the host.
    tx : ``Out(stream.Signature(8))``
        Bytes to the host.
    line_error : ``In(1)``
        A strobe from the byte link's PHY: a UART framing error or overrun (a byte lost or
        garbled on the wire), counted in the status's ``line_errors``.
    ready : ``Out(1)``
        The engine's init sequence is done (the link answers status requests before that, and
        commands wait in the FIFO).
    """

    def __init__(self, config: MatchingConfig | None = None, *, rounds_per_cycle: int = 4,
                 hash_contexts: int = 1, hash_queue_depth: int = 8,
                 hash_shared_permutation: bool = False,
                 hash_slices_per_clock: int | None = None, fifo_bytes: int = 2048,
                 max_frame: int = 256, tx_window: int = 16, rto_cycles: int = 1_500_000,
                 version: int = PROTOCOL_VERSION) -> None:
        if fifo_bytes >= 1 << 15 or fifo_bytes & (fifo_bytes - 1):
            raise ValueError(f"fifo_bytes must be a power of two below 32768, not {fifo_bytes}")
        # The whole hashing stage checked here, where it is configured (a sim:// URL), not when
        # it is elaborated.
        check_batch_hasher(rounds_per_cycle, hash_queue_depth, hash_contexts,
                           slices_per_clock=hash_slices_per_clock)
        self.config = config or MatchingConfig()
        self.rounds_per_cycle = rounds_per_cycle
        self.hash_contexts = hash_contexts
        self.hash_queue_depth = hash_queue_depth
        self.hash_shared_permutation = hash_shared_permutation
        self.hash_slices_per_clock = hash_slices_per_clock
        self.fifo_bytes = fifo_bytes
        self.max_frame = max_frame
        self.tx_window = tx_window
        self.rto_cycles = rto_cycles
        self.version = version
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "line_error": In(1),
            "ready": Out(1),
        })

    def describe(self) -> str:
        """The configuration in a line, for ``ocee hw report``."""
        c = self.config
        shape = (f"Keccak {self.hash_slices_per_clock} slices/clock (slice-serial)"
                 if self.hash_slices_per_clock else
                 f"Keccak {self.rounds_per_cycle} round(s)/clock x {self.hash_contexts} "
                 f"context(s)")
        keccak = (f"{shape}, " + ("one permutation shared by leaves and tree"
                                      if self.hash_shared_permutation else
                                      "a permutation each for leaves and tree"))
        return (f"{c.markets} markets x {c.levels} levels/side, {c.orders} orders, {c.ids} ids; "
                f"{keccak}, queues {self.hash_queue_depth}; command FIFO {self.fifo_bytes} B, "
                f"frames up to {self.max_frame} B, window {self.tx_window}")

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        device = _Device(self)
        soft_reset = Signal()
        m.submodules.device = ResetInserter(soft_reset)(device)
        m.d.comb += device.line_error.eq(self.line_error)

        # The survivors of a RESET request.
        cycles = Signal(32)  # free-running: its value when a byte arrives is the boot id
        boot_drawn = Signal()
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(~boot_drawn & self.rx.valid):
            m.d.sync += [device.boot_id.eq(cycles), boot_drawn.eq(1)]
        with m.If(device.reset_request):
            m.d.sync += [soft_reset.eq(1), device.boot_id.eq(cycles), device.reply_pending.eq(1),
                         device.reply_tag.eq(device.reset_tag)]
        with m.Else():
            m.d.sync += soft_reset.eq(0)
        with m.If(device.reply_done):
            m.d.sync += device.reply_pending.eq(0)
        return m
