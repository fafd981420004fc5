# amaranth: UnusedElaboratable=no
"""The virtual board's harness (ocee.sim.board) with a stand-in design, reached through pyserial.

The stand-in is :class:`~ocee.sim.board.Loopback`: it sends back every byte plus one, refuses
input on a pseudo-random 6 of every 16 clocks and raises ``ready`` 10 clocks after reset. One
Verilator build serves the whole module (the first takes about 20 s, later runs reuse it).
Speed is measured by ``python -m ocee.sim.board --bench``, not here.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial  # type: ignore[import-untyped]

from ocee.host.link import TransportError, open_link
from ocee.sim.board import (
    BoardBuildError,
    BoardError,
    BoardStream,
    Loopback,
    VirtualBoard,
    appliance_from,
    build_board,
    pyserial_url,
)

KINDS = ["pty", "tcp"]


def design() -> Loopback:
    return Loopback(add=1, depth=16, stall=6)


def plus_one(data: bytes) -> bytes:
    return bytes((b + 1) & 0xFF for b in data)


@pytest.fixture(scope="module")
def built() -> Path:
    """The stand-in's board, built once for the module (every board below finds it cached)."""
    return build_board(design, name="loopback_test")


def board(kind: str = "tcp", **options: object) -> VirtualBoard:
    return VirtualBoard(design, kind=kind, name="loopback_test", **options)  # type: ignore[arg-type]


@pytest.fixture(params=KINDS)
def running(request: pytest.FixtureRequest, built: Path) -> Iterator[VirtualBoard]:
    with board(request.param) as b:
        yield b


def open_port(b: VirtualBoard) -> serial.SerialBase:
    return serial.serial_for_url(pyserial_url(b.url), timeout=5)


def read_exactly(port: serial.SerialBase, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = port.read(min(1 << 16, size - len(data)))
        if not chunk:
            raise AssertionError(f"the board stopped answering after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def stream_through(port: serial.SerialBase, data: bytes) -> bytes:
    """Write ``data`` from a thread while reading the answer here, as a host does."""
    writer = threading.Thread(target=port.write, args=(data,))
    writer.start()
    try:
        return read_exactly(port, len(data))
    finally:
        writer.join()


def test_url_line(running: VirtualBoard) -> None:
    pattern = r"serial:///dev/pts/\d+" if running.kind == "pty" else r"socket://127\.0\.0\.1:\d+"
    assert re.fullmatch(pattern, running.url)


def test_every_byte_value_round_trips(running: VirtualBoard) -> None:
    data = bytes(range(256)) * 2
    with open_port(running) as port:
        port.write(data)
        assert read_exactly(port, len(data)) == plus_one(data)


def test_a_megabyte_stream_under_backpressure(running: VirtualBoard) -> None:
    data = random.Random(1).randbytes(1 << 20)
    with open_port(running) as port:
        assert stream_through(port, data) == plus_one(data)
    running.stop()
    assert running.stats is not None
    assert running.stats.bytes_in == running.stats.bytes_out == len(data)
    # The design refuses 6 clocks in 16: the harness must have offered bytes it did not take.
    assert running.stats.clocks > len(data) * 16 // 10


def test_a_host_that_does_not_read_stalls_the_design_without_loss(built: Path) -> None:
    """4 MiB written before anything is read: more than the harness's buffers (1.25 MiB) and the
    pty's (a pty, as a TCP socket on loopback may buffer megabytes)."""
    data = random.Random(2).randbytes(4 << 20)
    with board("pty") as b, open_port(b) as port:
        writer = threading.Thread(target=port.write, args=(data,))
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive()  # blocked: the board has stopped taking bytes
        received = read_exactly(port, len(data))
        writer.join()
    assert received == plus_one(data)


def test_a_tcp_board_serves_one_client_after_another(built: Path) -> None:
    with board("tcp") as b:
        for round_ in range(3):
            with open_port(b) as port:
                port.write(bytes([round_]))
                assert read_exactly(port, 1) == bytes([round_ + 1])
        assert b.running


def test_a_pty_stays_open_across_hosts(built: Path) -> None:
    with board("pty") as b:
        for round_ in range(3):
            with open_port(b) as port:
                port.write(bytes([round_]))
                assert read_exactly(port, 1) == bytes([round_ + 1])
        assert b.running


def test_once_stops_when_the_client_leaves(built: Path) -> None:
    b = board("tcp", once=True).start()
    try:
        with open_port(b) as port:
            port.write(b"ab")
            assert read_exactly(port, 2) == b"bc"
        deadline = time.monotonic() + 5
        while b.running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not b.running
    finally:
        stats = b.stop()
    assert stats is not None and stats.bytes_in == 2


@pytest.mark.parametrize("how", ["stop", "sigint"])
def test_clean_shutdown_reports_statistics(built: Path, how: str) -> None:
    b = board("pty").start()
    with open_port(b) as port:
        port.write(b"x" * 1000)
        read_exactly(port, 1000)
    if how == "sigint":
        process = b._process
        assert process is not None
        os.killpg(process.pid, signal.SIGINT)
        process.wait(5)
        assert process.returncode == 0
    stats = b.stop()
    assert not b.running
    assert stats is not None and stats.bytes_in == stats.bytes_out == 1000
    assert stats.clocks > 1000 and stats.seconds > 0
    assert b.stop() is stats  # stopping again is harmless


def test_the_board_dies_with_the_process_that_started_it(built: Path) -> None:
    script = ("from ocee.sim.board import Loopback, VirtualBoard\n"
              "import os, sys, time\n"
              "b = VirtualBoard(lambda: Loopback(add=1, depth=16, stall=6), kind='tcp',"
              " name='loopback_test').start()\n"
              "print(b._process.pid, flush=True)\n"
              "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    os.killpg(pid, signal.SIGKILL)
    pytest.fail("the board outlived its parent")


def test_a_board_stream_stops_its_board_when_closed(built: Path) -> None:
    b = board("pty").start()
    stream = BoardStream(b)
    stream.write(b"\x00\xff")
    data = b""
    while len(data) < 2:
        data += stream.read(5.0)
    assert data == b"\x01\x00"
    stream.close()
    assert not b.running and b.stats is not None


def test_a_design_that_never_becomes_ready(built: Path) -> None:
    with pytest.raises(BoardError, match=r"did not raise `ready` within 5 clocks of reset"):
        board("tcp", ready_clocks=5).start()  # the stand-in takes 10


def test_a_build_error_names_the_log(tmp_path: Path) -> None:
    broken = "module broken(input clk, output ready);\n  assign ready = ;\nendmodule\n"
    with pytest.raises(BoardBuildError, match=r"verilator exited with status \d+\); build log: ") as error:
        VirtualBoard(broken, name="broken", build_root=tmp_path).start()
    assert error.value.log.is_file() and "broken.v" in error.value.log.read_text()


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "usb"}, "kind must be 'pty' or 'tcp', not 'usb'"),
    ({"port": 70000}, "port must be between 0 and 65535, not 70000"),
    ({"once": True}, "once applies to a TCP board only"),
    ({"ready_clocks": 0}, "ready_clocks must be positive, not 0"),
])
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        VirtualBoard(design, **options)  # type: ignore[arg-type]


