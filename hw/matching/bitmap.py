"""Occupancy bitmaps: which price levels of each book hold orders, and the best or next one.

Each book (a market's bid or ask side) has one bit per price level: bit ``i`` is set when level
``i`` of the book's window holds orders. Bids want the highest set level, asks the lowest, and the
matching loop walks levels in priority order (the next set level below a bid level, above an ask
level). :class:`OccupancyBitmapModel` is the executable specification; :class:`OccupancyBitmap`
is the gateware, a two-level bitmap so that no search looks at more than ``word_bits`` bits at
once::

    update (book, index, set)                    query (book, mode, index)
        |                                             |
        v                                             v
    +==================+   word != 0   +=============================+
    | read, modify and |==============>| summary: one bit per word   |
    | write one word   |               | of each book (registers);   |
    +==================+               | find the nearest word       |
        |         ^                    +=============================+
        v         |                                   |
    +=============================+                   |  read the query's own
    | words: block RAM, one row   |<==================+  word and the nearest
    | of W levels per book word   |                      word
    +=============================+
                  |
                  v
    +=============================+
    | find the nearest set bit    |
    | in the two words read       |====> (found, index)
    +=============================+
"""

from __future__ import annotations

from typing import Any

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import ShapedEnum

__all__ = [
    "COLLISIONS_RETURN_NEW_DATA",
    "QUERY_LATENCY",
    "OccupancyBitmap",
    "OccupancyBitmapModel",
    "QueryMode",
    "mask_above",
    "mask_below",
    "query_layout",
    "registered_read",
    "result_layout",
    "result_signature",
    "set_bits",
    "update_layout",
    "word_bits",
]

#: Clocks from a query being taken to its result on ``o_result``, whatever the bitmap holds.
QUERY_LATENCY = 4


class QueryMode(ShapedEnum, shape=2):
    """What a query looks for. Bit 0: search upwards (the lowest match); bit 1: relative to the
    query's ``index`` (strictly below or above it) rather than over the whole book."""

    BEST_HIGH = 0  # the highest set index (the best bid)
    BEST_LOW = 1  # the lowest set index (the best ask)
    NEXT_BELOW = 2  # the highest set index strictly below ``index``
    NEXT_ABOVE = 3  # the lowest set index strictly above ``index``


