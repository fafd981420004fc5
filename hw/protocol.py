"""The wire protocol between the host and the matching device, defined once.

Everything that crosses the link is a *command* (host to device) or an *event* (device to host).
Both are Amaranth data layouts made of a small header and a union body selected by the header's
tag (:class:`Opcode` for commands, :class:`EventKind` for events). The gateware decodes these
layouts directly; the host packs and unpacks bytes with :class:`RecordCodec`, which derives every
offset and width from the same layouts, so there is no second, hand-written struct format.

On the wire a record is the little-endian serialisation of its layout (bit 0 of the layout is bit
0 of byte 0), truncated after the body member its tag selects: short commands such as a cancel
take 6 bytes, a new order 19. The tag is always byte 0, so a reader knows the length of a record
with a valid tag from its first byte (the link's framing delimits records, valid or not). Bits
that no field of the selected member covers are reserved: sent as zero, ignored on receipt.
``docs/protocol.md`` documents every field.

The Python classes below (:class:`NewOrder`, :class:`Fill`, ...) are typed views of the same
records for host code and the reference model; :class:`RecordCodec` checks at import time that
their fields are exactly the layout's, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import enum as py_enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from amaranth.hdl import Shape
from amaranth.lib import data

if TYPE_CHECKING:
    # Amaranth ships no type information: describe its shaped enumerations to the type checker
    # as what they are at run time, Python enumerations that take a ``shape``.
    class ShapedEnum(py_enum.Enum):
        def __init_subclass__(cls, *, shape: int, **kwargs: Any) -> None: ...
else:
    from amaranth.lib.enum import Enum as ShapedEnum

__all__ = [
    "COMMAND",
    "COMMAND_CODEC",
    "DEVICE_INFO",
    "EVENT",
    "EVENT_CODEC",
    "PROTOCOL_VERSION",
    "Accepted",
    "BatchClosed",
    "Book",
    "Cancel",
    "CancelReason",
    "Canceled",
    "CloseBatch",
    "Command",
    "Event",
    "EventKind",
    "Fill",
    "MassCancelAccount",
    "MassCancelMarket",
    "MassCanceled",
    "Modified",
    "Modify",
    "NewOrder",
    "Opcode",
    "OrderType",
    "ProtocolError",
    "Query",
    "RecordCodec",
    "RejectReason",
    "Rejected",
    "SetWindow",
    "Side",
    "StpMode",
    "TimeInForce",
    "WindowSet",
    "WireField",
]

#: Bumped whenever a layout, an encoding or a rule of the matching semantics changes. The device
#: reports it in :data:`DEVICE_INFO`; the host refuses to drive a device with another version.
PROTOCOL_VERSION = 1


# -- Enumerations ---------------------------------------------------------------------------------
# Every enumeration carries an explicit shape: it is a field width on the wire. Value 0 of the
# 8-bit tags is deliberately unused, so an all-zero record is never a valid command or event.


class Opcode(ShapedEnum, shape=8):
    NEW_ORDER = 1
    CANCEL = 2
    MODIFY = 3
    MASS_CANCEL_ACCOUNT = 4
    MASS_CANCEL_MARKET = 5
    SET_WINDOW = 6
    QUERY = 7
    CLOSE_BATCH = 8


class Side(ShapedEnum, shape=1):
    BUY = 0
    SELL = 1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(ShapedEnum, shape=1):
    LIMIT = 0
    MARKET = 1


class TimeInForce(ShapedEnum, shape=2):
    GTC = 0  # good till canceled: the remainder rests
    IOC = 1  # immediate or cancel: the remainder is canceled
    FOK = 2  # fill or kill: filled entirely at once, or nothing happens
    # 3 is not a time in force: a command carrying it is rejected as malformed.


class StpMode(ShapedEnum, shape=2):
    """Self-trade prevention, applied as the taker's mode when it meets its own account's order."""

    NONE = 0  # the two orders trade
    CANCEL_TAKER = 1  # the taker's remainder is canceled, the maker rests
    CANCEL_MAKER = 2  # the maker is canceled and matching goes on
    CANCEL_BOTH = 3  # both are canceled


class EventKind(ShapedEnum, shape=8):
    ACCEPTED = 1
    FILL = 2
    CANCELED = 3
    REJECTED = 4
    MODIFIED = 5
    WINDOW_SET = 6
    MASS_CANCELED = 7
    BOOK = 8
    BATCH_CLOSED = 9


class CancelReason(ShapedEnum, shape=8):
    USER = 1  # a cancel command, or a modify to quantity 0
    IOC_REMAINDER = 2
    FOK_NOT_FILLABLE = 3
    POST_ONLY_WOULD_CROSS = 4
    SELF_TRADE = 5
    MASS_CANCEL = 6
    MARKET_REMAINDER = 7


class RejectReason(ShapedEnum, shape=8):
    UNKNOWN_ID = 1
    DUPLICATE_ID = 2
    PRICE_OUTSIDE_WINDOW = 3
    BOOK_FULL = 4
    MALFORMED = 5


# -- Layouts --------------------------------------------------------------------------------------
# Field order is wire order (least significant bit first). Ids, accounts, prices and quantities
# are 32-bit unsigned; the device may accept a smaller range (see docs/protocol.md).

COMMAND_HEADER = data.StructLayout({
    "op":     Opcode,
    "market": 8,
})

COMMAND_BODY = data.UnionLayout({
    "new_order": data.StructLayout({
        "id":        32,
        "account":   32,
        "price":     32,   # ignored for market orders
        "qty":       32,
        "side":      Side,
        "type":      OrderType,
        "tif":       TimeInForce,
        "post_only": 1,
        "stp":       StpMode,
    }),
    "cancel": data.StructLayout({
        "id":        32,
    }),
    "modify": data.StructLayout({
        "id":        32,
        "qty":       32,   # the new open quantity
    }),
    "mass_cancel_account": data.StructLayout({
        "account":   32,
    }),
    "mass_cancel_market":  data.StructLayout({}),
    "set_window": data.StructLayout({
        "lowest":    32,   # the market's lowest tick; the window is [lowest, lowest + levels)
    }),
    "query": data.StructLayout({
        "levels":    8,    # book depth to report, 1 = top of book
    }),
    "close_batch": data.StructLayout({}),
})

COMMAND = data.StructLayout({
    "header": COMMAND_HEADER,
    "body":   COMMAND_BODY,
})

EVENT_HEADER = data.StructLayout({
    "kind":   EventKind,
    "market": 8,
    "seq":    32,   # per device, from 0 after reset, modulo 2**32: a gap means a lost event
})

EVENT_BODY = data.UnionLayout({
    "accepted": data.StructLayout({
        "id":        32,
        "account":   32,
        "price":     32,
        "qty":       32,
        "side":      Side,
        "type":      OrderType,
        "tif":       TimeInForce,
        "post_only": 1,
        "stp":       StpMode,
    }),
    "fill": data.StructLayout({
        "maker":           32,
        "taker":           32,
        "maker_account":   32,
        "taker_account":   32,
        "price":           32,   # always the maker's price
        "qty":             32,
        "maker_remaining": 32,
        "taker_remaining": 32,
        "taker_side":      Side,
    }),
    "canceled": data.StructLayout({
        "id":        32,
        "qty":       32,   # the open quantity that was canceled
        "reason":    CancelReason,
    }),
    "rejected": data.StructLayout({
        "id":        32,   # the command's id field, 0 for commands without one
        "op":        8,    # the command's opcode as received (it may be no valid Opcode)
        "reason":    RejectReason,
    }),
    "modified": data.StructLayout({
        "id":        32,
        "qty":       32,   # the new open quantity
        "requeued":  1,    # 1: moved to the back of its level (the quantity grew)
    }),
    "window_set": data.StructLayout({
        "lowest":    32,
    }),
    "mass_canceled": data.StructLayout({
        "account":   32,   # 0 when whole_market
        "count":     32,   # how many orders were canceled
        "whole_market": 1,
    }),
    "book": data.StructLayout({
        "rank":      8,    # 0 is the best level of each side
        "bid_price": 32,
        "bid_qty":   64,   # a level's total can pass 2**32 - 1; 0: no bid level at this rank
        "ask_price": 32,
        "ask_qty":   64,   # 0: no ask level at this rank (prices are 0 where a side has none)
        "last":      1,    # 1 on the final event of a query
    }),
    "batch_closed": data.StructLayout({
        "batch":     32,   # batch number, from 0 after reset
        "count":     32,   # how many events (leaves) the batch holds
        "root":      256,  # Merkle root of the leaves (docs/merkle.md); byte k is digest byte k
    }),
})

EVENT = data.StructLayout({
    "header": EVENT_HEADER,
    "body":   EVENT_BODY,
})

#: What the device reports on its status channel at connect time (used from the link layer on).
DEVICE_INFO = data.StructLayout({
    "version":      8,    # PROTOCOL_VERSION
    "markets":      8,
    "log2_levels":  8,    # price levels per side, per market
    "log2_orders":  8,    # resting-order capacity, shared by all markets
    "log2_ids":     8,    # order ids are 0 .. 2**log2_ids - 1
})


# -- Typed records ----------------------------------------------------------------------------------
# One class per opcode and per event kind. Field names are the layout's field names: the header's
# (less the tag) first, then the body's.


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    OP: ClassVar[Opcode] = Opcode.NEW_ORDER
    market: int
    id: int
    account: int = 0
    price: int = 0
    qty: int
    side: Side
    type: OrderType = OrderType.LIMIT
    tif: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: StpMode = StpMode.NONE


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    OP: ClassVar[Opcode] = Opcode.CANCEL
    market: int
    id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Modify:
    OP: ClassVar[Opcode] = Opcode.MODIFY
    market: int
    id: int
    qty: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MassCancelAccount:
    OP: ClassVar[Opcode] = Opcode.MASS_CANCEL_ACCOUNT
    market: int
    account: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MassCancelMarket:
    OP: ClassVar[Opcode] = Opcode.MASS_CANCEL_MARKET
    market: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWindow:
    OP: ClassVar[Opcode] = Opcode.SET_WINDOW
    market: int
    lowest: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    OP: ClassVar[Opcode] = Opcode.QUERY
    market: int
    levels: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseBatch:
    OP: ClassVar[Opcode] = Opcode.CLOSE_BATCH
    market: int = 0  # carried on the wire, ignored by the device


Command = (NewOrder | Cancel | Modify | MassCancelAccount | MassCancelMarket | SetWindow | Query
           | CloseBatch)

# Events are built on the model's hot path, so they are plain (not frozen) slotted classes.


@dataclass(slots=True)
class Accepted:
    KIND: ClassVar[EventKind] = EventKind.ACCEPTED
    market: int
    seq: int
    id: int
    account: int
    price: int
    qty: int
    side: Side
    type: OrderType
    tif: TimeInForce
    post_only: bool
    stp: StpMode


@dataclass(slots=True)
class Fill:
    KIND: ClassVar[EventKind] = EventKind.FILL
    market: int
    seq: int
    maker: int
    taker: int
    maker_account: int
    taker_account: int
    price: int
    qty: int
    maker_remaining: int
    taker_remaining: int
    taker_side: Side


@dataclass(slots=True)
class Canceled:
    KIND: ClassVar[EventKind] = EventKind.CANCELED
    market: int
    seq: int
    id: int
    qty: int
    reason: CancelReason


@dataclass(slots=True)
class Rejected:
    KIND: ClassVar[EventKind] = EventKind.REJECTED
    market: int
    seq: int
    id: int
    op: int
    reason: RejectReason


@dataclass(slots=True)
class Modified:
    KIND: ClassVar[EventKind] = EventKind.MODIFIED
    market: int
    seq: int
    id: int
    qty: int
    requeued: bool


@dataclass(slots=True)
class WindowSet:
    KIND: ClassVar[EventKind] = EventKind.WINDOW_SET
    market: int
    seq: int
    lowest: int


@dataclass(slots=True)
class MassCanceled:
    KIND: ClassVar[EventKind] = EventKind.MASS_CANCELED
    market: int
    seq: int
    account: int
    count: int
    whole_market: bool


@dataclass(slots=True)
class Book:
    KIND: ClassVar[EventKind] = EventKind.BOOK
    market: int
    seq: int
    rank: int
    bid_price: int
    bid_qty: int
    ask_price: int
    ask_qty: int
    last: bool


@dataclass(slots=True)
class BatchClosed:
    KIND: ClassVar[EventKind] = EventKind.BATCH_CLOSED
    market: int
    seq: int
    batch: int
    count: int
    root: bytes  # the 32-byte root, as Solidity's bytes32


Event = Accepted | Fill | Canceled | Rejected | Modified | WindowSet | MassCanceled | Book | BatchClosed

COMMAND_CLASSES: tuple[type[Command], ...] = (
    NewOrder, Cancel, Modify, MassCancelAccount, MassCancelMarket, SetWindow, Query, CloseBatch)
EVENT_CLASSES: tuple[type[Event], ...] = (
    Accepted, Fill, Canceled, Rejected, Modified, WindowSet, MassCanceled, Book, BatchClosed)


# -- Codec ------------------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """Bytes or values that the wire format cannot carry."""


@dataclass(frozen=True, slots=True)
class WireField:
    """One field of one record kind, as laid out on the wire."""

    name: str
    offset: int  # bit offset from the start of the record
    width: int
    enum: type[py_enum.Enum] | None  # the field's enumeration, if it has one
    is_flag: bool  # a one-bit field carried as a Python bool
    is_bytes: bool = False  # a byte string: its byte k is bits 8k .. 8k+7 of the field

    @property
    def byte_width(self) -> int:
        """Width rounded up to whole bytes: the field's size in a leaf (see hashing.leaf)."""
        return (self.width + 7) // 8


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _KindTable:
    cls: type[Any]
    tag: int
    fields: tuple[WireField, ...]  # the tag first, then header and body fields in wire order
    size: int  # bytes on the wire


