"""The shared test vectors: commands -> events -> leaves -> roots (``ocee vectors``).

One JSON file, ``tests/vectors/batches.json``, is what the gateware benches, the host and the
contracts are all checked against, so that a leaf or a root means the same thing everywhere. It
is generated from the reference model and committed; the tests regenerate it and fail if the
committed file differs, and check every hash in it with an independent Keccak implementation.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from ocee.hw.hashing.keccak import RATE_BYTES
from ocee.hw.hashing.leaf import event_leaf, leaf_preimage
from ocee.hw.hashing.merkle import keccak256, merkle_proof, merkle_root
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import PROTOCOL_VERSION, BatchClosed, Command, Event, Query

from .flowgen import FlowParams, generate_flow
from .jsonl import command_to_json, event_to_json, parse_command

__all__ = ["DEFAULT_PATH", "build_vectors", "render_vectors"]

DEFAULT_PATH = "tests/vectors/batches.json"

# A hand-written flow that produces every event kind and most reasons, on two markets.
_SCENARIO: list[dict[str, Any]] = [
    {"op": "new", "market": 0, "id": 1, "account": 1, "side": "sell", "price": 105, "qty": 10},
    {"op": "new", "market": 0, "id": 2, "account": 2, "side": "sell", "price": 105, "qty": 5},
    {"op": "new", "market": 0, "id": 3, "account": 1, "side": "buy", "price": 100, "qty": 8,
     "post_only": True},
    {"op": "new", "market": 0, "id": 4, "account": 3, "side": "buy", "price": 106, "qty": 12,
     "tif": "ioc"},
    {"op": "query", "market": 0, "levels": 2},
    {"op": "modify", "market": 0, "id": 2, "qty": 9},
    {"op": "new", "market": 0, "id": 5, "account": 1, "side": "buy", "price": 110, "qty": 1,
     "post_only": True},
    {"op": "new", "market": 0, "id": 6, "account": 3, "side": "sell", "type": "market", "qty": 20,
     "tif": "fok"},
    {"op": "new", "market": 0, "id": 7, "account": 1, "side": "sell", "type": "market", "qty": 20,
     "stp": "cancel_maker"},
    {"op": "close_batch"},
    {"op": "new", "market": 1, "id": 8, "account": 4, "side": "buy", "price": 60, "qty": 3},
    {"op": "new", "market": 1, "id": 9, "account": 4, "side": "sell", "price": 61, "qty": 3},
    {"op": "new", "market": 1, "id": 10, "account": 4, "side": "buy", "price": 61, "qty": 1,
     "stp": "cancel_both"},
    {"op": "cancel", "market": 0, "id": 99},
    {"op": "new", "market": 0, "id": 2, "account": 2, "side": "buy", "price": 90, "qty": 1},
    {"op": "new", "market": 9, "id": 11, "account": 2, "side": "buy", "price": 90, "qty": 1},
    {"op": "new", "market": 0, "id": 12, "account": 2, "side": "buy", "price": 4000, "qty": 1},
    {"op": "set_window", "market": 1, "lowest": 50},
    {"op": "new", "market": 1, "id": 13, "account": 5, "side": "sell", "price": 70, "qty": 4,
     "tif": "gtc", "stp": "cancel_taker"},
    {"op": "modify", "market": 1, "id": 13, "qty": 0},
    {"op": "mass_cancel", "market": 1, "account": 4},
    {"op": "mass_cancel", "market": 0},
    {"op": "close_batch"},
    {"op": "close_batch"},
]

# Batch sizes at the edges of the tree shapes: an empty-book query is exactly one event.
_BATCH_SIZES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33)

_MERKLE_SIZES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 100)

_KECCAK_LENGTHS = (0, 1, 31, 32, 33, 64, 135, RATE_BYTES, 137, 271, 2 * RATE_BYTES, 273, 1000)


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _flow_case(name: str, config: MatchingConfig, commands: list[Command]) -> dict[str, Any]:
    model = MatchingModel(config)
    events: list[Event] = []
    batches: list[dict[str, Any]] = []
    pending: list[Event] = []
    for command in commands:
        for ev in model.execute(command):
            events.append(ev)
            if isinstance(ev, BatchClosed):
                leaves = [event_leaf(e) for e in pending]
                assert ev.root == merkle_root(leaves)
                batches.append({
                    "batch": ev.batch,
                    "count": ev.count,
                    "root": _hex(ev.root),
                    "leaves": [{"seq": e.seq, "preimage": _hex(leaf_preimage(e)), "leaf": _hex(leaf)}
                               for e, leaf in zip(pending, leaves, strict=True)],
                })
                pending = []
            else:
                pending.append(ev)
    return {
        "name": name,
        "config": asdict(config),
        "commands": [command_to_json(c) for c in commands],
        "events": [event_to_json(e) for e in events],
        "batches": batches,
    }


def build_vectors() -> dict[str, Any]:
    small = MatchingConfig(markets=2, levels=128, orders=64, ids=128)
    scenario = [parse_command(obj, n) for n, obj in enumerate(_SCENARIO, start=1)]
    sized: list[Command] = []
    for size in _BATCH_SIZES:
        sized += [Query(market=0, levels=1)] * size
        sized.append(parse_command({"op": "close_batch"}))
    generated = list(generate_flow(FlowParams(commands=400, seed=7, markets=2, batch_every=37,
                                              depth=12, config=small)))
    merkle = []
    for n in _MERKLE_SIZES:
        leaves = [keccak256(i.to_bytes(32, "big")) for i in range(n)]
        indices = range(n) if n <= 17 else (0, 1, n // 2, n - 2, n - 1)
        merkle.append({
            "leaves": [_hex(leaf) for leaf in leaves],
            "root": _hex(merkle_root(leaves)),
            "proofs": [{"index": i, "proof": [_hex(p) for p in merkle_proof(leaves, i)]}
                       for i in indices],
        })
    keccak = []
    for n in _KECCAK_LENGTHS:
        message = bytes((7 * i + 3) & 0xFF for i in range(n))
        keccak.append({"input": _hex(message), "hash": _hex(keccak256(message))})
    return {
        "about": ("ocee shared test vectors: commands -> events -> leaves -> roots. Generated by "
                  "`ocee vectors` from the reference model; see docs/merkle.md and "
                  "docs/protocol.md."),
        "protocol_version": PROTOCOL_VERSION,
        "flows": [
            _flow_case("scenario", small, scenario),
            _flow_case("batch_sizes", small, sized),
            _flow_case("generated_seed7", small, generated),
        ],
        "merkle": merkle,
        "keccak": keccak,
    }


def render_vectors() -> str:
    return json.dumps(build_vectors(), indent=1) + "\n"
