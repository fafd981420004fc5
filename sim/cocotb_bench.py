"""cocotb bench behind ``ocee bench rtl`` (:mod:`ocee.sim.engine_bench`): clocks at the engine's ports.

Runs the phases of :func:`ocee.sim.engine_bench.bench_phases` on one engine, in order, with every
event checked against the model. ``rate`` and ``sweep`` phases are queued whole, so commands are
offered back to back; each command of a ``latency`` phase is sent alone into an idle engine. The
sink never applies backpressure. The per-command stamps (:meth:`EngineTB.timings`) of each phase
go to ``stamps_file`` as ``{phase: [[accepted, [event clocks...]], ...]}``.

Parameters (:func:`ocee.sim.runner.load_params`): ``config``, ``phases_file`` (JSON list of
``{"name", "kind", "commands": [record hex]}``), ``stamps_file`` (written).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cocotb

from ocee.hw.matching.config import MatchingConfig
from ocee.sim.engine_tb import EngineTB
from ocee.sim.runner import load_params


@cocotb.test()
async def engine_figures(dut: Any) -> None:
    params = load_params()
    config = MatchingConfig(**params["config"])
    phases = json.loads(Path(params["phases_file"]).read_text())
    tb = EngineTB(dut, config, stamps=True, seed=cocotb.RANDOM_SEED)
    await tb.start()
    spans = {}
    for phase in phases:
        first = len(tb.commands)
        for record in phase["commands"]:
            tb.send(bytes.fromhex(record))
            if phase["kind"] == "latency":
                await tb.drain()
        await tb.drain()
        spans[phase["name"]] = (first, len(tb.commands))
    await tb.finish()
    timings = tb.timings()
    stamps = {name: [[t.accepted, list(t.events)] for t in timings[start:stop]]
              for name, (start, stop) in spans.items()}
    Path(params["stamps_file"]).write_text(json.dumps(stamps))
    dut._log.info("%d commands, %d events checked, %d clocks", len(tb.commands), tb.checked, tb.cycle)
