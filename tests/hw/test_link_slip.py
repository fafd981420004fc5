# amaranth: UnusedElaboratable=no
"""SLIP encoder and decoder gateware against the host's framing (ocee.host.link.wire).

The decoder's golden model is :func:`decode_model`, itself checked against the host's
``FrameDecoder``: the frames the host accepts are exactly the bodies the gateware passes without
error that also pass the host's length and CRC checks.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from typing import Any

import pytest
from amaranth import Module
from amaranth.back import rtlil
from amaranth.lib import wiring
from streams import receive, send, simulate  # tests/hw/streams.py

from ocee.host.link.wire import MIN_FRAME, FrameDecoder, FrameKind, encode_frame
from ocee.hw.link.slip import END, ESC, ESC_END, ESC_ESC, SlipDecoder, SlipEncoder

Decoded = tuple[int, int, int]  # (data, end, error) of a DECODED_BYTE


def encode_model(body: bytes) -> bytes:
    """The wire bytes of one body, as the host writes them (encode_frame's escaping)."""
    return body.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(
        bytes([END]), bytes([ESC, ESC_END])) + bytes([END])


def decode_model(wire: bytes, max_body: int) -> list[Decoded]:
    """What the decoder emits for ``wire``: the rules of SlipDecoder's docstring."""
    out: list[Decoded] = []
    in_body = escaped = error = False
    count = 0

    def emit(byte: int) -> None:
        nonlocal count, error
        if count == max_body:
            error = True
        else:
            out.append((byte, 0, 0))
            count += 1

    for byte in wire:
        if byte == END:
            if in_body:
                out.append((0, 1, int(error or escaped)))
            in_body = escaped = error = False
            count = 0
            continue
        in_body = True
        if escaped:
            escaped = False
            if byte in (ESC_END, ESC_ESC):
                emit(END if byte == ESC_END else ESC)
            else:
                error = True
        elif byte == ESC:
            escaped = True
        else:
            emit(byte)
    return out


def bodies_of(items: list[Decoded]) -> list[tuple[bytes, bool]]:
    """Decoded items grouped into (body, error) pairs, one per end item."""
    bodies: list[tuple[bytes, bool]] = []
    body = bytearray()
    for data, end, error in items:
        if end:
            bodies.append((bytes(body), bool(error)))
            body = bytearray()
        else:
            body.append(data)
    return bodies


def special_heavy_bytes(rng: random.Random, n: int, p_special: float = 0.3) -> bytes:
    """Random bytes, with END, ESC and the escape codes much more common than on a real line."""
    specials = (END, ESC, ESC_END, ESC_ESC)
    return bytes(rng.choice(specials) if rng.random() < p_special else rng.randrange(256)
                 for _ in range(n))


def watchdog(done: list[bool], clocks: int = 20_000) -> Any:
    """A testbench that fails the simulation if ``done`` is still empty after ``clocks`` clocks,
    so that a block that stops short fails its test instead of hanging it."""
    async def bench(ctx: Any) -> None:
        for _ in range(clocks):
            if done:
                return
            await ctx.tick()
        raise AssertionError(f"the testbenches did not finish in {clocks} clocks")
    return bench


def run_decoder(wire: bytes, max_body: int, seed: int, idle: float = 0.0,
                ready: float = 1.0) -> list[Decoded]:
    dut = SlipDecoder(max_body)
    rng = random.Random(seed)
    expected = len(decode_model(wire, max_body))
    got: list[Decoded] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, wire, rng, idle=idle)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, dut.o, expected, got, rng, ready=ready,
                      convert=lambda x: (x.data, x.end, x.error))
        for _ in range(4):  # and nothing more comes
            await ctx.tick()
            assert not ctx.get(dut.o.valid)
        done.append(True)

    simulate(dut, producer, consumer, watchdog(done))
    return got


def run_encoder(bodies: Iterable[bytes], seed: int, idle: float = 0.0, ready: float = 1.0,
                end_after_reset: bool = True) -> bytes:
    bodies = list(bodies)
    dut = SlipEncoder(end_after_reset)
    rng = random.Random(seed)
    expected = b"".join(map(encode_model, bodies))
    if end_after_reset:
        expected = bytes([END]) + expected
    items = [{"data": b, "last": int(k == len(body) - 1)} for body in bodies
             for k, b in enumerate(body)]
    got: list[int] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, items, rng, idle=idle)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, dut.o, len(expected), got, rng, ready=ready)
        for _ in range(4):
            await ctx.tick()
            assert not ctx.get(dut.o.valid)
        done.append(True)

    simulate(dut, producer, consumer, watchdog(done))
    return bytes(got)


