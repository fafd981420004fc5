# amaranth: UnusedElaboratable=no
"""The hashing stage under Verilator (cocotb), against the full reference model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.hashing.batch_hasher import BatchHasher
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT_CODEC, BatchClosed
from ocee.sim.runner import run_bench

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize(("idle", "backpressure"), [(0.0, 0.0), (0.3, 0.5)])
def test_batch_hasher_under_verilator(tmp_path: Path, idle: float, backpressure: float) -> None:
    commands = list(generate_flow(FlowParams(commands=600, seed=21, markets=2, batch_every=45)))
    plain, full = MatchingModel(hash_events=False), MatchingModel()
    inputs = [e for c in commands for e in plain.execute(c)]
    expected = [e for c in commands for e in full.execute(c)]
    assert sum(isinstance(e, BatchClosed) for e in expected) >= 10

    def bits(events: list) -> list[str]:
        return [str(int.from_bytes(EVENT_CODEC.pack(e), "little")) for e in events]

    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({"inputs": bits(inputs), "expected": bits(expected), "seed": 5,
                                   "idle": idle, "backpressure": backpressure}))
    result = run_bench(BatchHasher(rounds_per_cycle=1), name="batch_hasher",
                       test_module="cocotb_batch_hasher", test_dir=HERE,
                       extra_env={"OCEE_BENCH_VECTORS": str(vectors)})
    assert (result.tests, result.failed) == (1, 0)


def test_a_wrong_expectation_fails_the_bench(tmp_path: Path) -> None:
    """A mismatch inside the cocotb bench must fail the pytest test, never pass silently."""
    commands = list(generate_flow(FlowParams(commands=30, seed=2, markets=1, batch_every=10)))
    plain, full = MatchingModel(hash_events=False), MatchingModel()
    inputs = [e for c in commands for e in plain.execute(c)]
    expected = [int.from_bytes(EVENT_CODEC.pack(e), "little") for c in commands
                for e in full.execute(c)]
    expected[-1] ^= 1 << 200  # one bit of the last batch root
    vectors = tmp_path / "vectors.json"
    vectors.write_text(json.dumps({
        "inputs": [str(int.from_bytes(EVENT_CODEC.pack(e), "little")) for e in inputs],
        "expected": [str(x) for x in expected], "seed": 1, "idle": 0.0, "backpressure": 0.0}))
    with pytest.raises(SystemExit):  # cocotb's runner ends a failing run under pytest this way
        run_bench(BatchHasher(rounds_per_cycle=1), name="batch_hasher",
                  test_module="cocotb_batch_hasher", test_dir=HERE,
                  extra_env={"OCEE_BENCH_VECTORS": str(vectors)})
