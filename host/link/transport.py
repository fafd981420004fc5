"""Byte streams under the link, and the URLs that select them.

The session (:mod:`.session`) sees a device only as a :class:`ByteStream`: bytes in, bytes out, and
a clock for its timeouts. Three kinds exist:

``model://``
    :class:`ModelStream`, an in-memory pipe to a :class:`~.device.DeviceEmulator` in the same
    thread. Its clock is virtual: when the host waits and the device has nothing to say, time
    jumps to the next deadline, so timeouts cost no wall time and a seeded run is reproducible.
``serial://PATH?baud=N`` and every pyserial URL (``socket://``, ``loop://``, ``rfc2217://``, ...)
    :class:`SerialStream`, through pyserial's ``serial_for_url``.
``sim://?kind=pty|tcp&markets=N&...``
    The virtual board (:mod:`ocee.sim.board`): the appliance's RTL under Verilator, started
    behind a pty or a TCP socket, reached through a :class:`SerialStream` that stops the board
    when closed. Its module registers the opener; opening a ``sim://`` URL imports it.

:func:`register_transport` adds a scheme.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import SplitResult, parse_qsl, urlsplit

import serial  # type: ignore[import-untyped]

from ocee.hw.matching.config import MatchingConfig

from .device import DeviceEmulator
from .errors import TransportError

__all__ = [
    "ByteStream",
    "ModelStream",
    "SerialStream",
    "open_stream",
    "register_transport",
    "transports",
]

_READ_CHUNK = 1 << 16


class ByteStream(Protocol):
    """A full-duplex byte stream to a device, with the clock its timeouts are measured by."""

    def write(self, data: bytes) -> None:
        """Send ``data`` (all of it)."""

    def read(self, timeout: float) -> bytes:
        """What has arrived; if nothing has, wait up to ``timeout`` seconds for something."""

    def now(self) -> float:
        """Seconds, monotonic."""

    def close(self) -> None: ...


class ModelStream:
    """A byte pipe to a device emulator in the same thread, on a virtual clock."""

    def __init__(self, device: DeviceEmulator) -> None:
        self.device = device
        self._clock = 0.0

    def write(self, data: bytes) -> None:
        self.device.receive(data, self._clock)

    def read(self, timeout: float) -> bytes:
        device = self.device
        device.poll(self._clock)
        out = device.transmit()
        if out or timeout <= 0:
            return out
        # Nothing will arrive before the device's next deadline or the host's: skip to it.
        target = self._clock + timeout
        deadline = device.next_deadline()
        if deadline is not None and self._clock < deadline < target:
            target = deadline
        self._clock = target
        device.poll(target)
        return device.transmit()

    def now(self) -> float:
        return self._clock

    def close(self) -> None:
        pass


class SerialStream:
    """A pyserial port: a board's UART, a pty, a TCP socket, anything ``serial_for_url`` opens."""

    def __init__(self, port: serial.SerialBase) -> None:
        self.port = port
        port.timeout = 0  # reads return what is there; waiting is done below
        try:
            self._fd: int | None = port.fileno()
        except (AttributeError, OSError):
            self._fd = None  # socket://, loop://: wait through pyserial's own timeout

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except serial.SerialException as e:
            raise TransportError(f"writing to {self.port.name}: {e}") from e

    def read(self, timeout: float) -> bytes:
        try:
            data: bytes = self.port.read(_READ_CHUNK)
            if data or timeout <= 0:
                return data
            if self._fd is not None:
                select.select([self._fd], [], [], timeout)
            else:
                self.port.timeout = timeout
                data = self.port.read(1)
                self.port.timeout = 0
            rest: bytes = self.port.read(_READ_CHUNK)
            return data + rest
        except serial.SerialException as e:
            raise TransportError(f"reading from {self.port.name}: {e}") from e

    def now(self) -> float:
        return time.monotonic()

    def close(self) -> None:
        self.port.close()


# -- URLs -------------------------------------------------------------------------------------------

Opener = Callable[[SplitResult], ByteStream]
_TRANSPORTS: dict[str, Opener] = {}
#: pyserial's own URL schemes, handed to serial_for_url unchanged.
PYSERIAL_SCHEMES = ("socket", "loop", "rfc2217", "spy", "alt", "hwgrep", "cp2110")
DEFAULT_BAUD = 3_000_000