def random_frames(rng: random.Random, count: int) -> list[bytes]:
    """Wire bytes of ``count`` frames as the host sends them, with END-heavy payloads."""
    return [encode_frame(rng.choice(list(FrameKind)), rng.randrange(256), rng.randrange(1 << 16),
                         rng.randrange(1 << 16), rng.randrange(1 << 16),
                         special_heavy_bytes(rng, rng.randrange(0, 40)))
            for _ in range(count)]


# Validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_body", [0, -1, 2.0, True])
def test_decoder_validates_max_body(max_body: Any) -> None:
    message = f"max_body must be a positive integer, not {max_body!r}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SlipDecoder(max_body)


def test_blocks_convert_to_rtlil() -> None:
    for dut in (SlipDecoder(256), SlipEncoder(), SlipEncoder(end_after_reset=False)):
        assert "module" in rtlil.convert(dut, name="top")


def test_models_agree_with_the_host() -> None:
    rng = random.Random(0)
    for wire in random_frames(rng, 50):
        assert wire == encode_model(bodies_of(decode_model(wire, 4096))[0][0])


# Encoder ----------------------------------------------------------------------------------------


def test_encoder_sends_end_after_reset_then_the_host_framing() -> None:
    rng = random.Random(1)
    frames = random_frames(rng, 8)
    bodies = [bodies_of(decode_model(f, 4096))[0][0] for f in frames]
    assert run_encoder(bodies, seed=1) == bytes([END]) + b"".join(frames)


def test_encoder_without_end_after_reset() -> None:
    assert run_encoder([bytes([1, END, 2]), bytes([ESC])], seed=0, end_after_reset=False) == \
        bytes([1, ESC, ESC_END, 2, END, ESC, ESC_ESC, END])


@pytest.mark.parametrize(("idle", "ready"), [(0.0, 1.0), (0.5, 1.0), (0.0, 0.4), (0.3, 0.6)])
def test_encoder_random_bodies_with_gaps_and_backpressure(idle: float, ready: float) -> None:
    rng = random.Random(int(idle * 10 + ready * 100))
    bodies = [special_heavy_bytes(rng, rng.randrange(1, 30), 0.4) for _ in range(30)]
    bodies += [bytes([END]), bytes([ESC]), bytes([7])]  # one-byte bodies: escape then END
    assert run_encoder(bodies, seed=3, idle=idle, ready=ready) == \
        bytes([END]) + b"".join(map(encode_model, bodies))


def test_encoder_sends_one_wire_byte_per_clock() -> None:
    rng = random.Random(5)
    bodies = [special_heavy_bytes(rng, 40, 0.3) for _ in range(5)]
    expected = bytes([END]) + b"".join(map(encode_model, bodies))
    dut = SlipEncoder()
    items = [{"data": b, "last": int(k == len(body) - 1)} for body in bodies
             for k, b in enumerate(body)]
    clocks: list[int] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, dut.i, items, rng)

    async def consumer(ctx: Any) -> None:
        ctx.set(dut.o.ready, 1)
        got = bytearray()
        clock = 0
        while len(got) < len(expected):
            _, _, valid, byte = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            clock += 1
            assert clock <= 2 * len(expected), "the encoder stopped sending"
            if valid:
                got.append(byte)
                clocks.append(clock)
        assert bytes(got) == expected

    simulate(dut, producer, consumer)
    assert clocks == list(range(1, len(expected) + 1))  # a wire byte in every clock from reset


# Decoder ----------------------------------------------------------------------------------------


def test_decoder_passes_host_frames() -> None:
    rng = random.Random(2)
    frames = random_frames(rng, 20)
    wire = bytes([END, END]) + bytes([END]).join(frames)  # extra ENDs: empty bodies, no items
    got = run_decoder(wire, max_body=4096, seed=2)
    assert got == decode_model(wire, 4096)
    assert [error for _, error in bodies_of(got)] == [False] * len(frames)


