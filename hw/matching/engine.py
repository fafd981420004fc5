"""The matching engine gateware: commands in, the reference model's events out, bit for bit.

:class:`MatchingEngine` takes :data:`~ocee.hw.protocol.COMMAND` records on ``i_command`` and
emits :data:`~ocee.hw.protocol.EVENT` records on ``o_event``: for each command exactly the events
of ``MatchingModel(config, hash_events=False).execute_bytes(record)``, with reserved bits zero
(batch roots are zero: the hashing stage behind the engine fills them in).

The books live in block RAM, never in per-order registers::

    id map       ids rows      order id -> (valid, slot)                the O(1) cancel/modify
    order table  orders rows   per slot: info (id, account, market,     one memory per field, so
                               side, level), open qty, next, prev       a field writes alone
    level table  books x levels rows: head, tail, total open qty        FOK and depth read totals
    occupancy    books x levels bits, two-level bitmap                  best / next level search
    free list    the order table's free slots, FIFO

A level is addressed by its price modulo ``levels`` (the low bits of the price): every resting
order lies inside its market's window of ``levels`` ticks, so the address is unique, and moving
the window (set window) moves no data. Searches then work on the rotated order: the level at
price ``lowest + r`` has address ``(base + r) mod levels`` with ``base = lowest mod levels``, and
the ``SEARCH`` subroutine turns "best" and "next worse" into one or two bitmap queries.

Control is one finite-state machine that follows the model's algorithm step by step, with three
stages beside it that finish a command's list work while the next command is decoded (the link
stage for a resting order, the unlink stage for a canceled one, the total stage for a modified
one's level total), forwarding what that command could read half written. Memories have one
clock of read latency, and a read sees the writes of the clocks before its own (not one in its
own clock: the take loop, which fills a level's makers one per clock, keeps what it would read
stale in registers). A taker moving through the book, and a walk of a query or a mass cancel,
finds its next level in the rest of the bitmap word the last query answered, without a query.
Subroutines (search, remove) return through a register that names the caller's next
state. ``docs/hw-matching.md`` gives the cycle counts and what the pipelined successor
changes.
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import (
    COMMAND,
    EVENT,
    CancelReason,
    EventKind,
    Opcode,
    OrderType,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)
from .bitmap import OccupancyBitmap, QueryMode, mask_above, mask_below, set_bits, word_bits
from .config import MatchingConfig
from .freelist import FreeList

__all__ = ["STREAM_START", "MatchingEngine"]


class _Port:
    """The signals of a memory port as the state machine drives and reads them."""

    def __init__(self, addr: Any, data: Any, en: Any = None) -> None:
        self.addr = addr
        self.data = data
        self.en = en


def _bits(value: Any) -> Any:
    return value.as_value() if hasattr(value, "as_value") else value

#: Events the engine can hold when ``o_event`` is back-pressured before it stalls.
EVENT_QUEUE = 4

LEVEL_QTY_BITS = 48  # up to 2**16 orders of 2**32 - 1 each; 64 bits on the wire

#: Where the event stream continues (the link's ``SET_STREAM``): the next event's ``seq`` and the
#: next ``batch_closed``'s batch number.
STREAM_START = data.StructLayout({
    "seq":   32,
    "batch": 32,
})


class MatchingEngine(wiring.Component):
    """The matching engine for ``config`` (default: the ULX3S configuration).

    Members
    -------
    i_command : ``In(stream.Signature(COMMAND))``
        Command records, taken once the init sequence is done and the previous command has
        been executed.
    o_event : ``Out(stream.Signature(EVENT))``
        Event records in order; back-pressure stalls the engine once :data:`EVENT_QUEUE`
        events wait.
    o_event_first : ``Out(1)``
        Beside ``o_event``: its event is the first of its command. (So the last event of a
        command is the one before the next first one, or the last one out when ``idle``: the
        link needs that to tell the host which events complete a command.)
    ready : ``Out(1)``
        High once the init sequence after reset is done: about ``max(ids, 2 * markets *
        levels)`` clocks, in which the id map and the level table are cleared.
    idle : ``Out(1)``
        No command is being executed and every event has left through ``o_event``.
    next_seq, next_batch : ``Out(32)``
        The ``seq`` the next event will carry, the number the next ``batch_closed`` will carry
        (the link's status reports them).
    i_set_stream : ``In(stream.Signature(STREAM_START))``
        Taken when idle and no command is offered: the next event carries ``seq``, the next
        ``batch_closed`` is numbered ``batch``, and the engine emits one event of kind 0 (no
        :class:`~ocee.hw.protocol.EventKind`), a restart marker that tells the hashing stage
        behind it to drop the batch in progress. Nothing else ever has kind 0.
    """

    def __init__(self, config: MatchingConfig | None = None) -> None:
        self.config = config = config or MatchingConfig()
        if config.orders < 2:
            raise ValueError(f"the engine needs at least 2 order slots, not {config.orders}")
        self.market_bits = max(1, (config.markets - 1).bit_length())
        self.level_rows = config.levels << (self.market_bits + 1)
        self.init_cycles = max(config.ids, self.level_rows)
        super().__init__({
            "i_command": In(stream.Signature(COMMAND)),
            "o_event": Out(stream.Signature(EVENT)),
            "o_event_first": Out(1),
            "ready": Out(1),
            "idle": Out(1),
            "next_seq": Out(32),
            "next_batch": Out(32),
            "i_set_stream": In(stream.Signature(STREAM_START)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        cfg = self.config
        L, log2_l = cfg.levels, cfg.log2_levels
        slot_bits = cfg.log2_orders
        books = 2 * cfg.markets

        # -- Memories -----------------------------------------------------------------------------
        link_layout = data.StructLayout({"valid": 1, "slot": slot_bits})
        info_layout = data.StructLayout({"id": max(1, cfg.log2_ids), "account": 32,
                                         "market": self.market_bits, "side": 1, "level": log2_l})

        def memory(name: str, shape: Any, depth: int) -> tuple[Any, Any]:
            """A memory whose writes reach the block RAM one clock late, from registers, with
            the read side forwarding that pending write: the state machine sees exactly a plain
            memory (a write in clock t is read by an address given in t + 1; a read and a write
            of one row in one clock read the old data), but no path runs from a RAM's output
            through the control logic into another RAM's write port."""
            mem = Memory(shape=shape, depth=depth, init=[])
            m.submodules[name] = mem
            read, write = mem.read_port(), mem.write_port()
            r = _Port(addr=Signal(len(read.addr), name=f"{name}_raddr"),
                      data=Signal(shape, name=f"{name}_rdata"))
            w = _Port(addr=Signal(len(write.addr), name=f"{name}_waddr"),
                      data=Signal(shape, name=f"{name}_wdata"), en=Signal(name=f"{name}_wen"))
            m.d.sync += [write.addr.eq(w.addr), write.data.eq(w.data), write.en.eq(w.en)]
            # The forwarding decision compares registered copies of both addresses in the clock
            # the read data arrives: it settles long before the block RAM's output does, and the
            # read address (the FSM's decision) does not pass through a comparator as well.
            raddr_d = Signal.like(r.addr, name=f"{name}_raddr_d")
            waddr_d = Signal.like(write.addr, name=f"{name}_waddr_d")
            wen_d = Signal(name=f"{name}_wen_d")
            forwarded = Signal(shape, name=f"{name}_forwarded")
            m.d.sync += [raddr_d.eq(r.addr), waddr_d.eq(write.addr), wen_d.eq(write.en),
                         forwarded.eq(write.data)]
            forward = wen_d & (waddr_d == raddr_d)
            m.d.comb += [read.addr.eq(r.addr),
                         r.data.eq(Mux(forward, _bits(forwarded), _bits(read.data)))]
            landing[name] = write
            return r, w

        landing: dict[str, Any] = {}  # each memory's write as it reaches the block RAM

        id_r, id_w = memory("id_map", link_layout, cfg.ids)
        info_r, info_w = memory("order_info", info_layout, cfg.orders)
        oqty_r, oqty_w = memory("order_qty", 32, cfg.orders)
        next_r, next_w = memory("order_next", link_layout, cfg.orders)
        prev_r, prev_w = memory("order_prev", link_layout, cfg.orders)
        head_r, head_w = memory("level_head", slot_bits, self.level_rows)
        tail_r, tail_w = memory("level_tail", link_layout, self.level_rows)
        lqty_r, lqty_w = memory("level_qty", LEVEL_QTY_BITS, self.level_rows)

        # One read address for the order table's fields and one for the level table's.
        o_raddr = Signal(slot_bits)
        l_raddr = Signal(len(head_r.addr))
        h_raddr = Signal(len(head_r.addr))
        q_raddr = Signal(len(head_r.addr))
        m.d.comb += [info_r.addr.eq(o_raddr), oqty_r.addr.eq(o_raddr), next_r.addr.eq(o_raddr),
                     prev_r.addr.eq(o_raddr), head_r.addr.eq(h_raddr), tail_r.addr.eq(l_raddr),
                     lqty_r.addr.eq(q_raddr)]
        # The level heads' and totals' read addresses are the level table's but in DECODE,
        # which reads the opposite book's cached best level's head (and, for a taker that goes
        # into that level at once, its total) beside its own level's tail (see ``accept``).
        m.d.comb += [h_raddr.eq(l_raddr), q_raddr.eq(l_raddr)]

        m.submodules.occupancy = occupancy = OccupancyBitmap(books, L)
        m.submodules.free_list = free_list = FreeList(cfg.orders)
        # A slot freed (free_valid, free_slot: a filled maker, a canceled order) reaches the
        # free list a clock later, from registers: the decision that frees it (after a block
        # RAM's output: a fill's compare) went on into the free list's ring write enable, the
        # appliance's critical path at `8b78bf2`. The slot on its way is handed out at once when
        # it is the only free one (the free list is empty), so a resting order never waits.
        free_valid = Signal()
        free_slot = Signal(range(cfg.orders))
        alloc = Signal()
        freed_valid = Signal()
        freed_slot = Signal(range(cfg.orders))
        m.d.sync += [freed_valid.eq(free_valid), freed_slot.eq(free_slot)]
        alloc_freed = freed_valid & free_list.empty  # the slot on its way is the only free one
        alloc_slot = Mux(alloc_freed, freed_slot, free_list.slot)
        m.d.comb += [free_list.alloc.eq(alloc & ~alloc_freed),
                     free_list.i_free.valid.eq(freed_valid & ~(alloc & alloc_freed)),
                     free_list.i_free.payload.eq(freed_slot)]
        # The event queue: each event with whether it is the first of its command.
        m.submodules.events = events = SyncFIFOBuffered(width=EVENT.size + 1, depth=EVENT_QUEUE)
        m.d.comb += [self.o_event.payload.eq(events.r_data[:EVENT.size]),
                     self.o_event_first.eq(events.r_data[EVENT.size]),
                     self.o_event.valid.eq(events.r_rdy), events.r_en.eq(self.o_event.ready)]

        def level_addr(book: Any, p: Any) -> Any:
            return Cat(p, book)  # book = Cat(side, market)

        # -- Command and per-device state ---------------------------------------------------------
        cmd = Signal(COMMAND)
        op = cmd.header.op.as_value()
        market = cmd.header.market
        new = cmd.body.new_order
        lowest = Array(Signal(32, name=f"lowest_{i}") for i in range(cfg.markets))
        cur_lowest = lowest[market[:self.market_bits]]
        base = cur_lowest[:log2_l]
        resting = Signal(range(cfg.orders + 1))
        seq = Signal(32)
        batch = Signal(32)
        batch_count = Signal(32)
        m.d.comb += [self.next_seq.eq(seq), self.next_batch.eq(batch)]

        def rel(p: Any) -> Any:  # a level address -> its index in the window
            return (p - base)[:log2_l]

        # The taker (new order) and the order being looked at.
        side = new.side.as_value()
        is_market = new.type == OrderType.MARKET
        own_book = Cat(side, market[:self.market_bits])
        opp_book = Cat(~side, market[:self.market_bits])
        opp_desc = side == Side.SELL.value  # a seller takes bids, best (highest) first
        offset = Signal(32)
        m.d.comb += offset.eq(new.price - cur_lowest)
        index = offset[:log2_l]
        in_window = (new.price >= cur_lowest) & (offset[log2_l:] == 0)
        remaining = Signal(32)
        # FOK: the quantity still to find, minus one, so that "covered" is the sign of one
        # subtraction straight from the read data (no zero test after the carry chain).
        need = Signal(signed(LEVEL_QTY_BITS + 2))

        cur = Signal(slot_bits)  # the order being looked at
        lvl_p = Signal(log2_l)  # its level's address
        mk_id = Signal(32)
        mk_account = Signal(32)
        mk_qty = Signal(32)
        mk_next = Signal(link_layout)
        lvl_total = Signal(LEVEL_QTY_BITS)  # the taken level's total as last written
        lvl_fresh = Signal()  # no write to it yet: lvl_total is the one read from memory

        def crosses(p: Any) -> Any:
            r = rel(p)
            return is_market | Mux(side == Side.BUY.value, r <= index, r >= index)

        # -- Event emission -------------------------------------------------------------------------
        ev = Signal(EVENT)
        emit = Signal()
        first = Signal()  # no event of the command being executed has been emitted yet
        m.d.comb += [events.w_data.eq(Cat(ev.as_value(), first)), events.w_en.eq(emit),
                     ev.header.seq.eq(seq), ev.header.market.eq(market)]
        with m.If(emit):
            m.d.sync += [seq.eq(seq + 1), first.eq(0)]
            with m.If(ev.header.kind != EventKind.BATCH_CLOSED):
                m.d.sync += batch_count.eq(batch_count + 1)

        def emitting(*assignments: Any) -> Any:
            """Offer an event in this state; the block under it runs in the clock it is taken."""
            m.d.comb += assignments
            m.d.comb += emit.eq(events.w_rdy)
            return m.If(events.w_rdy)

        def canceled(order_id: Any, qty: Any, reason: CancelReason) -> Any:
            c = ev.body.canceled
            return emitting(ev.header.kind.eq(EventKind.CANCELED), c.id.eq(order_id),
                            c.qty.eq(qty), c.reason.eq(reason))

        rej_reason = Signal(RejectReason, init=RejectReason.MALFORMED)
        rej_id = Signal(32)

        # -- Subroutine plumbing --------------------------------------------------------------------
        returns: dict[str, dict[str, int]] = {}
        ret_regs: dict[str, Signal] = {}

        def returning_to(sub: str, ret_state: str) -> None:
            """Make subroutine ``sub`` return to ``ret_state``."""
            codes = returns.setdefault(sub, {})
            m.d.sync += ret_regs[sub].eq(codes.setdefault(ret_state, len(codes)))

        def call(sub: str, ret_state: str) -> None:
            returning_to(sub, ret_state)
            m.next = sub

        # The id map is read at the offered command's id (a new order's, a cancel's, a
        # modify's: the same bits) in every clock, so that DECODE's first clock has the entry of
        # the command taken in the clock before, whichever state took it; a register holds it
        # for DECODE's later clocks (an event waiting, the link stage). The address waits for
        # no decision: when it was driven only where a command is taken, whether the take loop
        # ended its command decided the address, and that was the engine's critical path (the
        # order RAM's output, the fill's compare, i_command.ready, the id map's address). The
        # only state that writes the id map in a clock that takes a command is ``rest``: that
        # write is forwarded (fwid), and so is a cancel's, which frees the id in the clock that
        # takes the next command.
        m.d.comb += id_r.addr.eq(self.i_command.payload.body.cancel.id)
        decode_fresh = Signal()  # DECODE's first clock: the id map's read data is the entry
        m.d.sync += decode_fresh.eq(0)

        def finish() -> None:
            """The command is done: take the next one in this same clock (no idle clock)."""
            m.d.comb += self.i_command.ready.eq(1)
            with m.If(self.i_command.valid):
                m.d.sync += [cmd.eq(self.i_command.payload), first.eq(1), decode_fresh.eq(1)]
                m.next = "DECODE"
            with m.Else():
                m.next = "IDLE"

        def ret(sub: str) -> None:
            with m.Switch(ret_regs[sub]):
                for state, code in returns[sub].items():
                    with m.Case(code):
                        if state == "IDLE":
                            finish()
                        else:
                            m.next = state

        for sub in ("SEARCH", "REMOVE"):
            ret_regs[sub] = Signal(8, name=f"ret_{sub.lower()}")

        # The best level of each book, cached: a search for it answers in one clock instead of a
        # bitmap query's five. A new level updates it at once; emptying the best level marks it
        # stale, and the next search for it asks the bitmap and refills it.
        best_valid = Array(Signal(name=f"best_valid_{b}") for b in range(books))
        best_p = Array(Signal(log2_l, name=f"best_p_{b}") for b in range(books))
        best_stale = Array(Signal(name=f"best_stale_{b}") for b in range(books))

        # Search arguments and result.
        s_book = Signal(len(own_book))
        s_desc = Signal()  # walk from high prices to low
        s_next = Signal()  # 0: the best level; 1: the next worse level than s_p
        s_p = Signal(log2_l)
        s_found = Signal()
        s_q = Signal(log2_l)

        wb = word_bits(L)
        wb_log2 = wb.bit_length() - 1
        base_bit = base[:wb_log2]
        all_bits = Const((1 << wb) - 1, wb)

        def next_in_word(word: Any, p: Any, desc: Any, name: str) -> tuple[Any, Any]:
            """(found, address) of the next level after ``p`` in the walk among ``word``, the
            set levels of ``p``'s word. Descending (bids' order): the lower addresses, and past
            the wrap (p >= base) none below the base; ascending: the higher ones, and past the
            wrap (p < base) none from the base up."""
            in_base_word = p[wb_log2:] == base[wb_log2:]
            after_desc = mask_below(p[:wb_log2], wb) & Mux(in_base_word & (p >= base),
                                                           ~mask_below(base_bit, wb), all_bits)
            after_asc = mask_above(p[:wb_log2], wb) & Mux(in_base_word & (p < base),
                                                          mask_below(base_bit, wb), all_bits)
            bits = Signal(wb, name=name)
            m.d.comb += bits.eq(word & Mux(desc, after_desc, after_asc))
            any_, lowest_, highest_ = set_bits(m, bits, name)
            return any_, Cat(Mux(desc, highest_, lowest_), p[wb_log2:])

        # The rest of the last searched word, per side. A walk that searches level after level
        # in its book's own order (a mass cancel, a query) finds the next level in
        # the word of the last answer without asking the bitmap: each answer brings the set
        # levels of its word from it on in the query's direction (``word``). The snapshot
        # stays true for the levels after the walk's: a query changes nothing, and a mass
        # cancel clears only the level it stands on. DECODE clears the cache, so
        # no command walks another's snapshot.
        sc_valid = Array(Signal(name=f"sc_valid_{s}") for s in range(2))
        sc_book = Array(Signal(len(own_book), name=f"sc_book_{s}") for s in range(2))
        sc_q = Array(Signal(log2_l, name=f"sc_q_{s}") for s in range(2))  # the walk's level
        sc_bits = Array(Signal(wb, name=f"sc_bits_{s}") for s in range(2))
        walks = 0  # names the encoders of each search made from a walk

        def search(book: Any, desc: Any, ret_state: str, after: Any = None,
                   from_word: bool = True) -> None:
            """Search for the best level of ``book`` in direction ``desc`` (or the next after
            ``after``) and go to ``ret_state`` with the answer in s_found / s_q. ``from_word``:
            answer a walk's next level from the kept word when it can; a caller whose decision
            follows a block RAM's output passes False, so that the word's logic stays out of
            that path (the FOK scan's: its compare of a total is a carry chain)."""
            m.d.sync += [s_book.eq(book), s_desc.eq(desc), s_next.eq(after is not None)]
            natural = (Const(desc, 1) if isinstance(desc, int) else desc) == ~book[0]
            if after is not None and not from_word:
                m.d.sync += s_p.eq(after)
                call("SEARCH", ret_state)
                return
            if after is not None:
                # The next level after ``after`` in the rest of its word, kept from the answer
                # that found ``after``: the answer is there now.
                nonlocal walks
                walks += 1
                m.d.sync += s_p.eq(after)
                sd = book[0]
                in_word, q = next_in_word(sc_bits[sd], after, desc, f"walk{walks}")
                with m.If(natural & sc_valid[sd] & (sc_book[sd] == book) & (sc_q[sd] == after)
                          & in_word):
                    m.d.sync += [s_found.eq(1), s_q.eq(q), sc_q[sd].eq(q)]
                    m.next = ret_state
                with m.Else():
                    call("SEARCH", ret_state)
                return
            # The book's own best level, cached and not stale: the answer is there now.
            with m.If(natural & ~best_stale[book]):
                m.d.sync += [s_found.eq(best_valid[book]), s_q.eq(best_p[book])]
                m.next = ret_state
            with m.Else():
                call("SEARCH", ret_state)

        s_natural = ~s_next & (s_desc == ~s_book[0])  # the search for the book's best level

        # The next level, searched for ahead: when a taker enters a level (always its book's
        # best), the bitmap is asked at once for the level after it, so that the answer is
        # there when the level is exhausted instead of a search's six clocks later. The two
        # queries of SEARCH (the next level, then the whole book for the wrap) go out back to
        # back; the bitmap answers in order, 4 clocks later. While a taker fills, the only
        # change to that book's bitmap is its current level being cleared, which neither
        # answer depends on (the first looks strictly past it, and the second's answer is
        # kept only beyond the wrap, where the current level is not).
        # A search ahead may go out while an older one's answers are on their way (a taker
        # that ended before they came, or moved on with the first): those are dropped as they
        # come (pf_drop). A search ahead goes out at most every 2 clocks and is answered within
        # 6, so at most 6 answers are on their way.
        pf_armed = Signal()  # the answers will be for the level being taken now
        pf_second = Signal()  # the second query goes out in this clock
        pf_wait = Signal(range(8))  # answers still to come
        pf_drop = Signal(range(8))  # ... of which the next ones, an older search's
        pf_got = Signal()  # the first answer is in
        pf_first_issue = Signal()  # the first query goes out in this clock
        pf_first_found, pf_second_found = Signal(), Signal()
        pf_first_q, pf_second_q = Signal(log2_l), Signal(log2_l)
        pf_first_word, pf_second_word = Signal(wb), Signal(wb)
        pf_done = pf_armed & (pf_wait == 0)
        main_result = occupancy.o_result.valid & (pf_wait == 0)  # SEARCH's, not a prefetch's
        pf_arriving = occupancy.o_result.valid & (pf_wait != 0)
        pf_first_now = pf_arriving & (pf_drop == 0) & ~pf_got  # the armed search's first

        # The rest of the taker's word. An answer of the bitmap brings the set levels of its
        # word from the answer on (``word``), so once the taker has gone into a level found by
        # the search ahead, the next levels in the same word are known without asking: the
        # next one is picked from this register in the clock before it is needed. The search
        # ahead then asks only for the level after the word (after its last address in the
        # taker's walk, ``word_edge``), and its answer is waited for only when the word runs
        # out. The register is a snapshot taken when the query was answered, and stays true
        # for the levels after the taker's: while a taker fills, the only changes to its book's
        # bitmap are the levels it has exhausted, all before its current one. In the word that
        # holds the window's base the walk wraps: addresses past the wrap come after every
        # other word, so the two parts of that word are taken as different words.
        wc_valid = Signal()  # wc_bits is the word of the level being taken
        wc_bits = Signal(wb)
        lvl_new = Signal()  # TAKE_HEAD: the level was found by a query, not in wc_bits
        lvl_word = lvl_p[wb_log2:]

        # The next level after the taker's, registered (from lvl_p, set at least two clocks
        # before it is used, except after a change of level within the word, when the one
        # after it takes its place: see TAKE_NEXT), and the level after that one.
        wc_next_found, wc_next_q = Signal(), Signal(log2_l)
        wc_next2_found, wc_next2_q = Signal(), Signal(log2_l)
        after_any, after_q = next_in_word(wc_bits, lvl_p, opp_desc, "word_after")
        after2_any, after2_q = next_in_word(wc_bits, wc_next_q, opp_desc, "word_after_next")
        m.d.sync += [wc_next_found.eq(wc_valid & after_any), wc_next_q.eq(after_q),
                     wc_next2_found.eq(wc_next_found & after2_any), wc_next2_q.eq(after2_q)]
        # Whether wc_next_q crosses the taker's price, a clock after wc_next_q (which is set at
        # least two clocks before TAKE_NEXT uses it): a register, so that TAKE_NEXT's decision
        # waits for no subtraction and compare of the window.
        wc_next_crosses = Signal()
        m.d.sync += wc_next_crosses.eq(crosses(wc_next_q))
        next_row_read = Signal()  # the clock before read the row of level wc_next_q
        m.d.sync += next_row_read.eq(0)
        # The word's last address in the walk. In the base's word past the wrap the walk ends
        # at the base instead, but nothing comes after it: the search ahead's answers are
        # rejected past the wrap wherever it asks from, as they are for any level past it.
        word_edge = Signal(log2_l)
        m.d.comb += word_edge.eq(Cat(Mux(opp_desc, 0, wb - 1), lvl_word))

        def better(book: Any, p: Any, than: Any) -> Any:  # in the book's own priority order
            return Mux(book[0] == Side.BUY.value, rel(p) > rel(than), rel(p) < rel(than))

        pf_book = Signal(len(own_book))  # the book and direction of the search ahead
        pf_desc = Signal()

        def search_ahead(after: Any, book: Any = opp_book, desc: Any = opp_desc) -> None:
            """Ask the bitmap for the level after ``after`` in ``book``'s walk (the taker's,
            see below; or a mass cancel's); the answers of an older search still on their way
            are dropped."""
            m.d.comb += [occupancy.i_query.valid.eq(1), query.book.eq(book),
                         query.index.eq(after),
                         query.mode.eq(Mux(desc, QueryMode.NEXT_BELOW, QueryMode.NEXT_ABOVE)),
                         pf_first_issue.eq(1)]
            m.d.sync += [pf_armed.eq(1), pf_second.eq(1), pf_got.eq(0), pf_book.eq(book),
                         pf_desc.eq(desc)]

        def ahead_answer(desc: Any, p: Any) -> tuple[Any, Any, Any, Any]:
            """(in, found, level, word): the search ahead's two answers for "next after ``p``"
            combined, as they come or from their registers. The second (the whole book, for
            the wrap) counts only when the first found nothing and p is before the wrap; else
            the first decides, as it comes."""
            a_found = Mux(pf_got, pf_first_found, result.found)
            a_q = Mux(pf_got, pf_first_q, result.index)
            before_wrap = Mux(desc, p < base, p >= base)
            first_in = pf_got | pf_first_now
            ready = (first_in & (a_found | ~before_wrap)) | pf_done
            beyond_wrap_1 = Mux(desc, a_q >= base, a_q < base)
            beyond_wrap_2 = Mux(desc, pf_second_q >= base, pf_second_q < base)
            found = Mux(a_found, before_wrap | beyond_wrap_1,
                        before_wrap & pf_second_found & beyond_wrap_2)
            q = Mux(a_found, a_q, pf_second_q)
            word = Mux(a_found, Mux(pf_got, pf_first_word, result.word), pf_second_word)
            return ready, found, q, word

        def offer_best(book: Any, p: Any) -> None:
            """Level ``p`` of ``book`` now holds an order: it is the best if it beats a valid,
            fresh cached best (a stale cache is left for the next search to refill)."""
            with m.If(~best_stale[book] & (~best_valid[book] | better(book, p, best_p[book]))):
                m.d.sync += [best_valid[book].eq(1), best_p[book].eq(p)]

        # The head of each book's best level, cached: a taker going into the best level from
        # its decode then reads the head's order row in that clock (TAKE_HEAD's clock is gone).
        # Register bh[b] is a copy of the head memory's row for level bh_p[b] of book b, kept
        # by watching the writes as they reach the block RAM: a write to that row updates it,
        # and a write to the row of the book's cached best level (when the copy is of another
        # level) starts a copy of that one. Every level that becomes the best gets a copy when
        # its head is next written: a new order opening it, or the first maker filled there.
        # A copy is of the memory, not of the book, so it holds whatever the engine does.
        bh = Array(Signal(slot_bits, name=f"bh_{b}") for b in range(books))
        bh_p = Array(Signal(log2_l, name=f"bh_p_{b}") for b in range(books))
        bh_ok = Array(Signal(name=f"bh_ok_{b}") for b in range(books))
        head_landing = landing["level_head"]
        for b in range(books):
            to_book = head_landing.en & (head_landing.addr[log2_l:] == b)
            with m.If(to_book & bh_ok[b] & (head_landing.addr[:log2_l] == bh_p[b])):
                m.d.sync += bh[b].eq(head_landing.data)
            with m.Elif(to_book & (head_landing.addr[:log2_l] == best_p[b])):
                m.d.sync += [bh[b].eq(head_landing.data), bh_p[b].eq(best_p[b]),
                             bh_ok[b].eq(1)]

        def emptied(book: Any, p: Any) -> None:
            """Level ``p`` of ``book`` is empty now: if it was the cached best, the cache is
            stale (the next search for the best level asks the bitmap and refills it)."""
            with m.If(best_p[book] == p):
                m.d.sync += best_stale[book].eq(1)

        # Unlink / remove arguments.
        a_slot = Signal(slot_bits)
        a_book = Signal(len(own_book))
        a_p = Signal(log2_l)
        rm_qty = Signal(32)
        rm_prev = Signal(link_layout)  # the order's neighbours, as read
        rm_next = Signal(link_layout)

        def remove(slot: Any, ret_state: str) -> None:
            m.d.sync += a_slot.eq(slot)
            m.d.comb += o_raddr.eq(slot)  # read in this clock: REMOVE_READ has the order
            returning_to("REMOVE", ret_state)
            m.next = "REMOVE_READ"

        # Two stages beside the state machine finish a command's list work while the next
        # command is decoded. The link stage: a resting order's second clock (its level's tail
        # and total, read in the clock ``rest`` wrote the order, are updated), so that a
        # non-crossing order takes one clock; a modify's move ends with it too (MODIFY_TAIL).
        # The unlink stage: a canceled order's last clock
        # (off its level's total and out of its list), so that a cancel takes two; in a mass
        # cancel it runs beside the walk's next order (see MASS_ORDER). They never run in the
        # same clock (the clock before each is a different state). What the next
        # command could see half done is resolved where it looks, by forwarding from the
        # registers below rather than by a stall: the id map's entry (the id just written or
        # freed: the read was issued before the write, ``id_entry``); the best-level cache
        # (``rest`` updates it itself, a cancel marks it stale in its own clock); an order's
        # pointers read in the clock a stage writes them (``row_prev``, ``row_next``); and a
        # level's tail and total read in that clock by an order resting on it.
        lk_valid = Signal()
        lk_slot = Signal(slot_bits)
        lk_book = Signal(len(own_book))
        lk_p = Signal(log2_l)
        lk_qty = Signal(32)
        m.d.sync += lk_valid.eq(0)  # unless ``rest`` or MODIFY_TAIL hands it another order
        ul_valid = Signal()  # the unlink stage: its arguments are REMOVE's (a_book, a_p, rm_*)
        m.d.sync += ul_valid.eq(0)
        mt_valid = Signal()  # the total stage: level (a_book, a_p) from rm_qty to mt_new
        mt_new = Signal(32)
        m.d.sync += mt_valid.eq(0)
        # The id map write of the clock that took the command (``rest``'s or a cancel's).
        fwid_valid = Signal()
        fwid = Signal(32)
        fwid_entry = Signal(link_layout)
        m.d.sync += fwid_valid.eq(0)
        # The command's id map entry: as read, or as held since DECODE's first clock, or the
        # one written in the clock before (the read was issued before that write).
        id_entry = Signal(link_layout)
        id_held = Signal(link_layout)
        with m.If(fwid_valid & (fwid == cmd.body.cancel.id)):
            m.d.comb += id_entry.eq(fwid_entry)
        with m.Else():
            m.d.comb += id_entry.eq(Mux(decode_fresh, id_r.data, id_held))
        m.d.sync += id_held.eq(id_entry)
        # What a stage wrote in the clock before: a level's total (and its tail, when written),
        # one order's prev pointer and another's next pointer.
        fw_valid = Signal()
        fw_addr = Signal(len(l_raddr))
        fw_total = Signal(LEVEL_QTY_BITS)
        fw_tail_written = Signal()
        fw_tail = Signal(link_layout)
        fw_prev_written, fw_next_written = Signal(), Signal()
        fw_prev_slot, fw_next_slot = Signal(slot_bits), Signal(slot_bits)
        fw_prev, fw_next = Signal(link_layout), Signal(link_layout)
        m.d.sync += [fw_valid.eq(0), fw_prev_written.eq(0), fw_next_written.eq(0)]
        # The pointers of order ``cur`` as read, or as a stage wrote them in the clock the read
        # was issued (a cancel or modify decoded beside a stage).
        row_prev = Signal(link_layout)
        row_next = Signal(link_layout)
        m.d.comb += [row_prev.eq(prev_r.data), row_next.eq(next_r.data)]
        with m.If(fw_prev_written & (cur == fw_prev_slot)):
            m.d.comb += row_prev.eq(fw_prev)
        with m.If(fw_next_written & (cur == fw_next_slot)):
            m.d.comb += row_next.eq(fw_next)
        # ... or as the unlink stage writes them in this very clock: a mass cancel reads an
        # order's row in the clock it cancels the order's predecessor, whose unlink then
        # rewrites this order's prev pointer beside this order's turn.
        at_unlinked_successor = ul_valid & rm_next.valid & (cur == rm_next.slot)
        with m.If(at_unlinked_successor):
            m.d.comb += row_prev.eq(rm_prev)
        mass_canceling = Signal()  # MASS_ORDER cancels order ``cur`` in this clock

        init_addr = Signal(range(self.init_cycles + 1))
        query = occupancy.i_query.payload
        result = occupancy.o_result.payload

        # -- The state machine ------------------------------------------------------------------------
        with m.FSM(init="INIT"):
            with m.State("INIT"):
                # Clear the id map's valid bits, the order table's next pointers (a slot is
                # handed out with its next pointer clear: see ``rest``) and the level table's
                # tails and totals.
                m.d.comb += [id_w.addr.eq(init_addr), id_w.data.eq(0),
                             id_w.en.eq(init_addr < cfg.ids),
                             next_w.addr.eq(init_addr), next_w.data.eq(0),
                             next_w.en.eq(init_addr < cfg.orders),
                             tail_w.addr.eq(init_addr), tail_w.data.eq(0),
                             lqty_w.addr.eq(init_addr), lqty_w.data.eq(0),
                             tail_w.en.eq(init_addr < self.level_rows),
                             lqty_w.en.eq(init_addr < self.level_rows)]
                m.d.sync += init_addr.eq(init_addr + 1)
                with m.If((init_addr >= self.init_cycles - 1) & occupancy.ready & free_list.ready):
                    m.d.sync += self.ready.eq(1)
                    m.next = "IDLE"

            with m.State("IDLE"):
                # The queue's level counts an event written in the clock before: its output
                # shows it a clock or two later.
                m.d.comb += [self.i_command.ready.eq(1), self.idle.eq(events.level == 0)]
                with m.If(self.i_command.valid):
                    m.d.sync += [cmd.eq(self.i_command.payload), first.eq(1), decode_fresh.eq(1)]
                    m.next = "DECODE"
                with m.Elif(self.i_set_stream.valid):
                    start = self.i_set_stream.payload
                    m.d.comb += ev.header.market.eq(0)
                    with emitting():  # kind 0: the restart marker
                        m.d.comb += self.i_set_stream.ready.eq(1)
                        m.d.sync += [seq.eq(start.seq), batch.eq(start.batch), batch_count.eq(0)]

            # ---- Validation ----
            def reject(reason: RejectReason, order_id: Any = 0) -> None:
                m.d.sync += [rej_reason.eq(reason), rej_id.eq(order_id)]
                m.next = "REJECT"

            # ---- New order: what DECODE and the take loop end with ----
            is_limit = ~is_market
            def remainder() -> None:
                """What is left of the taker: canceled, or rested at the back of its level."""
                with m.If(is_market):
                    with canceled(new.id, remaining, CancelReason.MARKET_REMAINDER):
                        finish()
                with m.Elif(new.tif == TimeInForce.IOC):
                    with canceled(new.id, remaining, CancelReason.IOC_REMAINDER):
                        finish()
                with m.Else():  # GTC (a FOK order found fillable has no remainder)
                    rest()

            def rest(qty: Any = remaining) -> None:
                """Write the order into a free slot, read its level's tail and total, and take
                the next command: the link stage (below the state machine) appends the order to
                its level in the next clock, beside the next command's decode. The slot's next
                pointer is clear already (cleared when the slot was freed, or by INIT)."""
                slot = alloc_slot
                own_p = new.price[:log2_l]
                m.d.comb += [alloc.eq(1),
                             info_w.addr.eq(slot), info_w.en.eq(1),
                             info_w.data.id.eq(new.id), info_w.data.account.eq(new.account),
                             info_w.data.market.eq(market), info_w.data.side.eq(side),
                             info_w.data.level.eq(own_p),
                             oqty_w.addr.eq(slot), oqty_w.data.eq(qty), oqty_w.en.eq(1),
                             id_w.addr.eq(new.id), id_w.data.valid.eq(1), id_w.data.slot.eq(slot),
                             id_w.en.eq(1),
                             l_raddr.eq(level_addr(own_book, own_p))]
                m.d.sync += [resting.eq(resting + 1), lk_valid.eq(1), lk_qty.eq(qty),
                             lk_slot.eq(slot), lk_book.eq(own_book), lk_p.eq(own_p),
                             fwid_valid.eq(1), fwid.eq(new.id), fwid_entry.valid.eq(1),
                             fwid_entry.slot.eq(slot)]
                # The best level's cache, updated here rather than when the level is found
                # empty, so that the next command's decode sees it: a level better than a
                # valid, fresh best one is empty (the best is the best non-empty level).
                offer_best(own_book, own_p)
                finish()

            def into_best_level(state: str) -> None:
                """Go into the opposite best level from DECODE, which read its total and head
                (``best_readable``), on to ``state``; the search ahead goes out."""
                m.d.sync += [wc_valid.eq(0), wc_next_found.eq(0), wc_next2_found.eq(0),
                             s_found.eq(1), s_q.eq(opp_best), lvl_p.eq(opp_best),
                             lvl_new.eq(0), lvl_fresh.eq(1)]
                search_ahead(opp_best)
                m.next = state

            def accept() -> None:
                a = ev.body.accepted
                with emitting(ev.header.kind.eq(EventKind.ACCEPTED), a.id.eq(new.id),
                              a.account.eq(new.account), a.price.eq(Mux(is_market, 0, new.price)),
                              a.qty.eq(new.qty), a.side.eq(new.side), a.type.eq(new.type),
                              a.tif.eq(new.tif), a.post_only.eq(new.post_only), a.stp.eq(new.stp)):
                    m.d.sync += need.eq(new.qty - 1)
                    with m.If(rests_now):  # a post-only order too: it does not cross
                        rest(new.qty)
                    with m.Elif(new.post_only):
                        search(opp_book, opp_desc, "POST_ONLY_CHECK")
                    with m.Elif(fok_at_once):
                        # FOK_LEVEL's work: FOK_FIRST checks the total read in this clock, and
                        # the search ahead goes out now for the take that follows when the
                        # level covers the order.
                        into_best_level("FOK_FIRST")
                    with m.Elif(new.tif == TimeInForce.FOK):
                        search(opp_book, opp_desc, "FOK_LEVEL")
                    with m.Elif(takes_at_once):
                        # TAKE_LEVEL's and TAKE_HEAD's work: the head's order row and the
                        # level's total were read in this clock.
                        m.d.sync += cur.eq(best_head)
                        into_best_level("TAKE_ORDER")
                    with m.Elif(best_crossed):
                        # TAKE_LEVEL's work: the best level's head was read in this clock.
                        m.d.sync += [wc_valid.eq(0), s_found.eq(1), s_q.eq(opp_best),
                                     lvl_p.eq(opp_best), lvl_new.eq(1)]
                        m.next = "TAKE_HEAD"
                    with m.Else():
                        search(opp_book, opp_desc, "TAKE_LEVEL")

            market_ok = market < cfg.markets
            rank = Signal(8)  # a query's row
            bids = Cat(Const(Side.BUY.value, 1), market[:self.market_bits])
            asks = Cat(Const(Side.SELL.value, 1), market[:self.market_bits])
            # A limit GTC order that cannot cross, known from the opposite book's cached best
            # level, rests in the clock it is accepted instead of searching first. The test
            # runs from registers beside the id map's read, so the decision that follows the
            # block RAM's output grows by one AND.
            opp_best_crosses = Mux(side == Side.BUY.value, rel(best_p[opp_book]) <= index,
                                   rel(best_p[opp_book]) >= index)
            rests_now = (~is_market & (new.tif == TimeInForce.GTC) & ~best_stale[opp_book]
                         & (~best_valid[opp_book] | ~opp_best_crosses))
            # A taker whose opposite best level is cached goes into it from DECODE, whose clock
            # reads that level's head, unless a stage writes that level's head in this clock
            # (the read would miss it): the link stage's order may be its first, the unlink
            # stage's its head. Then TAKE_LEVEL reads it a clock later.
            opp_best = best_p[opp_book]
            opp_best_known = ~best_stale[opp_book] & best_valid[opp_book]
            stage_on_best = ((lk_valid & (lk_book == opp_book) & (lk_p == opp_best))
                             | (ul_valid & (a_book == opp_book) & (a_p == opp_best)))
            best_crossed = opp_best_known & (is_market | opp_best_crosses) & ~stage_on_best
            # With the head's slot cached too, DECODE also reads the head's order row and the
            # level's total, and the taker's first fill is in the next clock. The decision is
            # made from registers alone (it drives two read addresses); a stage writing that
            # level in this clock (the total stage too: the total is read now) leaves it to
            # TAKE_HEAD. A write reaching the heads' memory in this clock is not in bh yet: it is
            # taken from the write.
            best_readable = best_crossed & ~(mt_valid & (a_book == opp_book) & (a_p == opp_best))
            head_pending = head_landing.en & (head_landing.addr == level_addr(opp_book, opp_best))
            best_head = Mux(head_pending, head_landing.data, bh[opp_book])
            takes_at_once = (~new.post_only & (new.tif != TimeInForce.FOK) & best_readable
                             & (head_pending | (bh_ok[opp_book] & (bh_p[opp_book] == opp_best))))
            # A FOK order without self-trade prevention whose opposite best level is cached
            # and crosses starts its scan from DECODE, which reads that level's head and total
            # (unless a stage writes the level in that clock, as for ``takes_at_once``):
            # FOK_FIRST checks the total and, when it covers the order, goes into the level
            # at once (FOK_LEVEL, FOK_TOTAL, TAKE_LEVEL and TAKE_HEAD were 4 clocks).
            # Registers only, as for ``takes_at_once``: it chooses the totals' read address.
            fok_at_once = (new.tif == TimeInForce.FOK) & (new.stp == StpMode.NONE) & best_readable
            with m.State("DECODE"):
                # The id map's entry for the command's id was read in the clock that took it:
                # id_entry has it. A new order's level is read whatever is decided (only
                # ``rest`` uses it): the address then does not wait for the id map's entry.
                m.d.comb += [o_raddr.eq(best_head),  # a cancel's or a modify's below
                             l_raddr.eq(level_addr(own_book, new.price[:log2_l])),
                             h_raddr.eq(level_addr(opp_book, opp_best)),
                             q_raddr.eq(Mux(takes_at_once | fok_at_once,
                                            level_addr(opp_book, opp_best),
                                            level_addr(own_book, new.price[:log2_l])))]
                m.d.sync += [pf_armed.eq(0), sc_valid[0].eq(0), sc_valid[1].eq(0)]
                with m.Switch(op):
                    with m.Case(Opcode.NEW_ORDER):
                        malformed = (~market_ok | (new.id >= cfg.ids) | (new.qty == 0)
                                     | (new.tif.as_value() == 3)
                                     | (new.post_only & (is_market | (new.tif != TimeInForce.GTC))))
                        m.d.sync += remaining.eq(new.qty)
                        with m.If(malformed):
                            reject(RejectReason.MALFORMED, new.id)
                        with m.Elif(id_entry.valid):
                            reject(RejectReason.DUPLICATE_ID, new.id)
                        with m.Elif(is_limit & ~in_window):
                            reject(RejectReason.PRICE_OUTSIDE_WINDOW, new.id)
                        with m.Elif(is_limit & (new.tif == TimeInForce.GTC)
                                    & (resting >= cfg.orders)):
                            reject(RejectReason.BOOK_FULL, new.id)
                        with m.Else():
                            accept()
                    with m.Case(Opcode.CANCEL, Opcode.MODIFY):
                        order_id = cmd.body.cancel.id
                        # The order's row, read whatever is decided (not waiting for the valid
                        # bit): FOUND has it.
                        m.d.comb += o_raddr.eq(id_entry.slot)
                        m.d.sync += cur.eq(id_entry.slot)
                        with m.If(~market_ok | (order_id >= cfg.ids)):
                            reject(RejectReason.MALFORMED, order_id)
                        with m.Elif(~id_entry.valid):
                            reject(RejectReason.UNKNOWN_ID, order_id)
                        with m.Else():
                            m.next = "FOUND"
                    with m.Case(Opcode.MASS_CANCEL_ACCOUNT, Opcode.MASS_CANCEL_MARKET):
                        with m.If(~market_ok):
                            reject(RejectReason.MALFORMED)
                        with m.Else():
                            m.next = "MASS_START"
                    with m.Case(Opcode.SET_WINDOW):
                        with m.If(~market_ok | (cmd.body.set_window.lowest > (1 << 32) - L)):
                            reject(RejectReason.MALFORMED)
                        with m.Else():
                            m.next = "WINDOW_START"
                    with m.Case(Opcode.QUERY):
                        with m.If(~market_ok | (cmd.body.query.levels == 0)):
                            reject(RejectReason.MALFORMED)
                        with m.Else():
                            m.d.sync += rank.eq(0)
                            search(bids, 1, "QUERY_BEST_BID")
                    with m.Case(Opcode.CLOSE_BATCH):
                        m.next = "CLOSE_BATCH"
                    with m.Default():
                        reject(RejectReason.MALFORMED)

            with m.State("REJECT"):
                r = ev.body.rejected
                with emitting(ev.header.kind.eq(EventKind.REJECTED), r.id.eq(rej_id), r.op.eq(op),
                              r.reason.eq(rej_reason)):
                    finish()

            # ---- New order: accepted in DECODE (above) ----
            with m.State("POST_ONLY_CHECK"):
                with m.If(s_found & crosses(s_q)):
                    with canceled(new.id, new.qty, CancelReason.POST_ONLY_WOULD_CROSS):
                        finish()
                with m.Else():
                    remainder()

            # FOK: walk the crossing levels (their totals, or their orders under self-trade
            # prevention) until the quantity is covered, before anything happens.
            with m.State("FOK_LEVEL"):
                with m.If(~s_found | ~crosses(s_q)):
                    m.next = "FOK_CANCEL"
                with m.Else():
                    m.d.comb += l_raddr.eq(level_addr(opp_book, s_q))
                    m.d.sync += lvl_p.eq(s_q)
                    with m.If(new.stp == StpMode.NONE):
                        m.next = "FOK_TOTAL"
                    with m.Else():
                        m.next = "FOK_HEAD"
            with m.State("FOK_TOTAL"):
                covered = need - lqty_r.data
                m.d.sync += need.eq(covered)
                with m.If(covered < 0):
                    search(opp_book, opp_desc, "TAKE_LEVEL")
                with m.Else():
                    search(opp_book, opp_desc, "FOK_LEVEL", after=lvl_p, from_word=False)
            with m.State("FOK_FIRST"):
                # The best level's total and head, read in DECODE. The head's row and the total
                # are read again for TAKE_ORDER whatever is decided (TAKE_HEAD's work), so that
                # the addresses wait for no compare.
                covered = need - lqty_r.data
                m.d.comb += [o_raddr.eq(head_r.data), q_raddr.eq(level_addr(opp_book, lvl_p))]
                m.d.sync += [need.eq(covered), cur.eq(head_r.data)]
                with m.If(covered < 0):
                    m.next = "TAKE_ORDER"
                with m.Else():
                    search(opp_book, opp_desc, "FOK_LEVEL", after=lvl_p, from_word=False)
            with m.State("FOK_HEAD"):
                m.d.comb += o_raddr.eq(head_r.data)
                m.next = "FOK_ORDER"
            with m.State("FOK_ORDER"):
                own = info_r.data.account == new.account
                covered = need - oqty_r.data
                # The next order's row, whatever is decided: only this state's own branch
                # uses it, and the address then does not wait for the decision.
                m.d.comb += o_raddr.eq(next_r.data.slot)
                with m.If(own & (new.stp != StpMode.CANCEL_MAKER)):
                    m.next = "FOK_CANCEL"  # the taker would stop here, short of its quantity
                with m.Elif(~own & (covered < 0)):
                    search(opp_book, opp_desc, "TAKE_LEVEL")
                with m.Else():
                    with m.If(~own):
                        m.d.sync += need.eq(covered)
                    with m.If(~next_r.data.valid):
                        search(opp_book, opp_desc, "FOK_LEVEL", after=lvl_p, from_word=False)
            with m.State("FOK_CANCEL"):
                with canceled(new.id, new.qty, CancelReason.FOK_NOT_FILLABLE):
                    finish()

            # Take liquidity: best level first, oldest order first.
            with m.State("TAKE_LEVEL"):
                # Every take comes through here first: the rest of a word found by an earlier
                # command is not the book as it is now.
                m.d.sync += wc_valid.eq(0)
                with m.If(~s_found | ~crosses(s_q)):
                    remainder()
                with m.Else():
                    m.d.comb += l_raddr.eq(level_addr(opp_book, s_q))
                    m.d.sync += [lvl_p.eq(s_q), lvl_new.eq(1)]
                    m.next = "TAKE_HEAD"
            with m.State("TAKE_HEAD"):
                m.d.comb += [o_raddr.eq(head_r.data), l_raddr.eq(level_addr(opp_book, lvl_p))]
                m.d.sync += [cur.eq(head_r.data), lvl_fresh.eq(1)]
                # The level is the book's best, and its head as read is the memory's row (no
                # write to it lands in this clock: see ``takes_at_once``): the head cache's copy
                # starts here, so that the next taker goes in from its decode even when this
                # one leaves the head in place (a partial fill writes no head).
                m.d.sync += [bh[opp_book].eq(head_r.data), bh_p[opp_book].eq(lvl_p),
                             bh_ok[opp_book].eq(1)]
                # Search ahead when a query found this level: for the level after the word when
                # its rest is known, else for the level after this one. A level found in the rest of the word
                # keeps the search made for the word.
                with m.If(lvl_new):
                    m.d.sync += pf_armed.eq(0)
                    search_ahead(Mux(wc_valid, word_edge, lvl_p))
                m.next = "TAKE_ORDER"
            with m.State("TAKE_ORDER"):
                # The maker's row and its level's total, read in the clock before (and held
                # there while the fill waits for room in the event queue). The maker is always
                # its level's head: the taker consumes levels from the front.
                maker_qty = oqty_r.data
                maker_next = next_r.data
                # Both differences at once, each one carry chain straight from the read data
                # (not a minimum and then a difference: two chains in series).
                maker_left = Signal(33)  # maker_qty - remaining: what the maker keeps
                taker_left = Signal(33)  # remaining - maker_qty: what the taker still wants
                m.d.comb += [maker_left.eq(maker_qty - remaining), taker_left.eq(remaining - maker_qty)]
                maker_done = ~taker_left[32]  # maker_qty <= remaining: the maker leaves the book
                qty = Mux(maker_done, maker_qty, remaining)
                # A filled maker is taken out of the book in this same clock (below), and its
                # successor's row read, so that a level's orders fill one per clock. The total
                # written in the clock before is not readable yet: it is kept in lvl_total.
                level_total = Mux(lvl_fresh, lqty_r.data, lvl_total)
                level = level_addr(opp_book, lvl_p)
                # The successor's row whenever the fill can go out, not only when the maker is
                # filled: a partial fill ends the command and a self-trade reads its own rows,
                # so the read address does not wait for the quantity compare (it did: the
                # appliance's critical path).
                # The level table's row: this level's, for a fill that waits for room in the
                # event queue (it reads the total again); else the next level's when it is in
                # the rest of the word, so that a level change can start on its head at once.
                # Nothing after a fill that goes out reads this level's row.
                prefetch = events.w_rdy & wc_next_found
                m.d.comb += [o_raddr.eq(Mux(events.w_rdy, maker_next.slot, cur)),
                             l_raddr.eq(Mux(prefetch, level_addr(opp_book, wc_next_q), level))]
                m.d.sync += next_row_read.eq(prefetch)
                # The bitmap's update, should the level empty, and the slot to free, should the
                # maker be filled: their payloads (the bitmap's read address, the freed slot's
                # register) do not wait for the decision, only their valid does.
                m.d.comb += [free_slot.eq(cur),
                             occupancy.i_update.payload.book.eq(opp_book),
                             occupancy.i_update.payload.index.eq(lvl_p),
                             occupancy.i_update.payload.set.eq(0)]
                m.d.sync += [mk_id.eq(info_r.data.id), mk_account.eq(info_r.data.account),
                             mk_qty.eq(maker_qty), mk_next.eq(maker_next)]
                with m.If((new.stp != StpMode.NONE) & (info_r.data.account == new.account)):
                    with m.If(new.stp == StpMode.CANCEL_TAKER):
                        m.next = "TAKER_SELF_TRADE"
                    with m.Else():
                        m.next = "MAKER_SELF_TRADE"
                with m.Else():
                    f = ev.body.fill
                    with emitting(ev.header.kind.eq(EventKind.FILL), f.maker.eq(info_r.data.id),
                                  f.taker.eq(new.id), f.maker_account.eq(info_r.data.account),
                                  f.taker_account.eq(new.account),
                                  f.price.eq(cur_lowest + rel(lvl_p)), f.qty.eq(qty),
                                  f.maker_remaining.eq(Mux(maker_done, 0, maker_left[:32])),
                                  f.taker_remaining.eq(Mux(maker_done, taker_left[:32], 0)),
                                  f.taker_side.eq(new.side)):
                        m.d.sync += remaining.eq(Mux(maker_done, taker_left[:32], 0))
                        with m.If(maker_done):
                            # Remove the maker (what REMOVE does, knowing it is the head):
                            # free its id and slot, take it off the total, and unlink it.
                            m.d.comb += [id_w.addr.eq(info_r.data.id), id_w.data.eq(0), id_w.en.eq(1),
                                         next_w.addr.eq(cur), next_w.data.eq(0), next_w.en.eq(1),
                                         free_valid.eq(1),
                                         lqty_w.addr.eq(level), lqty_w.data.eq(level_total - maker_qty),
                                         lqty_w.en.eq(1),
                                         head_w.addr.eq(level), head_w.data.eq(maker_next.slot),
                                         head_w.en.eq(1)]
                            m.d.sync += [resting.eq(resting - 1), lvl_fresh.eq(0),
                                         lvl_total.eq(level_total - maker_qty)]
                            with m.If(maker_next.valid):
                                m.d.comb += [prev_w.addr.eq(maker_next.slot), prev_w.data.eq(0),
                                             prev_w.en.eq(1)]
                            with m.Else():  # the level is empty now
                                m.d.comb += [tail_w.addr.eq(level), tail_w.data.eq(0), tail_w.en.eq(1),
                                             occupancy.i_update.valid.eq(1)]
                                emptied(opp_book, lvl_p)
                            with m.If(maker_next.valid & (remaining != maker_qty)):
                                m.d.sync += cur.eq(maker_next.slot)  # the next maker, now
                            with m.Else():
                                m.next = "TAKE_NEXT"  # the taker is filled, or the level empty
                        with m.Else():  # the maker rests on: the taker is filled
                            m.d.comb += [oqty_w.addr.eq(cur), oqty_w.data.eq(maker_left[:32]),
                                         oqty_w.en.eq(1),
                                         lqty_w.addr.eq(level), lqty_w.data.eq(level_total - remaining),
                                         lqty_w.en.eq(1)]
                            finish()
            with m.State("TAKE_NEXT"):
                # The reads for whichever way the taker goes on, chosen by registers only (not
                # by the decision below, whose compares would then stand in front of two block
                # RAMs' addresses: they did, the appliance's critical path at `d1633f0`). No
                # other way uses what is read.
                # The search ahead's answer: its first in the clock it comes, or in its register.
                a_q = Mux(pf_got, pf_first_q, result.index)
                pf_q = Mux(pf_got & ~pf_first_found, pf_second_q, a_q)
                m.d.comb += [
                    o_raddr.eq(Mux(mk_next.valid, mk_next.slot, head_r.data)),
                    l_raddr.eq(level_addr(opp_book, Mux(mk_next.valid, lvl_p,
                                                        Mux(wc_next_found, wc_next_q, pf_q)))),
                ]
                with m.If(remaining == 0):
                    finish()
                with m.Elif(mk_next.valid):
                    m.d.sync += [cur.eq(mk_next.slot), lvl_fresh.eq(1)]
                    m.next = "TAKE_ORDER"
                with m.Elif(wc_next_found):  # the level is exhausted: the next one, in its word
                    q = wc_next_q
                    # The exhausted level was the best: the next one is the new best.
                    m.d.sync += [s_found.eq(1), s_q.eq(q),
                                 best_valid[opp_book].eq(1), best_p[opp_book].eq(q),
                                 best_stale[opp_book].eq(0)]
                    with m.If(wc_next_crosses):
                        m.d.sync += [lvl_p.eq(q), lvl_new.eq(0),
                                     wc_next_found.eq(wc_next2_found), wc_next_q.eq(wc_next2_q)]
                        with m.If(next_row_read):  # read beside the last fill: TAKE_HEAD's work
                            m.d.sync += [cur.eq(head_r.data), lvl_fresh.eq(1)]
                            m.next = "TAKE_ORDER"
                        with m.Else():
                            m.next = "TAKE_HEAD"
                    with m.Else():
                        m.next = "TAKE_LEVEL"
                with m.Elif(pf_armed):  # the level and its word are exhausted: searched ahead
                    # SEARCH's two answers for "next worse than lvl_p", combined.
                    a_in, found, q, a_word = ahead_answer(opp_desc, lvl_p)
                    with m.If(a_in):
                        # The exhausted level was the best: the answer is the new best.
                        m.d.sync += [s_found.eq(found), s_q.eq(q), pf_armed.eq(0),
                                     wc_valid.eq(found), wc_bits.eq(a_word),
                                     best_valid[opp_book].eq(found), best_p[opp_book].eq(q),
                                     best_stale[opp_book].eq(0)]
                        # TAKE_LEVEL's work when the taker goes on into that level: the
                        # level's row is read at once (above), a clock saved.
                        with m.If(found & crosses(q)):
                            m.d.sync += [lvl_p.eq(q), lvl_new.eq(1)]
                            m.next = "TAKE_HEAD"
                        with m.Else():
                            m.next = "TAKE_LEVEL"
                with m.Else():
                    search(opp_book, opp_desc, "TAKE_LEVEL")
            with m.State("MAKER_SELF_TRADE"):
                with canceled(mk_id, mk_qty, CancelReason.SELF_TRADE):
                    remove(cur, "AFTER_MAKER_SELF_TRADE")
            with m.State("AFTER_MAKER_SELF_TRADE"):
                with m.If(new.stp == StpMode.CANCEL_BOTH):
                    m.next = "TAKER_SELF_TRADE"
                with m.Else():
                    m.next = "TAKE_NEXT"
            with m.State("TAKER_SELF_TRADE"):
                with canceled(new.id, remaining, CancelReason.SELF_TRADE):
                    finish()

            # ---- Taking order a_slot out of level (a_book, a_p)'s list ----
            def unlink_writes(prev: Any, nxt: Any, mark_stale: bool = True,
                              keep_next: Any = None) -> None:
                """Take order a_slot (between ``prev`` and ``nxt``) out of level (a_book, a_p)'s
                list; ``mark_stale``: mark the best-level cache stale if the level empties
                (the unlink stage's caller has done it a clock earlier); ``keep_next``: leave
                ``prev``'s next pointer (``nxt`` is being taken out too, see MASS_ORDER)."""
                addr = level_addr(a_book, a_p)
                # The bitmap's row whatever the pointers say (they come from block RAM).
                m.d.comb += [occupancy.i_update.payload.book.eq(a_book),
                             occupancy.i_update.payload.index.eq(a_p),
                             occupancy.i_update.payload.set.eq(0)]
                # (``keep_next`` is a decision after a block RAM's output: it gates the next
                # pointer's write alone, not the head's, which an If/Elif chain would make it.)
                with m.If(prev.valid):
                    write_next = [next_w.addr.eq(prev.slot), next_w.data.eq(nxt), next_w.en.eq(1)]
                    if keep_next is None:
                        m.d.comb += write_next
                    else:
                        with m.If(~keep_next):
                            m.d.comb += write_next
                with m.Else():
                    m.d.comb += [head_w.addr.eq(addr), head_w.data.eq(nxt.slot), head_w.en.eq(1)]
                with m.If(nxt.valid):
                    m.d.comb += [prev_w.addr.eq(nxt.slot), prev_w.data.eq(prev), prev_w.en.eq(1)]
                with m.Else():
                    m.d.comb += [tail_w.addr.eq(addr), tail_w.data.eq(prev), tail_w.en.eq(1)]
                with m.If(~prev.valid & ~nxt.valid):  # the level is empty now
                    if mark_stale:
                        emptied(a_book, a_p)
                    m.d.comb += occupancy.i_update.valid.eq(1)

            # ---- Subroutine REMOVE's first clock, also done by a cancel in FOUND and a mass
            # cancel in MASS_ORDER (whose second is then the unlink stage's) ----

            def removing(slot: Any) -> None:
                """Free the order in ``slot`` (whose row is on the read data) and read its level:
                REMOVE_WRITE then takes it off the level's total and out of its list. The caller
                puts ``slot`` on the free list's payload outside any decision."""
                info = info_r.data
                book = Cat(info.side, info.market)
                m.d.comb += [l_raddr.eq(level_addr(book, info.level)),
                             id_w.addr.eq(info.id), id_w.data.eq(0), id_w.en.eq(1),
                             next_w.addr.eq(slot), next_w.data.eq(0), next_w.en.eq(1),
                             free_valid.eq(1)]
                m.d.sync += [resting.eq(resting - 1), a_book.eq(book), a_p.eq(info.level),
                             rm_qty.eq(oqty_r.data), rm_prev.eq(row_prev), rm_next.eq(row_next)]

            # ---- Cancel and modify ----
            new_qty = cmd.body.modify.qty
            grows = new_qty > oqty_r.data  # in FOUND: larger than the order's quantity
            with m.State("FOUND"):
                info = info_r.data
                # The order's level, read whatever is decided (only a modify uses it): the
                # address then does not wait for the decision.
                m.d.comb += [o_raddr.eq(cur),  # the data holds while an event waits
                             free_slot.eq(cur),  # not waiting for the decision
                             l_raddr.eq(level_addr(Cat(info.side, info.market), info.level))]
                with m.If(info.market != market):
                    reject(RejectReason.UNKNOWN_ID, cmd.body.cancel.id)
                with m.Elif((op == Opcode.CANCEL) | (new_qty == 0)):
                    with canceled(info.id, oqty_r.data, CancelReason.USER):
                        # REMOVE's first clock here (the row and the level's address are on
                        # the read ports already); its second in the unlink stage, beside the
                        # next command. The level empties when the order has no neighbour:
                        # the best-level cache learns it now, for the next command's decode.
                        removing(cur)
                        with m.If(~row_prev.valid & ~row_next.valid):
                            emptied(Cat(info.side, info.market), info.level)
                        m.d.sync += [ul_valid.eq(1), fwid_valid.eq(1), fwid.eq(cmd.body.cancel.id),
                                     fwid_entry.eq(0)]
                        finish()
                with m.Else():  # modify
                    md = ev.body.modified
                    with emitting(ev.header.kind.eq(EventKind.MODIFIED), md.id.eq(info.id),
                                  md.qty.eq(new_qty), md.requeued.eq(grows)):
                        # The quantity written only as the event goes out: a FOUND that waits
                        # reads the order's row again, and must find the old quantity.
                        m.d.comb += [oqty_w.addr.eq(cur), oqty_w.data.eq(new_qty), oqty_w.en.eq(1)]
                        m.d.sync += [rm_qty.eq(oqty_r.data), rm_prev.eq(row_prev),
                                     rm_next.eq(row_next),
                                     a_book.eq(Cat(info.side, info.market)), a_p.eq(info.level)]
                        with m.If(grows & row_next.valid):  # to the back of its level
                            m.next = "MODIFY_MOVE"
                        with m.Else():  # it keeps its place: the total in the total stage
                            m.d.sync += [mt_valid.eq(1), mt_new.eq(new_qty)]
                            finish()
            with m.State("MODIFY_MOVE"):
                # Out of its place (its pointers and its level's total were read in FOUND),
                # the total changed. MODIFY_TAIL and the link stage append it behind the
                # level's tail, which is another order (this one had a successor): the level is
                # not empty.
                m.d.comb += [lqty_w.addr.eq(level_addr(a_book, a_p)),
                             lqty_w.data.eq(lqty_r.data + new_qty - rm_qty), lqty_w.en.eq(1)]
                unlink_writes(rm_prev, rm_next)
                m.next = "MODIFY_TAIL"
            with m.State("MODIFY_TAIL"):
                # The tail and total read after the unlink's writes; the order's own next
                # pointer cleared (it becomes the tail). The next-pointer memory has one write
                # port: the unlink's write to its predecessor took it in MODIFY_MOVE, the old
                # tail's takes it in the link stage, which appends the order as it does a
                # resting one, beside the next command's decode (its total already changed:
                # the stage adds nothing; the level is not empty: no bitmap update).
                m.d.comb += [l_raddr.eq(level_addr(a_book, a_p)),
                             next_w.addr.eq(cur), next_w.data.eq(0), next_w.en.eq(1)]
                m.d.sync += [lk_valid.eq(1), lk_qty.eq(0), lk_slot.eq(cur), lk_book.eq(a_book),
                             lk_p.eq(a_p)]
                finish()

            # ---- Mass cancel: bids best first, then asks best first, oldest first ----
            mc_side = Signal()
            mc_count = Signal(32)
            whole = op == Opcode.MASS_CANCEL_MARKET
            mc_book = Cat(mc_side, market[:self.market_bits])
            mc_desc = mc_side == Side.BUY.value  # bids are walked from the highest price
            # The walk's next level in the rest of the last searched word, registered (below
            # the state machine) from the level MASS_LEVEL enters, then from lvl_p. The walk's
            # level is the word's answer or a level found in it since (MASS_LEVEL and
            # ``next_level`` set lvl_p), so the word needs no check of sc_q.
            mc_next_ok, mc_next_q = Signal(), Signal(log2_l)
            mc_next2_ok, mc_next2_q = Signal(), Signal(log2_l)  # ... and the one after it
            mc_move = Signal()  # MASS_ORDER moves on to level mc_next_q in this clock
            # The head of level mc_next_q, read ahead: a move in the word then reads the next
            # level's head order's row beside the last order of this level (MASS_HEAD's clock
            # gone), and in that clock the walk reads the head of the level after it, so that
            # levels of one order each also go one per clock. The head memory's read data is
            # that head in the clock after a move or MASS_HEAD (``mc_head_fresh``), which read
            # it; in MASS_ORDER's other clocks, which read the head of the level after it, a
            # copy taken then (``mc_head``). The walk writes no head of a level ahead of it.
            mc_head_fresh = Signal()
            mc_head = Signal(slot_bits)
            mc_reading_next = Signal()  # MASS_HEAD reads the head of level mc_next_q
            mc_entering = Signal()  # MASS_LEVEL: the walk's level is s_q from the next clock
            n1_head = Mux(mc_head_fresh, head_r.data, mc_head)
            with m.State("MASS_START"):
                m.d.sync += [mc_side.eq(Side.BUY.value), mc_count.eq(0)]
                search(Cat(Const(Side.BUY.value, 1), market[:self.market_bits]), 1, "MASS_LEVEL")
            with m.State("MASS_LEVEL"):
                m.d.comb += mc_entering.eq(1)
                with m.If(s_found):
                    m.d.comb += l_raddr.eq(level_addr(mc_book, s_q))
                    m.d.sync += lvl_p.eq(s_q)
                    # The bitmap is asked at once for the level after this word (after this
                    # level when its word is not known: a best level from the cache), so that
                    # the answer is there when the walk leaves the word (MASS_AHEAD). The walk
                    # changes its book's bitmap only in the words it has passed or stands on.
                    sd = mc_side
                    word_known = sc_valid[sd] & (sc_book[sd] == mc_book) & (sc_q[sd] == s_q)
                    edge = Cat(Mux(mc_desc, 0, wb - 1), s_q[wb_log2:])
                    search_ahead(Mux(word_known, edge, s_q), mc_book, mc_desc)
                    m.next = "MASS_HEAD"
                with m.Elif(mc_side == Side.BUY.value):
                    m.d.sync += mc_side.eq(Side.SELL.value)
                    search(Cat(Const(Side.SELL.value, 1), market[:self.market_bits]), 0, "MASS_LEVEL")
                with m.Else():
                    m.next = "MASS_DONE"
            with m.State("MASS_HEAD"):
                # The level's head, read in the clock before, and the next level's, read ahead.
                m.d.comb += [o_raddr.eq(head_r.data), h_raddr.eq(level_addr(mc_book, mc_next_q)),
                             mc_reading_next.eq(1)]
                m.d.sync += cur.eq(head_r.data)
                m.next = "MASS_ORDER"
            with m.State("MASS_ORDER"):
                # The order's row is on the read data. One of the account's (or any, for the
                # whole market): canceled and freed in this clock, taken out of its list by the
                # unlink stage in the next, beside the successor's turn; another's: passed. So
                # every order takes a clock. The successor's row is read whenever the event
                # queue has room, whatever is decided (the address then waits for no compare);
                # when it has none, this row is read again and the order waits (a passed one
                # too). The successor's row and its level's total, read in the clock before the
                # unlink stage writes them, are corrected where they are used (``row_prev``,
                # ``ul_total``); when the successor is canceled too, the stage leaves the
                # predecessor's next pointer to the successor's own unlink (the order table's
                # next pointers have one write port, and the successor's is cleared now).
                # At the level's last order the walk goes on to the next level in the rest of
                # the last searched word, known from registers (``mc_next_*``), whose head is
                # known (``n1_head``): its row is read in this clock and the walk stays here.
                # When the word has none, the bitmap's answer to the search ahead made from
                # MASS_LEVEL has it (MASS_AHEAD).
                info = info_r.data
                # The unlink stage writes a next pointer in this clock (the last order's
                # predecessor's, when the last order was canceled and the walk moved on to
                # this level): the pointers' one write port is taken, and canceling this order
                # clears its next pointer, so the order waits a clock, as for room in the
                # event queue, whether it is to be canceled or passed (registers decide).
                # (Within a level the stage leaves that write to the successor's own unlink,
                # ``ul_keep_next``; without the wait the clear was lost, and the slot came
                # back from the free list with a stale next pointer.)
                next_port_taken = ul_valid & rm_prev.valid & ~at_unlinked_successor
                go = events.w_rdy & ~next_port_taken
                m.d.comb += [o_raddr.eq(Mux(go, Mux(row_next.valid, row_next.slot, n1_head), cur)),
                             free_slot.eq(cur),
                             h_raddr.eq(level_addr(mc_book, mc_next2_q))]

                def next_level() -> None:
                    with m.If(mc_next_ok):
                        m.d.comb += mc_move.eq(1)
                        m.d.sync += [lvl_p.eq(mc_next_q), cur.eq(n1_head)]
                    with m.Else():
                        m.next = "MASS_AHEAD"

                with m.If(next_port_taken):
                    pass  # its row is read again (above)
                with m.Elif(whole | (info.account == cmd.body.mass_cancel_account.account)):
                    with canceled(info.id, oqty_r.data, CancelReason.MASS_CANCEL):
                        removing(cur)
                        with m.If(~row_prev.valid & ~row_next.valid):
                            emptied(Cat(info.side, info.market), info.level)
                        m.d.comb += mass_canceling.eq(1)
                        m.d.sync += [mc_count.eq(mc_count + 1), ul_valid.eq(1)]
                        with m.If(row_next.valid):
                            m.d.sync += cur.eq(row_next.slot)
                        with m.Else():
                            next_level()
                with m.Elif(~events.w_rdy):
                    pass  # its row is read again (above)
                with m.Elif(row_next.valid):
                    m.d.sync += cur.eq(row_next.slot)
                with m.Else():
                    next_level()
            with m.State("MASS_AHEAD"):
                # The word is done: the search ahead's answer (waited for, if it is not in
                # yet) is the walk's next level, and its word the walk's.
                a_in, found, q, a_word = ahead_answer(mc_desc, lvl_p)
                with m.If(a_in):
                    m.d.sync += [s_found.eq(found), s_q.eq(q), pf_armed.eq(0),
                                 sc_valid[mc_side].eq(found), sc_book[mc_side].eq(mc_book),
                                 sc_q[mc_side].eq(q), sc_bits[mc_side].eq(a_word)]
                    m.next = "MASS_LEVEL"
            with m.State("MASS_DONE"):
                mcd = ev.body.mass_canceled
                with emitting(ev.header.kind.eq(EventKind.MASS_CANCELED),
                              mcd.account.eq(Mux(whole, 0, cmd.body.mass_cancel_account.account)),
                              mcd.count.eq(mc_count), mcd.whole_market.eq(whole)):
                    finish()

            # ---- Set window: every resting order must stay inside the new window ----
            new_lowest = cmd.body.set_window.lowest
            sw_step = Signal(2)  # bids highest, bids lowest, asks highest, asks lowest
            sw_bad = Signal()
            with m.State("WINDOW_START"):
                m.d.sync += [sw_step.eq(0), sw_bad.eq(0)]
                search(Cat(sw_step[1], market[:self.market_bits]), 1, "WINDOW_CHECK")
            with m.State("WINDOW_CHECK"):
                price = Signal(33)
                m.d.comb += price.eq(cur_lowest + rel(s_q))
                high = ~sw_step[0]
                with m.If(s_found & Mux(high, price >= new_lowest + L, price < new_lowest)):
                    m.d.sync += sw_bad.eq(1)
                m.d.sync += sw_step.eq(sw_step + 1)
                with m.If(sw_step == 3):
                    m.next = "WINDOW_DECIDE"
                with m.Else():
                    following = sw_step + 1
                    search(Cat(following[1], market[:self.market_bits]), ~following[0], "WINDOW_CHECK")
            with m.State("WINDOW_DECIDE"):
                with m.If(sw_bad):
                    reject(RejectReason.PRICE_OUTSIDE_WINDOW)
                with m.Else():
                    m.next = "WINDOW_SET"
            with m.State("WINDOW_SET"):
                with emitting(ev.header.kind.eq(EventKind.WINDOW_SET),
                              ev.body.window_set.lowest.eq(new_lowest)):
                    m.d.sync += cur_lowest.eq(new_lowest)
                    finish()

            # ---- Query: rows of the rank-th best bid and ask ----
            # The next ask level comes back in s_found / s_q, read in the row's own state.
            bid_found, ask_found, next_bid_found = (Signal(name=n) for n in (
                "bid_found", "ask_found", "next_bid_found"))
            bid_p, ask_p, next_bid_p = (Signal(log2_l, name=n) for n in ("bid_p", "ask_p", "next_bid_p"))
            bid_qty, ask_qty = Signal(LEVEL_QTY_BITS), Signal(LEVEL_QTY_BITS)
            with m.State("QUERY_BEST_BID"):
                m.d.sync += [bid_found.eq(s_found), bid_p.eq(s_q)]
                search(asks, 0, "QUERY_BEST_ASK")
            with m.State("QUERY_BEST_ASK"):
                m.d.comb += l_raddr.eq(level_addr(bids, bid_p))  # QUERY_BID_TOTAL has it
                m.d.sync += [ask_found.eq(s_found), ask_p.eq(s_q)]
                m.next = "QUERY_BID_TOTAL"
            with m.State("QUERY_BID_TOTAL"):
                m.d.comb += l_raddr.eq(level_addr(asks, ask_p))
                m.d.sync += bid_qty.eq(lqty_r.data)
                m.next = "QUERY_ASK_TOTAL"
            with m.State("QUERY_ASK_TOTAL"):
                m.d.sync += ask_qty.eq(lqty_r.data)
                # The next levels tell the row whether it is the last: not needed at the depth
                # asked for (a top-of-book query then waits for no bitmap query at all).
                with m.If(rank + 1 == cmd.body.query.levels):
                    m.d.sync += [next_bid_found.eq(0), s_found.eq(0)]
                    m.next = "QUERY_ROW"
                with m.Elif(bid_found):
                    search(bids, 1, "QUERY_NEXT_BID", after=bid_p)
                with m.Else():
                    m.d.sync += next_bid_found.eq(0)
                    m.next = "QUERY_NEXT_ASK"
            with m.State("QUERY_NEXT_BID"):
                m.d.sync += [next_bid_found.eq(s_found), next_bid_p.eq(s_q)]
                m.next = "QUERY_NEXT_ASK"
            with m.State("QUERY_NEXT_ASK"):
                with m.If(ask_found):
                    search(asks, 0, "QUERY_ROW", after=ask_p)
                with m.Else():
                    m.d.sync += s_found.eq(0)
                    m.next = "QUERY_ROW"
            with m.State("QUERY_ROW"):
                last = (rank + 1 == cmd.body.query.levels) | (~next_bid_found & ~s_found)
                b = ev.body.book
                with emitting(ev.header.kind.eq(EventKind.BOOK), b.rank.eq(rank),
                              b.bid_price.eq(Mux(bid_found, cur_lowest + rel(bid_p), 0)),
                              b.bid_qty.eq(Mux(bid_found, bid_qty, 0)),
                              b.ask_price.eq(Mux(ask_found, cur_lowest + rel(ask_p), 0)),
                              b.ask_qty.eq(Mux(ask_found, ask_qty, 0)), b.last.eq(last)):
                    m.d.sync += [rank.eq(rank + 1), bid_found.eq(next_bid_found), bid_p.eq(next_bid_p),
                                 ask_found.eq(s_found), ask_p.eq(s_q)]
                    with m.If(last):
                        finish()
                    with m.Else():
                        m.d.comb += l_raddr.eq(level_addr(bids, next_bid_p))  # the next row's
                        m.next = "QUERY_BID_TOTAL"

            # ---- Close batch ----
            with m.State("CLOSE_BATCH"):
                bc = ev.body.batch_closed
                m.d.comb += ev.header.market.eq(0)
                with emitting(ev.header.kind.eq(EventKind.BATCH_CLOSED), bc.batch.eq(batch),
                              bc.count.eq(batch_count)):
                    m.d.sync += [batch.eq(batch + 1), batch_count.eq(0)]
                    finish()

            # ---- Subroutine: remove order a_slot from the book, whatever quantity it has ----
            # The caller has put a_slot on the order table's read address (see ``remove``).
            with m.State("REMOVE_READ"):
                m.d.comb += free_slot.eq(a_slot)
                removing(a_slot)
                m.next = "REMOVE_WRITE"
            with m.State("REMOVE_WRITE"):
                m.d.comb += [lqty_w.addr.eq(level_addr(a_book, a_p)),
                             lqty_w.data.eq(lqty_r.data - rm_qty), lqty_w.en.eq(1)]
                unlink_writes(rm_prev, rm_next)
                ret("REMOVE")

            def remember_word(found: Any) -> None:
                """Keep the answer's word for the walk's next search (in the book's order)."""
                sd = s_book[0]
                with m.If(found & (s_desc == ~s_book[0])):
                    m.d.sync += [sc_valid[sd].eq(1), sc_book[sd].eq(s_book),
                                 sc_q[sd].eq(result.index), sc_bits[sd].eq(result.word)]

            # ---- Subroutine: the best level of book s_book, or the next worse than s_p ----
            # Addresses are prices modulo the window; in window order they start at ``base``.
            # Descending (bids' priority): the wrapped addresses below base are the highest
            # prices. One query when base is 0, else a second one when the first finds nothing.
            # (A cached best level never gets here: ``search`` answers it in the calling clock.)
            with m.State("SEARCH"):
                m.d.comb += [occupancy.i_query.valid.eq(1), query.book.eq(s_book)]
                with m.If(s_desc):
                    m.d.comb += [query.mode.eq(Mux(s_next | (base != 0), QueryMode.NEXT_BELOW,
                                                   QueryMode.BEST_HIGH)),
                                 query.index.eq(Mux(s_next, s_p, base))]
                with m.Else():
                    m.d.comb += [query.mode.eq(Mux(s_next | (base != 0), QueryMode.NEXT_ABOVE,
                                                   QueryMode.BEST_LOW)),
                                 query.index.eq(Mux(s_next, s_p, base - 1))]
                with m.If(occupancy.i_query.ready):
                    m.next = "SEARCH_FIRST"
            with m.State("SEARCH_FIRST"):
                with m.If(main_result):
                    q = result.index
                    m.d.sync += s_q.eq(q)
                    wrapped = Mux(s_desc, s_p < base, s_p >= base)  # s_p where a 2nd query helps
                    valid = ~s_next | wrapped | Mux(s_desc, q >= base, q < base)
                    with m.If(result.found):
                        m.d.sync += s_found.eq(valid)
                        remember_word(valid)
                        with m.If(s_natural):  # a best-level search: refill the cache
                            m.d.sync += [best_valid[s_book].eq(1), best_p[s_book].eq(q),
                                         best_stale[s_book].eq(0)]
                        ret("SEARCH")
                    with m.Elif(Mux(s_next, wrapped, base != 0)):
                        m.next = "SEARCH_AGAIN"
                    with m.Else():
                        m.d.sync += s_found.eq(0)
                        with m.If(s_natural):
                            m.d.sync += [best_valid[s_book].eq(0), best_stale[s_book].eq(0)]
                        ret("SEARCH")
            with m.State("SEARCH_AGAIN"):
                m.d.comb += [occupancy.i_query.valid.eq(1), query.book.eq(s_book),
                             query.mode.eq(Mux(s_desc, QueryMode.BEST_HIGH, QueryMode.BEST_LOW))]
                with m.If(occupancy.i_query.ready):
                    m.next = "SEARCH_SECOND"
            with m.State("SEARCH_SECOND"):
                with m.If(main_result):
                    q = result.index
                    found = result.found & (~s_next | Mux(s_desc, q >= base, q < base))
                    m.d.sync += [s_q.eq(q), s_found.eq(found)]
                    remember_word(found)
                    with m.If(s_natural):
                        m.d.sync += [best_valid[s_book].eq(result.found), best_p[s_book].eq(q),
                                     best_stale[s_book].eq(0)]
                    ret("SEARCH")

        # The mass cancel's walk ahead in its word: the level after the walk's, and the one
        # after that, each a clock after the one it follows: the first from MASS_LEVEL's s_q
        # (the level the walk enters), so that both are known in MASS_ORDER's first clock
        # (MASS_HEAD is between). A move in the word (``mc_move``) shifts them along. (The
        # second from the first's logic instead of its register made a 37 ns path through
        # two encoders and their wrap compares: 26.95 MHz in the appliance.)
        in_word, word_q = next_in_word(sc_bits[mc_side], Mux(mc_entering, s_q, lvl_p),
                                       mc_desc, "mass_walk")
        in_word2, word2_q = next_in_word(sc_bits[mc_side], mc_next_q, mc_desc, "mass_walk2")
        in_word3, word3_q = next_in_word(sc_bits[mc_side], mc_next2_q, mc_desc, "mass_walk3")
        with m.If(mc_move):
            m.d.sync += [mc_next_ok.eq(mc_next2_ok), mc_next_q.eq(mc_next2_q),
                         mc_next2_ok.eq(mc_next2_ok & in_word3), mc_next2_q.eq(word3_q)]
        with m.Else():
            m.d.sync += [mc_next_ok.eq(sc_valid[mc_side] & (sc_book[mc_side] == mc_book)
                                       & in_word),
                         mc_next_q.eq(word_q),
                         mc_next2_ok.eq(mc_next_ok & in_word2), mc_next2_q.eq(word2_q)]
        m.d.sync += mc_head_fresh.eq(mc_move | mc_reading_next)
        with m.If(mc_head_fresh):
            m.d.sync += mc_head.eq(head_r.data)

        # The link stage (see ``rest`` and MODIFY_TAIL): the state machine is in DECODE or IDLE
        # now, which write none of the memories written here.
        lk_addr = level_addr(lk_book, lk_p)
        lk_tail = Signal(link_layout)
        lk_total = Signal(LEVEL_QTY_BITS)
        fw_level = fw_valid & (fw_addr == lk_addr)  # written by a stage in the clock before
        m.d.comb += [lk_tail.eq(Mux(fw_level & fw_tail_written, fw_tail, tail_r.data)),
                     lk_total.eq(Mux(fw_level, fw_total, lqty_r.data))]
        with m.If(lk_valid):
            m.d.sync += [fw_valid.eq(1), fw_addr.eq(lk_addr), fw_total.eq(lk_total + lk_qty),
                         fw_tail_written.eq(1), fw_tail.valid.eq(1), fw_tail.slot.eq(lk_slot),
                         fw_prev_written.eq(1), fw_prev_slot.eq(lk_slot), fw_prev.eq(lk_tail),
                         fw_next_written.eq(lk_tail.valid), fw_next_slot.eq(lk_tail.slot),
                         fw_next.valid.eq(1), fw_next.slot.eq(lk_slot)]
            m.d.comb += [lqty_w.addr.eq(lk_addr), lqty_w.data.eq(lk_total + lk_qty), lqty_w.en.eq(1),
                         prev_w.addr.eq(lk_slot), prev_w.data.eq(lk_tail), prev_w.en.eq(1),
                         tail_w.addr.eq(lk_addr), tail_w.data.valid.eq(1),
                         tail_w.data.slot.eq(lk_slot), tail_w.en.eq(1),
                         occupancy.i_update.payload.book.eq(lk_book),
                         occupancy.i_update.payload.index.eq(lk_p),
                         occupancy.i_update.payload.set.eq(1)]
            with m.If(lk_tail.valid):
                m.d.comb += [next_w.addr.eq(lk_tail.slot), next_w.data.valid.eq(1),
                             next_w.data.slot.eq(lk_slot), next_w.en.eq(1)]
            with m.Else():  # the level was empty
                m.d.comb += [head_w.addr.eq(lk_addr), head_w.data.eq(lk_slot), head_w.en.eq(1),
                             occupancy.i_update.valid.eq(1)]

        # The unlink stage (see above): REMOVE_WRITE's work for a canceled order, whose level's
        # total was read in the cancel's clock (a stage wrote it in that clock only when it was
        # a mass cancel's turn beside the previous order's unlink: ``ul_total``). The state
        # machine is in DECODE, IDLE, MASS_HEAD or MASS_AHEAD now, which write none of these
        # memories, or in MASS_ORDER, whose only write to them is a canceled order's own next
        # pointer: the stage leaves the predecessor's to it when that order is the successor
        # (``ul_keep_next``), and MASS_ORDER waits when it is not (``next_port_taken``).
        ul_addr = level_addr(a_book, a_p)
        # The level's total as read in the order's clock, or as the unlink stage wrote it then
        # (a mass cancel's previous order, unlinked beside this one's turn).
        ul_total = Mux(fw_valid & (fw_addr == ul_addr), fw_total, lqty_r.data)
        # MASS_ORDER cancels the successor in this clock, and clears its next pointer: the
        # predecessor's next pointer is left to the successor's unlink, in the next clock.
        ul_keep_next = mass_canceling & at_unlinked_successor
        with m.If(ul_valid):
            m.d.comb += [lqty_w.addr.eq(ul_addr), lqty_w.data.eq(ul_total - rm_qty),
                         lqty_w.en.eq(1)]
            unlink_writes(rm_prev, rm_next, mark_stale=False, keep_next=ul_keep_next)
            m.d.sync += [fw_valid.eq(1), fw_addr.eq(ul_addr), fw_total.eq(ul_total - rm_qty),
                         fw_tail_written.eq(~rm_next.valid), fw_tail.eq(rm_prev),
                         fw_prev_written.eq(rm_next.valid), fw_prev_slot.eq(rm_next.slot),
                         fw_prev.eq(rm_prev),
                         fw_next_written.eq(rm_prev.valid & ~ul_keep_next),
                         fw_next_slot.eq(rm_prev.slot), fw_next.eq(rm_next)]

        # The total stage: a modify that keeps its order's place (its last clock emitted
        # `modified` and wrote the quantity, and read the level's total) changes the level's
        # total beside the next command's decode, as the unlink stage does for a cancel.
        with m.If(mt_valid):
            mt_total = lqty_r.data + mt_new - rm_qty
            m.d.comb += [lqty_w.addr.eq(ul_addr), lqty_w.data.eq(mt_total), lqty_w.en.eq(1)]
            m.d.sync += [fw_valid.eq(1), fw_addr.eq(ul_addr), fw_total.eq(mt_total),
                         fw_tail_written.eq(0)]

        # The search ahead's second query (the whole book, for the wrap), in the clock after
        # the first: the state machine is in TAKE_ORDER or FOK_FIRST then (a taker's), or in
        # MASS_HEAD (a mass cancel's), which never query.
        with m.If(pf_second):
            m.d.comb += [occupancy.i_query.valid.eq(1), query.book.eq(pf_book),
                         query.mode.eq(Mux(pf_desc, QueryMode.BEST_HIGH, QueryMode.BEST_LOW))]
            m.d.sync += pf_second.eq(0)
        issued = Signal(range(3))
        m.d.comb += issued.eq(Mux(pf_second, 1, 0) + Mux(pf_first_issue, 1, 0))
        m.d.sync += pf_wait.eq(pf_wait + issued - pf_arriving)
        with m.If(pf_first_issue):  # every answer still to come after this clock is dropped
            m.d.sync += pf_drop.eq(pf_wait - pf_arriving)
        with m.Elif(pf_arriving & (pf_drop != 0)):
            m.d.sync += pf_drop.eq(pf_drop - 1)
        with m.Elif(pf_arriving):  # the armed search's (or the last one's, once it moved on)
            m.d.sync += pf_got.eq(1)
            with m.If(~pf_got):
                m.d.sync += [pf_first_found.eq(result.found), pf_first_q.eq(result.index),
                             pf_first_word.eq(result.word)]
            with m.Else():
                m.d.sync += [pf_second_found.eq(result.found), pf_second_q.eq(result.index),
                             pf_second_word.eq(result.word)]

        return m
