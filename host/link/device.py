"""The device side of the link, in Python: what the appliance's gateware does (spec: docs/link.md).

:class:`DeviceEmulator` takes the bytes a host sends and returns the bytes the device answers,
executing commands on a :class:`~ocee.hw.matching.model.MatchingModel`. It has the device's
command FIFO and credits, its retransmission buffer of ``tx_window`` frames, its counters and its
epoch, and :meth:`~DeviceEmulator.reset` power-cycles it. It is the ``model://`` transport's
device, the device behind the conformance tests' sockets and pseudo-terminals
(:class:`DeviceServer`), and the executable version of the device's rules for the gateware.

Like the gateware, it keeps the event stream's numbering apart from the matching: the model
matches (without hashing), and the emulator stamps each event's ``seq``, folds it into the batch's
Merkle frontier and fills in ``batch_closed``, so that a ``SET_STREAM`` directive can move the
numbering the way the hardware's counters are loaded.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import select
import socket
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Iterable
from types import TracebackType

from ocee.hw.hashing.leaf import event_leaf
from ocee.hw.hashing.merkle import MerkleAccumulator
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import PROTOCOL_VERSION, BatchClosed, Event, ProtocolError

from .records import COMMANDS, EVENTS
from .wire import (
    END,
    LINK_VERSION,
    MIN_FRAME,
    ControlOp,
    DeviceCounters,
    DeviceInfo,
    DeviceStatus,
    DirectiveCode,
    Frame,
    FrameDecoder,
    FrameKind,
    encode_frame,
    pack_status,
    unpack_control,
    unpack_set_stream,
)

__all__ = ["DeviceEmulator", "DeviceServer"]

_U16, _U32 = 0xFFFF, 0xFFFF_FFFF
_HALF = 0x8000  # sequence numbers d with d < _HALF after `expected` are ahead of it
_MAX_EVENTS_PER_FRAME = 32  # the width of `ends`
_DATA, _DIRECTIVE, _ACK, _NAK, _CONTROL = (
    FrameKind.DATA, FrameKind.DIRECTIVE, FrameKind.ACK, FrameKind.NAK, FrameKind.CONTROL)


class _TxFrame:
    __slots__ = ("payload", "sent", "seq")

    def __init__(self, seq: int, payload: bytes, sent: float) -> None:
        self.seq = seq
        self.payload = payload
        self.sent = sent


class DeviceEmulator:
    """The matching device behind its link, executed in Python.

    config
        The engine's capacities (reported in ``DEVICE_INFO``).
    fifo_bytes
        Command FIFO capacity in bytes of records: the host's credit window (at most 2**15 - 1).
    max_frame
        The longest frame body it accepts and sends (at least 128: a status frame is 74 bytes).
    tx_window
        Event frames it sends before waiting for an acknowledgement; the engine stalls while
        they are all unacknowledged.
    rto
        Its retransmission timeout, in seconds of the clock passed to :meth:`receive` and
        :meth:`poll`.
    hash_events
        Fold events into batch roots, as the device does; ``False`` leaves roots zero (faster).
    resets_at
        Power-cycle right after executing the command whose number (counted over the
        emulator's life, resets included, from 1) is listed here; that command's events are lost.
    version
        The protocol version to report (tests use another one to check that the host refuses it).
    seed
        Seeds the ``boot_id`` drawn at every reset (the gateware latches a free-running cycle
        counter when the first byte arrives).

    The emulator is driven by three calls: :meth:`receive` the host's bytes, :meth:`poll` to run
    the engine and the timers, :meth:`transmit` to collect what the device sends.
    """

    def __init__(self, config: MatchingConfig | None = None, *, fifo_bytes: int = 2048,
                 max_frame: int = 256, tx_window: int = 16, rto: float = 0.05,
                 hash_events: bool = True, resets_at: Iterable[int] = (),
                 version: int = PROTOCOL_VERSION, seed: int | None = None) -> None:
        if not 1 <= fifo_bytes < _HALF:
            raise ValueError(f"fifo_bytes must be between 1 and {_HALF - 1}, not {fifo_bytes}")
        if not 128 <= max_frame <= 4096:
            raise ValueError(f"max_frame must be between 128 and 4096, not {max_frame}")
        if not 1 <= tx_window <= 255:
            raise ValueError(f"tx_window must be between 1 and 255, not {tx_window}")
        if rto <= 0:
            raise ValueError(f"rto must be positive, not {rto}")
        self.config = config or MatchingConfig()
        self.info = DeviceInfo.of(self.config, version)
        self.fifo_bytes = fifo_bytes
        self.max_frame = max_frame
        self.tx_window = tx_window
        self.rto = rto
        self.hash_events = hash_events
        self._resets_at = sorted(set(resets_at))
        #: Commands executed over the emulator's life (what ``resets_at`` counts).
        self.lifetime_commands = 0
        #: Power cycles so far, by :meth:`reset` or ``resets_at`` (not by the host's RESET).
        self.power_cycles = 0
        self._boot_ids = random.Random(seed)
        self._power_on()

    # -- State after a reset ------------------------------------------------------------------

    def _power_on(self) -> None:
        self.model = MatchingModel(self.config, hash_events=False)
        self.epoch = 0
        self.boot_id = self._boot_ids.getrandbits(32)
        # Event stream: seq = the model's seq + _seq_offset; batches numbered and hashed here.
        self._seq_offset = 0
        self._batch = 0
        self._leaves = MerkleAccumulator()
        self._leaf_count = 0
        # Receiver.
        self._decoder = FrameDecoder(self.max_frame)
        self._rx_expected = 0
        self._rx_lap = 0  # the lap of the last good sequenced frame
        self._nak_sent: tuple[int, int] | None = None  # (expected, lap) of the last NAK
        self._ack_owed = False
        # Command FIFO and credits.
        self._fifo: deque[bytes] = deque()
        self._fifo_used = 0
        self._consumed = 0
        # Transmitter.
        self._building: list[bytes] = []
        self._building_size = 0
        self._ends = 0
        self._tx_queue: deque[bytes] = deque()  # closed frames waiting for window room
        self._unacked: deque[_TxFrame] = deque()
        self._tx_next = 0
        self._lap = 0
        self._credit_sent = self._credit
        self._out = bytearray(END)  # one END out of reset
        # Counters.
        self.commands = 0
        self.events = 0
        self.rx_frames = 0
        self.tx_frames = 0
        self.overflows = 0
        self.sequence_errors = 0
        self.retransmits = 0
        self._payload_errors = 0

    def reset(self) -> None:
        """A power cycle: books, FIFO, frames in flight, counters and epoch are gone."""
        self.power_cycles += 1
        self._power_on()

    # -- Driving it ---------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the host."""
        errors = self._decoder.errors
        for frame in self._decoder.feed(data):
            self.rx_frames += 1
            self._handle(frame, now)
        if self._decoder.errors != errors and self.epoch:
            self._nak(self._rx_lap)  # a damaged frame may have been the last of a burst

    def poll(self, now: float) -> None:
        """Run the engine as far as the FIFO and the transmit window allow, then the timers."""
        self._run_engine(now)
        if self._unacked and now - self._unacked[0].sent >= self.rto:
            self._go_back(now)  # a timeout
        if self.epoch and (self._ack_owed or self._credit != self._credit_sent):
            self._send(_ACK)

    def transmit(self) -> bytes:
        """Bytes for the host, as far as the device has produced them."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`poll` must run next even if no byte arrives (a retransmission timeout)."""
        return self._unacked[0].sent + self.rto if self._unacked else None

    # -- Status ---------------------------------------------------------------------------------

    @property
    def counters(self) -> DeviceCounters:
        return DeviceCounters(
            commands=self.commands & _U32, events=self.events & _U32,
            rx_frames=self.rx_frames & _U32, tx_frames=self.tx_frames & _U32,
            framing_errors=(self._decoder.framing_errors + self._payload_errors) & _U32,
            crc_errors=self._decoder.crc_errors & _U32, overflows=self.overflows & _U32,
            sequence_errors=self.sequence_errors & _U32, retransmits=self.retransmits & _U32,
            line_errors=0)  # no PHY under the emulator: its faults arrive as bytes

    def status(self, tag: int = 0) -> DeviceStatus:
        return DeviceStatus(tag, self.info, self.epoch, self.fifo_bytes, self.max_frame,
                            self.tx_window, LINK_VERSION, self.boot_id, self._event_seq,
                            self._batch, self.counters)

    @property
    def _event_seq(self) -> int:
        return (self.model.seq + self._seq_offset) & _U32

    @property
    def _credit(self) -> int:
        return (self._consumed + self.fifo_bytes) & _U16

    # -- Receiver -------------------------------------------------------------------------------

    def _handle(self, frame: Frame, now: float) -> None:
        kind = frame.kind
        if kind is _CONTROL:
            self._control(frame.payload)
            return
        if kind is FrameKind.STATUS:
            self._payload_errors += 1  # a kind the device never receives
            return
        if self.epoch == 0 or frame.epoch != self.epoch:
            if kind is _DATA or kind is _DIRECTIVE:
                self.sequence_errors += 1
                self._send(_ACK)  # carries our epoch: 0 after a reset
            elif frame.poll:
                self._send(_ACK)
            return
        self._take_ack(frame.ack)
        if kind is _NAK:
            # Only a NAK about the current lap: one about an earlier lap has been answered.
            if self._unacked and frame.ack == self._unacked[0].seq and frame.lap == self._lap:
                self._go_back(now)
        elif kind is _ACK:
            if frame.poll:
                self._ack_owed = True
        else:
            self._take_sequenced(frame)

    def _take_sequenced(self, frame: Frame) -> None:
        self._rx_lap = frame.lap
        d = (frame.seq - self._rx_expected) & _U16
        if d:
            self.sequence_errors += 1
            if d < _HALF:
                self._nak(frame.lap)  # a frame before this one, of this lap or before, was lost
            else:
                self._ack_owed = True  # a retransmission of one we have: acknowledge again
            return
        if frame.kind is _DATA:
            records = self._split(frame.payload)
            if records is None:
                self._payload_errors += 1
                return
            if self._fifo_used + len(frame.payload) > self.fifo_bytes:
                self.overflows += 1  # the host overran its credit: not taken, not acknowledged
                return
            self._fifo.extend(records)
            self._fifo_used += len(frame.payload)
        else:
            if self._fifo or self._building:
                self.overflows += 1  # a directive waits for the engine to be idle
                return
            if frame.payload[:1] == bytes([DirectiveCode.SET_STREAM.value]):
                try:
                    seq, batch = unpack_set_stream(frame.payload)
                except ValueError:
                    self._payload_errors += 1
                    return
                self._seq_offset = (seq - self.model.seq) & _U32
                self._batch = batch
                self._leaves = MerkleAccumulator()
                self._leaf_count = 0
        self._rx_expected = (self._rx_expected + 1) & _U16
        self._ack_owed = True

    @staticmethod
    def _split(payload: bytes) -> list[bytes] | None:
        """The command records of a DATA payload; None if it ends inside one."""
        records = []
        sizes = COMMANDS.sizes
        i, n = 0, len(payload)
        while i < n:
            size = sizes[payload[i]]
            if not size:
                records.append(payload[i:])  # no opcode: the record runs to the end
                break
            if i + size > n:
                return None
            records.append(payload[i:i + size])
            i += size
        return records

    def _take_ack(self, ack: int) -> None:
        if not self._unacked:
            return
        n = (ack - self._unacked[0].seq) & _U16
        if n <= len(self._unacked):
            for _ in range(n):
                self._unacked.popleft()

    def _control(self, payload: bytes) -> None:
        try:
            tag, op, arg, boot_id = unpack_control(payload)
        except ValueError:
            self._payload_errors += 1
            return
        fresh = boot_id == self.boot_id  # not a replay from before the last reset
        if op == ControlOp.OPEN.value and fresh and self.epoch == 0 and arg:
            self.epoch = arg  # at epoch 0 every sequence number and counter is still at its start
            self._credit_sent = self._credit
        elif op == ControlOp.RESET.value and fresh and arg == self.epoch:
            keep = self._out  # the END of the reset goes out, then the reply
            self._power_on()
            keep += self._out
            self._out = keep
        self._out += encode_frame(FrameKind.STATUS, self.epoch, 0, self._rx_expected,
                                  self._credit, pack_status(self.status(tag)))
        self.tx_frames += 1

    # -- Engine ---------------------------------------------------------------------------------

    def _run_engine(self, now: float) -> None:
        fifo = self._fifo
        while fifo and not self._tx_queue and len(self._unacked) < self.tx_window:
            raw = fifo.popleft()
            self._fifo_used -= len(raw)
            self._consumed = (self._consumed + len(raw)) & _U16
            events = self._execute(raw)
            self.commands += 1
            self.lifetime_commands += 1
            if self._resets_at and self.lifetime_commands == self._resets_at[0]:
                self._resets_at.pop(0)
                self.reset()
                return
            last = len(events) - 1
            for i, event in enumerate(events):
                self._add_event(EVENTS.pack(event), i == last)
            self._send_queued(now)
        if self._building:
            self._close_frame()  # no further event is ready
        self._send_queued(now)

    def _execute(self, raw: bytes) -> list[Event]:
        try:
            command = COMMANDS.unpack(raw)
        except ProtocolError:
            events = self.model.execute_bytes(raw)  # no opcode, or a field with no valid value
        else:
            events = self.model.execute(command)
        offset = self._seq_offset
        for event in events:
            if offset:
                event.seq = (event.seq + offset) & _U32
            if type(event) is BatchClosed:
                event.batch = self._batch
                event.count = self._leaf_count
                event.root = self._leaves.root() if self.hash_events else bytes(32)
                self._batch = (self._batch + 1) & _U32
                self._leaves = MerkleAccumulator()
                self._leaf_count = 0
            else:
                self._leaf_count += 1
                if self.hash_events:
                    self._leaves.add(event_leaf(event))
        self.events += len(events)
        return events

    # -- Transmitter ----------------------------------------------------------------------------

    def _add_event(self, record: bytes, ends_command: bool) -> None:
        if (len(self._building) == _MAX_EVENTS_PER_FRAME
                or 4 + self._building_size + len(record) > self.max_frame - MIN_FRAME):
            self._close_frame()
        self._building.append(record)
        self._building_size += len(record)
        if ends_command:
            self._ends |= 1 << (len(self._building) - 1)

    def _close_frame(self) -> None:
        self._tx_queue.append(self._ends.to_bytes(4, "little") + b"".join(self._building))
        self._building = []
        self._building_size = 0
        self._ends = 0

    def _send_queued(self, now: float) -> None:
        while self._tx_queue and len(self._unacked) < self.tx_window:
            frame = _TxFrame(self._tx_next, self._tx_queue.popleft(), now)
            self._tx_next = (self._tx_next + 1) & _U16
            self._unacked.append(frame)
            self._send(_DATA, frame.seq, frame.payload, self._lap)

    def _go_back(self, now: float) -> None:
        self._lap = (self._lap + 1) & 7
        for frame in self._unacked:
            frame.sent = now
            self.retransmits += 1
            self._send(_DATA, frame.seq, frame.payload, self._lap)

    def _nak(self, lap: int) -> None:
        if self._nak_sent != (self._rx_expected, lap):  # once per expected frame and lap
            self._nak_sent = (self._rx_expected, lap)
            self._send(_NAK, lap=lap)

    def _send(self, kind: FrameKind, seq: int = 0, payload: bytes = b"", lap: int = 0) -> None:
        credit = self._credit
        self._out += encode_frame(kind, self.epoch, seq, self._rx_expected, credit, payload,
                                  lap=lap)
        self.tx_frames += 1
        self._ack_owed = False
        self._credit_sent = credit


class DeviceServer:
    """Serves a :class:`DeviceEmulator` from a thread on a pseudo-terminal or a TCP socket.

    A stand-in for a board: ``url`` is what the serial transport opens (``serial:///dev/pts/N``
    or ``socket://127.0.0.1:PORT``), and the bytes are the device's. It answers one connection at
    a time and accepts a new one when the host closes its end (a socket) or at once (a pty). Touch
    the emulator only through :meth:`power_cycle` while the server runs, and freely after
    :meth:`stop`.
    """

    def __init__(self, emulator: DeviceEmulator, *, kind: str = "pty", host: str = "127.0.0.1",
                 port: int = 0) -> None:
        if kind not in ("pty", "tcp"):
            raise ValueError(f"kind must be 'pty' or 'tcp', not {kind!r}")
        self.emulator = emulator
        self.kind = kind
        self._stop = threading.Event()
        self._power_cycle = threading.Event()
        self._power_cycled = threading.Event()
        self._listener: socket.socket | None = None
        self._slave = -1
        self._master = -1
        if kind == "pty":
            self._master, self._slave = os.openpty()
            tty.setraw(self._master)
            tty.setraw(self._slave)
            os.set_blocking(self._master, False)
            self.url = f"serial://{os.ttyname(self._slave)}"
        else:
            self._listener = socket.create_server((host, port))
            self._listener.settimeout(0.05)
            self.url = f"socket://{host}:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, name=f"device-server {self.url}",
                                        daemon=True)
        self.error: BaseException | None = None

    def start(self) -> DeviceServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        if self._listener is not None:
            self._listener.close()
        if self.error is not None:
            raise RuntimeError(f"the device server at {self.url} failed") from self.error

    def power_cycle(self) -> None:
        """Reset the device from its own thread, and wait until it has."""
        self._power_cycled.clear()
        self._power_cycle.set()
        if not self._power_cycled.wait(timeout=5):
            raise RuntimeError(f"the device server at {self.url} did not reset")

    def __enter__(self) -> DeviceServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if self._listener is None:
                    self._serve_fd(self._master, functools.partial(os.read, self._master),
                                   functools.partial(os.write, self._master))
                    return
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.setblocking(False)
                    self._serve_fd(conn.fileno(), conn.recv, conn.send)
        except BaseException as e:  # reported by stop()
            self.error = e

    def _serve_fd(self, fd: int, read: Callable[[int], bytes],
                  write: Callable[[bytes], int]) -> None:
        device = self.emulator
        pending = b""
        while not self._stop.is_set():
            now = time.monotonic()
            deadline = device.next_deadline()
            timeout = 0.02 if deadline is None else min(0.02, max(0.0, deadline - now))
            readable, writable, _ = select.select([fd], [fd] if pending else [], [], timeout)
            now = time.monotonic()
            if self._power_cycle.is_set():
                self._power_cycle.clear()
                device.reset()
                self._power_cycled.set()
            if readable:
                try:
                    data = read(65536)
                except (BlockingIOError, InterruptedError):
                    data = None
                except OSError:  # a pty whose other side closed: wait for the next open
                    data = None
                    time.sleep(0.01)
                if data == b"" and self._listener is not None:
                    return  # the host closed the socket
                if data:
                    device.receive(data, now)
            device.poll(now)
            pending += device.transmit()
            if pending and (writable or not readable):
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    pending = pending[write(pending):]

