"""The record tables in docs/ are written by hand: check them against the codec they describe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocee.hw.protocol import COMMAND_CODEC, EVENT_CODEC, BatchClosed

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _record_tables() -> dict[str, tuple[int, int, list[tuple[str, int, int]]]]:
    """{TAG NAME: (tag value, size in bytes, [(field, bit offset, width), ...])}."""
    text = (DOCS / "protocol.md").read_text()
    tables = {}
    for m in re.finditer(r"^### `(\w+)` \((\d+)\): (\d+) bytes\n(.*?)(?=^#)", text, re.M | re.S):
        rows = re.findall(r"^\| `(\w+)` \| (\d+) \| (\d+) \|", m.group(4), re.M)
        tables[m.group(1)] = (int(m.group(2)), int(m.group(3)),
                              [(name, int(off), int(width)) for name, off, width in rows])
    return tables


RECORDS = [(codec, cls) for codec in (COMMAND_CODEC, EVENT_CODEC) for cls in codec.classes]


@pytest.mark.parametrize(("codec", "cls"), RECORDS, ids=[cls.__name__ for _, cls in RECORDS])
def test_protocol_tables_match_the_codec(codec, cls) -> None:  # type: ignore[no-untyped-def]
    tag = getattr(cls, "OP", None) or cls.KIND
    value, size, rows = _record_tables()[tag.name]
    assert value == tag.value
    assert size == codec.size(cls)
    assert rows == [(f.name, f.offset, f.width) for f in codec.fields(cls)]


def test_merkle_leaf_types_match_the_encoding() -> None:
    text = (DOCS / "merkle.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \(\d+\) \| `([^`]+)` \| \d+ \|", text, re.M))
    names = {"batch_closed"}
    for cls in EVENT_CODEC.classes:
        if cls is BatchClosed:
            continue
        name = cls.KIND.name.lower()
        names.add(name)
        expected = ", ".join(f"uint{8 * f.byte_width} {f.name}" for f in EVENT_CODEC.fields(cls))
        assert rows[name] == expected, name
    assert set(rows) <= names
