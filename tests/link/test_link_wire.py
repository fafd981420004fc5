"""The link's bytes: CRC, SLIP framing, resynchronisation, and the layouts against docs/link.md."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from amaranth.lib import data
from amaranth.lib.crc import catalog
from hypothesis import given, settings
from hypothesis import strategies as st

from ocee.host.link.wire import (
    CONTROL,
    CRC_RESIDUE,
    END,
    FRAME_HEADER,
    STATUS,
    ControlOp,
    DeviceCounters,
    DeviceInfo,
    DeviceStatus,
    Frame,
    FrameDecoder,
    FrameKind,
    crc32,
    encode_frame,
    pack_control,
    pack_set_stream,
    pack_status,
    unpack_control,
    unpack_set_stream,
    unpack_status,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"


def bitwise_crc32(data: bytes) -> int:
    """CRC-32/ISO-HDLC one bit at a time, from its definition: reflected polynomial 0xEDB88320."""
    crc = 0xFFFF_FFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB8_8320 if crc & 1 else 0)
    return crc ^ 0xFFFF_FFFF


def test_crc_check_value() -> None:
    assert crc32(b"123456789") == 0xCBF43926 == bitwise_crc32(b"123456789")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_crc_matches_independent_implementations(data: bytes) -> None:
    assert crc32(data) == bitwise_crc32(data)
    # What the gateware will instantiate (amaranth.lib.crc), through its software model.
    assert crc32(data) == catalog.CRC32_ISO_HDLC().compute(data)
    # The residue a receiver checks instead of comparing the trailing CRC.
    assert crc32(data + crc32(data).to_bytes(4, "little")) == CRC_RESIDUE


frames = st.builds(
    Frame,
    kind=st.sampled_from(list(FrameKind)), poll=st.booleans(), lap=st.integers(0, 7),
    epoch=st.integers(0, 255), seq=st.integers(0, 0xFFFF), ack=st.integers(0, 0xFFFF),
    credit=st.integers(0, 0xFFFF),
    # Bytes that need escaping, often.
    payload=st.binary(max_size=200) | st.lists(st.sampled_from(b"\xc0\xdb\xdc\xdd\x00"),
                                               max_size=100).map(bytes))


def wire(f: Frame) -> bytes:
    return encode_frame(f.kind, f.epoch, f.seq, f.ack, f.credit, f.payload, poll=f.poll, lap=f.lap)


@settings(max_examples=200, deadline=None)
@given(st.lists(frames, max_size=6), st.data())
def test_frames_round_trip_in_any_chunks(sent: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(wire(f) for f in sent)
    assert all(END not in wire(f)[:-1] for f in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    received = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        received += decoder.feed(stream[a:b])
    assert received == sent
    assert decoder.errors == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=300), frames), max_size=6))
def test_garbage_between_frames_costs_nothing_but_itself(pieces: list[tuple[bytes, Frame]]) -> None:
    """Noise on the line ends at the next END: every frame after it arrives."""
    stream = b"".join(garbage + END + wire(f) for garbage, f in pieces)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [f for _, f in pieces]
    noisy = sum(1 for garbage, _ in pieces if garbage.strip(END))
    assert (decoder.errors > 0) == (noisy > 0)


@settings(max_examples=300, deadline=None)
@given(frames, st.data())
def test_a_damaged_frame_is_never_taken(f: Frame, data: st.DataObject) -> None:
    encoded = wire(f)
    i = data.draw(st.integers(0, len(encoded) - 2))  # not the END: that just delays the frame
    how = data.draw(st.sampled_from(["corrupt", "drop", "duplicate", "truncate"]))
    if how == "corrupt":
        damaged = encoded[:i] + bytes([encoded[i] ^ data.draw(st.integers(1, 255))]) + encoded[i + 1:]
    elif how == "drop":
        damaged = encoded[:i] + encoded[i + 1:]
    elif how == "duplicate":
        damaged = encoded[:i + 1] + encoded[i:]
    else:
        damaged = encoded[:i] + END
    decoder = FrameDecoder()
    got = decoder.feed(damaged)
    # A single damaged byte is a burst of at most 8 bits: CRC-32 always sees it. A drop or a
    # duplicate shifts the rest, seen but with probability 1 - 2**-32, and a corrupted END or
    # ESC changes the frame's length.
    assert got == []
    assert decoder.errors >= 1 or not damaged.strip(END)


def test_overlong_input_is_dropped_then_the_next_frame_decodes() -> None:
    decoder = FrameDecoder(max_frame=64)
    assert decoder.feed(b"\x01" * 200) == []
    assert decoder.feed(b"\x02" * 200) == []
    good = Frame(FrameKind.ACK, False, 0, 1, 0, 2, 3, b"")
    assert decoder.feed(END + wire(good)) == [good]
    assert decoder.framing_errors == 1
    assert decoder.feed(END + END + END) == []  # an idle line is no error
    assert decoder.errors == 1


@pytest.mark.parametrize("body", [b"\x01\x02\x03", b"\xdb\x01" + bytes(20), bytes(20) + b"\xdb"],
                         ids=["short", "bad escape", "escape at the end"])
def test_framing_errors(body: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(body + END) == []
    assert (decoder.framing_errors, decoder.crc_errors) == (1, 0)


def test_unknown_kind_is_a_framing_error() -> None:
    body = bytes([0x0F, 0, 0, 0, 0, 0, 0, 0])
    decoder = FrameDecoder()
    assert decoder.feed(body + crc32(body).to_bytes(4, "little") + END) == []
    assert decoder.framing_errors == 1


def test_control_directive_and_status_payloads() -> None:
    assert unpack_control(pack_control(0x1234, ControlOp.OPEN, 7, 0xCAFE)) == (0x1234, 1, 7, 0xCAFE)
    assert unpack_control(bytes([1, 0, 99, 0, 0, 0, 0, 0])) == (1, 99, 0, 0)  # an unknown op
    assert unpack_set_stream(pack_set_stream(0xDEADBEEF, 12)) == (0xDEADBEEF, 12)
    status = DeviceStatus(0xBEEF, DeviceInfo(1, 4, 10, 13, 16), 9, 2048, 256, 16, 1, 0xF00D,
                          123, 4, DeviceCounters(*range(1, 10)))
    payload = pack_status(status)
    assert len(payload) == STATUS.size // 8 == 66
    assert payload[2:7] == bytes.fromhex("01040a0d10")  # DEVICE_INFO, as protocol.md shows it
    assert unpack_status(payload) == status
    with pytest.raises(ValueError, match="66-byte payload"):
        unpack_status(payload[:-1])


def _doc_table(heading: str) -> list[tuple[int, int, str]]:
    """(first byte, last byte, field) rows of the table under ``heading`` in docs/link.md."""
    text = (DOCS / "link.md").read_text()
    section = text[text.index(heading):]
    dash = "\u2013"  # the tables write byte ranges with an en dash
    rows = re.findall(rf"^\| (\d+)(?:{dash}(\d+))?(?: \(bits? [\d{dash}]+\))? \| `(\w+)` \|",
                      section, re.M)
    table = []
    for first, last, name in rows:
        if table and int(first) < table[-1][0]:
            break  # the next table
        table.append((int(first), int(last or first), name))
    return table


def _layout_bytes(layout: data.StructLayout) -> list[tuple[int, int, str]]:
    return [(f.offset // 8, (f.offset + f.width - 1) // 8, name) for name, f in layout]


def test_docs_tables_match_the_layouts() -> None:
    header = [row for row in _doc_table("The body of every frame") if row[2] != "crc"]
    assert header == _layout_bytes(FRAME_HEADER)
    assert _doc_table("The `STATUS` payload") == _layout_bytes(STATUS)
    assert _doc_table("The `CONTROL` payload") == _layout_bytes(CONTROL)


def test_docs_examples() -> None:
    """The worked examples of docs/link.md, byte for byte."""
    text = (DOCS / "link.md").read_text()
    examples = re.findall(r"^    ([0-9a-f]{2}(?: [0-9a-f]{2})+)$", text, re.M)
    status_request = encode_frame(FrameKind.CONTROL, 0, 0, 0, 0,
                                  pack_control(0x0001, ControlOp.STATUS))
    cancel = encode_frame(FrameKind.DATA, 5, 0x0102, 0x0007, 0, bytes.fromhex("020011c00000"))
    assert examples[:2] == [status_request.hex(" "), cancel.hex(" ")]
