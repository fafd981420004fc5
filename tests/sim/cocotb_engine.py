"""cocotb bench of the matching engine: commands in, every event checked against the model.

Run from ``test_engine_verilator.py`` through :func:`ocee.sim.runner.build_and_test`, which passes
the parameters (:func:`ocee.sim.runner.load_params`):

- ``config``: the engine's :class:`MatchingConfig` as a dict (the one it was built with).
- ``idle``, ``backpressure``: probabilities of an idle clock before each command and of ready
  held low on the event stream.
- For ``edge_case``: nothing more; the scenarios are ``EDGE_CASES`` of the pytest module, each
  run from a reset engine and a fresh model, one cocotb test each.
- For ``command_flow``: ``commands`` (command records as hex strings) or ``flow`` (the
  arguments of :class:`FlowParams`, with ``flow_config`` for the generator's capacities when they
  differ from the engine's); optionally ``model_config`` (the scoreboard's model built for another
  configuration) or ``tamper``, to prove that a wrong expectation fails: ``"flip_seq"`` flips bit
  0 of the ``seq`` of expected event ``event``, ``"missing"`` expects one event more after the
  last command, ``"extra"`` one fewer.
"""

from __future__ import annotations

from typing import Any

import cocotb
from test_engine_verilator import EDGE_CASES

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import COMMAND_CODEC
from ocee.sim.engine_tb import EngineTB
from ocee.sim.runner import load_params

PARAMS = load_params()


def _config(key: str = "config") -> MatchingConfig:
    return MatchingConfig(**PARAMS[key])


@cocotb.test(timeout_time=100, timeout_unit="ms")
@cocotb.parametrize(name=[cocotb.Param(name, name) for name in EDGE_CASES])
async def edge_case(dut: Any, name: str) -> None:
    scenario = EDGE_CASES[name]
    tb = EngineTB(dut, _config(), idle_probability=PARAMS.get("idle", 0.0),
                  backpressure_probability=PARAMS.get("backpressure", 0.0),
                  seed=f"{cocotb.RANDOM_SEED}-{name}", label=name)
    await tb.start()
    for raw in scenario:
        tb.send(raw)
    await tb.finish()
    dut._log.info("%s: %d commands, %d events checked", name, len(scenario), tb.checked)


@cocotb.test(timeout_time=2, timeout_unit="sec")
async def command_flow(dut: Any) -> None:
    config = _config()
    model = MatchingModel(_config("model_config"), hash_events=False) if "model_config" in PARAMS else None
    tb = EngineTB(dut, config, idle_probability=PARAMS.get("idle", 0.0),
                  backpressure_probability=PARAMS.get("backpressure", 0.0),
                  seed=cocotb.RANDOM_SEED, model=model)
    await tb.start()
    if "commands" in PARAMS:
        records = [bytes.fromhex(text) for text in PARAMS["commands"]]
    else:
        flow = dict(PARAMS["flow"])
        flow_config = MatchingConfig(**flow.pop("flow_config", PARAMS["config"]))
        records = [COMMAND_CODEC.pack(c) for c in generate_flow(FlowParams(config=flow_config, **flow))]
    tamper = PARAMS.get("tamper")
    for n, raw in enumerate(records):
        if tamper is None:
            tb.send(raw)
            continue
        events = tb.model.execute_bytes(raw)
        if tamper == "flip_seq":
            for event in events:
                if event.seq == PARAMS["event"]:  # seq numbers the run's events from 0
                    event.seq ^= 1
        elif n == len(records) - 1:
            # "missing": one more event than the engine emits; "extra": one fewer.
            events = [*events, events[-1]] if tamper == "missing" else events[:-1]
        tb.send(raw, expected=events)
    await tb.finish()
    dut._log.info("%d commands, %d events checked", len(records), tb.checked)
