"""The batch accumulator: folds a batch's leaves into its Merkle root as they stream past.

It is the gateware of :class:`ocee.hw.hashing.merkle.MerkleAccumulator`: a frontier of one node
per tree level (in LUT RAM), inner nodes ``keccak256(min(a, b) ++ max(a, b))``, and at the close
the frontier folded from its lowest node up. The batch is never stored, so a batch of up to
``2**32 - 1`` leaves needs 32 frontier nodes (1 KiB).
"""

from __future__ import annotations

from typing import Any

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .keccak256 import padded_state
from .keccak_slices import make_permutation
from .shared_permutation import PERMUTATION_USER

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
    permutation : Out(PERMUTATION_USER)
        Only with ``own_permutation=False``: the port to a
        :class:`~ocee.hw.hashing.shared_permutation.SharedPermutation` of ``rounds_per_cycle``
        and ``contexts``, in place of a permutation of its own. With ``slices_per_clock``, the
        permutation of its own is slice-serial (one context, ``25 * 64 // slices_per_clock``
        clocks each: :mod:`ocee.hw.hashing.keccak_slices`).

    The levels work independently, so pair hashes of different levels overlap in the
    permutation's contexts: a node arriving at level ``l`` (a leaf at level 0, a pair hash's
    result at ``l + 1``) is kept if the level is empty, or else sent with the level's node to
    be hashed, the result arriving later at level ``l + 1``. Nodes of one level arrive in order
    (every hash takes the same time and the ring keeps order), so each pairs with its sibling;
    the pair hash is commutative, so which of the two is kept does not matter. Hashes in flight
    are bounded (``max_pending``; each yields at most one more), so the request queue never
    overflows and a returning hash never waits for room. Leaves are taken one per clock while
    the permutation keeps up: on average one pair hash per leaf, one per
    ``24 // (rounds_per_cycle * contexts)`` clocks. A close waits for the hashes in flight,
    then folds the frontier from its lowest node up, one hash at a time.
    """

    def __init__(self, rounds_per_cycle: int = 1, contexts: int = 1,
                 max_pending: int | None = None, *, own_permutation: bool = True,
                 slices_per_clock: int | None = None) -> None:
        self.keccak = (make_permutation(rounds_per_cycle, contexts, slices_per_clock)
                      if own_permutation else None)
        # By default the ring's contexts, its output register, the pair register and a clock or
        # two of slack: enough requests to keep every context busy. Fewer make the queues
        # smaller (a board whose link is the bound takes 2).
        if max_pending is None:
            max_pending = contexts + 4
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, not {max_pending}")
        self.max_pending = max_pending
        members = {
            "i_item": In(stream.Signature(ACCUMULATOR_INPUT)),
            "o_root": Out(stream.Signature(BATCH_ROOT)),
        }
        if not own_permutation:
            members["permutation"] = Out(PERMUTATION_USER)
        super().__init__(members)

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        keccak: Any = self.keccak
        if keccak is not None:
            m.submodules.keccak = keccak
        else:
            keccak = self.permutation
        # The frontier in LUT RAM read without a clock, so a node arriving in one clock is
        # read, decided on and written in that clock, with nothing to forward.
        m.submodules.frontier = frontier = Memory(shape=256, depth=_DEPTH, init=[])
        read = frontier.read_port(domain="comb")
        write = frontier.write_port()
        # Pair hashes to do, two nodes each, and the level each result belongs to, in order.
        # (A buffered FIFO takes a write only while its inner FIFO, one shallower, has room: with
        # one row to spare it always has, since a request is written only while fewer than
        # `max_pending` are queued. Writes are not checked: a lost one would hang a close.)
        m.submodules.requests = requests = SyncFIFOBuffered(width=512,
                                                            depth=self.max_pending + 1)
        # (One entry per hash in flight, and one more: a FIFO refuses a write while full even
        # in the clock it is read, which is when a returning hash requests the next.)
        m.submodules.levels = levels = SyncFIFO(width=ceil_log2(_DEPTH + 1),
                                                depth=self.max_pending + 1)

        occupied = Signal(_DEPTH)  # bit l: frontier[l] holds a node waiting for its sibling
        count = Signal(32)  # leaves of this batch so far
        pending = Signal(range(self.max_pending + 1))  # pair hashes requested, not yet returned

        # The pair register: the smaller node's bytes first, then the larger's, one padded block.
        # The 256-bit comparison is registered here to keep it off the ring's input path.
        pair = Signal(512, reset_less=True)  # meaningful only under pair_valid
        pair_valid = Signal()
        first, second = requests.r_data[:256], requests.r_data[256:]
        m.d.comb += [
            keccak.i.valid.eq(pair_valid),
            keccak.i.payload.eq(padded_state(pair, 64)),
            requests.r_en.eq(~pair_valid | keccak.i.ready),
        ]
        with m.If(requests.r_en):
            m.d.sync += [
                pair_valid.eq(requests.r_rdy),
                pair.eq(Mux(_big_endian(first) < _big_endian(second), Cat(first, second),
                            Cat(second, first))),
            ]
        digest = keccak.o.payload[:256]

        # One node arrives per clock: a returning hash's result, or else a leaf.
        arriving = Signal()
        node = Signal(256)
        level = Signal(range(_DEPTH))
        m.d.comb += [read.addr.eq(level), write.addr.eq(level), write.data.eq(node)]
        requested = Signal()
        returned = Signal()
        with m.If(arriving):
            with m.If(occupied.bit_select(level, 1)):
                m.d.comb += [requests.w_en.eq(1), requests.w_data.eq(Cat(read.data, node)),
                             levels.w_en.eq(1), levels.w_data.eq(level + 1), requested.eq(1)]
                m.d.sync += occupied.bit_select(level, 1).eq(0)
            with m.Else():
                m.d.comb += write.en.eq(1)
                m.d.sync += occupied.bit_select(level, 1).eq(1)
        m.d.sync += pending.eq(pending + requested - returned)

        item = self.i_item.payload
        fold = Signal(256, reset_less=True)  # a close: the frontier folded so far (set at FOLD)
        have_fold = Signal()
        remaining = Signal(32)  # the count's bits from `level` up: the close is done at 0
        fold_level = Signal(range(_DEPTH + 1))
        m.d.comb += remaining.eq(count >> fold_level)

        with m.FSM():
            with m.State("STREAM"):
                m.d.comb += keccak.o.ready.eq(1)
                with m.If(keccak.o.valid):
                    m.d.comb += [arriving.eq(1), node.eq(digest), level.eq(levels.r_data),
                                 levels.r_en.eq(1), returned.eq(1)]
                with m.Elif(self.i_item.valid & ~item.close & ~item.restart):
                    m.d.comb += self.i_item.ready.eq(pending < self.max_pending)
                    with m.If(self.i_item.ready):
                        m.d.comb += [arriving.eq(1), node.eq(item.leaf), level.eq(0)]
                        m.d.sync += count.eq(count + 1)
                with m.Elif(self.i_item.valid & (pending == 0)):
                    # Every hash of the batch has returned: the frontier is complete.
                    with m.If(item.restart):
                        m.d.comb += self.i_item.ready.eq(1)
                        m.d.sync += [count.eq(0), occupied.eq(0)]
                    with m.Else():
                        m.d.sync += [fold_level.eq(0), have_fold.eq(0), fold.eq(0)]
                        m.next = "FOLD"

            # A close: fold the frontier from its lowest node up.
            with m.State("FOLD"):
                m.d.comb += level.eq(fold_level)
                with m.If(remaining == 0):
                    m.next = "EMIT"
                with m.Elif(remaining[0] & have_fold):
                    m.d.comb += [requests.w_en.eq(1), requests.w_data.eq(Cat(read.data, fold))]
                    m.next = "FOLD_HASH"
                with m.Else():
                    with m.If(remaining[0]):
                        m.d.sync += [fold.eq(read.data), have_fold.eq(1)]
                    m.d.sync += fold_level.eq(fold_level + 1)
            with m.State("FOLD_HASH"):
                m.d.comb += keccak.o.ready.eq(1)
                with m.If(keccak.o.valid):
                    m.d.sync += [fold.eq(digest), fold_level.eq(fold_level + 1)]
                    m.next = "FOLD"

            with m.State("EMIT"):
                m.d.comb += [
                    self.o_root.valid.eq(1),
                    self.o_root.payload.count.eq(count),
                    self.o_root.payload.root.eq(fold),
                ]
                with m.If(self.o_root.ready):
                    m.d.comb += self.i_item.ready.eq(1)  # the close item leaves with its root
                    m.d.sync += [count.eq(0), occupied.eq(0)]
                    m.next = "STREAM"
        return m
