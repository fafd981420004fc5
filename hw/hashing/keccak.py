"""Keccak-f[1600] and Keccak-256 in plain Python: the golden model of the hashing gateware.

Written from the Keccak reference (FIPS 202 section 3, with Ethereum's original padding byte
0x01 instead of SHA-3's 0x06) and kept round by round, so the gateware can be compared with it
one round at a time. It is slow (a few thousand hashes per second); the host hashes with
:func:`ocee.hw.hashing.merkle.keccak256`, which this module checks in the tests.
"""

from __future__ import annotations

__all__ = ["RATE_BYTES", "RHO_OFFSETS", "ROUND_CONSTANTS", "keccak256_reference", "keccak_f1600",
           "keccak_round"]

RATE_BYTES = 136  # 1088-bit rate of Keccak-256 (capacity 512 bits)

_MASK = (1 << 64) - 1

ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)

#: Rotation offsets r[x][y] of the rho step.
RHO_OFFSETS = (
    (0, 36, 3, 41, 18),
    (1, 44, 10, 45, 2),
    (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56),
    (27, 20, 39, 8, 14),
)


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (64 - n))) & _MASK if n else v


def keccak_round(a: list[int], round_index: int) -> list[int]:
    """One round (theta, rho, pi, chi, iota) on the 25 lanes ``a[x + 5*y]``."""
    c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
    d = [c[(x - 1) % 5] ^ _rotl(c[(x + 1) % 5], 1) for x in range(5)]
    theta = [a[i] ^ d[i % 5] for i in range(25)]
    b = [0] * 25
    for x in range(5):
        for y in range(5):
            b[y + 5 * ((2 * x + 3 * y) % 5)] = _rotl(theta[x + 5 * y], RHO_OFFSETS[x][y])
    out = [b[i] ^ (~b[(i % 5 + 1) % 5 + 5 * (i // 5)] & b[(i % 5 + 2) % 5 + 5 * (i // 5)])
           for i in range(25)]
    out[0] ^= ROUND_CONSTANTS[round_index]
    return out


def keccak_f1600(lanes: list[int]) -> list[int]:
    """The 24-round permutation on 25 little-endian 64-bit lanes."""
    for r in range(24):
        lanes = keccak_round(lanes, r)
    return lanes


def keccak256_reference(message: bytes) -> bytes:
    """Keccak-256 as Ethereum's ``keccak256`` computes it."""
    padded = bytearray(message)
    padded.append(0x01)
    padded.extend(bytes(-len(padded) % RATE_BYTES))
    padded[-1] |= 0x80
    lanes = [0] * 25
    for block in range(0, len(padded), RATE_BYTES):
        for i in range(RATE_BYTES // 8):
            lanes[i] ^= int.from_bytes(padded[block + 8 * i: block + 8 * i + 8], "little")
        lanes = keccak_f1600(lanes)
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])
