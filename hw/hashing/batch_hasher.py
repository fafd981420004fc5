"""The hashing stage: the event stream passes through, each event hashed in line.

Placed behind the matching engine, it forwards every event unchanged, hashes each one into its
leaf (:class:`LeafHasher`) and folds the leaves into the batch's root (:class:`BatchAccumulator`).
A ``batch_closed`` event from the engine is held until the root of everything before it is
known, and leaves with the accumulator's count and root in place of its own. An event of kind 0
(no event kind: the engine's restart marker after a set-stream) is not forwarded: it drops the
batch in progress, in order behind the leaves before it.
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import EVENT, EventKind
from .accumulator import ACCUMULATOR_INPUT, BatchAccumulator
from .keccak256 import check_ring
from .keccak_slices import check_slices_per_clock
from .leaf_hasher import LeafHasher
from .shared_permutation import SharedPermutation

__all__ = ["BatchHasher", "check_batch_hasher"]


def check_batch_hasher(rounds_per_cycle: int = 1, queue_depth: int = 8, contexts: int = 1, *,
                       slices_per_clock: int | None = None) -> None:
    """Raise ValueError unless the arguments make a :class:`BatchHasher` (checked where a
    design is configured, before any of its blocks is built)."""
    if queue_depth < 2:
        raise ValueError(f"queue_depth must be at least 2, not {queue_depth}")
    if slices_per_clock is None:
        check_ring(rounds_per_cycle, contexts)
    else:
        check_slices_per_clock(slices_per_clock, contexts)


class BatchHasher(wiring.Component):
    """Forwards events, hashing each into the batch's Merkle tree; fills in batch roots.

    Members
    -------
    i_event : In(stream.Signature(EVENT))
        Events from the matching engine, ``batch_closed`` ones with any count and root.
    o_event : Out(stream.Signature(EVENT))
        The same events in the same order; ``batch_closed`` with the batch's count and root.

    An event is taken when the output and the leaf hasher can both take it. Leaves queue for the
    accumulator (``queue_depth`` entries), so leaf hashing and the tree's pair hashing overlap:
    the event rate is the slower of the two, one Keccak permutation per event each, and each
    has its own permutation of ``rounds_per_cycle`` rounds per stage and ``contexts`` stages:
    one event per ``24 // (rounds_per_cycle * contexts)`` clocks. With ``shared_permutation``
    the two share one permutation (:class:`SharedPermutation`): a ring less, and two
    permutations per event, so one event per ``2 * 24 // (rounds_per_cycle * contexts)`` clocks
    (boards, whose host link is the bound). A ``batch_closed`` event waits for the leaves in
    flight and the fold of the frontier.
    """

    def __init__(self, rounds_per_cycle: int = 1, queue_depth: int = 8, contexts: int = 1, *,
                 shared_permutation: bool = False, slices_per_clock: int | None = None) -> None:
        check_batch_hasher(rounds_per_cycle, queue_depth, contexts,
                           slices_per_clock=slices_per_clock)
        self.queue_depth = queue_depth
        own = not shared_permutation
        self.permutation = (None if own else
                            SharedPermutation(2, rounds_per_cycle, contexts,
                                              slices_per_clock=slices_per_clock))
        self.leaf_hasher = LeafHasher(rounds_per_cycle, contexts, own_permutation=own,
                                      slices_per_clock=slices_per_clock)
        # The stage's queue depth bounds the accumulator's pair-hash queue too, so one parameter
        # sizes the stage's wide (258- and 512-bit) queues.
        self.accumulator = BatchAccumulator(rounds_per_cycle, contexts,
                                            max_pending=min(contexts + 4, queue_depth),
                                            own_permutation=own,
                                            slices_per_clock=slices_per_clock)
        super().__init__({
            "i_event": In(stream.Signature(EVENT)),
            "o_event": Out(stream.Signature(EVENT)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.leaf_hasher = hasher = self.leaf_hasher
        m.submodules.accumulator = acc = self.accumulator
        if self.permutation is not None:
            m.submodules.permutation = shared = self.permutation
            wiring.connect(m, hasher.permutation, shared.user[0])
            wiring.connect(m, acc.permutation, shared.user[1])
        # Leaves and close markers queue for the accumulator in order, so the leaf hasher goes on
        # with the next event while the accumulator carries the last leaf up the tree.
        m.submodules.queue = queue = SyncFIFOBuffered(width=ACCUMULATOR_INPUT.size,
                                                      depth=self.queue_depth)
        queued = data.View(ACCUMULATOR_INPUT, queue.r_data)
        m.d.comb += [
            acc.i_item.payload.eq(queued),
            acc.i_item.valid.eq(queue.r_rdy),
            queue.r_en.eq(acc.i_item.ready),
        ]

        event = self.i_event.payload
        is_batch = event.header.kind == EventKind.BATCH_CLOSED
        is_restart = event.header.kind.as_value() == 0
        # Events in the leaf hasher whose leaves are not yet queued (its ring, its output).
        in_flight = Signal(range(self.leaf_hasher.capacity() + 1))
        item = data.View(ACCUMULATOR_INPUT, queue.w_data)
        m.d.comb += [
            hasher.i_event.payload.eq(event),
            item.leaf.eq(hasher.o_leaf.payload),
            queue.w_en.eq(hasher.o_leaf.valid),
            hasher.o_leaf.ready.eq(queue.w_rdy),
        ]
        leaf_queued = hasher.o_leaf.valid & queue.w_rdy

        with m.FSM():
            with m.State("PASS"):
                with m.If(~is_batch & ~is_restart):
                    m.d.comb += [
                        hasher.i_event.valid.eq(self.i_event.valid & self.o_event.ready),
                        self.o_event.valid.eq(self.i_event.valid & hasher.i_event.ready),
                        self.o_event.payload.eq(event),
                        self.i_event.ready.eq(self.o_event.ready & hasher.i_event.ready),
                    ]
                    m.d.sync += in_flight.eq(in_flight + (self.i_event.valid & self.i_event.ready)
                                             - leaf_queued)
                with m.Else():
                    with m.If(leaf_queued):
                        m.d.sync += in_flight.eq(in_flight - 1)
                    with m.If(self.i_event.valid & (in_flight == 0)):
                        with m.If(is_restart):
                            m.next = "RESTART"
                        with m.Else():
                            m.next = "CLOSE"
            with m.State("CLOSE"):
                # Every leaf of the batch is queued: the close marker goes in behind them.
                m.d.comb += [queue.w_en.eq(1), item.close.eq(1), hasher.o_leaf.ready.eq(0)]
                with m.If(queue.w_rdy):
                    m.next = "ROOT"
            with m.State("RESTART"):
                # Every leaf before the marker is queued: the restart goes in behind them, and
                # the marker is consumed.
                m.d.comb += [queue.w_en.eq(1), item.restart.eq(1), hasher.o_leaf.ready.eq(0),
                             self.i_event.ready.eq(queue.w_rdy)]
                with m.If(queue.w_rdy):
                    m.next = "PASS"
            with m.State("ROOT"):
                m.d.comb += [
                    self.o_event.valid.eq(acc.o_root.valid),
                    self.o_event.payload.eq(event),
                    self.o_event.payload.body.batch_closed.count.eq(acc.o_root.payload.count),
                    self.o_event.payload.body.batch_closed.root.eq(acc.o_root.payload.root),
                    acc.o_root.ready.eq(self.o_event.ready),
                    self.i_event.ready.eq(acc.o_root.valid & self.o_event.ready),
                ]
                with m.If(acc.o_root.valid & self.o_event.ready):
                    m.next = "PASS"
        return m
