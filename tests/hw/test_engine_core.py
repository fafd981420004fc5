# amaranth: UnusedElaboratable=no
"""The engine core (matching + hashing) against the full reference model, roots included."""

from __future__ import annotations

from engine_harness import run_engine  # tests/hw/engine_harness.py

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.engine_core import EngineCore
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import BatchClosed

SMALL = MatchingConfig(markets=2, levels=64, orders=64, ids=256)


def test_core_events_and_batch_roots_match_the_model() -> None:
    flow = list(generate_flow(FlowParams(commands=300, seed=8, markets=2, depth=12, batch_every=29,
                                         config=SMALL)))
    model = MatchingModel(SMALL)
    batches = [e for c in flow for e in model.execute(c) if isinstance(e, BatchClosed)]
    assert len(batches) >= 10 and len({b.root for b in batches}) == len(batches)
    run_engine(SMALL, flow, idle=0.2, ready=0.6, seed=8, dut=EngineCore(SMALL, rounds_per_cycle=4))
