"""The batch accumulator: folds a batch's leaves into its Merkle root as they stream past.

It is the gateware of :class:`ocee.hw.hashing.merkle.MerkleAccumulator`: a frontier of one node
per tree level (in block RAM), inner nodes ``keccak256(min(a, b) ++ max(a, b))``, and at the close
the frontier folded from its lowest node up. The batch is never stored, so a batch of up to
``2**32 - 1`` leaves needs 32 frontier nodes (1 KiB).
"""

from __future__ import annotations

from typing import Any

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .keccak256 import Keccak256

__all__ = ["ACCUMULATOR_INPUT", "BATCH_ROOT", "BatchAccumulator"]

#: One item of the accumulator's input: a leaf, or (``close``) the end of the batch, or
#: (``restart``) the batch in progress discarded, with no root (the link's ``SET_STREAM``).
ACCUMULATOR_INPUT = data.StructLayout({
    "leaf":    256,
    "close":   1,
    "restart": 1,
})

#: What a close produces: the batch's leaf count and root (32 zero bytes for no leaves).
BATCH_ROOT = data.StructLayout({
    "count": 32,
    "root":  256,
})

_DEPTH = 32  # frontier levels: one per bit of the 32-bit leaf count


def _big_endian(node: Value) -> Value:
    """A 32-byte node as a number whose order is the byte-wise (Solidity bytes32) order."""
    return Cat(*(node[8 * (31 - i): 8 * (32 - i)] for i in range(32)))


class BatchAccumulator(wiring.Component):
    """Folds leaves into per-batch Merkle roots with a frontier of one node per level.

    Members
    -------
    i_item : In(stream.Signature(ACCUMULATOR_INPUT))
        Leaves in order; an item with ``close`` set ends the batch (its ``leaf`` is ignored);
        one with ``restart`` set drops the batch in progress and emits nothing.
    o_root : Out(stream.Signature(BATCH_ROOT))
        One per close: the number of leaves and the root. The next batch starts clean.

    Cost: a leaf whose arrival completes ``c`` subtrees (``c`` trailing ones in the count before
    it) takes ``c`` pair hashes; that is one hash per leaf on average, and a close takes one per
    set bit of the count but the lowest. Each pair hash is one Keccak block, ``24 //
    rounds_per_cycle + 2`` clocks, plus 2 clocks to read the frontier and 1 to order the pair.
    """

    def __init__(self, rounds_per_cycle: int = 1) -> None:
        self.keccak = Keccak256(rounds_per_cycle)
        super().__init__({
            "i_item": In(stream.Signature(ACCUMULATOR_INPUT)),
            "o_root": Out(stream.Signature(BATCH_ROOT)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.keccak = keccak = self.keccak
        m.submodules.frontier = frontier = Memory(shape=256, depth=_DEPTH, init=[])
        read = frontier.read_port()
        write = frontier.write_port()

        count = Signal(32)  # leaves of this batch so far: bit k set = frontier[k] holds a subtree
        node = Signal(256)  # the node being carried up (a leaf) or the fold so far (a close)
        have_node = Signal()  # a close has folded at least one frontier node into `node`
        level = Signal(range(_DEPTH + 1))
        closing = Signal()

        # A pair hash: the smaller node's bytes first, then the larger's, as one 64-byte block.
        # The 256-bit comparison is registered (state PAIR) to keep it off Keccak's input path.
        sibling = read.data
        node_first = _big_endian(node) < _big_endian(sibling)
        pair = Signal(512)
        m.d.comb += [
            keccak.i_block.payload.data.eq(pair),
            keccak.i_block.payload.length.eq(64),
            keccak.i_block.payload.last.eq(1),
            read.addr.eq(level),
            write.addr.eq(level),
            write.data.eq(node),
        ]
        m.d.comb += keccak.o_digest.ready.eq(1)
        item = self.i_item.payload
        remaining = Signal(32)  # the count's bits from `level` up: the close is done at 0
        m.d.comb += remaining.eq(count >> level)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i_item.ready.eq(1)
                with m.If(self.i_item.valid & item.restart):
                    m.d.sync += count.eq(0)  # the frontier's nodes are valid by count's bits
                with m.Elif(self.i_item.valid):
                    m.d.sync += [node.eq(item.leaf), level.eq(0), closing.eq(item.close),
                                 have_node.eq(0)]
                    with m.If(item.close):
                        m.d.sync += node.eq(0)
                        m.next = "FOLD"
                    with m.Else():
                        m.next = "CARRY"

            # A leaf: while frontier[level] holds a subtree, hash it with the node and go up.
            with m.State("CARRY"):
                with m.If(count.bit_select(level, 1)):
                    m.next = "CARRY_READ"
                with m.Else():
                    m.d.comb += write.en.eq(1)
                    m.d.sync += count.eq(count + 1)
                    m.next = "IDLE"
            with m.State("CARRY_READ"):  # the read port answers one clock after its address
                m.next = "PAIR"

            # A close: fold the frontier from its lowest node up.
            with m.State("FOLD"):
                with m.If(remaining == 0):
                    m.next = "EMIT"
                with m.Elif(remaining[0]):
                    m.next = "FOLD_READ"
                with m.Else():
                    m.d.sync += level.eq(level + 1)
            with m.State("FOLD_READ"):
                with m.If(have_node):
                    m.next = "PAIR"
                with m.Else():
                    m.d.sync += [node.eq(read.data), have_node.eq(1), level.eq(level + 1)]
                    m.next = "FOLD"

            with m.State("PAIR"):
                m.d.sync += pair.eq(Mux(node_first, Cat(node, sibling), Cat(sibling, node)))
                m.next = "HASH"
            with m.State("HASH"):
                m.d.comb += keccak.i_block.valid.eq(1)
                with m.If(keccak.i_block.ready):
                    m.next = "HASH_WAIT"
            with m.State("HASH_WAIT"):
                with m.If(keccak.o_digest.valid):
                    m.d.sync += [node.eq(keccak.o_digest.payload), level.eq(level + 1)]
                    with m.If(closing):
                        m.next = "FOLD"
                    with m.Else():
                        m.next = "CARRY"

            with m.State("EMIT"):
                m.d.comb += [
                    self.o_root.valid.eq(1),
                    self.o_root.payload.count.eq(count),
                    self.o_root.payload.root.eq(node),
                ]
                with m.If(self.o_root.ready):
                    m.d.sync += count.eq(0)
                    m.next = "IDLE"
        return m
