"""The leaf hasher: every event becomes its 32-byte leaf (spec: :mod:`ocee.hw.hashing.leaf`).

The preimage of each event kind is wired up at elaboration time from the protocol's field tables
(:data:`ocee.hw.protocol.EVENT_CODEC`): each field of the event, tag first, as a big-endian
``uintN`` of whole bytes, which is Solidity's ``abi.encodePacked``. No logic is spent on it but a
multiplexer by event kind; the rest is one Keccak-f[1600] permutation of a padded block.
"""

from __future__ import annotations

from typing import Any

from amaranth import Cat, Const, Module, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..protocol import EVENT, EVENT_CODEC, BatchClosed
from .keccak import RATE_BYTES
from .keccak256 import padded_state
from .keccak_slices import make_permutation
from .shared_permutation import PERMUTATION_USER

__all__ = ["LeafHasher", "leaf_preimage_bits"]


def leaf_preimage_bits(bits: Value, cls: type[Any]) -> tuple[Value, int]:
    """The preimage of an event of class ``cls`` held in ``bits`` (the EVENT layout), and its
    length in bytes. Byte k of the preimage is at bits 8k .. 8k+7 of the result."""
    out: list[Value] = []
    for f in EVENT_CODEC.fields(cls):
        value = bits[f.offset: f.offset + f.width]
        nbytes = f.byte_width
        wide = Cat(value, Const(0, 8 * nbytes - f.width)) if 8 * nbytes > f.width else value
        out += [wide[8 * (nbytes - 1 - j): 8 * (nbytes - j)] for j in range(nbytes)]
    return Cat(*out), len(out)


class LeafHasher(wiring.Component):
    """Hashes each event into its leaf.

    Members
    -------
    i_event : In(stream.Signature(EVENT))
        Events to hash. A ``batch_closed`` event is no leaf: do not send one (it would be hashed
        as an all-zero preimage of length 0).
    o_leaf : Out(stream.Signature(256))
        One leaf per event, in order; byte k at bits 8k .. 8k+7.
    permutation : Out(PERMUTATION_USER)
        Only with ``own_permutation=False``: the port to a
        :class:`~ocee.hw.hashing.shared_permutation.SharedPermutation` of ``rounds_per_cycle``
        and ``contexts``, in place of a permutation of its own. With ``slices_per_clock``, the
        permutation of its own is slice-serial (one context, ``25 * 64 // slices_per_clock``
        clocks each: :mod:`ocee.hw.hashing.keccak_slices`).

    Every leaf preimage is at most 39 bytes, so each leaf is one Keccak block whose length and
    padding are fixed by the event's kind: the block is chosen by kind and permuted, with no
    sponge state kept between blocks. Leaves pipeline through the permutation's ``contexts``:
    one leaf per ``24 // (rounds_per_cycle * contexts)`` clocks back to back.

    Events wait in a two-entry queue in front of the permutation, whose first stage is free only
    every few clocks when it holds several contexts: ``i_event.ready`` is the queue's, so it
    does not come and go with the ring's slots (the hashing stage forwards an event in the
    clock the leaf hasher takes it, and a stream's valid may not fall before its transfer).
    """

    QUEUE_DEPTH = 2

    def __init__(self, rounds_per_cycle: int = 1, contexts: int = 1, *,
                 own_permutation: bool = True,
                 slices_per_clock: int | None = None) -> None:
        self.contexts = contexts
        self.keccak = (make_permutation(rounds_per_cycle, contexts, slices_per_clock)
                      if own_permutation else None)
        members = {
            "i_event": In(stream.Signature(EVENT)),
            "o_leaf": Out(stream.Signature(256)),
        }
        if not own_permutation:
            members["permutation"] = Out(PERMUTATION_USER)
        super().__init__(members)

    def capacity(self) -> int:
        """Events taken and not yet out as leaves, at most: the queue, and the ring's contexts
        and its output (or the same bound on a shared permutation's digests owed to it)."""
        return self.QUEUE_DEPTH + self.contexts + 1

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        keccak: Any = self.keccak
        if keccak is not None:
            m.submodules.keccak = keccak
        else:
            keccak = self.permutation
        m.submodules.queue = queue = SyncFIFOBuffered(width=EVENT.size, depth=self.QUEUE_DEPTH)
        m.d.comb += [
            queue.w_data.eq(self.i_event.payload.as_value()),
            queue.w_en.eq(self.i_event.valid),
            self.i_event.ready.eq(queue.w_rdy),
        ]
        event = data.View(EVENT, queue.r_data)
        bits = event.as_value()
        with m.Switch(event.header.kind):
            for cls in EVENT_CODEC.classes:
                if cls is BatchClosed:
                    continue
                preimage, length = leaf_preimage_bits(bits, cls)
                assert length < RATE_BYTES
                with m.Case(cls.KIND):
                    m.d.comb += keccak.i.payload.eq(padded_state(preimage, length))
        m.d.comb += [
            keccak.i.valid.eq(queue.r_rdy),
            queue.r_en.eq(keccak.i.ready),
            self.o_leaf.valid.eq(keccak.o.valid),
            self.o_leaf.payload.eq(keccak.o.payload[:256]),
            keccak.o.ready.eq(self.o_leaf.ready),
        ]
        return m