def _check_geometry(books: int, levels: int) -> None:
    if isinstance(books, bool) or not isinstance(books, int) or books < 1:
        raise ValueError(f"books must be a positive integer, not {books!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1 or levels & (levels - 1):
        raise ValueError(f"levels must be a power of two, not {levels!r}")
    if levels < 8:
        raise ValueError(f"levels must be at least 8, not {levels}")


def word_bits(levels: int) -> int:
    """The width ``W`` of a bitmap word: the smallest power of two of at least 8 with
    ``W * W >= levels``, so a book's summary (``levels // W`` bits) is never wider than a word.
    1024 levels give 32, 4096 give 64."""
    width = 8
    while width * width < levels:
        width *= 2
    return width


def update_layout(books: int, levels: int) -> data.StructLayout:
    """An update: set (``set`` = 1) or clear bit ``index`` of book ``book``."""
    return data.StructLayout({"book": range(books), "index": range(levels), "set": 1})


def query_layout(books: int, levels: int) -> data.StructLayout:
    """A query on book ``book``; ``index`` matters to the relative modes only."""
    return data.StructLayout({"book": range(books), "mode": QueryMode, "index": range(levels)})


def result_layout(levels: int) -> data.StructLayout:
    """A query's answer: ``found``, the level's ``index`` (0 when nothing was found), and
    ``word``: the set levels of the answer's word from the answer on, in the direction the query
    looks (downwards for ``BEST_HIGH`` and ``NEXT_BELOW``, upwards for the others), bit ``j`` for
    level ``index // word_bits * word_bits + j``; 0 when nothing was found. A caller walking the
    book finds the levels after the answer there, in the same word, without asking again."""
    return data.StructLayout({"found": 1, "index": range(levels), "word": word_bits(levels)})


def result_signature(levels: int) -> wiring.Signature:
    """Answers that cannot wait: ``payload`` is meaningful in the clocks where ``valid`` is high,
    and the receiver takes it then. Not a stream: there is no ``ready``, and the payload is not
    held."""
    return wiring.Signature({"valid": Out(1), "payload": Out(result_layout(levels))})


class OccupancyBitmapModel:
    """The golden model: each book's bitmap as a Python integer.

    ``query`` answers what the gateware answers; for a query taken in the same clock as an update
    the gateware answers after the update (apply the update to the model first).
    """

    def __init__(self, books: int, levels: int) -> None:
        _check_geometry(books, levels)
        self.books = books
        self.levels = levels
        self.word_bits = word_bits(levels)
        self._bits = [0] * books

    def reset(self) -> None:
        self._bits = [0] * self.books

    def _check(self, book: int, index: int) -> None:
        if not 0 <= book < self.books:
            raise IndexError(f"book {book} is outside 0 .. {self.books - 1}")
        if not 0 <= index < self.levels:
            raise IndexError(f"index {index} is outside 0 .. {self.levels - 1}")

    def update(self, book: int, index: int, set_: bool) -> None:
        self._check(book, index)
        if set_:
            self._bits[book] |= 1 << index
        else:
            self._bits[book] &= ~(1 << index)

    def is_set(self, book: int, index: int) -> bool:
        self._check(book, index)
        return bool(self._bits[book] >> index & 1)

    def bitmap(self, book: int) -> int:
        """Book ``book``'s levels as an integer, bit ``i`` for level ``i``."""
        self._check(book, 0)
        return self._bits[book]

    @staticmethod
    def _highest(bits: int) -> int | None:
        return bits.bit_length() - 1 if bits else None

    @staticmethod
    def _lowest(bits: int) -> int | None:
        return (bits & -bits).bit_length() - 1 if bits else None

    def best_high(self, book: int) -> int | None:
        self._check(book, 0)
        return self._highest(self._bits[book])

    def best_low(self, book: int) -> int | None:
        self._check(book, 0)
        return self._lowest(self._bits[book])

    def next_below(self, book: int, index: int) -> int | None:
        self._check(book, index)
        return self._highest(self._bits[book] & ((1 << index) - 1))

    def next_above(self, book: int, index: int) -> int | None:
        self._check(book, index)
        return self._lowest(self._bits[book] >> (index + 1) << (index + 1))

    def word(self, book: int, mode: QueryMode, index: int = 0) -> int:
        """The ``word`` of the answer to ``query(book, mode, index)`` (see :func:`result_layout`)."""
        mode = QueryMode(mode)
        answer = self.query(book, mode, index)
        if answer is None:
            return 0
        width = self.word_bits
        bit = answer % width
        bits = self._bits[book] >> (answer - bit) & ((1 << width) - 1)
        if mode in (QueryMode.BEST_HIGH, QueryMode.NEXT_BELOW):
            return bits & ((2 << bit) - 1)  # the answer and below
        return bits >> bit << bit  # the answer and above

    def query(self, book: int, mode: QueryMode, index: int = 0) -> int | None:
        """The set index ``mode`` looks for, or ``None``."""
        mode = QueryMode(mode)
        if mode is QueryMode.BEST_HIGH:
            self._check(book, index)
            return self.best_high(book)
        if mode is QueryMode.BEST_LOW:
            self._check(book, index)
            return self.best_low(book)
        if mode is QueryMode.NEXT_BELOW:
            return self.next_below(book, index)
        return self.next_above(book, index)


def _lowest_set(value: Value) -> Value:
    """The index of the lowest set bit of ``value`` (0 if none), whose width is a power of two.

    A tree of radix 4 (radix 2 at the top when the width is an odd power of two): each node
    picks its first part with a bit set (an OR over the part's bits, then one LUT4) and that
    part's index, so 64 bits take 3 levels of nodes. It is one expression, which keeps the
    simulator fast. Each node ORs its parts' bits afresh (yosys merges the copies): Amaranth
    lowers an expression once per use, so sharing them down the tree would multiply it.
    """
    width = len(value)
    if width == 1:
        return Const(0, 0)
    radix = 2 if width == 2 or (width.bit_length() - 1) % 2 else 4
    part = width // radix
    parts = [value[i * part:(i + 1) * part] for i in range(radix)]
    first: Value = Const(radix - 1, range(radix))
    index: Value = _lowest_set(parts[-1])
    for i in reversed(range(radix - 1)):
        first = Mux(parts[i].any(), i, first)
        index = Mux(parts[i].any(), _lowest_set(parts[i]), index)
    return Cat(index, first)


def set_bits(m: Module, value: Value, name: str) -> tuple[Value, Value, Value]:
    """(any bit set, index of the lowest set bit, index of the highest) of the signal ``value``:
    two encoders side by side, the second on the bits reversed."""
    any_set = Signal(name=f"{name}_any")
    lowest = Signal(range(len(value)), name=f"{name}_lowest")
    highest = Signal(range(len(value)), name=f"{name}_highest")
    m.d.comb += [
        any_set.eq(value.any()),
        lowest.eq(_lowest_set(value)),
        highest.eq(~_lowest_set(value[::-1])),
    ]
    return any_set, lowest, highest


#: Tests set this to make a row read in the clock it is written return the new data, one of the
#: values the hardware may return, where simulation otherwise returns the old data.
COLLISIONS_RETURN_NEW_DATA = False


def registered_read(m: Module, memory: Any, write: Any, name: str) -> tuple[Any, Value]:
    """A read port of ``memory`` and its data one clock after the address.

    The port is asynchronous and its data registered at once: yosys folds that register into
    the block RAM, and the memory's ``no_rw_check`` attribute then leaves the data of a row read
    in the clock it is written undefined, instead of adding bypass logic after the RAM's slow
    outputs (5.8 ns on ECP5). Callers must not use such data.
    """
    if COLLISIONS_RETURN_NEW_DATA:
        port = memory.read_port(transparent_for=(write,))
        return port, port.data
    port = memory.read_port(domain="comb")
    data = Signal(memory.shape, name=name)
    m.d.sync += data.eq(port.data)
    return port, data


def mask_below(value: Value, width: int) -> Value:
    """``width`` bits, bit ``j`` set when ``j < value``."""
    return Cat(*(value > j for j in range(width)))


def mask_above(value: Value, width: int) -> Value:
    """``width`` bits, bit ``j`` set when ``j > value``."""
    return Cat(*(value < j for j in range(width)))


class OccupancyBitmap(wiring.Component):
    """Per-book occupancy bitmaps with best-level and next-level queries.

    Books ``0 .. books - 1`` have ``levels`` levels each. Level ``i`` of a book is bit ``i %
    word_bits`` of word ``i // word_bits``; the words (``word_bits`` = :func:`word_bits` wide)
    live in block RAM, and each book's summary (bit ``w`` set when word ``w`` is not zero,
    ``levels // word_bits`` bits) in registers.

    Members
    -------
    i_update : In(stream.Signature(update_layout(books, levels)))
        Set (``set`` = 1) or clear level ``index`` of book ``book``. ``ready`` is the
        component's ``ready``: once the init sequence is done, an update is taken in every
        clock where ``valid`` is high, to any book and word, the same word back to back
        included. Setting a set level or clearing a clear one is allowed and changes nothing.
    i_query : In(stream.Signature(query_layout(books, levels)))
        Look for a set level of book ``book`` (:class:`QueryMode`; ``index`` matters to the
        relative modes only). ``ready`` is the component's ``ready``: once the init sequence is
        done, a query is taken in every clock where ``valid`` is high.
    o_result : Out(result_signature(levels))
        The answer to the query taken :data:`QUERY_LATENCY` (4) clocks before: ``valid`` is
        high in exactly that clock, ``found`` says whether a level was found, ``index``
        which (0 when none), and ``word`` the levels after it in its word (see
        :func:`result_layout`). One answer per query, in query order, never held: take it when
        ``valid`` is high.
    ready : Out(1)
        Low for ``init_cycles`` = ``books * levels // word_bits`` clocks after reset, while
        the init sequence clears the word memory one row per clock; high ever after.

    Ordering between the ports: the answer to a query taken in clock ``q`` reflects exactly
    the updates taken in clocks up to and including ``q``. An update in the same clock as a
    query is seen by it; an update in a later clock is not, even though it reaches the memory
    before the query's read. ``book`` must be below ``books``; a larger one is not defined.

    Latency and throughput: one update and one query in every clock, with no hazards to avoid.
    An update reads its word and, in the next clock, sets or clears the bit and writes the word
    back (taking it from a register when the update ahead wrote it in the clock of the read);
    its summary bit follows in that clock. A query answers after 4 clocks, whatever the bitmaps
    hold: clock 1 builds its masks, 2 finds the nearest non-empty word in the book's summary
    and reads the query's own word and that word, 3 finds the nearest set bit in each and
    registers the answer (with the word it was found in, as read: the own word masked past the
    index, or the nearest non-empty word).

    Resources: ``books * levels // word_bits`` summary flip-flops; a ``books * levels //
    word_bits`` x ``word_bits`` word memory with three read ports (update, own word, nearest
    word), which yosys builds as three block RAM copies. The pipeline is as short as the
    matching engine's clock (35 to 40 MHz) allows: a block RAM's output (5.8 ns on ECP5) goes
    through logic in the clock it arrives. The version of commit ``2100dfa`` registered every
    read twice and took 8 clocks a query; it ran at 124 to 132 MHz on its own (8 books of 1,024
    levels, LFE5U-85F-6), the shape a pipelined engine at 125 MHz would take back. No search is
    wider than ``word_bits`` bits, which is 64 up to 4096 levels; more levels make wider words
    and deeper searches.
    """

    def __init__(self, books: int, levels: int) -> None:
        _check_geometry(books, levels)
        self.books = books
        self.levels = levels
        self.word_bits = word_bits(levels)
        self.words_per_book = levels // self.word_bits
        self.words = books * self.words_per_book
        #: Clocks of the init sequence after reset: ``ready`` rises after this many.
        self.init_cycles = self.words
        self.latency = QUERY_LATENCY
        super().__init__({
            "i_update": In(stream.Signature(update_layout(books, levels))),
            "i_query": In(stream.Signature(query_layout(books, levels))),
            "o_result": Out(result_signature(levels)),
            "ready": Out(1),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        width, per_book = self.word_bits, self.words_per_book
        bit_width = width.bit_length() - 1  # index = Cat(bit, word)

        # A row read in the clock it is written gives undefined data (see registered_read): the
        # update forwards the word written in the clock before, a query substitutes the word as
        # it was before the write.
        m.submodules.words = words = Memory(shape=width, depth=self.words, init=[],
                                            attrs={"no_rw_check": 1})
        write = words.write_port()
        read_update, u1_read = registered_read(m, words, write, "u1_read")
        read_own, q3_own_read = registered_read(m, words, write, "q3_own_read")
        read_beyond, q3_beyond_read = registered_read(m, words, write, "q3_beyond_read")

        # Summary bit w of book b: word w of book b is not zero. In every clock it matches the
        # word memory as a read issued in that clock sees it (both lag updates by 2 clocks).
        summary = Array(Signal(per_book, name=f"summary_{b}") for b in range(self.books))

        # Init: clear one row per clock; the summary registers reset to zero by themselves.
        ready = Signal()
        clearing = Signal(range(self.words))
        m.d.comb += [self.ready.eq(ready), self.i_update.ready.eq(ready),
                     self.i_query.ready.eq(ready)]
        with m.If(~ready):
            m.d.sync += clearing.eq(clearing + 1)
            with m.If(clearing == self.words - 1):
                m.d.sync += ready.eq(1)

        # Update, clock 0: read the word, decode the bit.
        update = self.i_update.payload
        m.d.comb += read_update.addr.eq(Cat(update.index[bit_width:], update.book))
        u1_valid = Signal()
        u1_addr = Signal.like(read_update.addr)
        u1_book = Signal(range(self.books))
        u1_word_mask = Signal(per_book)
        u1_bit_mask = Signal(width)
        u1_set = Signal()
        u1_forward = Signal()  # the update ahead wrote this word in the clock of the read
        w1_valid = Signal()  # the word written in the clock before
        w1_addr = Signal.like(u1_addr)
        w1_data = Signal(width)
        m.d.sync += [
            u1_valid.eq(self.i_update.valid & ready),
            u1_addr.eq(read_update.addr),
            u1_book.eq(update.book),
            u1_word_mask.eq(Const(1, per_book) << update.index[bit_width:]),
            u1_bit_mask.eq(Const(1, width) << update.index[:bit_width]),
            u1_set.eq(update.set),
            u1_forward.eq(u1_valid & (u1_addr == read_update.addr)),
        ]

        # Update, clock 1: the word as the update ahead left it, modified and written back; its
        # summary bit follows. At the engine's clock a block RAM's output may go through this
        # much logic into its write port; a design at 125 MHz would register the read twice and
        # forward three words in flight instead (commit 2100dfa, 8 clocks a query).
        old = Signal(width)
        new = Signal(width)
        nonzero = Signal()
        m.d.comb += [
            old.eq(Mux(u1_forward, w1_data, u1_read)),
            new.eq(Mux(u1_set, old | u1_bit_mask, old & ~u1_bit_mask)),
            nonzero.eq(u1_set | (old & ~u1_bit_mask).any()),
        ]
        with m.If(ready):
            m.d.comb += [write.addr.eq(u1_addr), write.data.eq(new), write.en.eq(u1_valid)]
        with m.Else():
            m.d.comb += [write.addr.eq(clearing), write.data.eq(0), write.en.eq(1)]
        for b in range(self.books):
            with m.If(u1_valid & (u1_book == b)):
                m.d.sync += summary[b].eq(Mux(nonzero, summary[b] | u1_word_mask,
                                              summary[b] & ~u1_word_mask))
        m.d.sync += [
            w1_valid.eq(u1_valid),
            w1_addr.eq(u1_addr),
            w1_data.eq(new),
        ]

        # Query, clock 0: take the query.
        query = self.i_query.payload
        q1_valid = Signal()
        q1_book = Signal(range(self.books))
        q1_up = Signal()
        q1_relative = Signal()
        q1_word = Signal(range(per_book))
        q1_bit = Signal(range(width))
        m.d.sync += [
            q1_valid.eq(self.i_query.valid & ready),
            q1_book.eq(query.book),
            q1_up.eq(query.mode.as_value()[0]),
            q1_relative.eq(query.mode.as_value()[1]),
            q1_word.eq(query.index[bit_width:]),
            q1_bit.eq(query.index[:bit_width]),
        ]

        # Query, clock 1: which words (summary bits) and which bits of the query's own word may
        # hold the answer. A relative query looks in its own word first, then in the nearest
        # non-empty word beyond it; a best query at the farthest non-empty word only. The update
        # taken with the query is being written now: the summary holds it from the next clock.
        q2_valid = Signal()
        q2_book = Signal.like(q1_book)
        q2_up = Signal()
        q2_word = Signal.like(q1_word)
        q2_words = Signal(per_book)
        q2_bits = Signal(width)
        with m.If(~q1_relative):
            m.d.sync += [q2_words.eq(~0), q2_bits.eq(0)]
        with m.Elif(q1_up):
            m.d.sync += [q2_words.eq(mask_above(q1_word, per_book)), q2_bits.eq(mask_above(q1_bit, width))]
        with m.Else():
            m.d.sync += [q2_words.eq(mask_below(q1_word, per_book)), q2_bits.eq(mask_below(q1_bit, width))]
        m.d.sync += [
            q2_valid.eq(q1_valid),
            q2_book.eq(q1_book),
            q2_up.eq(q1_up),
            q2_word.eq(q1_word),
        ]

        # Query, clock 2: the book's summary now holds exactly the updates taken up to the
        # query's clock. Find the nearest non-empty word either way and read it and the query's
        # own word. Writes landed up to clock 1 are the same updates; the one landing in this
        # clock (taken in the clock after the query's) may collide with a read: then the word as
        # it was before that write is used.
        beyond_any, beyond_lowest, beyond_highest = set_bits(m, summary[q2_book] & q2_words,
                                                             "beyond_word")
        beyond_word = Mux(q2_up, beyond_lowest, beyond_highest)
        own_addr = Cat(q2_word, q2_book)
        beyond_addr = Cat(beyond_word, q2_book)
        m.d.comb += [read_own.addr.eq(own_addr), read_beyond.addr.eq(beyond_addr)]
        q3_valid = Signal()
        q3_up = Signal()
        q3_word = Signal.like(q1_word)
        q3_bits = Signal(width)
        q3_beyond = Signal()
        q3_beyond_word = Signal.like(q1_word)
        q3_own_collided = Signal()
        q3_beyond_collided = Signal()
        q3_before = Signal(width)  # the word written in clock 2, as it was before
        m.d.sync += [
            q3_valid.eq(q2_valid),
            q3_up.eq(q2_up),
            q3_word.eq(q2_word),
            q3_bits.eq(q2_bits),
            q3_beyond.eq(beyond_any),
            q3_beyond_word.eq(beyond_word),
            q3_own_collided.eq(u1_valid & (u1_addr == own_addr)),
            q3_beyond_collided.eq(u1_valid & (u1_addr == beyond_addr)),
            q3_before.eq(old),
        ]

        # Query, clock 3: the words read (or from before a colliding write), the own word past
        # the index; the lowest and the highest set bit of each, and the answer, in the own word
        # if it has one, registered with the word it was found in.
        own = Signal(width)
        beyond = Signal(width)
        m.d.comb += [
            own.eq(Mux(q3_own_collided, q3_before, q3_own_read) & q3_bits),
            beyond.eq(Mux(q3_beyond_collided, q3_before, q3_beyond_read)),
        ]
        own_any, own_lowest, own_highest = set_bits(m, own, "own_bit")
        _, beyond_bit_lowest, beyond_bit_highest = set_bits(m, beyond, "beyond_bit")
        own_bit = Mux(q3_up, own_lowest, own_highest)
        beyond_bit = Mux(q3_up, beyond_bit_lowest, beyond_bit_highest)
        result = self.o_result.payload
        m.d.sync += [
            self.o_result.valid.eq(q3_valid),
            result.found.eq(own_any | q3_beyond),
            result.word.eq(Mux(own_any, own, Mux(q3_beyond, beyond, 0))),
            result.index.eq(Mux(own_any, Cat(own_bit, q3_word),
                                Mux(q3_beyond, Cat(beyond_bit, q3_beyond_word), 0))),
        ]
        return m
