"""One Keccak-f[1600] permutation shared by several users (the leaf hasher and the accumulator).

A board whose host link carries about ten thousand events per second needs a small part of
one permutation's rate, so it builds one permutation instead of two: the boards share one
slice-serial core (:mod:`ocee.hw.hashing.keccak_slices`; sharing a one-round ring halved the
Keccak area but the appliance still did not route: docs/benchmarks.md). Each user sees a port
of the same shape as its own permutation would give it (:data:`PERMUTATION_USER`): states out,
digests back in the order it sent them.
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .keccak_slices import make_permutation

__all__ = ["PERMUTATION_USER", "SharedPermutation"]

#: A permutation as its user sees it: initial states out (``i``), and back (``o``) the first 256
#: bits of each permuted state (the digest of a one-block Keccak-256), in the order sent.
PERMUTATION_USER = wiring.Signature({
    "i": Out(stream.Signature(1600)),
    "o": In(stream.Signature(256)),
})


class SharedPermutation(wiring.Component):
    """A Keccak-f[1600] permutation shared round-robin by ``users``: a
    :class:`~ocee.hw.hashing.keccak256.KeccakF1600` ring, or with ``slices_per_clock`` the
    :class:`~ocee.hw.hashing.keccak_slices.SliceSerialKeccakF1600` core.

    Members
    -------
    user : In(PERMUTATION_USER).array(users)
        One port per user: states in, their digests out in the same order.

    Each user's digests wait in a queue of its own, and a user may have at most
    :meth:`capacity` states taken and digests not yet read: a user that stops reading its
    digests (the leaf hasher while the accumulator folds a close) then stops getting the ring,
    so its digests never block the ring and the other user's (which it may be waiting for).
    The ring always hands its result on, and a digest reaches its user one clock after the
    ring finishes it.
    """

    def __init__(self, users: int = 2, rounds_per_cycle: int = 1, contexts: int = 1, *,
                 slices_per_clock: int | None = None) -> None:
        if users < 1:
            raise ValueError(f"users must be at least 1, not {users}")
        self.users = users
        self.keccak = make_permutation(rounds_per_cycle, contexts, slices_per_clock)
        super().__init__({"user": In(PERMUTATION_USER).array(users)})

    def capacity(self) -> int:
        """States a user may have in the ring and digests waiting for it, at most: the ring's
        contexts and its output register, as for a permutation of its own."""
        return self.keccak.contexts + 1

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.keccak = keccak = self.keccak
        n, capacity = self.users, self.capacity()
        # Who sent each state in the ring, in order. (One row more than the states in the ring
        # and its output register: a FIFO refuses a write while full even in the clock it is
        # read, which is when the ring takes a state as it hands one on.)
        m.submodules.owners = owners = SyncFIFO(width=max(1, ceil_log2(n)), depth=capacity + 1)

        eligible = Signal(n)
        for u in range(n):
            user = self.user[u]
            m.submodules[f"digests{u}"] = digests = SyncFIFO(width=256, depth=capacity)
            owed = Signal(range(capacity + 1), name=f"owed{u}")  # taken, digest not yet read
            taken = user.i.valid & user.i.ready
            read = user.o.valid & user.o.ready
            m.d.sync += owed.eq(owed + taken - read)
            m.d.comb += [
                eligible[u].eq(user.i.valid & (owed < capacity)),
                digests.w_data.eq(keccak.o.payload[:256]),
                digests.w_en.eq(keccak.o.valid & (owners.r_data == u)),
                user.o.valid.eq(digests.r_rdy),
                user.o.payload.eq(digests.r_data),
                digests.r_en.eq(user.o.ready),
            ]
        m.d.comb += [keccak.o.ready.eq(1), owners.r_en.eq(keccak.o.valid)]

        # Round robin: the first eligible user after the last one granted.
        last = Signal(range(n))
        grant = Signal(range(n))
        with m.Switch(last):
            for previous in range(n):
                with m.Case(previous):
                    # The last assignment wins, so the order of preference is walked backwards.
                    for u in reversed([(previous + 1 + j) % n for j in range(n)]):
                        with m.If(eligible[u]):
                            m.d.comb += grant.eq(u)
        states = Array(self.user[u].i.payload for u in range(n))
        m.d.comb += [
            keccak.i.valid.eq(eligible.any() & owners.w_rdy),
            keccak.i.payload.eq(states[grant]),
            owners.w_data.eq(grant),
            owners.w_en.eq(keccak.i.valid & keccak.i.ready),
        ]
        for u in range(n):
            m.d.comb += self.user[u].i.ready.eq(keccak.i.ready & owners.w_rdy & eligible[u]
                                                & (grant == u))
        with m.If(keccak.i.valid & keccak.i.ready):
            m.d.sync += last.eq(grant)
        return m