@pytest.mark.parametrize(("wire", "bodies"), [
    (b"\xc0\xc0\xc0", []),  # empty bodies
    (b"\x01\xdb\xdc\xdb\xdd\xc0", [(b"\x01\xc0\xdb", False)]),
    (b"\xdb\xc0", [(b"", True)]),  # ESC then END
    (b"\x01\xdb\x02\x03\xc0\x04\xc0", [(b"\x01\x03", True), (b"\x04", False)]),
    (b"\xdb\xdb\xdd\xc0", [(b"\xdd", True)]),  # ESC ESC: the second is an invalid escape
    (b"123\xc0", [(b"123", False)]),
    (b"1234\xc0", [(b"123", True)]),  # one byte too many
    (b"12\xdb\xdc\xdb\xdd\xc0", [(b"12\xc0", True)]),
])
def test_decoder_edge_cases(wire: bytes, bodies: list[tuple[bytes, bool]]) -> None:
    assert bodies_of(decode_model(wire, 3)) == bodies
    assert bodies_of(run_decoder(wire, 3, seed=0)) == bodies


@pytest.mark.parametrize(("idle", "ready"), [(0.0, 1.0), (0.5, 1.0), (0.0, 0.3), (0.3, 0.6)])
def test_decoder_random_wire_with_gaps_and_backpressure(idle: float, ready: float) -> None:
    rng = random.Random(int(idle * 10 + ready * 100))
    wire = special_heavy_bytes(rng, 1500, 0.25)
    assert run_decoder(wire, 20, seed=4, idle=idle, ready=ready) == decode_model(wire, 20)


def test_decoder_agrees_with_the_host_frame_decoder() -> None:
    """Host frames, some damaged (bad escapes, merged frames, bit flips): the bodies the gateware
    passes without error and that have the length and CRC of a frame are the host's frames."""
    rng = random.Random(6)
    max_body = 48
    wire = bytearray()
    for frame in random_frames(rng, 120):
        damaged = bytearray(frame)
        fault = rng.randrange(5)
        if fault == 1:  # an invalid escape
            damaged.insert(rng.randrange(len(damaged)), ESC)
        elif fault == 2:  # a lost END: merged with the next frame
            del damaged[-1]
        elif fault == 3:
            damaged[rng.randrange(len(damaged) - 1)] ^= 1 << rng.randrange(8)
        wire += damaged
    wire += bytes([END])
    host = FrameDecoder(max_frame=max_body)
    host_bodies = [bytes([f.kind.value | f.poll << 4 | f.lap << 5, f.epoch])
                   + b"".join(n.to_bytes(2, "little") for n in (f.seq, f.ack, f.credit)) + f.payload
                   for f in host.feed(bytes(wire))]
    assert host.framing_errors > 0 and host.crc_errors > 0 and host_bodies
    got = bodies_of(run_decoder(bytes(wire), max_body, seed=6))
    # The CRC check stands in for the receiver behind the decoder.
    passed = [body[:-4] for body, error in got
              if not error and len(body) >= MIN_FRAME
              and FrameDecoder(max_frame=max_body).feed(encode_model(body))]
    assert passed == host_bodies


def test_decoder_takes_one_wire_byte_per_clock() -> None:
    rng = random.Random(7)
    wire = b"".join(random_frames(rng, 10))
    dut = SlipDecoder(4096)
    taken: list[int] = []

    async def producer(ctx: Any) -> None:
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        clock = 0
        for byte in wire:
            ctx.set(dut.i.payload, byte)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                clock += 1
                if ready:
                    taken.append(clock)
                    break
                assert clock < 2 * len(wire), "the decoder stopped taking bytes"
        ctx.set(dut.i.valid, 0)

    simulate(dut, producer)
    assert taken == list(range(1, len(wire) + 1))


def test_encoder_into_decoder() -> None:
    """The two blocks back to back: the decoder gives back the encoder's bodies."""
    rng = random.Random(8)
    bodies = [special_heavy_bytes(rng, rng.randrange(1, 25), 0.4) for _ in range(25)]
    top = Module()
    top.submodules.encoder = encoder = SlipEncoder()
    top.submodules.decoder = decoder = SlipDecoder(24)
    wiring.connect(top, encoder.o, decoder.i)
    items = [{"data": b, "last": int(k == len(body) - 1)} for body in bodies
             for k, b in enumerate(body)]
    got: list[Decoded] = []
    done: list[bool] = []

    async def producer(ctx: Any) -> None:
        await send(ctx, encoder.i, items, rng, idle=0.2)

    async def consumer(ctx: Any) -> None:
        await receive(ctx, decoder.o, sum(len(b) + 1 for b in bodies), got, rng, ready=0.5,
                      convert=lambda x: (x.data, x.end, x.error))
        done.append(True)

    simulate(top, producer, consumer, watchdog(done))
    assert bodies_of(got) == [(body, False) for body in bodies]
