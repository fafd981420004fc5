"""Capacity parameters of a matching engine, shared by the reference model and the gateware."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MatchingConfig"]


def _log2_exact(name: str, value: int) -> int:
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two, not {value}")
    return value.bit_length() - 1


@dataclass(frozen=True)
class MatchingConfig:
    """How big a device's books are. The defaults are the ULX3S (ECP5-85F) configuration.

    markets
        Independent order books, numbered ``0 .. markets - 1`` (at most 255).
    levels
        Price levels per side of each market: a market's window is ``[lowest, lowest + levels)``
        ticks, and every market's window starts at tick 0 after reset. A power of two.
    orders
        Resting orders the device holds, shared by all markets. A power of two.
    ids
        Order ids are ``0 .. ids - 1``; an id names at most one live order on the whole device.
        A power of two, at least ``orders``.
    """

    markets: int = 4
    levels: int = 1024
    orders: int = 8192
    ids: int = 65536

    def __post_init__(self) -> None:
        if not 1 <= self.markets <= 255:
            raise ValueError(f"markets must be between 1 and 255, not {self.markets}")
        _log2_exact("levels", self.levels)
        _log2_exact("orders", self.orders)
        _log2_exact("ids", self.ids)
        if self.ids < self.orders:
            raise ValueError(f"ids ({self.ids}) must be at least orders ({self.orders}), "
                             f"or some order slots could never be used")
        if self.ids > 1 << 32:
            raise ValueError(f"ids must be at most 2**32, not {self.ids}")
        if self.levels > 1 << 31:
            raise ValueError(f"levels must be at most 2**31, not {self.levels}")

    @property
    def log2_levels(self) -> int:
        return self.levels.bit_length() - 1

    @property
    def log2_orders(self) -> int:
        return self.orders.bit_length() - 1

    @property
    def log2_ids(self) -> int:
        return self.ids.bit_length() - 1
