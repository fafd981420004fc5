"""The compiled record codecs give the protocol codec's bytes and records, and its errors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocee.host.link.records import COMMANDS, EVENTS, FastCodec
from ocee.hw.protocol import (
    COMMAND_CODEC,
    EVENT_CODEC,
    Cancel,
    NewOrder,
    OrderType,
    ProtocolError,
    RecordCodec,
    Side,
)


class _NoFallback:
    """Stands in for the protocol codec behind a FastCodec: valid records must never reach it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the compiled code fell back to RecordCodec.{name}")


def compiled_only(codec: RecordCodec[Any]) -> FastCodec[Any]:
    fast = FastCodec(codec)
    fast.codec = _NoFallback()  # type: ignore[assignment]
    return fast


def records(codec: RecordCodec[Any]) -> st.SearchStrategy[Any]:
    """Any valid record of ``codec``, every field over its whole range."""
    def of(cls: type[Any]) -> st.SearchStrategy[Any]:
        fields: dict[str, st.SearchStrategy[Any]] = {}
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
    return st.one_of([of(cls) for cls in codec.classes])


@pytest.mark.parametrize("codec", [COMMAND_CODEC, EVENT_CODEC], ids=["commands", "events"])
@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_same_bytes_and_records_as_the_protocol_codec(codec: RecordCodec[Any],
                                                      data: st.DataObject) -> None:
    fast = compiled_only(codec)
    record = data.draw(records(codec))
    raw = codec.pack(record)
    assert fast.pack(record) == raw
    assert fast.unpack(raw) == record
    assert fast.sizes[raw[0]] == len(raw) == fast.size(raw[0])


@pytest.mark.parametrize("fast", [COMMANDS, EVENTS], ids=["commands", "events"])
def test_size_table(fast: FastCodec[Any]) -> None:
    for tag in range(256):
        try:
            expected = fast.codec.size_of_tag(tag)
        except ProtocolError:
            expected = 0
            with pytest.raises(ProtocolError):
                fast.size(tag)
        assert fast.sizes[tag] == expected


def test_errors_are_the_protocol_codecs() -> None:
    order = NewOrder(market=0, id=1, side=Side.BUY, qty=1)
    for bad in [dataclasses.replace(order, id=1 << 32), dataclasses.replace(order, qty=-1),
                dataclasses.replace(order, side=OrderType.LIMIT),  # type: ignore[arg-type]
                dataclasses.replace(order, side=1),  # type: ignore[arg-type]
                dataclasses.replace(order, post_only=2)]:
        with pytest.raises(ProtocolError) as fast_error:
            COMMANDS.pack(bad)
        with pytest.raises(ProtocolError) as codec_error:
            COMMAND_CODEC.pack(bad)
        assert str(fast_error.value) == str(codec_error.value)
    raw = COMMANDS.pack(order)
    tif_3 = raw[:-1] + bytes([raw[-1] | 0b1100])
    cases = [raw[:-1], raw + b"\x00", tif_3, b"\x00" + raw[1:], b"\x63", b""]
    for bad_raw in cases:
        with pytest.raises(ProtocolError):
            COMMANDS.unpack(bad_raw)
    assert COMMANDS.unpack(COMMANDS.pack(Cancel(market=3, id=9))) == Cancel(market=3, id=9)
