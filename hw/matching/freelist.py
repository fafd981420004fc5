"""The free list of the order table: which of its ``entries`` slots hold no order.

A first-in, first-out queue of slot numbers: a ring in block RAM, and in front of it a few
registers that hold the next slots to hand out, read ahead, so that the slot the next
allocation takes is always on an output. After reset an init sequence fills the ring with every
slot, so allocations return ``0, 1, 2, ..., entries - 1`` and then the freed slots in the order
they were freed. :class:`FreeListModel` is the executable specification: it predicts every slot
the gateware hands out::

    i_free (slot)                                               alloc
        |                                                         |
        |  ring empty and a place free: straight to the queue     |
        +==========================================+              |
        |                                          v              v
        v  otherwise                     +====================+  slot
    +==================+  read ahead     | queue: 3 slots in  |=======>
    | ring: block RAM, |================>| registers, oldest  |
    | entries rows     |  (3 clocks)     | first              |
    +==================+                 +====================+
"""

from __future__ import annotations

from collections import deque
from typing import Any

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bitmap import registered_read

__all__ = ["QUEUE", "FreeList", "FreeListModel"]

#: Slots held in registers in front of the ring. A slot read from the ring reaches the queue 3
#: clocks after the read is issued (address, block RAM output, register), and a read is issued
#: as soon as a place is free, so 3 places keep allocations going at one per clock.
QUEUE = 3


def _check_entries(entries: int) -> None:
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1 \
            or entries & (entries - 1):
        raise ValueError(f"entries must be a power of two, not {entries!r}")
    if entries <= QUEUE:
        raise ValueError(f"entries must be at least {QUEUE + 1}, not {entries}")


class FreeListModel:
    """The golden model: a double-ended queue of free slots, the oldest first.

    :meth:`step` is one clock of the gateware: the allocation (if any) takes the oldest slot,
    then the freed slot (if any) joins at the end. An allocation while empty and a free while
    every slot is free are ignored and set the sticky :attr:`underflow` and :attr:`overflow`
    flags, as in the gateware.
    """

    def __init__(self, entries: int) -> None:
        _check_entries(entries)
        self.entries = entries
        self._free: deque[int] = deque()
        self.underflow = False
        self.overflow = False
        self.reset()

    def reset(self) -> None:
        """The state after reset and the init sequence: every slot free, in order."""
        self._free = deque(range(self.entries))
        self.underflow = False
        self.overflow = False

    @property
    def count(self) -> int:
        return len(self._free)

    @property
    def empty(self) -> bool:
        return not self._free

    @property
    def slot(self) -> int | None:
        """The slot the next allocation takes, or ``None`` when empty."""
        return self._free[0] if self._free else None

    def step(self, alloc: bool = False, free: int | None = None) -> int | None:
        """One clock: allocate (if ``alloc``) and free slot ``free`` (if not ``None``). Returns
        the slot allocated, or ``None``."""
        if free is not None and not 0 <= free < self.entries:
            raise ValueError(f"slot {free} is outside 0 .. {self.entries - 1}")
        taken = None
        if alloc:
            if self._free:
                taken = self._free.popleft()
            else:
                self.underflow = True
        if free is not None:
            if len(self._free) < self.entries:
                self._free.append(free)
            else:
                self.overflow = True
        return taken

    def alloc(self) -> int | None:
        return self.step(alloc=True)

    def free(self, slot: int) -> None:
        self.step(free=slot)


