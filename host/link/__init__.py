"""The host's link to a matching device (spec: docs/link.md).

One abstraction, :class:`Link`, whatever carries the bytes; the URL picks the transport::

    with open_link("model://") as link:                           # the device emulator, in process
        events = link.execute(NewOrder(market=0, id=1, side=Side.BUY, price=100, qty=5))
    with open_link("serial:///dev/ttyUSB0?baud=3000000") as link:  # a board
        for done in link.stream(commands):
            ...

Layers, bottom up: :mod:`.wire` (frames, SLIP, CRC, status record), :mod:`.transport` (byte
streams and URLs), :mod:`.faults` (fault injection on any stream), :mod:`.session` (the reliable
session: sequence numbers, retransmission, credits, reset recovery), :mod:`.device` (the device's
side, emulated, for ``model://`` and the tests). :mod:`.records` packs the protocol's records fast.
"""

from __future__ import annotations

from .device import DeviceEmulator, DeviceServer
from .errors import (
    DeviceMismatch,
    IncompatibleDevice,
    LinkError,
    LinkTimeout,
    ProtocolViolation,
    TransportError,
)
from .faults import FaultParams, FaultyStream
from .session import Completion, Link, LinkOptions, LinkStats
from .transport import ByteStream, ModelStream, SerialStream, open_stream, register_transport
from .wire import DeviceCounters, DeviceInfo, DeviceStatus

__all__ = [
    "ByteStream",
    "Completion",
    "DeviceCounters",
    "DeviceEmulator",
    "DeviceInfo",
    "DeviceMismatch",
    "DeviceServer",
    "DeviceStatus",
    "FaultParams",
    "FaultyStream",
    "IncompatibleDevice",
    "Link",
    "LinkError",
    "LinkOptions",
    "LinkStats",
    "LinkTimeout",
    "ModelStream",
    "ProtocolViolation",
    "SerialStream",
    "TransportError",
    "open_link",
    "open_stream",
    "register_transport",
]


def open_link(url: str, *, options: LinkOptions | None = None,
              faults: FaultParams | None = None) -> Link:
    """Connect to the device ``url`` names (see :mod:`.transport`), optionally through faults."""
    stream = open_stream(url)
    if faults is not None:
        stream = FaultyStream(stream, faults)
    return Link(stream, options)
