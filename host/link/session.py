"""The host's end of the link: a reliable, flow-controlled session over a byte stream.

:class:`Link` connects to a device (status, version check, reset to a pristine device, open an
epoch), then executes commands: it packs them into ``DATA`` frames as far as the device's credit
and its own window allow, retransmits what is not acknowledged (go-back-N), takes the device's
event frames in order, and hands out each command's events once its last one has arrived. It
keeps a shadow of the device's books, a :class:`~ocee.hw.matching.model.MatchingModel` that runs
each command as it completes, and checks the device's events against it. When the device resets,
it restores the books from the shadow and sends again the commands that had not completed. The
rules are docs/link.md's; this module is the host half of them.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.merkle import merkle_root
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import (
    PROTOCOL_VERSION,
    BatchClosed,
    Command,
    Event,
    NewOrder,
    ProtocolError,
    SetWindow,
    Side,
)

from .errors import (
    DeviceMismatch,
    IncompatibleDevice,
    LinkError,
    LinkTimeout,
    ProtocolViolation,
)
from .records import COMMANDS, EVENTS
from .transport import ByteStream
from .wire import (
    END,
    LINK_VERSION,
    MIN_FRAME,
    ControlOp,
    DeviceCounters,
    DeviceInfo,
    DeviceStatus,
    Frame,
    FrameDecoder,
    FrameKind,
    encode_frame,
    pack_control,
    pack_set_stream,
    unpack_status,
)

__all__ = ["Completion", "Link", "LinkOptions", "LinkStats"]

_U16 = 0xFFFF
_HALF = 0x8000
_DATA, _DIRECTIVE, _ACK, _NAK, _STATUS = (
    FrameKind.DATA, FrameKind.DIRECTIVE, FrameKind.ACK, FrameKind.NAK, FrameKind.STATUS)


@dataclass(frozen=True)
class LinkOptions:
    """How the host drives the link.

    rto
        Retransmission timeout, seconds: more than a round trip of a full window.
    max_timeouts
        Timeouts in a row without progress before :class:`LinkTimeout`.
    window
        Host frames in flight beyond the oldest unacknowledged one.
    max_frame
        The longest frame body the host sends; the device's own limit applies if smaller.
    verify
        Check every event against the shadow model (:class:`DeviceMismatch` on a difference).
    lookahead
        Commands :meth:`Link.stream` takes from its iterable ahead of the ones in flight.
    seed
        Seeds the first epoch and request tag, which are random so that frames left over from
        another host process are not mistaken for this one's; a seed makes a run repeatable.
    """

    rto: float = 0.05
    max_timeouts: int = 40
    window: int = 32
    max_frame: int = 1024
    verify: bool = True
    lookahead: int = 1024
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.rto > 0:
            raise ValueError(f"rto must be positive, not {self.rto}")
        if self.max_timeouts < 1:
            raise ValueError(f"max_timeouts must be at least 1, not {self.max_timeouts}")
        if not 1 <= self.window < _HALF:
            raise ValueError(f"window must be between 1 and {_HALF - 1}, not {self.window}")
        if self.max_frame < 64:
            raise ValueError(f"max_frame must be at least 64, not {self.max_frame}")
        if self.lookahead < 1:
            raise ValueError(f"lookahead must be at least 1, not {self.lookahead}")


@dataclass(slots=True)
class Completion:
    """A command and all its events. ``sent`` and ``done`` are ``time.perf_counter()`` values:
    when its frame first left, and when its last event arrived."""

    command: Command | bytes
    events: list[Event]
    sent: float
    done: float

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass
class LinkStats:
    """The host's own counters (the device's are :meth:`Link.counters`)."""

    frames_sent: int = 0
    frames_received: int = 0
    data_frames_sent: int = 0
    retransmits: int = 0          # DATA and DIRECTIVE frames sent again
    timeouts: int = 0             # retransmission timeouts
    naks_sent: int = 0
    naks_received: int = 0
    framing_errors: int = 0
    crc_errors: int = 0
    sequence_errors: int = 0      # device DATA frames out of order or duplicated
    stale_frames: int = 0         # frames of another epoch
    resets: int = 0               # device resets detected and recovered from
    false_alarms: int = 0         # epoch-0 frames that were not a reset
    restored_orders: int = 0
    interrupted_batches: int = 0  # batches whose root the host completed after a reset
    commands: int = 0
    events: int = 0


class _Item:
    """A command on its way: queued, then in flight until its last event arrives."""

    __slots__ = ("command", "expected", "raw", "sent")

    def __init__(self, command: Command | bytes, raw: bytes,
                 expected: list[Event] | None = None) -> None:
        self.command = command
        self.raw = raw
        self.expected = expected  # a restoration command's events, which are checked, not delivered
        self.sent = 0.0


class _Directive:
    """A directive waiting for every command before it to complete."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _TxFrame:
    __slots__ = ("kind", "payload", "seq")

    def __init__(self, kind: FrameKind, seq: int, payload: bytes) -> None:
        self.kind = kind
        self.seq = seq
        self.payload = payload