class FreeList(wiring.Component):
    """Allocates and frees the slots ``0 .. entries - 1``, one of each per clock.

    Members
    -------
    alloc : In(1)
        Take ``slot`` in this clock. A command, not a stream's ``ready``: it must not be raised
        while ``empty`` (which includes the init sequence). If it is, nothing is allocated and
        ``underflow`` is set.
    slot : Out(range(entries))
        The slot an ``alloc`` in this clock takes; meaningless while ``empty``.
    i_free : In(stream.Signature(range(entries)))
        Return a slot. ``ready`` is the component's ``ready``: once the init sequence is done, a
        slot is taken in every clock where ``valid`` is high, with or without an ``alloc`` (the
        allocation takes the oldest free slot, then the freed one joins the end). Only
        allocated slots may be freed, each once: a free while all ``entries`` slots are free
        (and no ``alloc`` in the same clock) is ignored and sets ``overflow``; a slot freed
        twice otherwise is not detected, and would be handed out twice.
    empty : Out(1)
        No slot is free (``count`` is 0); high during the init sequence.
    count : Out(range(entries + 1))
        How many slots are free; 0 during the init sequence.
    ready : Out(1)
        Low for the ``entries`` clocks of the init sequence after reset (one ring row written
        per clock), high ever after.
    underflow : Out(1)
        Sticky until reset: an ``alloc`` came while ``empty``.
    overflow : Out(1)
        Sticky until reset: a free came while every slot was free and nothing was allocated.

    Order: first in, first out. After reset, allocations return ``0, 1, 2, ...``; a freed slot
    is handed out after every slot that was free before it. :class:`FreeListModel` predicts each
    slot exactly.

    Latency and throughput: ``slot``, ``empty`` and ``count`` are registers and reflect every
    alloc and free of the clocks before; one alloc and one free every clock, at once included,
    with no stalls. ``alloc`` and ``i_free.valid`` go through about four levels of logic to the
    registers and the block RAM enables: drive them from registers or shallow logic.

    Resources: a ring of ``entries`` rows of ``log2(entries)`` bits in block RAM (one read and
    one write port), :data:`QUEUE` slot registers, the ring pointers and the counts. 8192
    entries: about 330 LUT4, 120 flip-flops and 7 DP16KD; out of context on an LFE5U-85F-6,
    129 to 138 MHz over nextpnr seeds 1 to 4. Beyond 16384 entries yosys stacks block RAMs in
    depth and multiplexes their outputs before the first register: 65536 entries reach about
    99 MHz.
    """

    def __init__(self, entries: int) -> None:
        _check_entries(entries)
        self.entries = entries
        #: Clocks of the init sequence after reset: ``ready`` rises after this many.
        self.init_cycles = entries
        super().__init__({
            "alloc": In(1),
            "slot": Out(range(entries)),
            "i_free": In(stream.Signature(range(entries))),
            "empty": Out(1),
            "count": Out(range(entries + 1)),
            "ready": Out(1),
            "underflow": Out(1),
            "overflow": Out(1),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        entries = self.entries
        m.submodules.ring = ring = Memory(shape=range(entries), depth=entries, init=[],
                                          attrs={"no_rw_check": 1})
        write = ring.write_port()
        # A read whose row is written in the same clock gives undefined data; it is never used:
        # a read is used only when the ring holds rows (written in earlier clocks), and then the
        # row written, `tail`, is not the row read, `head`, as the ring is never full.
        read, read_slot = registered_read(m, ring, write, "read_slot")

        count = Signal(range(entries + 1))
        empty = Signal(init=1)
        full = Signal()
        ready = Signal()
        underflow = Signal()
        overflow = Signal()
        # Reset leaves slots 0 .. QUEUE - 1 in the queue and the ring holding the others (its
        # rows hold their own numbers once the init sequence has written them).
        stored = Signal(range(entries + 1), init=entries - QUEUE)  # rows written, not yet read
        head = Signal(range(entries), init=QUEUE)  # the next row to read
        tail = Signal(range(entries))  # the next row to write
        # Queue place k: `taken` (a slot, or a read on its way to it), `filled` (the slot is
        # there). Places are taken from 0 up; reads arrive in order, into the first unfilled one.
        taken = [Signal(init=1, name=f"queue_taken_{k}") for k in range(QUEUE)]
        filled = [Signal(init=1, name=f"queue_filled_{k}") for k in range(QUEUE)]
        slots = [Signal(range(entries), init=k, name=f"queue_slot_{k}") for k in range(QUEUE)]
        reading = Signal()  # a read was issued in the previous clock: read_slot is its row
        arriving = Signal()  # ... two clocks ago: arriving_slot is its row
        arriving_slot = Signal(range(entries))

        m.d.comb += [
            self.slot.eq(slots[0]),
            self.empty.eq(empty),
            self.count.eq(count),
            self.ready.eq(ready),
            self.i_free.ready.eq(ready),
            self.underflow.eq(underflow),
            self.overflow.eq(overflow),
        ]

        allocating = self.alloc & ~empty
        freeing = Signal()
        m.d.comb += freeing.eq(self.i_free.valid & ready & (~full | allocating))
        with m.If(self.alloc & empty):
            m.d.sync += underflow.eq(1)
        with m.If(self.i_free.valid & ready & full & ~allocating):
            m.d.sync += overflow.eq(1)

        # The queue after this clock's allocation: every place moves down one.
        shifted_taken = [Signal(name=f"shifted_taken_{k}") for k in range(QUEUE)]
        shifted_filled = [Signal(name=f"shifted_filled_{k}") for k in range(QUEUE)]
        shifted_slots = [Signal(range(entries), name=f"shifted_slot_{k}") for k in range(QUEUE)]
        for k in range(QUEUE):
            if k + 1 < QUEUE:
                src_taken, src_filled, src_slot = taken[k + 1], filled[k + 1], slots[k + 1]
            else:
                src_taken, src_filled, src_slot = 0, 0, slots[k]
            with m.If(allocating):
                m.d.comb += [shifted_taken[k].eq(src_taken), shifted_filled[k].eq(src_filled),
                             shifted_slots[k].eq(src_slot)]
            with m.Else():
                m.d.comb += [shifted_taken[k].eq(taken[k]), shifted_filled[k].eq(filled[k]),
                             shifted_slots[k].eq(slots[k])]
        room = ~shifted_taken[QUEUE - 1]
        # A freed slot goes straight to the queue when nothing older waits in the ring (order),
        # else to the ring. A read is issued whenever the ring holds rows and a place is free.
        direct = Signal()
        fetch = Signal()
        m.d.comb += [
            direct.eq(freeing & (stored == 0) & room),
            fetch.eq((stored != 0) & room),
        ]
        for k in range(QUEUE):
            next_free = ~shifted_taken[k] & (shifted_taken[k - 1] if k else 1)
            first_unfilled = shifted_taken[k] & ~shifted_filled[k]
            for j in range(k):
                first_unfilled &= shifted_filled[j]
            m.d.sync += [taken[k].eq(shifted_taken[k]), filled[k].eq(shifted_filled[k]),
                         slots[k].eq(shifted_slots[k])]
            with m.If(ready):
                with m.If(arriving & first_unfilled):
                    m.d.sync += [filled[k].eq(1), slots[k].eq(arriving_slot)]
                with m.If(next_free & direct):
                    m.d.sync += [taken[k].eq(1), filled[k].eq(1), slots[k].eq(self.i_free.payload)]
                with m.If(next_free & fetch):
                    m.d.sync += taken[k].eq(1)

        # The ring: reads of row `head` in every clock, used when issued.
        to_ring = freeing & ~direct
        m.d.comb += read.addr.eq(head)
        m.d.sync += [reading.eq(fetch), arriving.eq(reading), arriving_slot.eq(read_slot)]
        with m.If(~ready):
            # Init: row k holds slot k. Rows 0 .. QUEUE - 1 are not read before the first frees
            # to the ring overwrite them.
            m.d.comb += [write.addr.eq(tail), write.data.eq(tail), write.en.eq(1)]
            m.d.sync += tail.eq(tail + 1)
            with m.If(tail == entries - 1):
                m.d.sync += [count.eq(entries), empty.eq(0), full.eq(1), ready.eq(1)]
        with m.Else():
            m.d.comb += [write.addr.eq(tail), write.data.eq(self.i_free.payload),
                         write.en.eq(to_ring)]
            count_next = Signal.like(count)
            m.d.comb += count_next.eq(count - allocating + freeing)
            m.d.sync += [
                tail.eq(tail + to_ring),
                head.eq(head + fetch),
                stored.eq(stored + to_ring - fetch),
                count.eq(count_next),
                empty.eq(count_next == 0),
                full.eq(count_next == entries),
            ]
        return m
