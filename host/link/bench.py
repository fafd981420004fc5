"""Link throughput: ``python -m ocee.host.link.bench`` prints the figures of docs/link.md.

Three measurements, each on a generated flow (``ocee gen``'s; flow generation is not timed):

stream
    Commands/s through the whole stack, pipelined: packing, framing, CRC, credits, the session,
    the device side, and the host's shadow model and event checks. On ``model://`` the device
    emulator runs in the same thread, so the figure is host and device together; with
    ``--device-process`` the emulator serves from another process over TCP and the figure
    is what one host core sustains.
execute
    Round trips/s, one command at a time.
uart (``--uart``)
    Bytes on the wire per command in each direction, counted on a clean ``model://`` run of the
    flow, and the command rate a 3 Mbaud 8N1 UART (300,000 bytes/s each way) allows.

Benchmarks are measurements, not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.hw.protocol import Command

from . import Link, LinkOptions, ModelStream, open_link
from .device import DeviceEmulator
from .transport import ByteStream

UART_BYTES_PER_SECOND = 3_000_000 // 10  # 8N1: ten bit times per byte


class CountingStream:
    """Counts the bytes that pass each way."""

    def __init__(self, inner: ByteStream) -> None:
        self.inner = inner
        self.written = 0
        self.read_bytes = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.inner.write(data)

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        self.read_bytes += len(data)
        return data

    def now(self) -> float:
        return self.inner.now()

    def close(self) -> None:
        self.inner.close()


def stream_rate(link: Link, commands: Sequence[Command]) -> tuple[float, float, float, list[float]]:
    """(commands/s, events/s, this process's CPU seconds per command, latencies) of
    ``commands`` streamed through ``link``."""
    start, cpu = time.perf_counter(), time.process_time()
    events = 0
    latencies = []
    for done in link.stream(commands):
        events += len(done.events)
        latencies.append(done.latency)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return len(commands) / seconds, events / seconds, cpu / len(commands), latencies


def execute_rate(link: Link, commands: Sequence[Command]) -> float:
    start = time.perf_counter()
    for command in commands:
        link.execute(command)
    return len(commands) / (time.perf_counter() - start)


def uart_figures(commands: Sequence[Command], max_frame: int) -> None:
    stream = CountingStream(ModelStream(DeviceEmulator(max_frame=max_frame, hash_events=False)))
    with Link(stream, LinkOptions(max_frame=max_frame)) as link:
        connect_in, connect_out = stream.written, stream.read_bytes
        events = sum(len(done.events) for done in link.stream(commands))
        frames_out, frames_in = link.stats.frames_sent, link.stats.frames_received
    n = len(commands)
    to_device = (stream.written - connect_in) / n
    to_host = (stream.read_bytes - connect_out) / n
    print(f"uart, {max_frame}-byte frames, {n:,} commands, {events / n:.2f} events per command:")
    print(f"  host -> device  {to_device:6.2f} bytes/command  "
          f"{frames_out / n:.3f} frames/command  bound {UART_BYTES_PER_SECOND / to_device:,.0f} "
          f"commands/s")
    print(f"  device -> host  {to_host:6.2f} bytes/command  "
          f"{frames_in / n:.3f} frames/command  bound {UART_BYTES_PER_SECOND / to_host:,.0f} "
          f"commands/s, "
          f"{UART_BYTES_PER_SECOND / to_host * events / n:,.0f} events/s")


def _device_process(hash_events: bool) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "ocee.host.link.serve"] + ([] if hash_events else ["--no-hash"])
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ocee.host.link.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=100_000, metavar="N")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markets", type=int, default=4)
    parser.add_argument("--url", default="model://", help="the link to measure (default model://)")
    parser.add_argument("--device-process", action="store_true",
                        help="serve the emulated device from another process, over TCP")
    parser.add_argument("--no-hash", action="store_true", help="the device leaves roots zero")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check events against the shadow model")
    parser.add_argument("--execute", type=int, default=10_000, metavar="N",
                        help="commands executed one at a time (default 10,000; 0: skip)")
    parser.add_argument("--uart", action="store_true", help="only the UART figures")
    parser.add_argument("--repeat", type=int, default=3, help="best of (default 3)")
    args = parser.parse_args(argv)

    params = FlowParams(commands=args.commands, seed=args.seed, markets=args.markets)
    commands = list(generate_flow(params))
    if args.uart:
        for max_frame in (256, 1024):
            uart_figures(commands, max_frame)
        return

    url = args.url
    process = None
    if args.device_process:
        process, url = _device_process(not args.no_hash)
    elif args.no_hash and url.startswith("model:"):
        url += ("&" if "?" in url else "?") + "hash=0"
    options = LinkOptions(verify=not args.no_verify)
    try:
        best = (0.0, 0.0, 0.0, [0.0])
        for _ in range(args.repeat):
            with open_link(url, options=options) as link:
                result = stream_rate(link, commands)
            best = max(best, result)
        rate, event_rate, cpu, latencies = best
        print(f"{url}: {len(commands):,} commands streamed: {rate:,.0f} commands/s, "
              f"{event_rate:,.0f} events/s, latency p50 {statistics.median(latencies) * 1e3:.2f} "
              f"ms (queueing included); this process: {cpu * 1e6:.1f} us of CPU per command "
              f"({1 / cpu:,.0f} commands per CPU second)")
        if args.execute:
            single = commands[:args.execute]
            with open_link(url, options=options) as link:
                rate = max(execute_rate(link, single) for _ in range(1))
            print(f"{url}: {len(single):,} commands one at a time: {rate:,.0f} round trips/s")
    finally:
        if process is not None:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
