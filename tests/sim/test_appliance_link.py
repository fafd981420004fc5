"""The link conformance and fault-injection checks on the virtual board: the appliance's RTL
(receiver, controller, engine core with hashing, transmitter) under Verilator behind a pty or a
TCP socket, opened as ``sim://`` exactly as a board's serial port is.

The emulator-based suites (tests/link/) check the same rules against the device emulator; here
the device is the gateware itself, so its books can only be seen through the link: a final query
of every book, checked by the link's shadow model, which must equal the reference model's.
One Verilator build of the default appliance serves the module, ``ocee demo`` and the CLI test
(the first build takes about 2 minutes; later runs find it cached).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from link_cases import RATES, SCRIPT

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.link import FaultParams, FaultyStream, Link, LinkOptions, open_link
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    BatchClosed,
    CloseBatch,
    Command,
    Event,
    NewOrder,
    Opcode,
    Query,
    Rejected,
    RejectReason,
    Side,
)
from ocee.sim.board import BoardStream

RTO = 0.1  # the virtual board runs at about half a million clocks per second


def board_of(link: Link) -> BoardStream:
    stream = link.transport
    while isinstance(stream, FaultyStream):
        stream = stream.inner
    assert isinstance(stream, BoardStream)
    return stream


def reference(commands: int, seed: int, batch_every: int = 200) -> tuple[
        list[Command], list[list[Event]], MatchingModel]:
    params = FlowParams(commands=commands, seed=seed, markets=4, batch_every=batch_every)
    flow = list(generate_flow(params))
    model = MatchingModel(params.config, hash_events=True)
    return flow, [model.execute(c) for c in flow], model


def check_books(link: Link, model: MatchingModel) -> None:
    """Every book of the device, read with queries (which the link checks against its shadow),
    equals the reference model's; and the shadow's books are the reference's."""
    for market in range(link.config.markets):
        for side in Side:
            assert link.shadow.book(market, side) == model.book(market, side), (market, side)
        for event in link.execute(Query(market=market, levels=255)):
            assert event.market == market  # the device answered for this market
    assert link.shadow.resting_count == model.resting_count


@pytest.fixture(params=["pty", "tcp"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_connect_reports_the_appliance(kind: str) -> None:
    with open_link(f"sim://?kind={kind}", options=LinkOptions(rto=RTO)) as link:
        assert link.config == MatchingConfig()
        assert link.status.epoch != 0 and link.status.fifo_bytes > 0
        model = MatchingModel(hash_events=True)
        for command in SCRIPT:
            assert link.execute(command) == model.execute(command)  # the batch root included
        counters = link.counters()
        assert (counters.commands, counters.framing_errors, counters.crc_errors) == (len(SCRIPT), 0, 0)


def test_stream_a_flow_with_roots() -> None:
    commands, expected, model = reference(3000, seed=2)
    with open_link("sim://", options=LinkOptions(rto=RTO)) as link:
        completions = list(link.stream(commands))
        assert [c.command for c in completions] == commands
        assert [c.events for c in completions] == expected
        counters = link.counters()
        assert counters.commands == len(commands) and counters.events == sum(map(len, expected))
        assert (counters.crc_errors, counters.overflows, counters.retransmits) == (0, 0, 0)
        check_books(link, model)


def test_raw_records_on_the_byte_path() -> None:
    with open_link("sim://", options=LinkOptions(rto=RTO)) as link:
        assert link.execute(b"\x63\x01\x02") == [Rejected(1, 0, 0, 0x63, RejectReason.MALFORMED)]
        from ocee.host.link.records import COMMANDS

        raw = bytearray(COMMANDS.pack(NewOrder(market=0, id=9, side=Side.BUY, qty=1)))
        raw[18] |= 0b1100  # time in force 3
        assert link.execute(bytes(raw)) == [
            Rejected(0, 1, 9, Opcode.NEW_ORDER.value, RejectReason.MALFORMED)]


def test_a_power_cycle_while_idle_is_repaired(kind: str) -> None:
    model = MatchingModel(hash_events=True)
    with open_link(f"sim://?kind={kind}", options=LinkOptions(rto=RTO)) as link:
        for command in SCRIPT[:4]:
            assert link.execute(command) == model.execute(command)
        board_of(link).board.power_cycle()  # order 2 rests, with 3 of its 5 left
        for command in SCRIPT[4:]:
            assert link.execute(command) == model.execute(command)
        assert link.stats.resets == 1 and link.stats.restored_orders == 1
        check_books(link, model)


def test_faults_and_power_cycles_mid_flow() -> None:
    """Byte faults at the suite's rates both ways and three power cycles in the middle of the flow
    (the second during the restoration after the first): every event once, in order, roots
    included, and the same books as the reference model."""
    commands, expected, model = reference(4000, seed=13, batch_every=150)
    faults = FaultParams(seed=13, replay=0.005, **RATES)
    options = LinkOptions(rto=RTO, seed=13)
    # Each cycle mid-batch, so that it interrupts one: the device is at most a window of
    # commands past the host's completions, and no batch closes within a window after a cycle
    # (a cycle just after a close would interrupt none).
    cycles = (1400, 1402, 2900)
    closes = [n for n, c in enumerate(commands, start=1) if isinstance(c, CloseBatch)]
    assert not [c for c in closes for n in cycles if n <= c <= n + options.window]
    with open_link("sim://", options=options, faults=faults) as link:
        board = board_of(link).board
        completions = []
        for n, done in enumerate(link.stream(commands), start=1):
            completions.append(done)
            if n in cycles:
                board.power_cycle()
        assert [c.command for c in completions] == commands
        got = [c.events for c in completions]
        assert got == expected
        seqs = [e.seq for events in got for e in events]
        assert seqs == list(range(len(seqs)))
        stream = link.transport
        assert isinstance(stream, FaultyStream)
        assert all(stream.counts[way][k] > 0 for way in stream.counts for k in ("corrupt", "drop"))
        # The first two cycles may fall with no frame exchanged between them (both completions
        # already delivered): to the host they are then one reset.
        assert 2 <= link.stats.resets <= 3 and link.stats.restored_orders > 0
        assert link.stats.interrupted_batches >= 2
        assert link.stats.crc_errors > 0 and link.stats.retransmits > 0
        assert sum(isinstance(e, BatchClosed) for events in got for e in events) == sum(
            isinstance(c, CloseBatch) for c in commands) > 20
        check_books(link, model)


def test_ocee_demo_on_the_virtual_board(capsys: pytest.CaptureFixture[str]) -> None:
    from ocee.host.cli import main

    assert main(["demo", "--commands", "3000", "--quiet"]) == 0  # sim:// by default
    out = capsys.readouterr().out
    assert "backend        sim://" in out and "latency        p50 " in out
    assert "every event of 3,000 commands and all 3 batch roots agree" in out


def test_replay_through_the_virtual_board(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocee.host.cli import main

    flow = tmp_path / "flow.jsonl"
    assert main(["gen", "--commands", "2000", "--seed", "5", "--markets", "2", "-o", str(flow)]) == 0
    assert main(["replay", str(flow)]) == 0
    by_model = capsys.readouterr().out
    assert main(["replay", "--link", "sim://?kind=tcp", str(flow)]) == 0
    assert capsys.readouterr().out == by_model and by_model.count("\n") > 2000
