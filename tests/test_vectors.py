"""The shared vectors file: up to date with the model, and every hash independently checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocee.host.jsonl import event_to_json, parse_command, parse_event
from ocee.host.vectors import DEFAULT_PATH, render_vectors
from ocee.hw.hashing.keccak import keccak256_reference
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel

ROOT = Path(__file__).resolve().parent.parent
VECTORS_FILE = ROOT / DEFAULT_PATH


@pytest.fixture(scope="module")
def vectors() -> Any:
    return json.loads(VECTORS_FILE.read_text())


def _b(hex_string: str) -> bytes:
    return bytes.fromhex(hex_string.removeprefix("0x"))


def _root(leaves: list[bytes]) -> bytes:
    """RFC 6962 split with the reference keccak: independent of hw.hashing.merkle."""
    if not leaves:
        return bytes(32)
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    a, b = _root(leaves[:k]), _root(leaves[k:])
    return keccak256_reference(min(a, b) + max(a, b))


def test_committed_vectors_are_what_the_model_generates() -> None:
    assert VECTORS_FILE.read_text() == render_vectors(), "run `ocee vectors` and commit the file"


def test_keccak_vectors(vectors: Any) -> None:
    lengths = [len(_b(v["input"])) for v in vectors["keccak"]]
    assert {0, 1, 135, 136, 137, 272} <= set(lengths)
    for v in vectors["keccak"]:
        assert keccak256_reference(_b(v["input"])).hex() == v["hash"][2:]


def test_merkle_vectors(vectors: Any) -> None:
    for case in vectors["merkle"]:
        leaves = [_b(x) for x in case["leaves"]]
        root = _b(case["root"])
        assert _root(leaves) == root
        for p in case["proofs"]:
            node = leaves[p["index"]]
            for sibling in map(_b, p["proof"]):
                node = keccak256_reference(min(node, sibling) + max(node, sibling))
            assert node == root


def test_flow_vectors_leaves_and_roots(vectors: Any) -> None:
    names = [f["name"] for f in vectors["flows"]]
    assert names == ["scenario", "batch_sizes", "generated_seed7"]
    sizes = [b["count"] for b in vectors["flows"][1]["batches"]]
    assert {0, 1, 2, 3, 4, 8, 9, 16, 17, 32, 33} <= set(sizes)
    for flow in vectors["flows"]:
        events = flow["events"]
        batch_events = [e for e in events if e["ev"] == "batch"]
        assert len(batch_events) == len(flow["batches"])
        for ev, batch in zip(batch_events, flow["batches"], strict=True):
            leaves = []
            for leaf in batch["leaves"]:
                preimage = _b(leaf["preimage"])
                assert keccak256_reference(preimage) == _b(leaf["leaf"])
                leaves.append(_b(leaf["leaf"]))
            assert len(leaves) == batch["count"] == ev["count"]
            assert _root(leaves) == _b(batch["root"]) == _b(ev["root"])
            # The leaves are exactly the events since the previous batch event, in order.
            seqs = [leaf["seq"] for leaf in batch["leaves"]]
            assert seqs == list(range(ev["seq"] - len(seqs), ev["seq"]))


def test_flow_vectors_replay_through_the_model(vectors: Any) -> None:
    for flow in vectors["flows"]:
        model = MatchingModel(MatchingConfig(**flow["config"]))
        got = []
        for n, obj in enumerate(flow["commands"], start=1):
            got += [event_to_json(e) for e in model.execute(parse_command(obj, n))]
        assert got == flow["events"]
        assert [event_to_json(parse_event(e)) for e in flow["events"]] == flow["events"]