def register_transport(scheme: str, opener: Opener) -> None:
    """Make ``scheme://...`` URLs open with ``opener`` (replacing any earlier one)."""
    _TRANSPORTS[scheme] = opener


def transports() -> list[str]:
    return sorted(_TRANSPORTS)


def open_stream(url: str) -> ByteStream:
    """The byte stream a link URL names."""
    parts = urlsplit(url)
    if not parts.scheme and url.startswith("/"):
        parts = urlsplit(f"serial://{url}")  # a bare device path
    opener = _TRANSPORTS.get(parts.scheme)
    if opener is None:
        raise TransportError(f"unknown link URL scheme in {url!r}: use one of "
                             f"{', '.join(s + '://' for s in transports())}")
    return opener(parts)


def _params(parts: SplitResult, allowed: dict[str, type]) -> dict[str, Any]:
    """The query parameters of ``parts``, each converted to its type in ``allowed``."""
    values: dict[str, Any] = {}
    for name, text in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        kind = allowed.get(name)
        if kind is None:
            raise TransportError(f"{parts.scheme}:// takes no parameter {name!r} (it takes "
                                 f"{', '.join(sorted(allowed)) or 'none'})")
        try:
            if kind is bool:
                if text not in ("0", "1"):
                    raise ValueError(text)
                values[name] = text == "1"
            elif kind is list:
                values[name] = [int(x) for x in text.split(",") if x]
            else:
                values[name] = kind(text)
        except ValueError:
            raise TransportError(f"{parts.scheme}:// parameter {name}={text!r} is not a valid "
                                 f"{kind.__name__}") from None
    return values


_MODEL_PARAMS: dict[str, type] = {
    "markets": int, "levels": int, "orders": int, "ids": int,  # the engine's capacities
    "fifo": int, "frame": int, "window": int, "rto": float,    # the link's
    "hash": bool, "resets": list,
}


def _open_model(parts: SplitResult) -> ByteStream:
    p = _params(parts, _MODEL_PARAMS)
    d = MatchingConfig()
    try:
        config = MatchingConfig(markets=p.get("markets", d.markets), levels=p.get("levels", d.levels),
                                orders=p.get("orders", d.orders), ids=p.get("ids", d.ids))
        device = DeviceEmulator(config, fifo_bytes=p.get("fifo", 2048),
                                max_frame=p.get("frame", 256), tx_window=p.get("window", 16),
                                rto=p.get("rto", 0.05), hash_events=p.get("hash", True),
                                resets_at=p.get("resets", ()))
    except ValueError as e:
        raise TransportError(f"model://: {e}") from None
    return ModelStream(device)


def _serial_for_url(url: str, baud: int, **kwargs: Any) -> ByteStream:
    try:
        port = serial.serial_for_url(url, baudrate=baud, timeout=0, **kwargs)
    except (serial.SerialException, ValueError) as e:
        raise TransportError(f"cannot open {url}: {e}") from None
    return SerialStream(port)


def _open_serial(parts: SplitResult) -> ByteStream:
    p = _params(parts, {"baud": int, "rtscts": bool})
    path = parts.netloc + parts.path
    if not path:
        raise TransportError("serial:// needs a port, for example serial:///dev/ttyUSB0")
    return _serial_for_url(path, p.get("baud", DEFAULT_BAUD), rtscts=p.get("rtscts", False))


def _open_pyserial(parts: SplitResult) -> ByteStream:
    return _serial_for_url(parts.geturl(), DEFAULT_BAUD)


def _open_sim(parts: SplitResult) -> ByteStream:
    # The board needs Amaranth and Verilator: imported on first use, it registers its own opener
    # for sim:// (replacing this one) and that opener does the work.
    from ocee.sim.board import open_sim

    return open_sim(parts)


register_transport("model", _open_model)
register_transport("serial", _open_serial)
register_transport("sim", _open_sim)
for _scheme in PYSERIAL_SCHEMES:
    register_transport(_scheme, _open_pyserial)
