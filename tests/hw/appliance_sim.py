"""The appliance in Amaranth's simulator as a link byte stream, so the host's own link code drives
the gateware: slow (thousands of clocks per second), for short flows and small configurations;
the virtual board (Verilator) runs the long ones."""

from __future__ import annotations

from collections import deque
from typing import Any

from amaranth import ResetInserter, Signal
from amaranth.sim import Simulator

__all__ = ["SimulatedAppliance"]


class SimulatedAppliance:
    """A :class:`~ocee.host.link.transport.ByteStream` to an appliance in Amaranth's simulator.

    Time is the simulation's: one clock is ``clock`` seconds, so the host's timeouts, measured by
    :meth:`now`, count clocks. Each :meth:`read` runs the simulation for at least ``step`` clocks
    (a device only moves when simulated), and up to ``timeout`` until the device has sent
    something. :meth:`power_cycle` resets the whole appliance, as switching a board off and on.
    """

    def __init__(self, dut: Any, *, clock: float = 1e-6, step: int = 64) -> None:
        self.dut = dut
        self.clock = clock
        self.step = step
        self._power = Signal()
        self._power_cycles = 0
        self.sim = Simulator(ResetInserter(self._power)(dut))
        self.sim.add_clock(clock)
        self.sim.add_testbench(self._bench, background=True)
        self._to_device: deque[int] = deque()
        self._from_device = bytearray()
        self._time = 0.0
        self.bytes_in = 0
        self.bytes_out = 0

    async def _bench(self, ctx: Any) -> None:
        dut = self.dut
        ctx.set(dut.tx.ready, 1)
        while True:
            if self._power_cycles:
                self._power_cycles -= 1
                self._to_device.clear()  # what was on the wire is lost with the device
                ctx.set(self._power, 1)
                await ctx.tick()
                ctx.set(self._power, 0)
            offered = bool(self._to_device)
            if offered:
                ctx.set(dut.rx.payload, self._to_device[0])
            ctx.set(dut.rx.valid, offered)
            _, _, taken, valid, byte = await ctx.tick().sample(dut.rx.ready, dut.tx.valid,
                                                               dut.tx.payload)
            if offered and taken:
                self._to_device.popleft()
                self.bytes_in += 1
            if valid:
                self._from_device.append(byte)
                self.bytes_out += 1

    def power_cycle(self) -> None:
        """Reset the whole appliance at the next clock."""
        self._power_cycles += 1

    def run(self, clocks: int) -> None:
        self._time += clocks * self.clock
        self.sim.run_until(self._time)

    # -- ByteStream ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        self._to_device.extend(data)

    def read(self, timeout: float) -> bytes:
        deadline = self._time + max(timeout, 0.0)
        self.run(self.step)
        while not self._from_device and self._time < deadline:
            self.run(self.step)
        out = bytes(self._from_device)
        self._from_device.clear()
        return out

    def now(self) -> float:
        return self._time

    def close(self) -> None:
        pass
