"""Fault injection: damaged bytes both ways at 1e-3 per byte and more, frames replayed and cut
short, and device power cycles in the middle of a flow (one of them during the restoration of
the previous one). Afterwards the delivered events and the final books must be exactly the
reference model's for the same commands: nothing lost, nothing duplicated, batch roots included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Connector
from link_cases import RATES

from ocee.host.link import DeviceEmulator, FaultParams, FaultyStream, LinkOptions
from ocee.hw.protocol import BatchClosed


class Loopback:
    """A ByteStream that returns what was written: for testing the fault injector alone."""

    def __init__(self) -> None:
        self.buffer = b""

    def write(self, data: bytes) -> None:
        self.buffer += data

    def read(self, timeout: float) -> bytes:
        data, self.buffer = self.buffer, b""
        return data

    def now(self) -> float:
        return 0.0

    def close(self) -> None:
        pass


def through(params: FaultParams, data: bytes, chunk: int = 1000) -> tuple[bytes, FaultyStream]:
    stream = FaultyStream(Loopback(), params)
    for i in range(0, len(data), chunk):
        stream.write(data[i:i + chunk])
    return stream.read(0), stream


def test_fault_injection_is_seeded_and_at_the_rates_asked() -> None:
    data = bytes(range(1, 256)) * 800  # no END: nothing for truncation to stop at
    params = FaultParams(seed=3, corrupt=0.01, drop=0.005, duplicate=0.002,
                         directions="to_device")
    out, stream = through(params, data)
    assert (out, stream.counts) == (through(params, data, chunk=777)[0], stream.counts)
    counts = stream.counts["to_device"]
    for kind, rate in [("corrupt", 0.01), ("drop", 0.005), ("duplicate", 0.002)]:
        assert 0.8 < counts[kind] / (rate * len(data)) < 1.2, kind
    assert len(out) == len(data) - counts["drop"] + counts["duplicate"]
    assert through(FaultParams(seed=4, corrupt=0.01), data)[0] != out
    assert sum(stream.counts["to_host"].values()) == 0


def test_truncation_cuts_frames_short_and_replay_repeats_whole_frames() -> None:
    frames = [bytes([i]) * 50 + b"\xc0" for i in range(1, 151)]  # no END but the last byte
    out, stream = through(FaultParams(seed=1, truncate=0.002, directions="to_device"),
                          b"".join(frames))
    received = [f + b"\xc0" for f in out.split(b"\xc0")[:-1]]
    assert len(received) == len(frames)
    cut = [(r, f) for r, f in zip(received, frames, strict=True) if r != f]
    assert 0 < len(cut) <= stream.counts["to_device"]["truncate"]
    assert all(len(r) < len(f) and f.startswith(r[:-1]) for r, f in cut)
    out, stream = through(FaultParams(seed=1, replay=0.1, directions="to_device"),
                          b"".join(frames))
    received = [f + b"\xc0" for f in out.split(b"\xc0")[:-1]]
    assert len(received) == len(frames) + stream.counts["to_device"]["replay"]
    assert set(received) == set(frames)


def test_params_are_checked() -> None:
    with pytest.raises(ValueError, match="corrupt must be a rate in"):
        FaultParams(corrupt=1.5)
    with pytest.raises(ValueError, match="directions must be"):
        FaultParams(directions="sideways")


def run_with_faults(connect: Connector, flow: Callable[..., Any], book_state: Callable[..., Any],
                    commands: int, resets_at: list[int], seed: int) -> None:
    flow_commands, expected, reference = flow(commands, seed=seed, batch_every=150)
    rto = 0.02 if connect.realtime else 0.05
    device = DeviceEmulator(rto=rto, resets_at=resets_at)
    faults = FaultParams(seed=seed, replay=0.005, **RATES)
    link, _ = connect(device, faults=faults, options=LinkOptions(rto=rto, seed=seed))
    completions = list(link.stream(flow_commands))

    # Every command once, in order, with exactly the reference model's events.
    assert [c.command for c in completions] == flow_commands
    got = [c.events for c in completions]
    assert got == expected
    seqs = [e.seq for events in got for e in events]
    assert seqs == list(range(len(seqs)))
    assert [e.batch for events in got for e in events if isinstance(e, BatchClosed)] == list(
        range(sum(isinstance(c, type(flow_commands[-1])) for c in flow_commands)))
    # The device's books, and the host's shadow of them, are the reference's.
    assert book_state(device.model) == book_state(reference) == book_state(link.shadow)
    # And all of it happened: faults both ways, every reset seen and repaired.
    counts = link.transport.counts if isinstance(link.transport, FaultyStream) else None
    if counts is not None:
        assert all(counts[way][kind] > 0 for way in counts for kind in ("corrupt", "drop"))
    assert device.power_cycles == link.stats.resets == len(resets_at)
    assert link.stats.restored_orders > 0
    assert link.stats.crc_errors > 0 and link.stats.retransmits > 0


def test_model_transport_survives_faults_and_resets(flow: Callable[..., Any],
                                                    book_state: Callable[..., Any],
                                                    model_connect: Connector) -> None:
    # Resets: one mid-flow, one 3 commands later (during the restoration of 600-odd orders),
    # one later on.
    run_with_faults(model_connect, flow, book_state, 12000, [3000, 3003, 8000], seed=11)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_serial_transports_survive_faults_and_a_reset(transport: str, flow: Callable[..., Any],
                                                      book_state: Callable[..., Any]) -> None:
    connect = Connector(transport)
    try:
        run_with_faults(connect, flow, book_state, 1200, [600], seed=12)
    finally:
        connect.close()