class RecordCodec(Generic[R]):
    """Packs typed records to wire bytes and back, with every offset taken from ``layout``.

    ``layout`` is a header + union-body layout whose header field ``tag`` (8 bits, at offset 0)
    selects the body member named after the tag value in lower case. ``classes`` are the typed
    records, one per tag value, each with the tag in a class variable named ``tag_attr``.
    """

    def __init__(self, layout: data.StructLayout, *, tag: str, tag_attr: str,
                 classes: Iterable[type[R]]) -> None:
        header_field = layout["header"]
        body_field = layout["body"]
        header: data.StructLayout = header_field.shape
        body: data.UnionLayout = body_field.shape
        tag_field = header[tag]
        if header_field.offset != 0 or tag_field.offset != 0 or tag_field.width != 8:
            raise TypeError(f"the tag {tag!r} must be the 8-bit field at offset 0 of {layout!r}")
        self.tag_enum: type[py_enum.Enum] = tag_field.shape
        self._tables: dict[int, _KindTable] = {}
        self._by_class: dict[type[Any], _KindTable] = {}
        members = dict(body)
        for cls in classes:
            tag_value: py_enum.Enum = getattr(cls, tag_attr)
            member = members.pop(tag_value.name.lower(), None)
            if member is None:
                raise TypeError(f"{body!r} has no member for {tag_value!r}")
            fields = [self._wire_field(tag, tag_field, 0)]
            fields += [self._wire_field(name, f, header_field.offset)
                       for name, f in header if name != tag]
            fields += [self._wire_field(name, f, body_field.offset + member.offset)
                       for name, f in member.shape]
            names = [f.name for f in fields[1:]]
            record_fields = dataclasses.fields(cast(Any, cls))
            declared = [f.name for f in record_fields]
            if names != declared:
                raise TypeError(f"{cls.__name__} declares fields {declared}, but the wire record "
                                f"for {tag_value!r} has {names}")
            flags = {f.name for f in record_fields if f.type in (bool, "bool")}
            strings = {f.name for f in record_fields if f.type in (bytes, "bytes")}
            fields = [dataclasses.replace(f, is_flag=f.name in flags, is_bytes=f.name in strings)
                      for f in fields]
            size_bits = body_field.offset + member.width
            table = _KindTable(cls, tag_value.value, tuple(fields), (size_bits + 7) // 8)
            self._tables[tag_value.value] = table
            self._by_class[cls] = table
        if members:
            raise TypeError(f"no record class for body members {sorted(members)}")

    @staticmethod
    def _wire_field(name: str, f: data.Field, base: int) -> WireField:
        shape = f.shape
        is_enum = isinstance(shape, type) and issubclass(shape, py_enum.Enum)
        width = Shape.cast(shape).width
        return WireField(name, base + f.offset, width, shape if is_enum else None, False)

    # Introspection, for the leaf encoding, the docs and the gateware's tests.

    def fields(self, cls: type[R]) -> tuple[WireField, ...]:
        """The wire fields of ``cls``, the tag first."""
        return self._by_class[cls].fields

    def size(self, cls: type[R]) -> int:
        return self._by_class[cls].size

    def size_of_tag(self, tag_value: int) -> int:
        """Wire size of the record whose first byte is ``tag_value``."""
        return self._by_class[self.class_of_tag(tag_value)].size

    def class_of_tag(self, tag_value: int) -> type[R]:
        table = self._tables.get(tag_value)
        if table is None:
            raise ProtocolError(f"unknown {self.tag_enum.__name__} value {tag_value}")
        cls: type[R] = table.cls
        return cls

    @property
    def classes(self) -> tuple[type[R], ...]:
        return tuple(self._by_class)

    # Packing.

    def pack(self, record: R) -> bytes:
        table = self._by_class.get(type(record))
        if table is None:
            raise ProtocolError(f"{type(record).__name__} is not a record of this codec")
        value = table.tag
        for f in table.fields[1:]:
            v = getattr(record, f.name)
            if f.enum is not None:
                if not isinstance(v, f.enum):
                    raise ProtocolError(f"{type(record).__name__}.{f.name} must be a "
                                        f"{f.enum.__name__}, not {v!r}")
                v = v.value
            elif f.is_bytes:
                if not isinstance(v, bytes) or len(v) * 8 != f.width:
                    raise ProtocolError(f"{type(record).__name__}.{f.name} must be "
                                        f"{f.width // 8} bytes, not {v!r}")
                v = int.from_bytes(v, "little")
            else:
                v = int(v)
                if not 0 <= v < (1 << f.width):
                    raise ProtocolError(f"{type(record).__name__}.{f.name} = {v} does not fit in "
                                        f"{f.width} unsigned bits")
            value |= v << f.offset
        return value.to_bytes(table.size, "little")

    def unpack_fields(self, raw: bytes) -> tuple[int, dict[str, int]]:
        """The tag and every field of ``raw`` as plain integers, without checking enum values.

        The device sees commands this way: a field holding no valid value is a malformed command,
        not an undecodable one.
        """
        if not raw:
            raise ProtocolError("empty record")
        table = self._tables.get(raw[0])
        if table is None:
            raise ProtocolError(f"unknown {self.tag_enum.__name__} value {raw[0]}")
        if len(raw) != table.size:
            raise ProtocolError(f"a {table.cls.__name__} record is {table.size} bytes, "
                                f"not {len(raw)}")
        value = int.from_bytes(raw, "little")
        return raw[0], {f.name: (value >> f.offset) & ((1 << f.width) - 1)
                        for f in table.fields[1:]}

    def unpack(self, raw: bytes) -> R:
        tag_value, values = self.unpack_fields(raw)
        table = self._tables[tag_value]
        return self.from_fields(table.cls, values)

    def from_fields(self, cls: type[R], values: Mapping[str, int]) -> R:
        """Build ``cls`` from integer field values, converting enums and flags."""
        table = self._by_class[cls]
        kwargs: dict[str, Any] = {}
        for f in table.fields[1:]:
            v = values[f.name]
            if f.enum is not None:
                try:
                    kwargs[f.name] = f.enum(v)
                except ValueError:
                    raise ProtocolError(f"{cls.__name__}.{f.name}: {v} is no "
                                        f"{f.enum.__name__}") from None
            elif f.is_flag:
                kwargs[f.name] = bool(v)
            elif f.is_bytes:
                kwargs[f.name] = v.to_bytes(f.width // 8, "little")
            else:
                kwargs[f.name] = v
        record: R = cls(**kwargs)
        return record


COMMAND_CODEC: RecordCodec[Command] = RecordCodec(
    COMMAND, tag="op", tag_attr="OP", classes=COMMAND_CLASSES)
EVENT_CODEC: RecordCodec[Event] = RecordCodec(
    EVENT, tag="kind", tag_attr="KIND", classes=EVENT_CLASSES)
