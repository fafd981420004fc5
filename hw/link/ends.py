"""Which event ends its command: the ``ends`` bit of every device ``DATA`` frame (docs/link.md).

The engine marks the *first* event of each command, which it knows when it emits it; the last
one it only knows later (a command may go on for clocks after its last event, unlinking an order
or finding that nothing more matches). :class:`CommandEnds` turns one into the other with one
event of look-ahead: an event is the last of its command when the event after it is a first one,
or, when no event follows, when the engine is idle (its command is done and nothing is left in
it). Waiting for either never blocks: the engine goes on emitting or finishes regardless.
"""

from __future__ import annotations

from typing import Any

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ocee.hw.protocol import EVENT

from .layouts import TAGGED_EVENT

__all__ = ["CommandEnds"]


class CommandEnds(wiring.Component):
    """Tags each event with whether it ends its command.

    Members
    -------
    i_event : ``In(stream.Signature(EVENT))``
        The engine core's events.
    i_first : ``In(1)``
        Beside ``i_event``: its event is the first of its command.
    idle : ``In(1)``
        The engine core is idle: no command in execution, no event inside it.
    o_event : ``Out(stream.Signature(TAGGED_EVENT))``
        The same events, with ``end``; each one clock or more behind its input.
    """

    def __init__(self) -> None:
        super().__init__({
            "i_event": In(stream.Signature(EVENT)),
            "i_first": In(1),
            "idle": In(1),
            "o_event": Out(stream.Signature(TAGGED_EVENT)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        held = Signal(EVENT)
        holding = Signal()
        out = self.o_event
        m.d.comb += [
            out.payload.event.eq(held),
            out.payload.end.eq(Mux(self.i_event.valid, self.i_first, 1)),
            out.valid.eq(holding & (self.i_event.valid | self.idle)),
            # Take the next event into the register as the held one leaves, or into an empty one.
            self.i_event.ready.eq(~holding | out.ready),
        ]
        with m.If(self.i_event.valid & self.i_event.ready):
            m.d.sync += [held.eq(self.i_event.payload), holding.eq(1)]
        with m.Elif(out.valid & out.ready):
            m.d.sync += holding.eq(0)
        return m
