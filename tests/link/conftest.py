"""Shared fixtures of the link tests: flows with their reference events, and devices on every
transport this machine has (all but a real board)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.link import (
    DeviceEmulator,
    DeviceServer,
    FaultParams,
    FaultyStream,
    Link,
    LinkOptions,
    ModelStream,
    open_link,
)
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import Command, Event, Side

#: The transports of the conformance suite: the emulator in process, and the emulator behind a
#: TCP socket and behind a pseudo-terminal, reached through pyserial as a board would be.
TRANSPORTS = ["model", "tcp", "pty"]


@functools.cache
def reference_flow(commands: int, seed: int = 1, markets: int = 4,
                   batch_every: int = 200) -> tuple[list[Command], list[list[Event]], MatchingModel]:
    """A generated flow, the reference model's events for each command, and the model after."""
    params = FlowParams(commands=commands, seed=seed, markets=markets, batch_every=batch_every)
    flow = list(generate_flow(params))
    model = MatchingModel(params.config)
    return flow, [model.execute(c) for c in flow], model


def books(model: MatchingModel) -> list[Any]:
    return [(m, side, model.lowest(m), model.book(m, side))
            for m in range(model.config.markets) for side in Side]


class Connector:
    """Opens links to emulated devices on one transport and closes everything afterwards."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.links: list[Link] = []
        self.servers: list[DeviceServer] = []

    @property
    def realtime(self) -> bool:
        return self.transport != "model"

    def __call__(self, device: DeviceEmulator | None = None, *, faults: FaultParams | None = None,
                 options: LinkOptions | None = None) -> tuple[Link, DeviceEmulator]:
        rto = 0.02 if self.realtime else 0.05
        device = device or DeviceEmulator(rto=rto)
        options = options or LinkOptions(rto=rto)
        if self.transport == "model":
            stream = ModelStream(device)
            link = Link(stream if faults is None else FaultyStream(stream, faults), options)
        else:
            server = DeviceServer(device, kind=self.transport).start()
            self.servers.append(server)
            link = open_link(server.url, options=options, faults=faults)
        self.links.append(link)
        return link, device

    def power_cycle(self, device: DeviceEmulator) -> None:
        """Reset ``device`` from the thread that drives it."""
        for server in self.servers:
            if server.emulator is device:
                server.power_cycle()
                return
        device.reset()

    def reconnect(self, link: Link, options: LinkOptions | None = None) -> Link:
        """Close ``link`` and open another one to the same device."""
        link.close()
        if self.transport == "model":
            stream: Any = link.transport
            new = Link(stream, options or link.options)
        else:
            server = self.servers[-1]
            new = open_link(server.url, options=options or link.options)
        self.links.append(new)
        return new

    def close(self) -> None:
        for link in self.links:
            link.close()
        for server in self.servers:
            server.stop()


@pytest.fixture(params=TRANSPORTS)
def connect(request: pytest.FixtureRequest) -> Iterator[Connector]:
    connector = Connector(request.param)
    yield connector
    connector.close()


@pytest.fixture
def model_connect() -> Iterator[Connector]:
    connector = Connector("model")
    yield connector
    connector.close()


@pytest.fixture
def flow() -> Callable[..., tuple[list[Command], list[list[Event]], MatchingModel]]:
    return reference_flow


@pytest.fixture
def book_state() -> Callable[[MatchingModel], list[Any]]:
    return books
