"""The link's exceptions: one root, a subclass per way it can fail."""

from __future__ import annotations

__all__ = [
    "DeviceMismatch",
    "IncompatibleDevice",
    "LinkError",
    "LinkTimeout",
    "ProtocolViolation",
    "TransportError",
]


class LinkError(Exception):
    """Anything that stops the link from delivering commands and events."""


class TransportError(LinkError):
    """The byte stream cannot be opened or used: a bad URL, a missing port, a closed socket."""


class LinkTimeout(LinkError):
    """The device stopped answering: no acknowledgement or status within the retry budget."""


class IncompatibleDevice(LinkError):
    """The device speaks another protocol version, or came back from a reset as another device."""


class ProtocolViolation(LinkError):
    """A frame with a good CRC that breaks the link protocol: a bug on the other side."""


class DeviceMismatch(LinkError):
    """The device's events differ from the reference model's for the same commands."""
