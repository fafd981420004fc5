# amaranth: UnusedElaboratable=no
"""The leaf hasher and the Merkle accumulator alone under Verilator (cocotb), against the
Python specification: leaves of every event kind, roots of every tree shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.hashing.accumulator import ACCUMULATOR_INPUT, BatchAccumulator
from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.leaf_hasher import LeafHasher
from ocee.hw.hashing.merkle import EMPTY_ROOT, keccak256, merkle_root
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT_CODEC, BatchClosed
from ocee.sim.runner import BenchResult, SimulationFailed, build_and_test

HERE = Path(__file__).resolve().parent

#: Batch sizes: empty, the smallest trees, powers of two and their neighbours.
SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 0]


def run(component: Any, name: str, i_port: str, o_port: str, inputs: list[int],
        expected: list[int], **params: Any) -> BenchResult:
    return build_and_test(component, name=name, test_module="cocotb_stream_block",
                          python_path=[HERE], seed=7,
                          params={"i_port": i_port, "o_port": o_port,
                                  "inputs": [str(x) for x in inputs],
                                  "expected": [str(x) for x in expected], **params})


def leaf_hasher_case(commands: int) -> tuple[list[int], list[int]]:
    """Events of every kind from a generated flow (the engine's, before hashing), and leaves."""
    model = MatchingModel(hash_events=False)
    events = [e for c in generate_flow(FlowParams(commands=commands, seed=12, markets=2))
              for e in model.execute(c) if not isinstance(e, BatchClosed)]
    assert len({type(e) for e in events}) >= 6
    return ([int.from_bytes(EVENT_CODEC.pack(e), "little") for e in events],
            [int.from_bytes(event_leaf(e), "little") for e in events])


@pytest.mark.parametrize(("rounds_per_cycle", "contexts", "slices"), [(1, 3, None), (1, 1, 8)])
def test_leaf_hasher_under_verilator(rounds_per_cycle: int, contexts: int,
                                     slices: int | None) -> None:
    """A three-context ring, and the boards' slice-serial core (8 slices per clock)."""
    inputs, leaves = leaf_hasher_case(300)
    result = run(LeafHasher(rounds_per_cycle, contexts, slices_per_clock=slices),
                 f"leaf_hasher_k{rounds_per_cycle}_c{contexts}_w{slices}", "i_event", "o_leaf",
                 inputs, leaves, idle=0.2, backpressure=0.3)
    assert (result.tests, result.failed) == (1, 0)


def accumulator_case() -> tuple[list[int], list[int]]:
    """Items for every batch size in :data:`SIZES`, with a batch dropped by a restart halfway
    through (it must emit nothing, and the next batch start clean), and the (count, root) of
    each closed batch."""
    leaf, close, restart = (ACCUMULATOR_INPUT[f].offset for f in ("leaf", "close", "restart"))
    items: list[int] = []
    expected: list[int] = []
    for n in SIZES:
        leaves = [keccak256(bytes([n % 256, i % 256, i // 256])) for i in range(n)]
        if n == 17:  # a batch of 9 leaves dropped before this one
            items += [int.from_bytes(keccak256(bytes([i])), "little") << leaf for i in range(9)]
            items.append(1 << restart)
        items += [int.from_bytes(x, "little") << leaf for x in leaves]
        items.append(1 << close)
        expected.append(n | int.from_bytes(merkle_root(leaves), "little") << 32)
    assert expected[0] >> 32 == int.from_bytes(EMPTY_ROOT, "little")
    return items, expected


@pytest.mark.parametrize(("rounds_per_cycle", "contexts", "slices"), [(1, 3, None), (1, 1, 8)])
def test_accumulator_under_verilator(rounds_per_cycle: int, contexts: int,
                                     slices: int | None) -> None:
    items, roots = accumulator_case()
    result = run(BatchAccumulator(rounds_per_cycle, contexts, slices_per_clock=slices),
                 f"accumulator_k{rounds_per_cycle}_c{contexts}_w{slices}", "i_item", "o_root",
                 items, roots, idle=0.2, backpressure=0.5)
    assert (result.tests, result.failed) == (1, 0)


def test_a_wrong_root_fails_the_bench() -> None:
    """A mismatch inside the bench must fail the pytest test, never pass silently."""
    items, roots = accumulator_case()
    roots[3] ^= 1 << 100  # one bit of the root of the batch of 3
    with pytest.raises(SimulationFailed, match="output 3: got 0x"):
        run(BatchAccumulator(1, 3), "accumulator_k1_c3_wNone", "i_item", "o_root", items, roots,
            idle=0.0, backpressure=0.0)
