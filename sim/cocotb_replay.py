"""cocotb bench behind :func:`ocee.sim.rtl.run_commands`: a command file in, the event stream out.

Not a check: the RTL backend reports what the engine does, and the comparison with the model is
its user's (``ocee replay --backend rtl`` against ``--backend model``). So the bench runs no
scoreboard; it feeds the commands back to back (no idle gaps, no backpressure: the engine's own
pace), collects every event, and ends after every command has been taken and either as many
events as the model emits have come out and then none for a thousand clocks, or none for a quiet
period as long as the longest silent scan of a book (:meth:`~ocee.sim.engine_tb.EngineTB.finish`).

Parameters (:func:`ocee.sim.runner.load_params`): ``config`` (the engine's capacities),
``commands_file`` (length-prefixed records, :func:`ocee.sim.rtl.write_records`), ``events_file``
(written: one ``EVENT_BYTES`` payload per event), ``result_file`` (written: JSON with the clocks
from the start to the last event) and ``progress_file`` (rewritten with the number of commands
taken as the run goes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cocotb
from cocotb.triggers import Timer

from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.sim.engine_tb import EngineTB
from ocee.sim.rtl import EVENT_BYTES, read_records
from ocee.sim.runner import load_params


async def _report_progress(tb: EngineTB, path: Path, every_clocks: int = 5000) -> None:
    path.write_text("0")  # the engine is ready: the host starts its progress clock now
    shown = 0
    while True:
        await Timer(every_clocks * tb.period_ns, unit="ns")
        if tb.source.sent != shown:
            shown = tb.source.sent
            path.write_text(str(shown))


@cocotb.test()
async def replay(dut: Any) -> None:
    params = load_params()
    config = MatchingConfig(**params["config"])
    records = read_records(Path(params["commands_file"]))
    tb = EngineTB(dut, config, check=False, keep_events=True)
    await tb.start()
    for raw in records:
        tb.send(raw)
    if params.get("progress_file"):
        cocotb.start_soon(_report_progress(tb, Path(params["progress_file"])))
    # The model's event count ends a run early; a settle period then catches any extra event
    # (fewer events end the run after the quiet period instead). Nothing else is taken from it.
    model = MatchingModel(config, hash_events=False)
    expected = sum(len(model.execute_bytes(raw)) for raw in records)
    await tb.finish(settle_clocks=1000, events_hint=expected)
    last = tb.last_event_ns if tb.last_event_ns is not None else tb.started_ns
    cycles = round((last - tb.started_ns) / tb.period_ns)
    with open(params["events_file"], "wb") as f:
        for payload in tb.events:
            f.write(payload.to_bytes(EVENT_BYTES, "little"))
    if params.get("progress_file"):
        Path(params["progress_file"]).write_text(str(tb.source.sent))
    Path(params["result_file"]).write_text(f'{{"cycles": {cycles}, "events": {len(tb.events)}}}')
