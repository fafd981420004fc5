"""The engine core: the matching engine with the hashing stage behind it.

Commands in, events out, exactly the reference model's (``MatchingModel(config)``): the matching
engine (:mod:`ocee.hw.matching.engine`) emits every event with zero batch roots, and the hashing
stage (:mod:`ocee.hw.hashing.batch_hasher`) hashes each event into its leaf in line, folds the
leaves into the batch's Merkle root and writes the count and root into the ``batch_closed``
event. Nothing else changes in the stream, so the host sees the device's own roots::

    i_command ──► MatchingEngine ──events──► BatchHasher ──events, roots filled in──► o_event
"""

from __future__ import annotations

from typing import Any

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .hashing.batch_hasher import BatchHasher
from .matching.config import MatchingConfig
from .matching.engine import STREAM_START, MatchingEngine
from .protocol import COMMAND, EVENT

__all__ = ["EngineCore"]


class EngineCore(wiring.Component):
    """Matching and hashing for ``config``, Keccak at ``rounds_per_cycle`` rounds per clock with
    ``hash_contexts`` permutations in flight, queues of ``hash_queue_depth`` and, with
    ``hash_shared_permutation``, one permutation for leaves and tree in the hashing stage
    (:class:`~ocee.hw.hashing.batch_hasher.BatchHasher`); with ``hash_slices_per_clock`` the
    permutations are slice-serial (:mod:`ocee.hw.hashing.keccak_slices`) rather than rings.

    Members
    -------
    i_command : ``In(stream.Signature(COMMAND))``
    o_event : ``Out(stream.Signature(EVENT))``
    o_event_first : ``Out(1)``
        Beside ``o_event``: its event is the first of its command (the engine's).
    ready : ``Out(1)``
        The matching engine's: high once its init sequence after reset is done.
    idle : ``Out(1)``
        No command is being executed and every event has left through ``o_event``.
    next_seq, next_batch : ``Out(32)``
        The ``seq`` the next event will carry, the number the next ``batch_closed`` will carry
        (the link's status reports them).
    i_set_stream : ``In(stream.Signature(STREAM_START))``
        Where the event stream continues; the batch in progress is dropped (see
        :class:`~ocee.hw.matching.engine.MatchingEngine`).
    """

    def __init__(self, config: MatchingConfig | None = None, *, rounds_per_cycle: int = 1,
                 hash_contexts: int = 1, hash_queue_depth: int = 8,
                 hash_shared_permutation: bool = False,
                 hash_slices_per_clock: int | None = None) -> None:
        self.config = config or MatchingConfig()
        self.hash_shared_permutation = hash_shared_permutation
        self.rounds_per_cycle = rounds_per_cycle
        self.hash_contexts = hash_contexts
        self.hash_queue_depth = hash_queue_depth
        self.hash_slices_per_clock = hash_slices_per_clock
        self.engine = MatchingEngine(self.config)
        self.init_cycles = self.engine.init_cycles
        super().__init__({
            "i_command": In(stream.Signature(COMMAND)),
            "o_event": Out(stream.Signature(EVENT)),
            "o_event_first": Out(1),
            "ready": Out(1),
            "idle": Out(1),
            "next_seq": Out(32),
            "next_batch": Out(32),
            "i_set_stream": In(stream.Signature(STREAM_START)),
        })

    def elaborate(self, platform: Any) -> Module:
        m = Module()
        m.submodules.matching = engine = self.engine
        m.submodules.hashing = hasher = BatchHasher(self.rounds_per_cycle,
                                                    queue_depth=self.hash_queue_depth,
                                                    contexts=self.hash_contexts,
                                                    shared_permutation=self.hash_shared_permutation,
                                                    slices_per_clock=self.hash_slices_per_clock)
        wiring.connect(m, wiring.flipped(self.i_command), engine.i_command)
        wiring.connect(m, engine.o_event, hasher.i_event)
        wiring.connect(m, hasher.o_event, wiring.flipped(self.o_event))
        wiring.connect(m, wiring.flipped(self.i_set_stream), engine.i_set_stream)
        # The hashing stage holds no event of its own: an event leaves it in the clock it leaves
        # the engine (a batch_closed waits at the engine's output for its root), so the engine's
        # flag beside its output is the flag of the stage's output, and the engine's idle is
        # the core's.
        m.d.comb += [self.ready.eq(engine.ready), self.idle.eq(engine.idle),
                     self.o_event_first.eq(engine.o_event_first),
                     self.next_seq.eq(engine.next_seq), self.next_batch.eq(engine.next_batch)]
        return m
