"""Keccak-f[1600] and Keccak-256 (Ethereum's padding) as stream components.

The permutation runs ``rounds_per_cycle`` rounds of combinational logic per clock, a divisor of
24: 1 gives the smallest core and 24 clocks per permutation, 24 the largest and one clock. The
state is 25 little-endian 64-bit lanes, lane ``i`` at bits ``64*i .. 64*i+63``, so byte ``k`` of
a message block and of the digest sits at bits ``8*k .. 8*k+7`` exactly as in the golden model,
:mod:`ocee.hw.hashing.keccak`.
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Cat, Const, Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .keccak import RATE_BYTES, RHO_OFFSETS, ROUND_CONSTANTS

__all__ = ["BLOCK", "ROUNDS_PER_CYCLE_CHOICES", "Keccak256", "KeccakF1600", "keccak_round"]

ROUNDS_PER_CYCLE_CHOICES = (1, 2, 3, 4, 6, 8, 12, 24)

#: One message block: ``data`` holds ``length`` valid bytes (byte k at bits 8k..8k+7); every block
#: but the ``last`` is full (``length`` = 136). A message of 136*n bytes ends with a full last
#: block; the padding then takes a block of its own, which the core adds by itself.
BLOCK = data.StructLayout({
    "data":   RATE_BYTES * 8,
    "length": 8,
    "last":   1,
})


def keccak_round(m: Module, lanes: list[Value], round_constant: Value, name: str) -> list[Signal]:
    """One round (theta, rho, pi, chi, iota) on 25 lanes ``a[x + 5*y]``, as combinational logic.

    The column parities and the round's output lanes are named signals: each lane feeds several
    terms, and chaining rounds as bare expressions would grow exponentially.
    """
    c = [Signal(64, name=f"{name}_c{x}") for x in range(5)]
    m.d.comb += [c[x].eq(lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20])
                 for x in range(5)]
    d = [c[(x - 1) % 5] ^ c[(x + 1) % 5].rotate_left(1) for x in range(5)]
    b: list[Value] = [Const(0, 64)] * 25
    for x in range(5):
        for y in range(5):
            b[y + 5 * ((2 * x + 3 * y) % 5)] = (lanes[x + 5 * y] ^ d[x]).rotate_left(RHO_OFFSETS[x][y])
    out = [Signal(64, name=f"{name}_a{i}") for i in range(25)]
    for i in range(25):
        row = 5 * (i // 5)
        chi = b[i] ^ (~b[(i % 5 + 1) % 5 + row] & b[(i % 5 + 2) % 5 + row])
        m.d.comb += out[i].eq(chi ^ round_constant if i == 0 else chi)
    return out


class KeccakF1600(wiring.Component):
    """The Keccak-f[1600] permutation, iterated ``rounds_per_cycle`` rounds per clock.

    Members
    -------
    i : In(stream.Signature(1600))
        A state to permute; taken when the core is idle.
    o : Out(stream.Signature(1600))
        The permuted state; held until taken.

    Latency ``24 // rounds_per_cycle`` clocks from taking a state to presenting the result;
    one permutation at a time, so back to back it takes one every ``24 // rounds_per_cycle + 2``
    clocks (measured: ``ocee bench hashing``; the handshakes in and out cost a clock each).
    Area grows about linearly with ``rounds_per_cycle``
    (each round is ~3,200 LUT4 of XOR/AND-NOT logic).
    """

    def __init__(self, rounds_per_cycle: int = 1) -> None:
        if rounds_per_cycle not in ROUNDS_PER_CYCLE_CHOICES:
            raise ValueError(f"rounds_per_cycle must be one of {ROUNDS_PER_CYCLE_CHOICES} (a "
                             f"divisor of 24), not {rounds_per_cycle!r}")
        self.rounds_per_cycle = rounds_per_cycle
        self.cycles = 24 // rounds_per_cycle
        super().__init__({
            "i": In(stream.Signature(1600)),
            "o": Out(stream.Signature(1600)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        k = self.rounds_per_cycle
        state = Signal(1600)
        step = Signal(range(self.cycles + 1))  # rounds done so far, in units of k
        busy = Signal()

        # Round constants for the k rounds of this step: a ROM per unrolled position.
        lanes: list[Value] = [state[64 * i: 64 * (i + 1)] for i in range(25)]
        for j in range(k):
            rom = Array(Const(ROUND_CONSTANTS[s * k + j], 64) for s in range(self.cycles))
            lanes = list(keccak_round(m, lanes, rom[step], name=f"round{j}"))
        next_state = Cat(*lanes)

        m.d.comb += [
            self.i.ready.eq(~busy & ~self.o.valid),
            self.o.payload.eq(state),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [state.eq(self.i.payload), step.eq(0), busy.eq(1)]
        with m.Elif(busy):
            m.d.sync += [state.eq(next_state), step.eq(step + 1)]
            with m.If(step == self.cycles - 1):
                m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m


class Keccak256(wiring.Component):
    """Keccak-256 as Solidity's ``keccak256`` computes it: pad 0x01 ... 0x80, not SHA-3's 0x06.

    Members
    -------
    i_block : In(stream.Signature(BLOCK))
        The message, one block of up to 136 bytes per transfer; see :data:`BLOCK`.
    o_digest : Out(stream.Signature(256))
        The digest of each message, byte k at bits 8k..8k+7 (Solidity's ``bytes32`` order).

    A one-block message (every leaf and every inner node of a batch) takes one clock to absorb,
    ``24 // rounds_per_cycle`` to permute and is presented the clock after; the next message is
    taken once the digest has been.
    """

    def __init__(self, rounds_per_cycle: int = 1) -> None:
        self.permutation = KeccakF1600(rounds_per_cycle)
        super().__init__({
            "i_block": In(stream.Signature(BLOCK)),
            "o_digest": Out(stream.Signature(256)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.permutation = perm = self.permutation
        state = Signal(1600)  # the sponge state between blocks of one message
        pad_block = Signal()  # the last block was full: absorb a block of padding alone
        last = Signal()

        block = self.i_block.payload
        # Keep the block's `length` bytes, then pad: 0x01 after them, 0x80 in the rate's last
        # byte (the two meet as 0x81 when length is 135). A full last block pads in a next block.
        kept = Cat(*(_masked_byte(block.data, i, block.length) for i in range(RATE_BYTES)))
        pad_here = block.last & (block.length < RATE_BYTES)
        padding = Signal(RATE_BYTES * 8)
        for i in range(RATE_BYTES):
            first = pad_here & (block.length == i)
            final = pad_here & (i == RATE_BYTES - 1)
            m.d.comb += padding[8 * i: 8 * i + 8].eq(Cat(first, Const(0, 6), final))
        absorbed = state ^ Cat(kept ^ padding, Const(0, 1600 - RATE_BYTES * 8))
        only_padding = state ^ Cat(Const(0x01, 8), Const(0, 8 * (RATE_BYTES - 2)), Const(0x80, 8),
                                   Const(0, 1600 - RATE_BYTES * 8))

        with m.FSM():
            with m.State("ABSORB"):
                m.d.comb += [
                    self.i_block.ready.eq(perm.i.ready),
                    perm.i.valid.eq(self.i_block.valid),
                    perm.i.payload.eq(absorbed),
                ]
                with m.If(self.i_block.valid & perm.i.ready):
                    m.d.sync += [last.eq(block.last),
                                 pad_block.eq(block.last & (block.length == RATE_BYTES))]
                    m.next = "PERMUTE"
            with m.State("PERMUTE"):
                m.d.comb += perm.o.ready.eq(1)
                with m.If(perm.o.valid):
                    m.d.sync += state.eq(perm.o.payload)
                    with m.If(pad_block):
                        m.next = "PAD"
                    with m.Elif(last):
                        m.next = "DIGEST"
                    with m.Else():
                        m.next = "ABSORB"
            with m.State("PAD"):
                m.d.comb += [perm.i.valid.eq(1), perm.i.payload.eq(only_padding)]
                with m.If(perm.i.ready):
                    m.d.sync += pad_block.eq(0)
                    m.next = "PERMUTE"
            with m.State("DIGEST"):
                m.d.comb += [self.o_digest.valid.eq(1), self.o_digest.payload.eq(state[:256])]
                with m.If(self.o_digest.ready):
                    m.d.sync += state.eq(0)
                    m.next = "ABSORB"
        return m


def _masked_byte(data: Value, index: int, length: Value) -> Value:
    """Byte ``index`` of ``data`` if it is among the first ``length`` bytes, else 0."""
    byte = data[8 * index: 8 * index + 8]
    return byte & (length > index).replicate(8)
