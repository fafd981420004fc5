"""Keccak-f[1600] a few slices per clock: a permutation small in area and in wiring.

A full round per clock is 1,600 XOR cones, each drawing on 11 state bits that rho and pi
scatter over the whole state: about 4,500 LUT4 whose wiring, placed beside the matching
engine's block RAMs, is what kept the appliance from routing on the ECP5-85F
(docs/benchmarks.md). A board whose host link carries about ten thousand events per second
needs a small part of that rate, so it can take the state a few *slices* at a time instead
(a slice is the 25 bits with one index z in every lane; theta, pi, chi and iota work within a
slice, given the column parities of the slice and of its neighbour).

How rho, the one step across slices, costs no logic: each lane is a 64-bit register that
rotates ``w`` bits per clock while it is read, so at every clock the bits a lane needs,
``z - r`` for its own rotation ``r``, sit at the same positions; the taps are wires. A round
reads one bank of 25 lanes and the five column parities that go with it, and shifts its output
slices into the other bank, which after ``64 / w`` clocks holds the next state in place (and
its parities, taken from the output slices as they pass). Even rounds read bank A and write
bank B, odd rounds the other way, so the 24th round leaves the result in A, where the state
was loaded. A state's own column parities are taken in a first pass of ``64 / w`` clocks while
A rotates once.

Cost: two banks (3,200 flip-flops, most of them a plain shift register; bank A also loads in
parallel) and two datapaths of ``25 w`` bits (theta, chi, iota and the parities) against a full
round's 1,600 bits: at w = 8, 3,429 LUT4 and 3,850 FF against the one-round ring's 7,423 and
3,208, and no wire longer than a lane (docs/hw-hashing.md). Time: ``25 * 64 / w`` clocks from
taking a state to its result, one more to the next state (201 at w = 8) against 24.
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Cat, Const, Module, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .keccak import RHO_OFFSETS, ROUND_CONSTANTS
from .keccak256 import KeccakF1600

__all__ = ["SLICES_PER_CLOCK_CHOICES", "SliceSerialKeccakF1600", "check_slices_per_clock",
           "make_permutation"]

SLICES_PER_CLOCK_CHOICES = (1, 2, 4, 8, 16, 32, 64)


class SliceSerialKeccakF1600(wiring.Component):
    """The Keccak-f[1600] permutation, ``slices_per_clock`` slices of a round per clock.

    Members
    -------
    i : In(stream.Signature(1600))
        A state to permute (lane ``i`` at bits ``64*i .. 64*i+63``), taken in one clock
        whenever the core is free or hands its result on in that clock.
    o : Out(stream.Signature(1600))
        The permuted state, held until taken.

    The same ports, lane order and contract as
    :class:`~ocee.hw.hashing.keccak256.KeccakF1600` with one context, so it can stand in for
    it anywhere; it permutes one state at a time, :attr:`cycles` clocks from taking it to
    presenting the result.
    """

    def __init__(self, slices_per_clock: int = 8) -> None:
        check_slices_per_clock(slices_per_clock)
        self.slices_per_clock = slices_per_clock
        self.steps = 64 // slices_per_clock  # clocks per round, and for the parity pass
        self.contexts = 1  # states in flight: one, as for a one-context ring
        self.cycles = 25 * self.steps
        super().__init__({
            "i": In(stream.Signature(1600)),
            "o": Out(stream.Signature(1600)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        w, steps = self.slices_per_clock, self.steps
        # Datapath registers are reset-less: they matter only between a load and the result.
        a = [Signal(64, name=f"a{i}", reset_less=True) for i in range(25)]
        b = [Signal(64, name=f"b{i}", reset_less=True) for i in range(25)]
        a_par = [Signal(64, name=f"a_parity{x}", reset_less=True) for x in range(5)]
        b_par = [Signal(64, name=f"b_parity{x}", reset_less=True) for x in range(5)]
        m.d.comb += self.o.payload.eq(Cat(*a))

        # `t` counts clocks of the parity pass, then of the 24 rounds: the low bits are the
        # step within a round, the next one says which bank is read.
        t = Signal(range(24 * steps))
        odd = (t // steps)[0]
        iota = Array(Const((ROUND_CONSTANTS[r] >> (s * w)) & ((1 << w) - 1), w)
                     for r in range(24) for s in range(steps))[t]

        a_out, a_next_par = _slices_of_round(m, a, a_par, iota, w, "from_a")
        b_out, b_next_par = _slices_of_round(m, b, b_par, iota, w, "from_b")
        loaded_par = [Signal(w, name=f"loaded_parity{x}") for x in range(5)]
        m.d.comb += [loaded_par[x].eq(a[x][:w] ^ a[x + 5][:w] ^ a[x + 10][:w] ^ a[x + 15][:w]
                                      ^ a[x + 20][:w]) for x in range(5)]

        def rotate(regs: list[Signal]) -> list[Any]:
            return [r.eq(r.rotate_right(w)) for r in regs]

        def shift_in(regs: list[Signal], slices: list[Signal]) -> list[Any]:
            return [r.eq(Cat(r[w:], s)) for r, s in zip(regs, slices, strict=True)]

        def load() -> None:
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += Cat(*a).eq(self.i.payload)
                m.next = "PARITY"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                load()
            with m.State("PARITY"):
                # A rotates once; its column parities shift into `a_par` a few slices a clock.
                m.d.sync += [*rotate(a), *shift_in(a_par, loaded_par)]
                m.d.sync += t.eq(t + 1)
                with m.If(t == steps - 1):
                    m.d.sync += t.eq(0)
                    m.next = "ROUNDS"
            with m.State("ROUNDS"):
                with m.If(~odd):
                    m.d.sync += [*rotate(a), *rotate(a_par), *shift_in(b, a_out),
                                 *shift_in(b_par, a_next_par)]
                with m.Else():
                    m.d.sync += [*rotate(b), *rotate(b_par), *shift_in(a, b_out),
                                 *shift_in(a_par, b_next_par)]
                m.d.sync += t.eq(t + 1)
                with m.If(t == 24 * steps - 1):
                    m.d.sync += t.eq(0)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.o.valid.eq(1), self.i.ready.eq(self.o.ready)]
                with m.If(self.o.ready):
                    m.next = "IDLE"
                load()
        return m


def _slices_of_round(m: Module, lanes: list[Signal], parity: list[Signal], iota: Value, w: int,
                     name: str) -> tuple[list[Signal], list[Signal]]:
    """The ``w`` output slices of one round at the current step, from a bank of ``lanes``
    (rotating, so the step's slice ``z`` of a lane with rho offset ``r`` needs the bit ``z - r``,
    always at position ``-r`` mod 64) and its column parities (rotating with it); and the
    column parities of those output slices."""
    def tap(register: Signal, offset: int) -> Value:
        return Cat(*(register[(offset + j) % 64] for j in range(w)))

    pi: list[Signal | None] = [None] * 25
    for x in range(5):
        for y in range(5):
            r = RHO_OFFSETS[x][y]
            theta = Signal(w, name=f"{name}_theta{x + 5 * y}")
            m.d.comb += theta.eq(tap(lanes[x + 5 * y], -r) ^ tap(parity[(x - 1) % 5], -r)
                                 ^ tap(parity[(x + 1) % 5], -r - 1))
            pi[y + 5 * ((2 * x + 3 * y) % 5)] = theta
    out = [Signal(w, name=f"{name}_out{i}") for i in range(25)]
    for i in range(25):
        row = 5 * (i // 5)
        p, q, s = pi[i], pi[(i % 5 + 1) % 5 + row], pi[(i % 5 + 2) % 5 + row]
        assert p is not None and q is not None and s is not None
        chi = p ^ (~q & s)
        m.d.comb += out[i].eq(chi ^ iota if i == 0 else chi)
    next_parity = [Signal(w, name=f"{name}_parity{x}") for x in range(5)]
    m.d.comb += [next_parity[x].eq(out[x] ^ out[x + 5] ^ out[x + 10] ^ out[x + 15] ^ out[x + 20])
                 for x in range(5)]
    return out, next_parity


def check_slices_per_clock(slices_per_clock: int | None, contexts: int = 1) -> None:
    """Raise ValueError unless ``slices_per_clock`` (None: a ring) and ``contexts`` make a
    permutation (checked where a design is configured, long before it is elaborated)."""
    if slices_per_clock is None:
        return
    if slices_per_clock not in SLICES_PER_CLOCK_CHOICES:
        raise ValueError(f"slices_per_clock must be one of {SLICES_PER_CLOCK_CHOICES} (a "
                         f"divisor of the 64 slices), not {slices_per_clock!r}")
    if contexts != 1:
        raise ValueError(f"the slice-serial permutation holds one state at a time: contexts must "
                         f"be 1 with slices_per_clock, not {contexts!r}")


def make_permutation(rounds_per_cycle: int = 1, contexts: int = 1,
                     slices_per_clock: int | None = None) -> KeccakF1600 | SliceSerialKeccakF1600:
    """A Keccak-f[1600] permutation: the slice-serial core when ``slices_per_clock`` is given
    (``rounds_per_cycle`` then does not apply), else a
    :class:`~ocee.hw.hashing.keccak256.KeccakF1600` ring of ``rounds_per_cycle`` and
    ``contexts``."""
    if slices_per_clock is None:
        return KeccakF1600(rounds_per_cycle, contexts)
    check_slices_per_clock(slices_per_clock, contexts)
    return SliceSerialKeccakF1600(slices_per_clock)
