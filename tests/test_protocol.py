"""The wire protocol: the codec follows the Amaranth layouts bit for bit."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocee.hw.protocol import (
    COMMAND,
    COMMAND_CODEC,
    DEVICE_INFO,
    EVENT,
    EVENT_CODEC,
    Book,
    Cancel,
    CloseBatch,
    EventKind,
    Fill,
    NewOrder,
    Opcode,
    ProtocolError,
    RecordCodec,
    Side,
    StpMode,
    TimeInForce,
)

CODECS = [(COMMAND_CODEC, COMMAND, "op"), (EVENT_CODEC, EVENT, "kind")]
ALL = [(codec, layout, tag, cls) for codec, layout, tag in CODECS for cls in codec.classes]


def _records(codec: RecordCodec[Any], cls: type[Any]) -> st.SearchStrategy[Any]:
    fields = {}
    for f in codec.fields(cls)[1:]:
        if f.enum is not None:
            fields[f.name] = st.sampled_from(list(f.enum))
        elif f.is_flag:
            fields[f.name] = st.booleans()
        elif f.is_bytes:
            fields[f.name] = st.binary(min_size=f.width // 8, max_size=f.width // 8)
        else:
            fields[f.name] = st.integers(0, (1 << f.width) - 1)
    return st.builds(cls, **fields)


def _amaranth_bytes(layout: Any, tag: str, codec: RecordCodec[Any], record: Any) -> bytes:
    """The record serialised by Amaranth itself, truncated to the record's wire size."""
    header_names = [name for name, _ in layout["header"].shape]
    header = {tag: getattr(type(record), "OP", None) or type(record).KIND}
    body = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, bytes):
            value = int.from_bytes(value, "little")
        (header if f.name in header_names else body)[f.name] = value
    member = header[tag].name.lower()
    bits = layout.const({"header": header, "body": {member: body}}).as_bits()
    return bits.to_bytes((layout.size + 7) // 8, "little")[:codec.size(type(record))]


@pytest.mark.parametrize(("codec", "layout", "tag", "cls"), ALL,
                         ids=[cls.__name__ for *_, cls in ALL])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_codec_matches_amaranth_and_round_trips(codec: Any, layout: Any, tag: str, cls: type,
                                                data: st.DataObject) -> None:
    record = data.draw(_records(codec, cls))
    raw = codec.pack(record)
    assert raw == _amaranth_bytes(layout, tag, codec, record)
    assert raw[0] == (getattr(cls, "OP", None) or cls.KIND).value
    assert codec.size_of_tag(raw[0]) == len(raw)
    assert codec.unpack(raw) == record


def test_wire_sizes() -> None:
    sizes = {cls.__name__: COMMAND_CODEC.size(cls) for cls in COMMAND_CODEC.classes}
    assert sizes == {"NewOrder": 19, "Cancel": 6, "Modify": 10, "MassCancelAccount": 6,
                     "MassCancelMarket": 2, "SetWindow": 6, "Query": 3, "CloseBatch": 2}
    assert EVENT_CODEC.size(Fill) == 39
    assert EVENT_CODEC.size(Book) == 32
    assert max(EVENT_CODEC.size(c) for c in EVENT_CODEC.classes) == (EVENT.size + 7) // 8 == 46


def test_tags_are_complete_and_zero_is_unused() -> None:
    assert {c.OP for c in COMMAND_CODEC.classes} == set(Opcode)
    assert {c.KIND for c in EVENT_CODEC.classes} == set(EventKind)
    for codec in (COMMAND_CODEC, EVENT_CODEC):
        with pytest.raises(ProtocolError, match="unknown"):
            codec.size_of_tag(0)


def test_pack_rejects_values_the_wire_cannot_carry() -> None:
    with pytest.raises(ProtocolError, match=r"NewOrder.qty = 4294967296 does not fit in 32"):
        COMMAND_CODEC.pack(NewOrder(market=0, id=1, side=Side.BUY, price=1, qty=1 << 32))
    with pytest.raises(ProtocolError, match=r"Cancel.market = -1"):
        COMMAND_CODEC.pack(Cancel(market=-1, id=1))
    with pytest.raises(ProtocolError, match=r"NewOrder.side must be a Side"):
        COMMAND_CODEC.pack(NewOrder(market=0, id=1, side=0, price=1, qty=1))  # type: ignore[arg-type]


def test_unpack_rejects_bad_records() -> None:
    raw = COMMAND_CODEC.pack(Cancel(market=1, id=7))
    with pytest.raises(ProtocolError, match="Cancel record is 6 bytes, not 5"):
        COMMAND_CODEC.unpack(raw[:5])
    with pytest.raises(ProtocolError, match="empty"):
        COMMAND_CODEC.unpack(b"")
    with pytest.raises(ProtocolError, match="unknown Opcode value 200"):
        COMMAND_CODEC.unpack(bytes([200]) + raw[1:])
    new = bytearray(COMMAND_CODEC.pack(NewOrder(market=0, id=1, side=Side.BUY, price=1, qty=1,
                                                 tif=TimeInForce.FOK)))
    tif = next(f for f in COMMAND_CODEC.fields(NewOrder) if f.name == "tif")
    new[tif.offset // 8] |= 3 << (tif.offset % 8)
    with pytest.raises(ProtocolError, match=r"NewOrder\.tif: 3 is no TimeInForce"):
        COMMAND_CODEC.unpack(bytes(new))
    _, raw_fields = COMMAND_CODEC.unpack_fields(bytes(new))
    assert raw_fields["tif"] == 3


def test_codec_refuses_a_record_class_that_drifted_from_its_layout() -> None:
    @dataclass
    class Drifted:
        OP: ClassVar[Opcode] = Opcode.CANCEL
        market: int
        order: int  # the layout calls it "id"

    classes = [Drifted if c is Cancel else c for c in COMMAND_CODEC.classes]
    with pytest.raises(TypeError, match=r"Drifted declares fields \['market', 'order'\], but the "
                                        r"wire record for <Opcode.CANCEL: 2> has \['market', 'id'\]"):
        RecordCodec(COMMAND, tag="op", tag_attr="OP", classes=classes)
    with pytest.raises(TypeError, match="no record class for body members"):
        RecordCodec(COMMAND, tag="op", tag_attr="OP",
                    classes=[c for c in COMMAND_CODEC.classes if c is not CloseBatch])


def test_enums_fit_their_fields() -> None:
    for codec in (COMMAND_CODEC, EVENT_CODEC):
        for cls in codec.classes:
            for f in codec.fields(cls):
                if f.enum is not None:
                    assert max(m.value for m in f.enum) < 1 << f.width, (cls, f.name)


def test_device_info_layout() -> None:
    assert [name for name, _ in DEVICE_INFO] == ["version", "markets", "log2_levels",
                                                  "log2_orders", "log2_ids"]
    assert StpMode.CANCEL_BOTH.value == 3
