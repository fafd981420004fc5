# amaranth: UnusedElaboratable=no
"""The hashing stage under Verilator (cocotb), against the full reference model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.hashing.batch_hasher import BatchHasher
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT_CODEC, BatchClosed, Event
from ocee.sim.runner import BenchResult, SimulationFailed, build_and_test

HERE = Path(__file__).resolve().parent


def bits(events: list[Event]) -> list[str]:
    return [str(int.from_bytes(EVENT_CODEC.pack(e), "little")) for e in events]


def plain_and_full(commands: int, seed: int, markets: int,
                   batch_every: int) -> tuple[list[Event], list[Event]]:
    """The engine's events (batch roots zero) and the events with the model's roots."""
    flow = list(generate_flow(FlowParams(commands=commands, seed=seed, markets=markets,
                                         batch_every=batch_every)))
    plain, full = MatchingModel(hash_events=False), MatchingModel()
    return ([e for c in flow for e in plain.execute(c)], [e for c in flow for e in full.execute(c)])


def run(inputs: list[str], expected: list[str], contexts: int = 1, shared: bool = False,
        slices: int | None = None, **params: Any) -> BenchResult:
    return build_and_test(BatchHasher(rounds_per_cycle=1, contexts=contexts,
                                      shared_permutation=shared, queue_depth=2 if shared else 8,
                                      slices_per_clock=slices),
                          name=(f"batch_hasher_c{contexts}" + ("_shared" if shared else "")
                                + (f"_slices{slices}" if slices else "")),
                          test_module="cocotb_stream_block", python_path=[HERE], seed=5,
                          params={"i_port": "i_event", "o_port": "o_event", "inputs": inputs,
                                  "expected": expected, **params})


@pytest.mark.parametrize(("contexts", "idle", "backpressure", "shared", "slices"),
                         [(1, 0.0, 0.0, False, None), (1, 0.3, 0.5, False, None),
                          (3, 0.0, 0.0, False, None), (3, 0.1, 0.2, False, None),
                          (1, 0.2, 0.3, True, None), (1, 0.2, 0.3, True, 8)])
def test_batch_hasher_under_verilator(contexts: int, idle: float, backpressure: float,
                                      shared: bool, slices: int | None) -> None:
    """The last case is the boards' stage: one slice-serial permutation (8 slices per clock)
    shared, 2-deep queues; the one before it the same with a one-round ring."""
    inputs, expected = plain_and_full(600, seed=21, markets=2, batch_every=45)
    assert sum(isinstance(e, BatchClosed) for e in expected) >= 10
    result = run(bits(inputs), bits(expected), contexts, shared, slices, idle=idle,
                 backpressure=backpressure)
    assert (result.tests, result.failed) == (1, 0)


def test_a_wrong_expectation_fails_the_bench() -> None:
    """A mismatch inside the cocotb bench must fail the pytest test, never pass silently."""
    inputs, expected = plain_and_full(30, seed=2, markets=1, batch_every=10)
    wrong = bits(expected)
    wrong[-1] = str(int(wrong[-1]) ^ 1 << 200)  # one bit of the last batch root
    with pytest.raises(SimulationFailed, match=rf"output {len(wrong) - 1}: got 0x"):
        run(bits(inputs), wrong, idle=0.0, backpressure=0.0)
