"""The host session's own rules: book restoration after a reset, the batch a reset interrupts,
what happens in flight, and how it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import Connector

from ocee.host.link import (
    DeviceEmulator,
    DeviceMismatch,
    Link,
    LinkError,
    LinkOptions,
    LinkTimeout,
)
from ocee.host.link.wire import ControlOp, FrameKind, encode_frame, pack_control
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    BatchClosed,
    Cancel,
    CloseBatch,
    Command,
    Modify,
    NewOrder,
    SetWindow,
    Side,
    StpMode,
)


def priority_scenario() -> list[Command]:
    """Resting orders on three markets, windows moved, time priority changed by modifies."""
    commands: list[Command] = [SetWindow(market=2, lowest=10_000), SetWindow(market=3, lowest=7)]
    oid = 0
    for market, base in [(0, 500), (2, 10_400), (3, 300)]:
        for k in range(30):
            oid += 1
            side = Side.BUY if k % 2 else Side.SELL
            price = base - 1 - k % 5 if side is Side.BUY else base + k % 5
            commands.append(NewOrder(market=market, id=oid, account=k % 4 + 1, side=side,
                                     price=price, qty=k + 1, stp=StpMode.CANCEL_MAKER))
    commands += [Modify(market=0, id=1, qty=100),   # grows: to the back of its level
                 Modify(market=0, id=3, qty=1),     # shrinks: keeps its place
                 Cancel(market=2, id=35), CloseBatch(),
                 NewOrder(market=0, id=500, account=9, side=Side.BUY, price=500, qty=3)]
    return commands


def run(link: Link, commands: list[Command]) -> list[list[Any]]:
    return [c.events for c in link.stream(commands)]


def test_restoration_rebuilds_books_windows_and_priority(model_connect: Connector,
                                                         book_state: Callable[..., Any]) -> None:
    commands = priority_scenario()
    reference = MatchingModel()
    expected = [reference.execute(c) for c in commands]
    link, device = model_connect()
    assert run(link, commands) == expected
    device.reset()
    probe = [NewOrder(market=m, id=900 + m, account=9, side=Side.SELL, price=p, qty=1)
             for m, p in [(0, 501), (2, 10_401), (3, 301)]]
    assert run(link, probe) == [reference.execute(c) for c in probe]
    assert link.stats.resets == 1 and link.stats.restored_orders == reference.resting_count - 3
    assert book_state(device.model) == book_state(reference)


@pytest.mark.parametrize(("when", "interrupted"), [(13, 1), (95, 1), (96, 1), (97, 0)],
                         ids=["early", "mid-batch", "at the close", "after the close"])
def test_the_batch_a_reset_interrupts_keeps_its_root(model_connect: Connector, when: int,
                                                     interrupted: int) -> None:
    """The device loses the leaves before its reset; the host reports the whole batch's root."""
    commands = priority_scenario()  # its 96th command closes batch 0
    commands += [Cancel(market=0, id=i) for i in range(2, 20)] + [CloseBatch()]
    reference = MatchingModel()
    link, _ = model_connect(DeviceEmulator(resets_at=[when]))
    got = [link.execute(c) for c in commands]  # one at a time: the reset is after command `when`
    assert got == [reference.execute(c) for c in commands]
    batches = [e for events in got for e in events if isinstance(e, BatchClosed)]
    assert [b.batch for b in batches] == [0, 1] and link.stats.resets == 1
    assert link.stats.interrupted_batches == interrupted


def test_a_reset_during_restoration_restarts_it(model_connect: Connector,
                                                flow: Callable[..., Any]) -> None:
    commands, expected, _ = flow(2000, seed=5)
    # The flow rests about 150 orders per market: the second reset lands among them.
    device = DeviceEmulator(resets_at=[1000, 1100, 1101])
    link, _ = model_connect(device)
    assert run(link, commands) == expected
    assert link.stats.resets == device.power_cycles == 3


def test_commands_in_flight_are_sent_again_once(model_connect: Connector,
                                                flow: Callable[..., Any]) -> None:
    commands, expected, _ = flow(600, seed=6)
    device = DeviceEmulator(resets_at=[300], tx_window=2)
    link, _ = model_connect(device)
    completions = list(link.stream(commands))
    assert [c.events for c in completions] == expected
    # The device executed more commands than the flow has: the ones in flight at the reset
    # (and the restoration), but each command's events were delivered exactly once.
    assert device.lifetime_commands > len(commands) + link.stats.restored_orders
    assert link.stats.commands == len(commands)


def test_a_device_that_diverges_from_the_model_is_reported(model_connect: Connector) -> None:
    link, device = model_connect()
    link.execute(NewOrder(market=0, id=1, side=Side.SELL, price=10, qty=1))
    device.model.execute(NewOrder(market=0, id=2, side=Side.SELL, price=10, qty=1))  # behind its back
    with pytest.raises(DeviceMismatch, match="the reference model"):
        link.execute(NewOrder(market=0, id=3, side=Side.BUY, price=10, qty=2))


def test_without_verification_the_shadow_still_follows(model_connect: Connector,
                                                       flow: Callable[..., Any],
                                                       book_state: Callable[..., Any]) -> None:
    commands, expected, reference = flow(1000, seed=7)
    link, _ = model_connect(DeviceEmulator(resets_at=[500]), options=LinkOptions(verify=False))
    assert run(link, commands) == expected
    assert book_state(link.shadow) == book_state(reference)


def test_an_abandoned_stream_leaves_its_commands_queued(model_connect: Connector,
                                                        flow: Callable[..., Any]) -> None:
    commands, expected, _ = flow(100, seed=8)
    link, _ = model_connect(options=LinkOptions(lookahead=50))
    stream = link.stream(commands[:60])
    first = [next(stream).events for _ in range(10)]
    stream.close()
    rest = [c.events for c in link.stream(commands[60:])]
    assert first + rest == expected


class DeadStream:
    """A device that never answers, on a virtual clock."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def read(self, timeout: float) -> bytes:
        self.clock += timeout
        return b""

    def now(self) -> float:
        return self.clock

    def close(self) -> None:
        pass


def test_a_silent_device_times_out() -> None:
    with pytest.raises(LinkTimeout, match="no answer to a STATUS request after 5 tries"):
        Link(DeadStream(), LinkOptions(max_timeouts=5))


def test_another_host_taking_the_device_is_reported(model_connect: Connector) -> None:
    link, device = model_connect()
    link.execute(NewOrder(market=0, id=1, side=Side.SELL, price=10, qty=1))
    for op, arg in [(ControlOp.RESET, device.epoch), (ControlOp.OPEN, device.epoch % 255 + 1)]:
        request = pack_control(99, op, arg, device.boot_id)
        device.receive(encode_frame(FrameKind.CONTROL, 0, 0, 0, 0, request), 0.0)
    device.transmit()
    with pytest.raises(LinkError, match="another host has opened it"):
        link.execute(NewOrder(market=0, id=2, side=Side.SELL, price=10, qty=1))


def test_options_are_checked() -> None:
    for kwargs, message in [({"rto": 0}, "rto must be positive"),
                            ({"window": 0}, "window must be between 1 and 32767"),
                            ({"max_frame": 10}, "max_frame must be at least 64"),
                            ({"lookahead": 0}, "lookahead must be at least 1"),
                            ({"max_timeouts": 0}, "max_timeouts must be at least 1")]:
        with pytest.raises(ValueError, match=message):
            LinkOptions(**kwargs)  # type: ignore[arg-type]
