"""Fast packing and unpacking of command and event records, compiled from the protocol's codecs.

:class:`ocee.hw.protocol.RecordCodec` is the definition of the record bytes; it takes every offset
from the Amaranth layouts and walks the fields one by one, a few microseconds per record. The link
handles every record of a 100k commands/s flow, so :class:`FastCodec` compiles each record kind
into one :mod:`struct` call, the way :mod:`dataclasses` compiles ``__init__``: byte-aligned fields
become struct codes, the bit fields of a shared byte are shifted in and out of one ``B``. The
tables come from the same codec, and the tests check the two against each other.

Anything the compiled code does not accept (a value out of range, a wrong type, a length or an
enumeration value the record cannot carry) is handed to the codec itself, so the errors are the
codec's :class:`~ocee.hw.protocol.ProtocolError`.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ocee.hw.protocol import (
    COMMAND_CODEC,
    EVENT_CODEC,
    Command,
    Event,
    ProtocolError,
    RecordCodec,
    WireField,
)

__all__ = ["COMMANDS", "EVENTS", "FastCodec"]

R = TypeVar("R")

_CODES = {8: "B", 16: "H", 32: "I", 64: "Q"}
_FALLBACK = (KeyError, IndexError, AttributeError, TypeError, struct.error)


def _slots(codec: RecordCodec[Any], cls: type[Any]) -> tuple[str, list[list[WireField]]]:
    """The struct format of ``cls`` and, per struct item, the fields it carries."""
    fmt = "<"
    slots: list[list[WireField]] = []
    byte = 0  # the next byte the format has not covered
    for f in codec.fields(cls):
        first, last = f.offset // 8, (f.offset + f.width - 1) // 8
        if f.offset % 8 == 0 and (f.width in _CODES or f.is_bytes):
            if first != byte:
                raise TypeError(f"{cls.__name__}.{f.name} does not follow the previous field")
            fmt += f"{f.width // 8}s" if f.is_bytes else _CODES[f.width]
            slots.append([f])
            byte = last + 1
        elif first == last and f.width < 8:
            if first == byte - 1 and slots and slots[-1][0].width < 8:
                slots[-1].append(f)  # another bit field of the same byte
            elif first == byte:
                fmt += "B"
                slots.append([f])
                byte += 1
            else:
                raise TypeError(f"{cls.__name__}.{f.name} does not follow the previous field")
        else:
            raise TypeError(f"{cls.__name__}.{f.name} is neither byte-aligned nor inside one byte")
    if byte != codec.size(cls):
        raise TypeError(f"{cls.__name__}: the fields cover {byte} bytes, not {codec.size(cls)}")
    return fmt, slots


def _compile(codec: RecordCodec[Any], cls: type[Any], tag: int) -> tuple[
        Callable[[Any], bytes], Callable[[bytes], Any]]:
    fmt, slots = _slots(codec, cls)
    env: dict[str, Any] = {"cls": cls, "pack": struct.Struct(fmt).pack,
                           "unpack": struct.Struct(fmt).unpack}
    flag = env["flag"] = {False: 0, True: 1}  # 0/1 as well: they are equal keys
    del flag

    def value_of(f: WireField) -> str:
        """Source for the number that field ``f`` of record ``r`` puts on the wire."""
        if f.enum is not None:
            env[f"to_{f.name}"] = {member: member.value for member in f.enum}
            return f"to_{f.name}[r.{f.name}]"
        if f.is_flag:
            return f"flag[r.{f.name}]"
        return f"r.{f.name}"

    def field_of(f: WireField, raw: str) -> str:
        """Source for the Python value of field ``f`` from its wire number ``raw``."""
        if f.enum is not None:
            env[f"from_{f.name}"] = {member.value: member for member in f.enum}
            return f"from_{f.name}[{raw}]"
        if f.is_flag:
            return f"{raw} == 1"
        return raw

    pack_items: list[str] = []
    names: list[str] = []
    args: list[str] = []
    for i, slot in enumerate(slots):
        name = f"v{i}"
        names.append(name)
        if slot[0].offset == 0:  # the tag
            pack_items.append(str(tag))
            continue
        if len(slot) == 1 and slot[0].width >= 8:
            pack_items.append(value_of(slot[0]))
            args.append(field_of(slot[0], name))
            continue
        parts = []
        for f in slot:
            shift = f.offset % 8
            parts.append(value_of(f) + (f" << {shift}" if shift else ""))
            mask = (1 << f.width) - 1
            args.append(field_of(f, f"({name} >> {shift} & {mask})" if shift else
                                 f"({name} & {mask})"))
        pack_items.append(" | ".join(parts))
    if any(f.kw_only for f in dataclasses.fields(cls)):  # the commands are keyword-only
        args = [f"{f.name}={a}" for f, a in zip(dataclasses.fields(cls), args, strict=True)]
    source = (f"def pack_record(r):\n    return pack({', '.join(pack_items)})\n"
              f"def unpack_record(raw):\n    {', '.join(names)}, = unpack(raw)\n"
              f"    return cls({', '.join(args)})\n")
    exec(source, env)
    return env["pack_record"], env["unpack_record"]


class FastCodec(Generic[R]):
    """The records of ``codec``, packed and unpacked by compiled code; same bytes, same errors."""

    def __init__(self, codec: RecordCodec[R]) -> None:
        self.codec = codec
        self._pack: dict[type[Any], Callable[[Any], bytes]] = {}
        unpackers: list[Callable[[bytes], Any] | None] = [None] * 256
        sizes = [0] * 256
        for cls in codec.classes:
            record: Any = cls
            tag = (getattr(record, "OP", None) or record.KIND).value  # commands: OP; events: KIND
            pack, unpack = _compile(codec, cls, tag)
            self._pack[cls] = pack
            unpackers[tag] = unpack
            sizes[tag] = codec.size(cls)
        self._unpack = tuple(unpackers)
        #: The record size for each first byte; 0 for a byte that is no tag.
        self.sizes: tuple[int, ...] = tuple(sizes)

    def pack(self, record: R) -> bytes:
        try:
            return self._pack[type(record)](record)
        except _FALLBACK:
            return self.codec.pack(record)  # raises the codec's error

    def unpack(self, raw: bytes) -> R:
        try:
            unpack = self._unpack[raw[0]]
            if unpack is not None:
                record: R = unpack(raw)
                return record
        except _FALLBACK:
            pass
        return self.codec.unpack(raw)  # raises the codec's error

    def size(self, tag: int) -> int:
        """The size of the record whose first byte is ``tag`` (ProtocolError for no tag)."""
        size = self.sizes[tag]
        if not size:
            raise ProtocolError(f"unknown {self.codec.tag_enum.__name__} value {tag}")
        return size


COMMANDS: FastCodec[Command] = FastCodec(COMMAND_CODEC)
EVENTS: FastCodec[Event] = FastCodec(EVENT_CODEC)