def test_url_of_a_board_not_started() -> None:
    with pytest.raises(BoardError, match="not running"):
        _ = VirtualBoard(design).url


@pytest.mark.parametrize(("url", "message"), [
    ("sim://?kind=usb", "kind='usb' must be pty or tcp"),
    ("sim://?colour=red", "takes no parameter 'colour'"),
    ("sim://?markets=x", "markets='x' is not a valid int"),
    ("sim://?levels=1000", "levels must be a power of two"),
    ("sim://?shared=2", "shared must be 0 or 1, not 2"),
    ("sim://?shared=1&slices=3", r"slices_per_clock must be one of .* not 3"),
    ("sim://?rounds=5", r"rounds_per_cycle must be one of .* not 5"),
])
def test_bad_sim_urls(url: str, message: str) -> None:
    with pytest.raises(TransportError, match=message):
        open_link(url)


def test_sim_parameters_configure_the_appliance() -> None:
    """``rounds``, ``shared`` and ``slices`` reach the hashing stage: the boards' configuration
    is ``sim://?shared=1&slices=8``."""
    board = appliance_from({"rounds": 1, "shared": 1, "markets": 2})
    assert (board.rounds_per_cycle, board.hash_shared_permutation) == (1, True)  # type: ignore[attr-defined]
    assert board.hash_slices_per_clock is None  # type: ignore[attr-defined]
    assert appliance_from({"shared": 1, "slices": 8}).hash_slices_per_clock == 8  # type: ignore[attr-defined]
    assert board.config.markets == 2  # type: ignore[attr-defined]
    default = appliance_from({})
    assert (default.rounds_per_cycle, default.hash_shared_permutation) == (2, False)  # type: ignore[attr-defined]


def test_sim_without_the_appliance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ocee.hw.appliance", None)  # import fails as if it were absent
    with pytest.raises(TransportError, match=r"appliance top level .* is not available yet"):
        open_link("sim://")


@pytest.mark.parametrize(("argv", "status", "message"), [
    (["--pty", "--once"], 2, "--once applies to a TCP board only"),
    (["--levels", "1000"], 2, "levels must be a power of two"),
    ([], 1, "is not available yet"),
])
def test_cli_errors(argv: list[str], status: int, message: str, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    from ocee.host.cli import main

    monkeypatch.setitem(sys.modules, "ocee.hw.appliance", None)
    assert main(["board", "sim", *argv]) == status
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("kind", KINDS)
def test_a_power_cycle_keeps_the_port_open(built: Path, kind: str) -> None:
    with board(kind) as b, open_port(b) as port:
        port.write(b"\x10")
        assert read_exactly(port, 1) == b"\x11"
        b.power_cycle()
        port.write(b"\x20")
        assert read_exactly(port, 1) == b"\x21"


def test_a_port_in_use(built: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(BoardError, match=r"exited with status 1 before it could start listening: "
                                             r"board: binding the port: Address already in use"):
            board("tcp", port=port).start()
