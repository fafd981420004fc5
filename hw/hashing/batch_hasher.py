"""The hashing stage: the event stream passes through, each event hashed in line.

Placed behind the matching engine, it forwards every event unchanged, hashes each one into its
leaf (:class:`LeafHasher`) and folds the leaves into the batch's root (:class:`BatchAccumulator`).
A ``batch_closed`` event from the engine is held until the root of everything before it is
known, and leaves with the accumulator's count and root in place of its own.
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..protocol import EVENT, EventKind
from .accumulator import BatchAccumulator
from .leaf_hasher import LeafHasher

__all__ = ["BatchHasher"]


class BatchHasher(wiring.Component):
    """Forwards events, hashing each into the batch's Merkle tree; fills in batch roots.

    Members
    -------
    i_event : In(stream.Signature(EVENT))
        Events from the matching engine, ``batch_closed`` ones with any count and root.
    o_event : Out(stream.Signature(EVENT))
        The same events in the same order; ``batch_closed`` with the batch's count and root.

    An event is taken when the output and the leaf hasher can both take it, so the event rate
    is bounded by the leaf hasher's (one per Keccak permutation) until a FIFO decouples them. A
    ``batch_closed`` event waits for the leaves in flight and the fold of the frontier.
    """

    def __init__(self, rounds_per_cycle: int = 1) -> None:
        self.leaf_hasher = LeafHasher(rounds_per_cycle)
        self.accumulator = BatchAccumulator(rounds_per_cycle)
        super().__init__({
            "i_event": In(stream.Signature(EVENT)),
            "o_event": Out(stream.Signature(EVENT)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.leaf_hasher = hasher = self.leaf_hasher
        m.submodules.accumulator = acc = self.accumulator

        event = self.i_event.payload
        is_batch = event.header.kind == EventKind.BATCH_CLOSED
        in_flight = Signal()  # an event is in the leaf hasher, its leaf not yet accumulated

        # Leaves go to the accumulator as they come; a close is sent only when none is in flight.
        m.d.comb += [
            hasher.i_event.payload.eq(event),
            acc.i_item.payload.leaf.eq(hasher.o_leaf.payload),
            acc.i_item.valid.eq(hasher.o_leaf.valid),
            hasher.o_leaf.ready.eq(acc.i_item.ready),
        ]
        leaf_taken = hasher.o_leaf.valid & hasher.o_leaf.ready

        with m.FSM():
            with m.State("PASS"):
                with m.If(~is_batch):
                    m.d.comb += [
                        hasher.i_event.valid.eq(self.i_event.valid & self.o_event.ready),
                        self.o_event.valid.eq(self.i_event.valid & hasher.i_event.ready),
                        self.o_event.payload.eq(event),
                        self.i_event.ready.eq(self.o_event.ready & hasher.i_event.ready),
                    ]
                    with m.If(self.i_event.valid & self.i_event.ready):
                        m.d.sync += in_flight.eq(1)
                    with m.Elif(leaf_taken):
                        m.d.sync += in_flight.eq(0)
                with m.Else():
                    with m.If(leaf_taken):
                        m.d.sync += in_flight.eq(0)
                    with m.If(self.i_event.valid & ~in_flight & ~hasher.o_leaf.valid):
                        m.next = "CLOSE"
            with m.State("CLOSE"):
                # The leaf path is empty: the close follows every leaf of the batch.
                m.d.comb += [acc.i_item.valid.eq(1), acc.i_item.payload.close.eq(1),
                             hasher.o_leaf.ready.eq(0)]
                with m.If(acc.i_item.ready):
                    m.next = "ROOT"
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
