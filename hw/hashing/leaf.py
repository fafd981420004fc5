"""How an event becomes a 32-byte leaf of its batch's Merkle tree (spec: docs/merkle.md).

A leaf is ``keccak256`` of the event's fields packed as Solidity's ``abi.encodePacked`` packs
them: every field of the event's wire layout, tag first, in wire order, each as the smallest
big-endian ``uintN`` that holds it (enumerations and flags as ``uint8``). The encoding is derived
from :data:`ocee.hw.protocol.EVENT_CODEC`, so it follows the layouts by construction.

Every event of a batch is a leaf, in sequence order, except the batch-closed event that ends it.
Leaf preimages are 10 to 39 bytes, never the 64 bytes of an inner node's preimage, so a leaf cannot
be passed off as an inner node and no second hash of the leaf is needed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from operator import attrgetter

from ..protocol import EVENT_CODEC, BatchClosed, Event
from .merkle import keccak256

__all__ = ["event_leaf", "leaf_preimage"]

_STRUCT_CODE = {1: "B", 2: "H", 4: "I", 8: "Q"}


def _compile(cls: type[Event]) -> Callable[[Event], bytes]:
    _tag, *fields = EVENT_CODEC.fields(cls)
    fmt = ">B" + "".join(_STRUCT_CODE[f.byte_width] for f in fields)
    pack = struct.Struct(fmt).pack
    tag_value = cls.KIND.value
    get = attrgetter(*(f.name for f in fields))
    enum_positions = [i for i, f in enumerate(fields) if f.enum is not None]

    def encode(event: Event) -> bytes:
        values = list(get(event))
        for i in enum_positions:
            values[i] = values[i].value
        return pack(tag_value, *values)

    return encode


_ENCODERS: dict[type[Event], Callable[[Event], bytes]] = {
    cls: _compile(cls) for cls in EVENT_CODEC.classes if cls is not BatchClosed}


def leaf_preimage(event: Event) -> bytes:
    """The ``abi.encodePacked`` bytes whose keccak is the event's leaf."""
    encode = _ENCODERS.get(type(event))
    if encode is None:
        raise ValueError(f"a {type(event).__name__} event is not a leaf of any batch")
    return encode(event)


def event_leaf(event: Event) -> bytes:
    return keccak256(leaf_preimage(event))


