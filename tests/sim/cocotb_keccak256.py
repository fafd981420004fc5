"""cocotb bench of the Keccak-256 core under Verilator, against pycryptodome's keccak.

Run from ``test_keccak256_verilator.py`` through :func:`ocee.sim.runner.build_and_test`. The
reference is independent of the gateware and of the golden model: eth_hash with its pycryptodome
backend (Crypto.Hash.keccak). Parameters (:func:`ocee.sim.runner.load_params`):

- ``lengths``: message lengths in bytes; the bytes are drawn from the bench's seed.
- ``idle`` and ``backpressure``: probabilities of an idle clock before each block offered and of
  ready low on the digest stream, each clock.
- ``corrupt`` (optional): index of a message whose expected digest gets one bit flipped, to show
  that a mismatch fails the run.
- ``timing_messages`` (for ``clocks_per_message``): how many one-block messages to time back to
  back; the figures go to ``timing.json`` in the run directory.
"""

from __future__ import annotations

import json
import random
from collections import deque
from itertools import pairwise
from typing import Any

import cocotb
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from eth_hash import Keccak256 as EthHashKeccak256
from eth_hash.backends import pycryptodome

from ocee.hw.hashing.keccak import RATE_BYTES
from ocee.hw.hashing.keccak256 import BLOCK
from ocee.sim.runner import load_params
from ocee.sim.stream import StreamDriver, StreamSink, reset, start_clock

reference = EthHashKeccak256(pycryptodome)

_LENGTH_AT = BLOCK["length"].offset
_LAST_AT = BLOCK["last"].offset


def blocks_of(message: bytes) -> list[int]:
    """The BLOCK transfers of ``message``, each as an integer of the layout's bits."""
    chunks = [message[i:i + RATE_BYTES] for i in range(0, len(message), RATE_BYTES)] or [b""]
    return [int.from_bytes(chunk, "little") | len(chunk) << _LENGTH_AT
            | int(i == len(chunks) - 1) << _LAST_AT
            for i, chunk in enumerate(chunks)]


class TB:
    """Clock, reset, a block source, a digest sink and a scoreboard of expected digests."""

    def __init__(self, dut: Any, *, idle: float = 0.0, backpressure: float = 0.0) -> None:
        self.dut = dut
        start_clock(dut.clk)
        seed = cocotb.RANDOM_SEED
        self.source = StreamDriver(dut, "i_block", dut.clk, idle_probability=idle,
                                   rng=random.Random(f"{seed}-idle"))
        self.sink = StreamSink(dut, "o_digest", dut.clk, backpressure_probability=backpressure,
                               rng=random.Random(f"{seed}-backpressure"))
        self.expected: deque[tuple[str, bytes]] = deque()

    async def reset(self) -> None:
        await reset(self.dut, self.dut.clk)

    def send(self, message: bytes, label: str, expected: bytes | None = None) -> None:
        """Queue ``message``'s blocks and its expected digest (pycryptodome's unless given)."""
        for block in blocks_of(message):
            self.source.send_nowait(block)
        self.expected.append((label, reference(message) if expected is None else expected))

    async def check(self) -> None:
        """Compare every digest, in order, then check that nothing more comes out."""
        while self.expected:
            label, want = self.expected.popleft()
            got = (await self.sink.recv()).to_bytes(32, "little")
            assert got == want, f"{label}: got {got.hex()}, expected {want.hex()}"
        await self.source.wait_idle()
        await ClockCycles(self.dut.clk, 60)
        assert self.sink.empty(), f"{self.sink.queue.qsize()} digests came out for no message"


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def digests_match_pycryptodome(dut: Any) -> None:
    params = load_params()
    rng = random.Random(f"{cocotb.RANDOM_SEED}-messages")
    tb = TB(dut, idle=params["idle"], backpressure=params["backpressure"])
    await tb.reset()
    corrupt = params.get("corrupt")
    for i, length in enumerate(params["lengths"]):
        message = rng.randbytes(length)
        expected = reference(message)
        if i == corrupt:
            expected = bytes([expected[0] ^ 1]) + expected[1:]
        tb.send(message, f"message {i} ({length} bytes)", expected)
    await tb.check()


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def clocks_per_message(dut: Any) -> None:
    """Clocks from one digest to the next for one-block messages (a leaf, an inner node) and for
    two-block ones, input back to back and output always ready: the core's own throughput."""
    params = load_params()
    count = params.get("timing_messages", 16)
    tb = TB(dut)
    await tb.reset()
    figures = {}
    for blocks, length in ((1, 64), (2, RATE_BYTES + 64)):
        for i in range(count):
            tb.send(bytes([i]) * length, f"{blocks}-block message {i}")
        digests = []  # the clock of each digest transfer
        clock = 0
        while len(digests) < count:
            await RisingEdge(dut.clk)
            clock += 1
            await ReadOnly()
            if dut.o_digest__valid.value == 1 and dut.o_digest__ready.value == 1:
                digests.append(clock)
        await tb.check()
        periods = {b - a for a, b in pairwise(digests)}
        assert len(periods) == 1, f"{blocks}-block messages: uneven periods {sorted(periods)}"
        figures[f"{blocks}_block"] = periods.pop()
    with open("timing.json", "w") as f:
        json.dump(figures, f)