class Link:
    """A connected device. Use :func:`ocee.host.link.open_link` to make one from a URL.

    Connecting reads the device's status, refuses another protocol version, resets a device that
    a previous host left open, and opens a new epoch: the device is pristine, and ``shadow``, an
    empty reference model of the device's capacities, follows it from there.

    Not thread-safe: one thread drives a link.
    """

    def __init__(self, transport: ByteStream, options: LinkOptions | None = None) -> None:
        self.transport = transport
        self.options = options = options or LinkOptions()
        self.stats = LinkStats()
        self._decoder = FrameDecoder(max(4096, options.max_frame))
        self._epoch = 0
        rng = random.Random(options.seed)
        self._next_epoch = rng.randrange(1, 256)
        self._tag = rng.randrange(1 << 16)
        self._awaiting: int | None = None  # the tag of the CONTROL request in progress
        self._reply: DeviceStatus | None = None
        self._pending: deque[_Item | _Directive] = deque()
        self._inflight: deque[_Item] = deque()
        self._done: deque[Completion] = deque()
        self._partial: list[Event] = []  # events of the first command in flight, so far
        self._batch_events: list[Event] = []  # delivered since the last batch_closed
        self._device_batch_start = 0  # how many of them the device lost in a reset
        self._reset_suspected = False
        self._fifo_bytes = 0  # the device's, once connected
        self._max_payload = 0
        self._start_epoch()
        try:
            self._connect()
        except BaseException:
            transport.close()
            raise

    # -- Public interface ---------------------------------------------------------------------

    device_info: DeviceInfo
    config: MatchingConfig
    shadow: MatchingModel
    status: DeviceStatus

    def execute(self, command: Command | bytes) -> list[Event]:
        """Execute one command and return its events.

        ``command`` may also be a raw command record, as the device's byte path takes it: one
        with no valid opcode, or with a field holding no valid value, is rejected as malformed.
        """
        events: list[Event] = []
        for done in self.stream((command,)):
            events = done.events
        return events

    def stream(self, commands: Iterable[Command | bytes]) -> Iterator[Completion]:
        """Execute ``commands`` pipelined, as fast as the device's credit allows, and yield each
        one's :class:`Completion` in order as its last event arrives.

        Commands are taken from ``commands`` lazily, ``options.lookahead`` ahead. If the caller
        stops iterating early, the commands already taken stay queued and go out with the next
        call, whose first completions are theirs.
        """
        it = iter(commands)
        exhausted = False
        pending, inflight, done = self._pending, self._inflight, self._done
        lookahead = self.options.lookahead
        self._last_heard = self.transport.now()  # silence while idle is no failure
        while True:
            while not exhausted and len(pending) < lookahead:
                try:
                    command = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(self._item(command))
            while done:
                yield done.popleft()
            if not pending and not inflight:
                if exhausted:
                    return
                continue
            self._step()

    def counters(self) -> DeviceCounters:
        """The device's counters, read now (after restoring it first if it has reset)."""
        return self.read_status().counters

    def read_status(self) -> DeviceStatus:
        """A fresh status from the device (after restoring it first if it has reset)."""
        status = self._request(ControlOp.STATUS)
        if status.epoch != self._epoch:
            self._recover(status)
            self._run_until_idle()
            status = self._request(ControlOp.STATUS)
        self.status = status
        return status

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Link:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- Connecting ---------------------------------------------------------------------------

    def _connect(self) -> None:
        self.transport.write(END)
        status = self._request(ControlOp.STATUS)
        info = status.info
        if info.version != PROTOCOL_VERSION:
            raise IncompatibleDevice(f"the device speaks protocol version {info.version}; this "
                                     f"host speaks {PROTOCOL_VERSION}: rebuild one of them")
        if status.link_version != LINK_VERSION:
            raise IncompatibleDevice(f"the device's link is version {status.link_version}; this "
                                     f"host's is {LINK_VERSION}")
        try:
            config = info.config
        except ValueError as e:
            raise IncompatibleDevice(f"the device reports an impossible configuration: {e}") from None
        if status.max_frame < 128 or not 1 <= status.fifo_bytes < _HALF:
            raise IncompatibleDevice(f"the device reports max_frame {status.max_frame} and "
                                     f"fifo_bytes {status.fifo_bytes}: outside the link's limits")
        self.device_info, self.config, self.status = info, config, status
        self._max_payload = min(self.options.max_frame, status.max_frame) - MIN_FRAME
        if status.epoch:
            # A previous host's session: reset it (quoting its epoch and boot id, as a replay
            # could not).
            status = self._request(ControlOp.RESET, status.epoch, status.boot_id)
            if status.epoch:
                raise LinkError(f"the device did not reset (its epoch is {status.epoch})")
        self.shadow = MatchingModel(config, hash_events=False)
        self._open(status.epoch, status.boot_id)

    def _open(self, previous: int, boot_id: int) -> None:
        epoch = self._next_epoch
        if epoch == previous:
            epoch = epoch % 255 + 1
        self._next_epoch = epoch % 255 + 1
        status = self._request(ControlOp.OPEN, epoch, boot_id)
        if status.epoch != epoch:
            raise LinkError(f"the device did not open epoch {epoch} (it is at {status.epoch})")
        self.status = status
        self._fifo_bytes = status.fifo_bytes
        self._epoch = epoch
        self._start_epoch()

    def _start_epoch(self) -> None:
        """Sequence numbers, credits and timers as at the start of an epoch."""
        self._tx_next = 0
        self._unacked: deque[_TxFrame] = deque()
        self._rx_expected = 0
        self._rx_lap = 0  # the lap of the device's last good DATA frame
        self._nak_sent: tuple[int, int] | None = None  # (expected, lap) of the last NAK
        self._ack_owed = False
        self._credit_limit = self._fifo_bytes
        self._credit_sent = 0
        self._rto_deadline = 0.0
        self._timeouts = 0
        self._lap = 0  # go-backs so far, mod 8
        self._directive_seq: int | None = None  # an unacknowledged directive: nothing goes after it
        now = self.transport.now()
        self._last_heard = now
        self._poll_deadline = now + self.options.rto

    def _request(self, op: ControlOp, arg: int = 0, boot_id: int = 0) -> DeviceStatus:
        """Send a CONTROL request until its STATUS reply arrives."""
        self._tag = tag = (self._tag + 1) & _U16
        payload = pack_control(tag, op, arg, boot_id)
        rto = self.options.rto
        self._awaiting, self._reply = tag, None
        try:
            for _ in range(self.options.max_timeouts):
                self._write([encode_frame(FrameKind.CONTROL, self._epoch, 0, self._rx_expected,
                                          0, payload)])
                deadline = self.transport.now() + rto
                while self._reply is None:
                    now = self.transport.now()
                    if now >= deadline:
                        break
                    self._receive(deadline - now)
                if self._reply is not None:
                    return self._reply
        finally:
            self._awaiting = None
        raise LinkTimeout(f"no answer to a {op.name} request after {self.options.max_timeouts} "
                          f"tries {rto} s apart: is the device connected, powered and configured?")

    # -- The pump ---------------------------------------------------------------------------------

    def _step(self) -> None:
        """Send what can be sent, wait a little for the device, take what it sent."""
        now = self.transport.now()
        self._transmit(now)
        timeout = self.options.rto
        if self._unacked:
            timeout = min(timeout, self._rto_deadline - now)
        self._receive(max(timeout, 0.0))
        if self._reset_suspected:
            self._recover(self._request(ControlOp.STATUS))
            return
        now = self.transport.now()
        if ((self._pending or self._inflight)
                and now - self._last_heard > self.options.rto * self.options.max_timeouts):
            raise LinkTimeout(f"nothing from the device for {now - self._last_heard:.2f} s with "
                              f"{len(self._inflight)} commands in flight")

    def _run_until_idle(self) -> None:
        self._last_heard = self.transport.now()
        while self._pending or self._inflight:
            self._step()

    def _receive(self, timeout: float) -> None:
        data = self.transport.read(timeout)
        if not data:
            return
        decoder = self._decoder
        errors = decoder.errors
        for frame in decoder.feed(data):
            self.stats.frames_received += 1
            self._handle(frame)
        if decoder.errors != errors:
            self.stats.framing_errors = decoder.framing_errors
            self.stats.crc_errors = decoder.crc_errors
            if self._epoch:
                self._nak(self._rx_lap)

    def _handle(self, frame: Frame) -> None:
        kind = frame.kind
        if kind is _STATUS and self._awaiting is not None:
            try:
                status = unpack_status(frame.payload)
            except ValueError:
                raise ProtocolViolation(f"a STATUS frame of {len(frame.payload)} bytes") from None
            if status.tag == self._awaiting:
                self._reply = status
                self._last_heard = self.transport.now()
                return
        if not self._epoch:
            self.stats.stale_frames += 1  # connecting or reconnecting: only the reply counts
            return
        if frame.epoch != self._epoch:
            # Epoch 0: the device has reset, or this is an old frame. Another epoch: an old
            # frame, or another host has opened the device. A status request tells which.
            self.stats.stale_frames += 1
            if self._epoch and self._awaiting is None:
                self._reset_suspected = True
            return
        self._last_heard = self.transport.now()
        self._take_ack(frame.ack)
        self._poll_deadline = self._last_heard + self.options.rto
        credit = frame.credit
        if credit != self._credit_limit and (credit - self._credit_limit) & _U16 < _HALF:
            self._credit_limit = credit
        if kind is _DATA:
            self._take_data(frame)
        elif kind is _NAK:
            self.stats.naks_received += 1
            # Only a NAK about the current lap: one about an earlier lap has been answered.
            if self._unacked and frame.ack == self._unacked[0].seq and frame.lap == self._lap:
                self._go_back(self.transport.now())
        elif kind is not _ACK and kind is not _STATUS:
            self._decoder.framing_errors += 1  # a kind the host never receives
            self.stats.framing_errors = self._decoder.framing_errors

    # -- Sending ----------------------------------------------------------------------------------

    def _item(self, command: Command | bytes) -> _Item:
        if isinstance(command, bytes):
            if not command:
                raise ProtocolError("an empty command record")
            size = COMMANDS.sizes[command[0]]
            if size and len(command) != size:
                raise ProtocolError(f"a record with opcode {command[0]} is {size} bytes, not "
                                    f"{len(command)}")
            if len(command) > self._max_payload:
                raise ProtocolError(f"a {len(command)}-byte record does not fit in a frame")
            return _Item(command, command)
        return _Item(command, COMMANDS.pack(command))

    def _transmit(self, now: float) -> None:
        frames: list[bytes] = []
        rto = self.options.rto
        if self._unacked and now >= self._rto_deadline:
            self.stats.timeouts += 1
            self._timeouts += 1
            if self._timeouts > self.options.max_timeouts:
                raise LinkTimeout(f"frame {self._unacked[0].seq} unacknowledged after "
                                  f"{self._timeouts - 1} retransmissions")
            self._go_back(now)
        pending, sizes = self._pending, COMMANDS.sizes
        max_payload, window = self._max_payload, self.options.window
        while pending and self._directive_seq is None and len(self._unacked) < window:
            head = pending[0]
            if isinstance(head, _Directive):
                if self._inflight:
                    break  # it waits for every command before it
                pending.popleft()
                self._directive_seq = self._tx_next
                frames.append(self._new_frame(_DIRECTIVE, head.payload, now))
                break
            credit = (self._credit_limit - self._credit_sent) & _U16
            if credit >= _HALF:
                credit = 0
            limit = min(max_payload, credit)
            parts: list[bytes] = []
            size = 0
            sent = time.perf_counter()
            while pending:
                item = pending[0]
                if isinstance(item, _Directive) or size + len(item.raw) > limit:
                    break
                pending.popleft()
                parts.append(item.raw)
                size += len(item.raw)
                item.sent = sent
                self._inflight.append(item)
                if not sizes[item.raw[0]]:
                    break  # a record with no opcode runs to the end of its frame
            if not parts:
                break
            self._credit_sent = (self._credit_sent + size) & _U16
            frames.append(self._new_frame(_DATA, b"".join(parts), now))
        if (not self._unacked and (self._pending or self._inflight)
                and now >= self._poll_deadline):
            # Waiting for credit or for events with nothing to retransmit, and the device has
            # been silent for `rto`: ask it to speak. This is also how a reset shows up when the
            # device had acknowledged everything before it.
            frames.append(self._control_frame(_ACK, poll=True))
            self._poll_deadline = now + rto
        elif self._ack_owed and not frames:
            frames.append(self._control_frame(_ACK))
        if frames:
            self._write(frames)

    def _new_frame(self, kind: FrameKind, payload: bytes, now: float) -> bytes:
        frame = _TxFrame(kind, self._tx_next, payload)
        self._tx_next = (self._tx_next + 1) & _U16
        if not self._unacked:
            self._rto_deadline = now + self.options.rto
        self._unacked.append(frame)
        self.stats.data_frames_sent += 1
        return self._encode(frame)

    def _encode(self, frame: _TxFrame) -> bytes:
        self._ack_owed = False
        return encode_frame(frame.kind, self._epoch, frame.seq, self._rx_expected, 0,
                            frame.payload, lap=self._lap)

    def _control_frame(self, kind: FrameKind, poll: bool = False, lap: int = 0) -> bytes:
        self._ack_owed = False
        return encode_frame(kind, self._epoch, 0, self._rx_expected, 0, poll=poll, lap=lap)

    def _write(self, frames: list[bytes]) -> None:
        self.stats.frames_sent += len(frames)
        self.transport.write(END + b"".join(frames))

    def _go_back(self, now: float) -> None:
        self._lap = (self._lap + 1) & 7
        self.stats.retransmits += len(self._unacked)
        self._rto_deadline = now + self.options.rto
        self._write([self._encode(frame) for frame in self._unacked])

    def _nak(self, lap: int) -> None:
        if self._nak_sent != (self._rx_expected, lap):  # once per expected frame and lap
            self._nak_sent = (self._rx_expected, lap)
            self.stats.naks_sent += 1
            self._write([self._control_frame(_NAK, lap=lap)])

    def _take_ack(self, ack: int) -> None:
        unacked = self._unacked
        if not unacked:
            return
        n = (ack - unacked[0].seq) & _U16
        if not 0 < n <= len(unacked):
            return
        for _ in range(n):
            frame = unacked.popleft()
            if frame.seq == self._directive_seq:
                self._directive_seq = None
        self._timeouts = 0
        self._rto_deadline = self.transport.now() + self.options.rto

    # -- Receiving --------------------------------------------------------------------------------

    def _take_data(self, frame: Frame) -> None:
        self._rx_lap = frame.lap
        d = (frame.seq - self._rx_expected) & _U16
        if d:
            self.stats.sequence_errors += 1
            if d < _HALF:
                self._nak(frame.lap)  # a frame before this one, of this lap or before, was lost
            else:
                self._ack_owed = True
            return
        self._rx_expected = (self._rx_expected + 1) & _U16
        self._ack_owed = True
        payload = frame.payload
        n = len(payload)
        if n < 4:
            raise ProtocolViolation(f"a DATA frame from the device with a {n}-byte payload")
        ends = int.from_bytes(payload[:4], "little")
        sizes, unpack = EVENTS.sizes, EVENTS.unpack
        partial = self._partial
        i, k = 4, 0
        while i < n:
            size = sizes[payload[i]]
            if not size or i + size > n:
                raise ProtocolViolation(f"no event record at byte {i} of a DATA frame from the "
                                        f"device: {payload.hex()}")
            partial.append(unpack(payload[i:i + size]))
            i += size
            if ends >> k & 1:
                self._complete()
                partial = self._partial
            k += 1
        if k > 32 or ends >> k:
            raise ProtocolViolation(f"a DATA frame of {k} events with ends = {ends:#x}")

    def _complete(self) -> None:
        """The first command in flight has all its events."""
        if not self._inflight:
            raise ProtocolViolation("the device completed a command the host did not send")
        item = self._inflight.popleft()
        events, self._partial = self._partial, []
        if item.expected is not None:  # a restoration command
            if events != item.expected:
                raise DeviceMismatch(f"restoring {item.command!r}: the device sent {events}, "
                                     f"expected {item.expected}")
            self.stats.restored_orders += isinstance(item.command, NewOrder)
            return
        command = item.command
        shadow = self.shadow
        expected = (shadow.execute_bytes(command) if isinstance(command, bytes)
                    else shadow.execute(command))
        if self.options.verify and events != expected:
            self._check(command, events, expected)
        if type(events[0]) is BatchClosed:  # a close_batch's one event
            events[0] = self._batch_closed(events[0])
        else:
            self._batch_events += events
        self.stats.commands += 1
        self.stats.events += len(events)
        self._done.append(Completion(command, events, item.sent, time.perf_counter()))

    def _check(self, command: Command | bytes, events: list[Event], expected: list[Event]) -> None:
        # Batch roots are not the shadow's business (it does not hash): compare the rest.
        if len(events) == len(expected) and all(
                a == b or (type(a) is BatchClosed and type(b) is BatchClosed
                           and (a.market, a.seq, a.batch) == (b.market, b.seq, b.batch))
                for a, b in zip(events, expected, strict=True)):
            return
        raise DeviceMismatch(f"{command!r}: the device sent {events}, the reference model "
                             f"{expected}")

    def _batch_closed(self, event: BatchClosed) -> BatchClosed:
        events, start = self._batch_events, self._device_batch_start
        self._batch_events, self._device_batch_start = [], 0
        if self.options.verify and event.count != len(events) - start:
            raise DeviceMismatch(f"batch {event.batch}: the device counts {event.count} events, "
                                 f"the host delivered {len(events) - start}")
        if not start:
            return event
        # The batch the device reset in: the device lost its first `start` leaves. Check its
        # root of the rest, then report the whole batch's.
        self.stats.interrupted_batches += 1
        leaves = [event_leaf(e) for e in events]
        if event.root != merkle_root(leaves[start:]):
            raise DeviceMismatch(f"batch {event.batch}: the device's root of the {len(events) - start}"
                                 f" events after its reset is {event.root.hex()}, not the host's")
        return BatchClosed(event.market, event.seq, event.batch, len(events), merkle_root(leaves))

    # -- Device reset -----------------------------------------------------------------------------

    def _recover(self, status: DeviceStatus) -> None:
        """Handle a status whose epoch is not ours: a reset (restore the books), or a false alarm."""
        self._reset_suspected = False
        if status.epoch == self._epoch:
            self.stats.false_alarms += 1
            return
        if status.epoch:
            raise LinkError(f"the device is at epoch {status.epoch}, not this host's "
                            f"{self._epoch}: another host has opened it")
        if status.info != self.device_info:
            raise IncompatibleDevice(f"the device came back from a reset as {status.info}, not "
                                     f"{self.device_info}")
        self.stats.resets += 1
        # Commands not completed go back to the head of the queue; restoration is redone whole.
        queue = [x for x in (*self._inflight, *self._pending)
                 if isinstance(x, _Item) and x.expected is None]
        self._pending.clear()  # in place: stream() holds these deques
        self._pending.extend(queue)
        self._inflight.clear()
        self._partial = []
        # No session until the new epoch is open: a late frame of the old one (it may still be
        # in the pipe, or replayed) must not complete a command that has just been put back.
        previous, self._epoch = self._epoch, 0
        self._start_epoch()
        self._open(previous, status.boot_id)
        restore: list[_Item | _Directive] = [
            _Item(command, COMMANDS.pack(command), events) for command, events in self._plan()]
        restore.append(_Directive(pack_set_stream(self.shadow.seq, self.shadow.batch_number)))
        self._pending.extendleft(reversed(restore))
        self._device_batch_start = len(self._batch_events)

    def _plan(self) -> list[tuple[Command, list[Event]]]:
        """The commands that rebuild the shadow's books on a pristine device, and their events."""
        shadow = self.shadow
        scratch = MatchingModel(self.config, hash_events=False)
        plan: list[tuple[Command, list[Event]]] = []
        for market in range(self.config.markets):
            commands: list[Command] = []
            lowest = shadow.lowest(market)
            if lowest:
                commands.append(SetWindow(market=market, lowest=lowest))
            for side in (Side.BUY, Side.SELL):
                for level in shadow.book(market, side):
                    commands += [NewOrder(market=market, id=o.id, account=o.account, side=side,
                                          price=level.price, qty=o.qty) for o in level.orders]
            plan += [(c, scratch.execute(c)) for c in commands]
            for side in (Side.BUY, Side.SELL):
                if scratch.book(market, side) != shadow.book(market, side):
                    raise LinkError(f"the restoration of market {market} does not rebuild its "
                                    f"book: a bug in the host")
        return plan
