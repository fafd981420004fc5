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

__all__ = ["BLOCK", "ROUNDS_PER_CYCLE_CHOICES", "Keccak256", "KeccakF1600", "check_ring",
           "keccak_round", "padded_state"]

ROUNDS_PER_CYCLE_CHOICES = (1, 2, 3, 4, 6, 8, 12, 24)


def check_ring(rounds_per_cycle: int, contexts: int = 1) -> None:
    """Raise ValueError unless ``rounds_per_cycle`` and ``contexts`` make a
    :class:`KeccakF1600` ring (checked where a design is configured, long before it is
    elaborated)."""
    if rounds_per_cycle not in ROUNDS_PER_CYCLE_CHOICES:
        raise ValueError(f"rounds_per_cycle must be one of {ROUNDS_PER_CYCLE_CHOICES} (a "
                         f"divisor of 24), not {rounds_per_cycle!r}")
    steps = 24 // rounds_per_cycle
    if not isinstance(contexts, int) or contexts < 1 or steps % contexts:
        choices = [c for c in range(1, steps + 1) if steps % c == 0]
        raise ValueError(f"contexts must divide the {steps} steps of {rounds_per_cycle} "
                         f"round(s) each, one of {choices}, not {contexts!r}")

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

    Synthesize it with ``synth_ecp5 -nowidelut``: in LUT4s a round is about 4,500 (a parity bit
    two, a theta bit one, a chi bit one). Left to combine LUT4s into wider LUTs, yosys and abc
    merge the cones into 5- to 7-input functions and duplicate the parities: 9,140 LUT4 and
    5,069 wide-LUT muxes for one round, whose wiring congested the appliance.
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
    """The Keccak-f[1600] permutation: a ring of ``contexts`` stages of ``rounds_per_cycle``
    rounds each, with up to ``contexts`` permutations in flight.

    Members
    -------
    i : In(stream.Signature(1600))
        A state to permute; taken when the ring's first stage is free.
    o : Out(stream.Signature(1600))
        The permuted states, in the order they were taken; each held until taken.

    Each stage is ``rounds_per_cycle`` rounds of combinational logic behind a 1600-bit register,
    and a state goes round the ring until it has had its 24 rounds: ``24 // rounds_per_cycle``
    clocks from taking it to presenting its result. One context (the default) is the classic
    iterated core, one permutation per ``24 // rounds_per_cycle`` clocks back to back; ``c``
    contexts interleave ``c`` independent states, so the ring finishes one every
    ``24 // (rounds_per_cycle * c)`` clocks at the Fmax of one stage: throughput bought with a
    stage's area (about 4,500 LUT4 per round) but not with a longer critical path, where more
    rounds per clock lengthen it. The ring stops while a finished state waits at ``o``.
    """

    def __init__(self, rounds_per_cycle: int = 1, contexts: int = 1) -> None:
        check_ring(rounds_per_cycle, contexts)
        self.rounds_per_cycle = rounds_per_cycle
        self.contexts = contexts
        self.cycles = 24 // rounds_per_cycle
        super().__init__({
            "i": In(stream.Signature(1600)),
            "o": Out(stream.Signature(1600)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        k, c = self.rounds_per_cycle, self.contexts
        # The datapath registers are reset-less: what they hold matters only under a valid bit,
        # and without a reset term the load of a constant padding bit maps to the flip-flop's
        # own synchronous set/reset rather than to a LUT input on every bit.
        state = [Signal(1600, name=f"state{j}", reset_less=True) for j in range(c)]
        result = Signal(1600, reset_less=True)
        m.d.comb += self.o.payload.eq(result)
        valid = [Signal(name=f"valid{j}") for j in range(c)]
        step = [Signal(range(self.cycles), name=f"step{j}") for j in range(c)]  # k-round steps done
        # The context's step is its last, registered rather than decoded from `step`: the ring
        # stops on it and the first stage chooses on it, across 1600 bits each.
        last = [Signal(name=f"last{j}") for j in range(c)]

        # Stage j: the k rounds of its context's current step, round constants from a ROM per
        # unrolled position indexed by the context's own step count.
        after: list[Value] = []
        for j in range(c):
            lanes: list[Value] = [state[j][64 * i: 64 * (i + 1)] for i in range(25)]
            for r in range(k):
                rom = Array(Const(ROUND_CONSTANTS[s * k + r], 64) for s in range(self.cycles))
                lanes = list(keccak_round(m, lanes, rom[step[j]], name=f"stage{j}_round{r}"))
            after.append(Cat(*lanes))

        # A context finishes in the last stage (contexts divides the steps): it leaves through
        # `o`, and its slot in the first stage is free for a new state in the same clock.
        finishing = valid[c - 1] & last[c - 1]
        stall = finishing & self.o.valid & ~self.o.ready
        m.d.comb += self.i.ready.eq(~stall & (~valid[c - 1] | finishing))
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(~stall):
            with m.If(finishing):
                m.d.sync += [self.o.valid.eq(1), result.eq(after[c - 1])]
            # An empty slot's stage holds its register: an idle ring does not toggle 1600 bits
            # through the rounds every clock (power on a board; time in a simulator).
            for j in range(1, c):
                m.d.sync += valid[j].eq(valid[j - 1])
                with m.If(valid[j - 1]):
                    m.d.sync += [state[j].eq(after[j - 1]), step[j].eq(step[j - 1] + 1),
                                 last[j].eq(step[j - 1] == self.cycles - 2)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [state[0].eq(self.i.payload), valid[0].eq(1), step[0].eq(0),
                             last[0].eq(self.cycles == 1)]
            with m.Else():
                m.d.sync += valid[0].eq(valid[c - 1] & ~finishing)
                with m.If(valid[c - 1] & ~finishing):
                    m.d.sync += [state[0].eq(after[c - 1]), step[0].eq(step[c - 1] + 1),
                                 last[0].eq(step[c - 1] == self.cycles - 2)]
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


def padded_state(message: Value, length: int) -> Value:
    """The initial state of a one-block Keccak-256 of a message of ``length`` bytes (fixed at
    elaboration), byte k at bits 8k..8k+7: the message, Ethereum's padding (0x01 after it, 0x80
    in the rate's last byte) and a zero capacity. The padding is constant, so it costs no logic:
    a leaf or a node of the tree is a permutation of this state and the digest its first 256 bits.
    """
    if not 0 <= length < RATE_BYTES:
        raise ValueError(f"a one-block message has 0 to {RATE_BYTES - 1} bytes, not {length}")
    if len(message) != 8 * length:
        raise ValueError(f"the message has {len(message)} bits, not {8 * length}")
    if length == RATE_BYTES - 1:
        padding = Const(0x81, 8)
    else:
        padding = Cat(Const(0x01, 8), Const(0, 8 * (RATE_BYTES - 2 - length)), Const(0x80, 8))
    return Cat(message, padding, Const(0, 1600 - 8 * RATE_BYTES))


def _masked_byte(data: Value, index: int, length: Value) -> Value:
    """Byte ``index`` of ``data`` if it is among the first ``length`` bytes, else 0."""
    byte = data[8 * index: 8 * index + 8]
    return byte & (length > index).replicate(8)
