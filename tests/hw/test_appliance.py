# amaranth: UnusedElaboratable=no
"""The appliance's gateware driven by the host's own link code, in Amaranth's simulator: connect,
status, commands and their events (checked by the link against its shadow model), batch roots,
raw records, directives, resets, and faults on the byte stream. Short flows on a small
configuration; the virtual board runs long ones."""

from __future__ import annotations

import pytest
from appliance_sim import SimulatedAppliance  # tests/hw/appliance_sim.py

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.link import FaultParams, FaultyStream, IncompatibleDevice, Link, LinkOptions
from ocee.hw.appliance import Appliance
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import PROTOCOL_VERSION, BatchClosed, Rejected, RejectReason

SMALL = MatchingConfig(markets=2, levels=64, orders=64, ids=256)
#: Host timeouts in simulated seconds: one clock is a microsecond.
OPTIONS = LinkOptions(rto=0.004, seed=1, max_frame=256)


def _appliance(**kwargs: object) -> Appliance:
    params: dict[str, object] = {"fifo_bytes": 256, "max_frame": 256, "tx_window": 4,
                                 "rto_cycles": 3000}
    params.update(kwargs)
    return Appliance(SMALL, **params)  # type: ignore[arg-type]


def _flow(commands: int, seed: int = 1) -> list:  # type: ignore[type-arg]
    return list(generate_flow(FlowParams(commands=commands, seed=seed, markets=2, depth=8,
                                         batch_every=25, config=SMALL)))


def test_connect_execute_and_stream() -> None:
    stream = SimulatedAppliance(_appliance())
    link = Link(stream, OPTIONS)
    info = link.device_info
    assert (info.version, info.markets, info.log2_levels, info.log2_orders, info.log2_ids) == (
        PROTOCOL_VERSION, 2, 6, 6, 8)
    flow = _flow(80)
    model = MatchingModel(SMALL)
    # One at a time, then pipelined: the link checks every event against its shadow model, and
    # the test against an independent one (roots included: they come from the gateware).
    for command in flow[:20]:
        assert link.execute(command) == model.execute(command)
    done = list(link.stream(flow[20:]))
    assert [c.events for c in done] == [model.execute(c) for c in flow[20:]]
    roots = [e for c in done for e in c.events if isinstance(e, BatchClosed)]
    assert roots and all(r.root != bytes(32) for r in roots if r.count)
    counters = link.counters()
    assert counters.commands == len(flow) and counters.events == model.seq
    assert counters.crc_errors == counters.framing_errors == counters.sequence_errors == 0


def test_raw_records_and_a_malformed_tail() -> None:
    link = Link(SimulatedAppliance(_appliance()), OPTIONS)
    model = MatchingModel(SMALL)
    for raw in (b"\x00", b"\xff\x01\x02\x03", b"\x09\x01", bytes([8, 0])):
        assert link.execute(raw) == model.execute_bytes(raw)
    rejected = link.execute(b"\xee\x01")[0]
    assert isinstance(rejected, Rejected) and rejected.reason is RejectReason.MALFORMED


def test_another_protocol_version_is_refused() -> None:
    with pytest.raises(IncompatibleDevice):
        Link(SimulatedAppliance(_appliance(version=PROTOCOL_VERSION + 1)), OPTIONS)


def test_faults_on_the_byte_stream() -> None:
    """Corruption, drops and duplication at 2e-3 per byte each way: the events equal the model's."""
    faults = FaultParams(seed=3, corrupt=2e-3, drop=2e-3, duplicate=2e-3)
    stream = SimulatedAppliance(_appliance())
    link = Link(FaultyStream(stream, faults), OPTIONS)
    flow = _flow(60, seed=2)
    model = MatchingModel(SMALL)
    done = list(link.stream(flow))
    assert [c.events for c in done] == [model.execute(c) for c in flow]
    counters = link.counters()
    assert counters.crc_errors + counters.framing_errors > 0, "no fault reached the device"


def test_a_power_cycle_in_the_middle_of_a_flow() -> None:
    """The host sees epoch 0, restores the books from its shadow, sets the event stream, resumes:
    the events equal the model's, batch roots included (the one across the reset is the host's)."""
    stream = SimulatedAppliance(_appliance())
    link = Link(stream, OPTIONS)
    flow = _flow(70, seed=4)
    model = MatchingModel(SMALL)
    done = []
    for i, completion in enumerate(link.stream(flow)):
        done.append(completion)
        if i == 30:
            stream.power_cycle()
    assert [c.events for c in done] == [model.execute(c) for c in flow]
    assert link.stats.resets == 1
