"""The ``ocee`` command as a user runs it: output, exit statuses, error messages."""

from __future__ import annotations

import gc
import io
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ocee.host.cli import main
from ocee.host.flowgen import FlowParams, generate_flow
from ocee.host.jsonl import command_to_json, event_to_json
from ocee.hw.matching.config import MatchingConfig
from ocee.hw.matching.model import MatchingModel
from ocee.hw.protocol import EVENT_CODEC, Accepted, BatchClosed, CloseBatch, NewOrder

ROOT = Path(__file__).resolve().parent.parent


def _write_flow(path: Path, commands: int, seed: int = 3) -> list:
    flow = list(generate_flow(FlowParams(commands=commands, seed=seed, markets=2)))
    path.write_text("".join(json.dumps(command_to_json(c)) + "\n" for c in flow))
    return flow


def test_replay_prints_the_models_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = _write_flow(tmp_path / "flow.jsonl", 2_000)
    assert main(["replay", str(tmp_path / "flow.jsonl")]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model = MatchingModel()
    assert out == [event_to_json(e) for c in flow for e in model.execute(c)]
    assert out[-1]["ev"] == "batch" and out[-1]["root"].startswith("0x")


def test_replay_from_stdin_with_summary(monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['{"op":"new","market":0,"id":1,"side":"sell","price":10,"qty":4}',
             '{"op":"new","market":0,"id":2,"account":1,"side":"buy","price":10,"qty":3}',
             '{"op":"close_batch"}']
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["replay", "--summary", "-"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    fill = events[2]
    assert {k: fill[k] for k in ("ev", "market", "maker", "taker", "price", "qty")} == {
        "ev": "fill", "market": 0, "maker": 1, "taker": 2, "price": 10, "qty": 3}
    assert events[-1]["count"] == 3
    assert "fills          1, volume 3" in captured.err


def test_malformed_line_stops_with_line_and_field(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text('{"op":"new","market":0,"id":1,"side":"sell","price":10,"qty":4}\n'
                   '{"op":"query","market":0}\n'
                   '{"op":"new","market":0,"id":2,"side":"buy","price":10,"qty":"3"}\n'
                   '{"op":"close_batch"}\n')
    assert main(["replay", str(src)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"ocee replay: {src}: line 3, field 'qty': expected an "
                                    f"integer, got \"3\"")
    assert [json.loads(x)["ev"] for x in captured.out.splitlines()] == ["accepted", "book"]


def test_capacity_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "f.jsonl"
    src.write_text('{"op":"new","market":0,"id":40,"side":"sell","price":10,"qty":4}\n')
    assert main(["replay", "--orders", "16", "--ids", "32", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "malformed"
    assert main(["replay", "--levels", "1000", str(src)]) == 2
    assert "levels must be a power of two, not 1000" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_gen_is_deterministic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gen", "--commands", "500", "--seed", "9", "--markets", "2"]) == 0
    first = capsys.readouterr().out
    assert main(["gen", "--commands", "500", "--seed", "9", "--markets", "2"]) == 0
    assert capsys.readouterr().out == first
    lines = first.splitlines()
    assert len(lines) == 500 and json.loads(lines[-1]) == {"op": "close_batch"}
    assert main(["gen", "--commands", "10", "--markets", "0"]) == 2
    assert "markets must be between 1" in capsys.readouterr().err


def test_gen_sizes_a_flow_for_a_small_device_and_its_rare_share(capsys: pytest.CaptureFixture[str]) -> None:
    small = ["--markets", "2", "--levels", "64", "--orders", "64", "--ids", "256"]
    assert main(["gen", "--commands", "10", *small]) == 2
    assert "2 markets x depth 150 do not fit in 64 resting orders" in capsys.readouterr().err
    assert main(["gen", "--commands", "2000", *small, "--depth", "16", "--rare", "0.3"]) == 0
    ops = Counter(json.loads(line)["op"] for line in capsys.readouterr().out.splitlines())
    assert ops["mass_cancel"] > 60  # 0.3 x 0.25 of 2,000: about 150; about 5 at the default share
    assert main(["gen", "--commands", "10", "--rare", "2"]) == 2
    assert "rare must be a share between 0 and 1, not 2.0" in capsys.readouterr().err


def test_demo_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--link", "model://", "--commands", "3000", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "commands       3,000" in out and "batches        3" in out and "commands/s" in out
    assert "latency        p50 " in out and "p99.9 " in out
    assert "device counts  3,000 commands" in out
    assert "every event of 3,000 commands and all 3 batch roots agree" in out


def test_demo_reports_a_device_that_differs(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A device whose batch roots are wrong (the link's shadow does not hash, so only the demo's
    own reference model can see it) fails the demo with exit status 1."""
    from ocee.host.link.session import Link

    complete = Link._batch_closed

    def wrong_root(self: Link, event: BatchClosed) -> BatchClosed:
        event = complete(self, event)
        return BatchClosed(event.market, event.seq, event.batch, event.count, bytes(32))

    monkeypatch.setattr(Link, "_batch_closed", wrong_root)
    assert main(["demo", "--link", "model://", "--commands", "2500", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: 3 commands differ from the reference model; the first: command 1001" in out


def test_demo_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--link", "nosuch://x", "--quiet"]) == 1
    assert "cannot open nosuch://x: unknown link URL scheme" in capsys.readouterr().err
    assert main(["demo", "--link", "model://?markets=2", "--flow-markets", "4", "--quiet"]) == 2
    assert "markets must be between 1 and the device's 2" in capsys.readouterr().err


def test_bench_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "model", "--commands", "2000", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| matching only |" in out and "| matching + event hashing |" in out


def test_vectors_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    committed = ROOT / "tests/vectors/batches.json"
    assert main(["vectors", "--check", "-o", str(committed)]) == 0
    stale = tmp_path / "stale.json"
    stale.write_text(committed.read_text().replace('"count": 15', '"count": 14', 1))
    assert main(["vectors", "--check", "-o", str(stale)]) == 1
    assert "differs" in capsys.readouterr().err
    fresh = tmp_path / "sub" / "v.json"
    assert main(["vectors", "-o", str(fresh)]) == 0
    assert fresh.read_text() == committed.read_text()


def test_console_script_help() -> None:
    exe = shutil.which("ocee", path=str(Path(sys.executable).parent))
    assert exe is not None, "the ocee console script is not installed"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for sub in ("replay", "gen", "demo", "bench", "vectors"):
        assert sub in result.stdout
    result = subprocess.run([exe, "replay"], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "FILE" in result.stderr


def test_bench_hashing_counts_clocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "hashing", "--commands", "40", "--rounds-per-cycle", "3",
                 "--contexts", "1", "2", "--shared"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[-4:]
    figures = [[c.strip().replace(",", "") for c in row.strip("|").split("|")] for row in rows]
    (keccak1, p1, _, events1, cycles1, per_event1), shared1, (keccak2, _, _, events2, _,
                                                            per_event2), shared2 = figures
    assert (keccak1, keccak2, p1) == ("3 round(s)/clock x 1 context(s)",
                                      "3 round(s)/clock x 2 context(s)", "two")
    assert int(events1) == int(events2) > 40
    # Each event is at least one Keccak permutation (8 clocks at 3 rounds per clock) in line;
    # two contexts overlap two permutations, so the stage takes fewer clocks per event.
    assert 8 < float(per_event1) == pytest.approx(int(cycles1) / int(events1), abs=0.01)
    assert 4 < float(per_event2) < float(per_event1)
    # One shared permutation does a leaf and (on average) a pair hash per event: about twice.
    assert shared1[1] == shared2[1] == "one shared"
    assert 1.6 * float(per_event1) < float(shared1[5]) < 2.4 * float(per_event1)
    assert float(per_event2) < float(shared2[5])


def test_bench_hashing_measures_the_slice_serial_core(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "hashing", "--commands", "30", "--slices-per-clock", "32",
                 "--shared"]) == 0
    out = capsys.readouterr().out
    assert "| 32 | 50 | 51 |" in out  # 25 steps of 2 clocks, and the clock it hands on in
    rows = out.strip().splitlines()[-2:]
    (_, own, _, _, _, per_event), (keccak, shared, _, _, _, per_event_shared) = (
        [c.strip() for c in row.strip("|").split("|")] for row in rows)
    assert (keccak, own, shared) == ("32 slices/clock", "two", "one shared")
    # A permutation per event each in line, two per event on one shared core.
    assert 51 < float(per_event) < 1.2 * 51 < 1.6 * 51 < float(per_event_shared) < 2.4 * 51


#: A device small enough that the engine's init (one clock per id) takes a second in pysim.
TINY_CORE = ["--markets", "2", "--levels", "64", "--orders", "512", "--ids", "1024",
             "--flow-markets", "1", "--batch-every", "10"]


def test_bench_core_counts_the_compositions_clocks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "core", "--commands", "40", *TINY_CORE, "--rounds-per-cycle", "3",
                 "--mhz", "30", "-q"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[-2:]
    (alone, core) = ([c.strip().replace(",", "") for c in row.strip("|").split("|")] for row in rows)
    config = MatchingConfig(markets=2, levels=64, orders=512, ids=1024)
    model = MatchingModel(config)
    events = [e for c in generate_flow(FlowParams(commands=40, seed=1, markets=1, batch_every=10,
                                                  config=config)) for e in model.execute(c)]
    batches = sum(isinstance(e, BatchClosed) for e in events)
    assert batches >= 4
    assert alone[0] == "the matching engine alone" and alone[8] == "—"
    assert core[:3] == ["3 round(s)/clock x 1 context(s)", "two", "8"]
    for row in (alone, core):
        commands, count, clocks, per_command, per_event, per_second = (
            int(row[3]), int(row[4]), int(row[5]), float(row[6]), float(row[7]), float(row[9]))
        assert (commands, count) == (40, len(events))
        assert per_command == pytest.approx(clocks / commands, abs=0.01)
        assert per_event == pytest.approx(clocks / count, abs=0.01)
        assert per_second == pytest.approx(30e6 * count / clocks, rel=1e-3)
    # Every event is a leaf hashed in the one leaf ring, 8 clocks each at 3 rounds per clock,
    # so the core cannot beat that; the engine alone is faster and the stage held it back.
    clocks_alone, clocks_core, held = int(alone[5]), int(core[5]), int(core[8])
    assert 8 * len(events) <= clocks_core and clocks_alone < clocks_core
    assert 0 < held < clocks_core and clocks_core - held <= 2 * clocks_alone


def test_bench_core_by_kind_says_where_the_engines_clocks_go(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--by-kind: the engine alone only (no hashing stage named, --boards not given), then a
    table of its clocks by kind of command whose rows add up, and whose counts are the model's."""
    assert main(["bench", "core", "--commands", "60", *TINY_CORE, "--by-kind", "-q"]) == 0
    out = capsys.readouterr().out
    tables = [[[c.strip() for c in line.strip("|").split("|")]
               for line in block.splitlines() if line.startswith("| ") and "---" not in line]
              for block in out.split("\n\n")]
    throughput, by_kind = (t for t in tables if t)
    assert len(throughput) == 2 and throughput[1][0] == "the matching engine alone"
    engine_clocks = int(throughput[1][5].replace(",", ""))
    rows = {row[0]: (int(row[1].replace(",", "")), int(row[2].replace(",", "")), float(row[4]))
            for row in by_kind[1:]}
    total = rows.pop("all")
    assert total[0] == 59 == sum(n for n, _, _ in rows.values())  # the last command left out
    assert total[1] == sum(c for _, c, _ in rows.values()) < engine_clocks
    for n, clocks, per in rows.values():
        assert per == pytest.approx(clocks / n, abs=0.01) and per >= 1
    config = MatchingConfig(markets=2, levels=64, orders=512, ids=1024)
    model = MatchingModel(config)
    flow = list(generate_flow(FlowParams(commands=60, seed=1, markets=1, batch_every=10,
                                         config=config)))[:-1]
    outcomes = [model.execute(c) for c in flow]
    resting = sum(1 for c, events in zip(flow, outcomes, strict=True)
                  if isinstance(c, NewOrder) and len(events) == 1
                  and isinstance(events[0], Accepted))
    assert rows["new order, rests"][0] == resting > 0
    assert rows["close batch"][0] == sum(isinstance(c, CloseBatch) for c in flow)


def test_bench_core_fails_on_a_wrong_root(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    from ocee.hw import engine_core_bench

    expected_events = engine_core_bench.expected_events

    def one_root_wrong(records: list[bytes], config: MatchingConfig,
                       hashed: bool) -> list[engine_core_bench.ExpectedEvent]:
        """The model's events, with one bit of the first batch root flipped (the core's only)."""
        events = expected_events(records, config, hashed)
        at = next(i for i, e in enumerate(events) if isinstance(e.event, BatchClosed))
        if hashed:
            root = events[at].event.root
            event = dataclasses.replace(events[at].event, root=bytes([root[0] ^ 1]) + root[1:])
            events[at] = engine_core_bench.ExpectedEvent(
                events[at].command, event, int.from_bytes(EVENT_CODEC.pack(event), "little"))
        return events

    monkeypatch.setattr(engine_core_bench, "expected_events", one_root_wrong)
    assert main(["bench", "core", "--commands", "12", *TINY_CORE, "--rounds-per-cycle", "3",
                 "-q"]) == 1
    captured = capsys.readouterr()
    assert "| the matching engine alone |" in captured.out  # it ran, and agreed with the model
    assert "ocee bench core: the engine core (3 round(s)/clock x 1 context(s), a permutation " \
           "each, queues of 8): event " in captured.err
    assert "differs from the model's" in captured.err and "BatchClosed" in captured.err


@pytest.mark.parametrize(("arguments", "message"), [
    (["--rounds-per-cycle", "5"], "rounds_per_cycle must be one of (1, 2, 3, 4, 6, 8, 12, 24)"),
    (["--rounds-per-cycle", "2", "--contexts", "5"], "contexts must divide the 12 steps"),
    (["--slices-per-clock", "3"], "slices_per_clock must be one of"),
    (["--slices-per-clock", "8", "--queue-depth", "1"], "queue_depth must be at least 2, not 1"),
    (["--commands", "0"], "--commands must be at least 1, not 0"),
    (["--mhz", "0"], "--mhz takes clock frequencies above 0"),
])
def test_bench_core_refuses_bad_arguments_before_running(
        arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "core", *TINY_CORE, *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ocee bench: ") and message in err


@pytest.mark.filterwarnings("ignore:.*created but never used")  # the block that failed validation
def test_hw_synth_validates_before_running_tools(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "synth", "keccak-f1600", "--rounds-per-cycle", "5"]) == 2
    assert "rounds_per_cycle must be one of (1, 2, 3, 4, 6, 8, 12, 24)" in capsys.readouterr().err
    assert main(["hw", "synth", "keccak-f1600", "--rounds-per-cycle", "2", "--contexts", "5"]) == 2
    assert "contexts must divide the 12 steps" in capsys.readouterr().err
    gc.collect()  # the half-built block warns when collected: let it happen under the filter


def test_replay_through_the_link_layer_equals_the_model(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--link model://``: the same commands through framing, sessions and the device emulator."""
    src = tmp_path / "flow.jsonl"
    assert main(["gen", "--commands", "1500", "--seed", "4", "--markets", "2", "-o", str(src)]) == 0
    capsys.readouterr()
    assert main(["replay", str(src)]) == 0
    from_model = capsys.readouterr().out
    assert main(["replay", "--link", "model://", str(src)]) == 0
    assert capsys.readouterr().out == from_model
    assert main(["replay", "--link", "nowhere://", str(src)]) == 1
    assert "cannot open nowhere://" in capsys.readouterr().err
