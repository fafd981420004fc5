"""Fault injection on any byte stream: what a bad cable, a noisy UART or a buggy driver does.

:class:`FaultyStream` wraps a :class:`~.transport.ByteStream` and damages the bytes going each
way, at per-byte rates and from a seeded generator, so a failing run can be repeated:

corrupt
    the byte is replaced by another value;
drop
    the byte is lost;
duplicate
    the byte arrives twice;
truncate
    the byte and everything after it up to the next END are lost: the frame it is in arrives
    cut short;
replay (per frame, not per byte)
    after a frame's END, one of the last 16 frames is sent again whole.

A device reset is injected on the device itself: ``model://?resets=...``,
:meth:`~.device.DeviceEmulator.reset` or :meth:`~.device.DeviceServer.power_cycle`.
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass

from .transport import ByteStream
from .wire import END

__all__ = ["FaultParams", "FaultyStream"]

_END = END[0]
_KINDS = ("corrupt", "drop", "duplicate", "truncate")


@dataclass(frozen=True)
class FaultParams:
    """Fault rates per byte (``replay``: per frame), for both directions unless ``directions``."""

    seed: int = 0
    corrupt: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    truncate: float = 0.0
    replay: float = 0.0
    directions: str = "both"  # "both", "to_device" or "to_host"

    def __post_init__(self) -> None:
        for name in (*_KINDS, "replay"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be a rate in [0, 1), not {rate}")
        if sum(getattr(self, name) for name in _KINDS) >= 1.0:
            raise ValueError("the per-byte fault rates must add up to less than 1")
        if self.directions not in ("both", "to_device", "to_host"):
            raise ValueError(f"directions must be 'both', 'to_device' or 'to_host', "
                             f"not {self.directions!r}")


class _Damage:
    """One direction's fault process."""

    def __init__(self, params: FaultParams, rng: random.Random) -> None:
        self.rng = rng
        self.rates = [getattr(params, name) for name in _KINDS]
        self.total = sum(self.rates)
        self.replay = params.replay
        self.counts: Counter[str] = Counter()
        self._gap = self._next_gap()
        self._truncating = False
        self._frame = bytearray()  # the frame being passed, for replay
        self._history: deque[bytes] = deque(maxlen=16)

    def _next_gap(self) -> int:
        """Clean bytes before the next fault: geometric, so each byte is hit independently."""
        if self.total == 0:
            return 1 << 62
        return int(math.log(1.0 - self.rng.random()) / math.log(1.0 - self.total))

    def __call__(self, data: bytes) -> bytes:
        if self.total:
            data = self._damage(data)
        if self.replay:
            data = self._replay(data)
        return data

    def _damage(self, data: bytes) -> bytes:
        out = bytearray()
        i, n = 0, len(data)
        rng = self.rng
        while i < n:
            if self._truncating:
                j = data.find(END, i)
                if j < 0:
                    break
                self._truncating = False
                i = j
            if self._gap >= n - i:
                out += data[i:]
                self._gap -= n - i
                break
            out += data[i:i + self._gap]
            i += self._gap
            kind = rng.choices(_KINDS, self.rates)[0]
            self.counts[kind] += 1
            byte = data[i]
            if kind == "corrupt":
                out.append(byte ^ rng.randrange(1, 256))
            elif kind == "duplicate":
                out += bytes((byte, byte))
            elif kind == "truncate":
                self._truncating = True
                i -= 1  # the byte itself goes too, below
            i += 1
            self._gap = self._next_gap()
        return bytes(out)

    def _replay(self, data: bytes) -> bytes:
        out = bytearray()
        start = 0
        while True:
            j = data.find(END, start)
            if j < 0:
                self._frame += data[start:]
                out += data[start:]
                return bytes(out)
            piece = data[start:j + 1]
            out += piece
            self._frame += piece
            if len(self._frame) > 1:
                self._history.append(bytes(self._frame))
            self._frame.clear()
            if self.rng.random() < self.replay and self._history:
                out += self.rng.choice(self._history)
                self.counts["replay"] += 1
            start = j + 1


class FaultyStream:
    """``inner`` with faults injected per :class:`FaultParams`; ``counts`` says which happened."""

    def __init__(self, inner: ByteStream, params: FaultParams) -> None:
        self.inner = inner
        self.params = params
        rng = random.Random(params.seed)
        none = FaultParams()
        self._to_device = _Damage(params if params.directions != "to_host" else none,
                                  random.Random(rng.getrandbits(64)))
        self._to_host = _Damage(params if params.directions != "to_device" else none,
                                random.Random(rng.getrandbits(64)))

    @property
    def counts(self) -> dict[str, Counter[str]]:
        """Faults injected so far, per direction and kind."""
        return {"to_device": self._to_device.counts, "to_host": self._to_host.counts}

    def write(self, data: bytes) -> None:
        self.inner.write(self._to_device(data))

    def read(self, timeout: float) -> bytes:
        return self._to_host(self.inner.read(timeout))

    def now(self) -> float:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()
