"""The link's bytes: frame layouts, SLIP framing, CRC-32, the status record (spec: docs/link.md).

The layouts are Amaranth ``data.StructLayout``s, as the records' are in :mod:`ocee.hw.protocol`,
so that the gateware can decode them directly. The host packs the frame header, which it handles
for every frame, with a :mod:`struct` format that is checked against :data:`FRAME_HEADER` at import
time; the other layouts are packed through Amaranth's ``data.Const``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from amaranth.lib import data

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.protocol import DEVICE_INFO, PROTOCOL_VERSION

if TYPE_CHECKING:
    from ocee.hw.protocol import ShapedEnum
else:
    from amaranth.lib.enum import Enum as ShapedEnum

__all__ = [
    "CONTROL",
    "CRC_RESIDUE",
    "END",
    "ESC",
    "FRAME_HEADER",
    "HEADER_SIZE",
    "LINK_VERSION",
    "MIN_FRAME",
    "SET_STREAM",
    "STATUS",
    "ControlOp",
    "DeviceCounters",
    "DeviceInfo",
    "DeviceStatus",
    "DirectiveCode",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "crc32",
    "encode_frame",
    "pack_control",
    "pack_set_stream",
    "pack_status",
    "unpack_control",
    "unpack_set_stream",
    "unpack_status",
]

#: The version of docs/link.md that this module implements; the device reports its own.
LINK_VERSION = 1

END = b"\xc0"
ESC = b"\xdb"
_ESC_END = b"\xdb\xdc"  # END inside a body
_ESC_ESC = b"\xdb\xdd"  # ESC inside a body


class FrameKind(ShapedEnum, shape=4):
    DATA = 1       # sequenced; host: command records; device: `ends` then event records
    DIRECTIVE = 2  # sequenced, host to device: a directive code and its arguments
    ACK = 3
    NAK = 4        # "resend from `ack`"
    CONTROL = 5    # host to device, unsequenced: answered by a STATUS
    STATUS = 6     # device to host


class ControlOp(ShapedEnum, shape=8):
    STATUS = 0  # no effect: just the reply
    OPEN = 1    # at epoch 0 only: start epoch `arg`
    RESET = 2   # if `arg` is the device's epoch: a power cycle


class DirectiveCode(ShapedEnum, shape=8):
    SET_STREAM = 1  # the next event's seq and the next batch number; the batch in progress is dropped


FRAME_HEADER = data.StructLayout({
    "kind":     FrameKind,
    "poll":     1,    # host ACK frames: answer at once with an ACK
    "lap":      3,    # sequenced frames: the sender's go-backs so far, mod 8; NAK: the lap it is about
    "epoch":    8,
    "seq":      16,   # DATA and DIRECTIVE: this frame's number
    "ack":      16,   # the next seq expected from the other side
    "credit":   16,   # device frames: (consumed + fifo_bytes) mod 2**16
})

CONTROL = data.StructLayout({
    "tag":     16,
    "op":      ControlOp,
    "arg":     8,
    "boot_id": 32,   # OPEN and RESET: the device's, from its status; a replay carries a stale one
})

SET_STREAM = data.StructLayout({
    "code":  DirectiveCode,
    "seq":   32,
    "batch": 32,
})

STATUS = data.StructLayout({
    "tag":             16,
    "info":            DEVICE_INFO,
    "epoch":           8,
    "fifo_bytes":      16,
    "max_frame":       16,
    "tx_window":       8,
    "link_version":    8,
    "boot_id":         32,   # drawn at every reset: OPEN and RESET must quote it
    "event_seq":       32,
    "batch":           32,
    "commands":        32,
    "events":          32,
    "rx_frames":       32,
    "tx_frames":       32,
    "framing_errors":  32,
    "crc_errors":      32,
    "overflows":       32,
    "sequence_errors": 32,
    "retransmits":     32,
    "line_errors":     32,   # the PHY's: UART framing errors and overruns
})

HEADER_SIZE = FRAME_HEADER.size // 8
CRC_SIZE = 4
MIN_FRAME = HEADER_SIZE + CRC_SIZE
#: zlib.crc32 of a body whose last 4 bytes are the CRC of the rest, little-endian.
CRC_RESIDUE = 0x2144DF1C

_HEADER = struct.Struct("<BBHHH")


def _check_header_struct() -> None:
    # The hand-written struct format must say what FRAME_HEADER says.
    offsets = {name: (f.offset, f.width) for name, f in FRAME_HEADER}
    expected = {"kind": (0, 4), "poll": (4, 1), "lap": (5, 3), "epoch": (8, 8),
                "seq": (16, 16), "ack": (32, 16), "credit": (48, 16)}
    if offsets != expected or _HEADER.size != HEADER_SIZE:
        raise TypeError(f"the header struct {_HEADER.format!r} does not match {FRAME_HEADER!r}")


_check_header_struct()


def crc32(body: bytes) -> int:
    """CRC-32/ISO-HDLC (polynomial 0x04C11DB7, reflected, init and xorout 0xFFFFFFFF)."""
    return zlib.crc32(body)


def encode_frame(kind: FrameKind, epoch: int, seq: int, ack: int, credit: int,
                 payload: bytes = b"", *, poll: bool = False, lap: int = 0) -> bytes:
    """The wire bytes of one frame: the SLIP-encoded body, then END."""
    body = _HEADER.pack(kind.value | poll << 4 | lap << 5, epoch, seq, ack, credit) + payload
    body += zlib.crc32(body).to_bytes(4, "little")
    if ESC in body:
        body = body.replace(ESC, _ESC_ESC)
    if END in body:
        body = body.replace(END, _ESC_END)
    return body + END


_KINDS: dict[int, FrameKind] = {k.value: k for k in FrameKind}


@dataclass(slots=True)
class Frame:
    """A received frame that passed the SLIP, length and CRC checks."""

    kind: FrameKind
    poll: bool
    lap: int
    epoch: int
    seq: int
    ack: int
    credit: int
    payload: bytes


class FrameDecoder:
    """Splits a byte stream into frames at END and checks each one.

    ``feed`` returns the good frames; the bad ones are counted in ``framing_errors`` (escapes,
    length, unknown kind) and ``crc_errors``. Bytes that go on for longer than ``max_frame`` allows
    without an END are dropped as they come, and counted as one framing error when the END arrives.
    """

    def __init__(self, max_frame: int = 4096) -> None:
        if max_frame < MIN_FRAME:
            raise ValueError(f"max_frame must be at least {MIN_FRAME}, not {max_frame}")
        self.max_frame = max_frame
        self.framing_errors = 0
        self.crc_errors = 0
        self._partial = b""
        self._overlong = False
        # The longest encoding of a body of max_frame bytes: every byte escaped.
        self._max_encoded = 2 * max_frame

    @property
    def errors(self) -> int:
        return self.framing_errors + self.crc_errors

    def reset(self) -> None:
        """Forget a partly received frame (the receiver's power cycle)."""
        self._partial = b""
        self._overlong = False

    def feed(self, data: bytes) -> list[Frame]:
        parts = data.split(END)
        if len(parts) == 1:
            self._partial += data
            if len(self._partial) > self._max_encoded:
                self._partial = b""
                self._overlong = True
            return []
        frames: list[Frame] = []
        last = len(parts) - 1
        for i, encoded in enumerate(parts):
            if i == 0:
                encoded = self._partial + encoded
                self._partial = b""
            elif i == last:
                self._partial = encoded
                if len(encoded) > self._max_encoded:
                    self._partial = b""
                    self._overlong = True
                break
            if self._overlong:
                self._overlong = False
                self.framing_errors += 1
                continue
            if not encoded:
                continue  # END END: idle line, not an error
            frame = self._decode(encoded)
            if frame is not None:
                frames.append(frame)
        return frames

    def _decode(self, encoded: bytes) -> Frame | None:
        body = encoded
        if ESC in body:
            if body.count(ESC) != body.count(_ESC_END) + body.count(_ESC_ESC):
                self.framing_errors += 1  # an ESC followed by something else, or last
                return None
            body = body.replace(_ESC_END, END).replace(_ESC_ESC, ESC)
        if not MIN_FRAME <= len(body) <= self.max_frame:
            self.framing_errors += 1
            return None
        if zlib.crc32(body) != CRC_RESIDUE:
            self.crc_errors += 1
            return None
        first, epoch, seq, ack, credit = _HEADER.unpack_from(body)
        kind = _KINDS.get(first & 0xF)
        if kind is None:
            self.framing_errors += 1
            return None
        return Frame(kind, bool(first & 0x10), first >> 5, epoch, seq, ack, credit,
                     body[HEADER_SIZE:-CRC_SIZE])


# -- Control, directive and status payloads ---------------------------------------------------------


def _pack(layout: data.StructLayout, values: dict[str, Any]) -> bytes:
    bits: int = layout.const(values).as_bits()
    return bits.to_bytes(layout.size // 8, "little")


def _unpack(layout: data.StructLayout, payload: bytes) -> Any:
    if len(payload) != layout.size // 8:
        raise ValueError(f"a {layout.size // 8}-byte payload was expected, not {len(payload)} bytes")
    return layout.from_bits(int.from_bytes(payload, "little"))


def pack_control(tag: int, op: ControlOp, arg: int = 0, boot_id: int = 0) -> bytes:
    return _pack(CONTROL, {"tag": tag, "op": op, "arg": arg, "boot_id": boot_id})


def unpack_control(payload: bytes) -> tuple[int, int, int, int]:
    """(tag, op, arg, boot_id); ``op`` as a number: a device must survive an unknown one."""
    c = _unpack(CONTROL, payload)
    op = CONTROL["op"]
    return (int(c["tag"]), c.as_bits() >> op.offset & ((1 << op.width) - 1), int(c["arg"]),
            int(c["boot_id"]))


def pack_set_stream(seq: int, batch: int) -> bytes:
    return _pack(SET_STREAM, {"code": DirectiveCode.SET_STREAM, "seq": seq, "batch": batch})


def unpack_set_stream(payload: bytes) -> tuple[int, int]:
    c = _unpack(SET_STREAM, payload)
    return int(c["seq"]), int(c["batch"])


@dataclass(frozen=True)
class DeviceInfo:
    """The ``DEVICE_INFO`` record: the protocol version and the device's capacities."""

    version: int
    markets: int
    log2_levels: int
    log2_orders: int
    log2_ids: int

    @classmethod
    def of(cls, config: MatchingConfig, version: int = PROTOCOL_VERSION) -> DeviceInfo:
        return cls(version, config.markets, config.log2_levels, config.log2_orders,
                   config.log2_ids)

    @property
    def config(self) -> MatchingConfig:
        """The device's capacities (``ValueError`` if they make no valid configuration)."""
        return MatchingConfig(markets=self.markets, levels=1 << self.log2_levels,
                              orders=1 << self.log2_orders, ids=1 << self.log2_ids)


@dataclass(frozen=True)
class DeviceCounters:
    """The device's counters from its status (32 bits each, wrapping; cleared by a reset)."""

    commands: int = 0
    events: int = 0
    rx_frames: int = 0
    tx_frames: int = 0
    framing_errors: int = 0
    crc_errors: int = 0
    overflows: int = 0
    sequence_errors: int = 0
    retransmits: int = 0
    line_errors: int = 0


@dataclass(frozen=True)
class DeviceStatus:
    tag: int
    info: DeviceInfo
    epoch: int
    fifo_bytes: int
    max_frame: int
    tx_window: int
    link_version: int
    boot_id: int
    event_seq: int
    batch: int
    counters: DeviceCounters


_COUNTER_NAMES = [f.name for f in fields(DeviceCounters)]
_INFO_NAMES = [f.name for f in fields(DeviceInfo)]


def pack_status(status: DeviceStatus) -> bytes:
    values: dict[str, Any] = {f.name: getattr(status, f.name) for f in fields(DeviceStatus)
                              if f.name not in ("info", "counters")}
    values["info"] = {name: getattr(status.info, name) for name in _INFO_NAMES}
    values.update({name: getattr(status.counters, name) for name in _COUNTER_NAMES})
    return _pack(STATUS, values)


def unpack_status(payload: bytes) -> DeviceStatus:
    s = _unpack(STATUS, payload)
    info = DeviceInfo(*(int(s["info"][name]) for name in _INFO_NAMES))
    counters = DeviceCounters(*(int(s[name]) for name in _COUNTER_NAMES))
    return DeviceStatus(int(s["tag"]), info, int(s["epoch"]), int(s["fifo_bytes"]),
                        int(s["max_frame"]), int(s["tx_window"]), int(s["link_version"]),
                        int(s["boot_id"]), int(s["event_seq"]), int(s["batch"]), counters)
