# amaranth: UnusedElaboratable=no
"""Keccak-256 under Verilator (cocotb), bit-exact against pycryptodome, at 1 and 4 rounds per clock."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from ocee.hw.hashing.bench import measure_keccak
from ocee.hw.hashing.keccak256 import Keccak256
from ocee.sim.runner import BenchResult, SimulationFailed, build_and_test

HERE = Path(__file__).resolve().parent

#: The issue's edge cases (empty, one byte, one short of a block, a full block, which pads in a
#: block of its own, one byte over, two full blocks), their neighbours, and random lengths.
EDGE_LENGTHS = [0, 1, 31, 32, 39, 64, 65, 134, 135, 136, 137, 271, 272, 273]


def lengths(seed: int, count: int = 24) -> list[int]:
    rng = random.Random(seed)
    return EDGE_LENGTHS + [rng.randrange(1, 700) for _ in range(count)]


def run(rounds_per_cycle: int, testcase: str, **params: Any) -> BenchResult:
    return build_and_test(Keccak256(rounds_per_cycle), name=f"keccak256_k{rounds_per_cycle}",
                          test_module="cocotb_keccak256", python_path=[HERE], testcase=testcase,
                          params=params, seed=11)


@pytest.mark.parametrize("rounds_per_cycle", [1, 4])
@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5)])
def test_keccak256_matches_pycryptodome(rounds_per_cycle: int, idle: float, backpressure: float) -> None:
    result = run(rounds_per_cycle, "digests_match_pycryptodome", lengths=lengths(rounds_per_cycle),
                 idle=idle, backpressure=backpressure)
    assert (result.tests, result.failed) == (1, 0)


@pytest.mark.parametrize("rounds_per_cycle", [1, 4])
def test_clocks_per_message(rounds_per_cycle: int) -> None:
    """Measured, not assumed: each block takes its permutation (24 / k clocks, as Amaranth's
    simulator measures it too) and 2 clocks around it (absorb, take the result), the digest 1."""
    result = run(rounds_per_cycle, "clocks_per_message", timing_messages=12)
    timing = json.loads((result.run_dir / "timing.json").read_text())
    amaranth = measure_keccak(rounds_per_cycle)
    permutation = amaranth.permutation_latency
    assert permutation == 24 // rounds_per_cycle
    assert timing == {"1_block": permutation + 3, "2_block": 2 * (permutation + 2) + 1}
    assert timing["1_block"] == amaranth.digest_period


def test_a_wrong_digest_fails_the_bench() -> None:
    with pytest.raises(SimulationFailed, match=r"message 3 \(135 bytes\): got [0-9a-f]{64}, expected"):
        run(1, "digests_match_pycryptodome", lengths=[0, 1, 136, 135, 137], idle=0.0,
            backpressure=0.0, corrupt=3)
