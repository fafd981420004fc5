"""The payloads of the streams between the link's gateware blocks.

The link's wire layouts (frame header, control, status) are in :mod:`ocee.host.link.wire`, shared
with the host; these are the device's internal ones::

    UART rx ─8─► SlipDecoder ─DECODED_BYTE─► LinkReceiver ─BODY_BYTE─► CommandFifo ─BODY_BYTE─►
    CommandAssembler ─COMMAND─► EngineCore ─TAGGED_EVENT─► EventSerializer ─EVENT_BYTE─►
    LinkTransmitter ─BODY_BYTE─► SlipEncoder ─8─► UART tx
"""

from __future__ import annotations

from amaranth.lib import data

from ocee.hw.protocol import EVENT

__all__ = ["BODY_BYTE", "DECODED_BYTE", "EVENT_BYTE", "TAGGED_EVENT"]

#: A byte of a frame body or of a command FIFO: ``last`` marks the last byte (of the body, or of a
#: ``DATA`` payload in the FIFO).
BODY_BYTE = data.StructLayout({
    "data": 8,
    "last": 1,
})

#: What the SLIP decoder delivers: the decoded bytes of a body (``end`` = 0), then one item with
#: ``end`` = 1 (``data`` unused) after the body's last byte, whose ``error`` says that the body broke
#: the framing rules (an escape followed by anything but 0xDC or 0xDD, or more than ``max_body``
#: bytes). Empty bodies (two END bytes in a row) produce nothing.
DECODED_BYTE = data.StructLayout({
    "data":  8,
    "end":   1,
    "error": 1,
})

#: An event, and whether it is the last event of its command (the ``ends`` bit of docs/link.md).
TAGGED_EVENT = data.StructLayout({
    "event": EVENT,
    "end":   1,
})

#: A byte of an event record on its way into a frame. ``length`` (the record's size in bytes) and
#: ``end`` (the record is the last event of its command) hold on every byte of the record;
#: ``first`` and ``last`` mark its first and last byte.
EVENT_BYTE = data.StructLayout({
    "data":   8,
    "first":  1,
    "last":   1,
    "length": 8,
    "end":    1,
})
