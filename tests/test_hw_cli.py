"""``ocee hw build / flash / report``: parsing and help, the messages when something is missing,
the programmer's command line, and the report read from a captured build (no place and route
here, except the one build marked slow); ``ocee hw synth --synth-only``: yosys's cell counts,
from a captured ``stat -json`` and from one real run on a tiny block."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ocee.host.cli import main
from ocee.hw import synthesis
from ocee.hw.synthesis import YosysFigures, parse_nextpnr_log, parse_yosys_stat

#: The end of a nextpnr-ecp5 log (the ULX3S loopback build), with the clock's post-route line
#: changed to a miss: the first Max frequency line (after placement) must not be the one read.
NEXTPNR_LOG = """\
Info: constraining clock net 'clk25_0__io' to 25.00 MHz
Info:     Derived frequency constraint of 30.0 MHz for net clk
Info: Device utilisation:
Info: \t          TRELLIS_IO:       9/    365     2%
Info: \t              DP16KD:       0/    208     0%
Info: \t             EHXPLLL:       1/      4    25%
Info: \t          TRELLIS_FF:     116/  83640     0%
Info: \t        TRELLIS_COMB:     249/  83640     0%
Info: \t        TRELLIS_RAMW:       2/  10455     0%
Info: Max frequency for clock '$glbnet$clk': 156.01 MHz (PASS at 30.00 MHz)
Info: Routing..
Warning: Max frequency for clock '$glbnet$clk': 28.70 MHz (FAIL at 30.00 MHz)
1 warning, 0 errors
"""

BUILD_INFO = {
    "board": "ulx3s-85f", "design": "loopback", "device": "LFE5U-85F-6", "clk_hz": 30_000_000,
    "osc_hz": 25_000_000, "baud": 3_000_000, "divisor": 10, "seed": 1, "seconds": 13.0,
    "finished": "2026-01-01T00:00:00", "bitstream": "build/ulx3s-85f-loopback/top.bit",
}


def _captured_build(directory: Path, log: str = NEXTPNR_LOG) -> Path:
    directory.mkdir(parents=True)
    (directory / "top.tim").write_text(log)
    (directory / "ocee-build.json").write_text(json.dumps(BUILD_INFO))
    return directory


# -- Parsing and help -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["build", "flash", "report"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["hw", command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--board", "--design", "ulx3s-85f", "ecpix5-85f", "icebreaker", "loopback"):
        assert option in out


def test_hw_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["hw", "--help"])
    out = capsys.readouterr().out
    for command in ("synth", "build", "flash", "report"):
        assert command in out


def test_unknown_board_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["hw", "build", "--board", "ulx3s"])
    assert e.value.code == 2
    assert "invalid choice: 'ulx3s'" in capsys.readouterr().err


def test_a_clock_the_pll_cannot_make_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "build", "--board", "ulx3s-85f", "--design", "loopback",
                 "--clk-mhz", "48"]) == 2
    assert "PLL cannot make 48 MHz exactly" in capsys.readouterr().err


def test_appliance_on_the_icebreaker_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hw", "build", "--board", "icebreaker", "--design", "appliance"]) == 1
    assert "the appliance does not fit an iCE40UP5K" in capsys.readouterr().err


def test_appliance_missing_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ocee.hw.appliance", None)  # import raises ImportError
    assert main(["hw", "build", "--board", "ulx3s-85f", "--design", "appliance",
                 "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert "the appliance design (ocee.hw.appliance) cannot be imported" in err
    assert "build --design loopback meanwhile" in err


# -- flash ----------------------------------------------------------------------------------------


@pytest.fixture
def bitstream(tmp_path: Path) -> Path:
    path = tmp_path / "top.bit"
    path.write_bytes(b"\xff\x00bitstream")
    return path


def _fake_tool(directory: Path, name: str, exit_code: int, message: str = "") -> Path:
    """A stand-in programmer that records its arguments."""
    directory.mkdir(exist_ok=True)
    tool = directory / name
    tool.write_text(f'#!/bin/sh\necho "$@" > "{directory}/args"\n'
                    f'{"echo " + repr(message) + " >&2" if message else ""}\nexit {exit_code}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return directory


def test_flash_without_openfpgaloader(bitstream: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert main(["hw", "flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream)]) == 1
    err = capsys.readouterr().err
    assert "openFPGALoader is not on PATH" in err
    assert "apt-get install openfpgaloader" in err and "libftdi1-2" in err


def test_flash_without_iceprog(bitstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("ICEPROG", raising=False)
    assert main(["hw", "flash", "--board", "icebreaker", "--bitstream", str(bitstream)]) == 1
    assert "apt-get install fpga-icestorm" in capsys.readouterr().err


def test_flash_before_building_says_which_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["hw", "flash", "--board", "ulx3s-85f", "--design", "loopback"]) == 1
    err = capsys.readouterr().err
    assert "build/ulx3s-85f-loopback/top.bit has not been built" in err
    assert "run `ocee hw build --board ulx3s-85f --design loopback` first" in err


def test_flash_runs_the_boards_programmer(bitstream: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tools = _fake_tool(tmp_path / "bin", "openFPGALoader", 0)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert main(["hw", "flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream)]) == 0
    assert (tools / "args").read_text().split() == ["-b", "ulx3s", str(bitstream)]
    assert main(["hw", "flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream),
                 "--permanent"]) == 0
    assert (tools / "args").read_text().split() == ["-b", "ulx3s", "-f", str(bitstream)]


def test_flash_with_no_board_connected_passes_the_tools_error_on(
        bitstream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capfd: pytest.CaptureFixture[str]) -> None:
    tools = _fake_tool(tmp_path / "bin", "openFPGALoader", 1, "unable to open ftdi device: -3")
    monkeypatch.setenv("OPENFPGALOADER", str(tools / "openFPGALoader"))
    assert main(["hw", "flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream)]) == 1
    err = capfd.readouterr().err
    assert "unable to open ftdi device: -3" in err
    assert "openFPGALoader failed (exit 1)" in err and "Is the ULX3S 85F connected" in err


# -- report ---------------------------------------------------------------------------------------


def test_report_without_a_build_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["hw", "report", "--board", "ecpix5-85f", "--design", "loopback"]) == 1
    assert ("no build in build/ecpix5-85f-loopback: run `ocee hw build --board ecpix5-85f "
            "--design loopback` first") in capsys.readouterr().err


def test_report_of_a_captured_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = _captured_build(tmp_path / "b")
    assert main(["hw", "report", "--out", str(build)]) == 1  # the post-route line misses 30 MHz
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert "| Fmax" in captured.out and "28.70 MHz: MISSES the 30 MHz constraint" in captured.out
    assert any(line.startswith("| LUT4") and "249 / 83,640" in line for line in lines)
    assert any(line.startswith("| FF") and "116 / 83,640" in line for line in lines)
    assert any(line.startswith("| block RAM (DP16KD)") and "0 / 208" in line for line in lines)
    assert "10 clocks per bit (+0.00%)" in captured.out
    assert any(line.startswith("| design ") and line.endswith(" loopback |") for line in lines)
    assert "timing: Fmax 28.70 MHz misses the 30 MHz clock" in captured.err


def test_report_of_a_build_that_met_timing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = _captured_build(tmp_path / "b", NEXTPNR_LOG.replace(
        "Warning: Max frequency for clock '$glbnet$clk': 28.70 MHz (FAIL",
        "Info: Max frequency for clock '$glbnet$clk': 216.03 MHz (PASS"))
    assert main(["hw", "report", "--out", str(build)]) == 0
    assert "216.03 MHz: meets the 30 MHz constraint" in capsys.readouterr().out


def test_nextpnr_log_parsing() -> None:
    figures = parse_nextpnr_log(NEXTPNR_LOG)
    assert (figures.fmax_mhz, figures.target_mhz, figures.passed) == (28.70, 30.0, False)
    assert figures.utilisation["TRELLIS_COMB"] == (249, 83640)
    assert figures.utilisation["EHXPLLL"] == (1, 4)
    with pytest.raises(ValueError, match="no 'Max frequency' line"):
        parse_nextpnr_log("Info: Device utilisation:\nERROR: failed to place\n")


# -- synth --synth-only ---------------------------------------------------------------------------

#: yosys 0.70's `stat -json` after `synth_ecp5 -nowidelut` of a 16-bit registered adder and a
#: 16 x 8 LUT RAM (the "creator" line shortened). nextpnr packs this into 50 TRELLIS_COMB: "Total
#: LUT4s: 44" before packing (16 logic, 16 carry, 8 RAM, 4 RAMW), and 6 at the carry chain's ends.
YOSYS_STAT = """\
{
   "creator": "Yosys 0.70 (git sha1 28ba3cb92, Release)",
   "invocation": "stat -json ",
   "modules": {
      "\\top": {
         "num_wires":         52,
         "num_cells":         42,
         "num_submodules":       0,
         "num_cells_by_type": {
            "CCU2C": 8,
            "LUT4": 16,
            "TRELLIS_DPR16X4": 2,
            "TRELLIS_FF": 16
         }
      }
   },
      "design": {
         "num_wires":         52,
         "num_cells":         42,
         "num_submodules":       0,
         "num_cells_by_type": {
            "CCU2C": 8,
            "LUT4": 16,
            "TRELLIS_DPR16X4": 2,
            "TRELLIS_FF": 16
         }
      }
}
"""


def test_yosys_stat_parsing() -> None:
    cells = parse_yosys_stat(YOSYS_STAT)
    assert cells == {"CCU2C": 8, "LUT4": 16, "TRELLIS_DPR16X4": 2, "TRELLIS_FF": 16}
    figures = YosysFigures("adder", cells, 1.0)
    assert (figures.lut4, figures.ccu2c, figures.lutram, figures.ffs, figures.brams) == \
        (16, 8, 2, 16, 0)
    assert figures.luts_as_nextpnr == 16 + 2 * 8 + 6 * 2  # nextpnr's 44 "Total LUT4s"
    assert figures.row() == "| adder | not placed/routed | 44 | 16 | 0 | 16 | 8 | 2 |"
    # Without a "design" section (no top module), the modules' cells are summed.
    two_modules = json.loads(YOSYS_STAT)
    del two_modules["design"]
    two_modules["modules"]["\\sub"] = {"num_cells_by_type": {"LUT4": 4, "DP16KD": 1}}
    assert parse_yosys_stat(json.dumps(two_modules)) == \
        {"CCU2C": 8, "LUT4": 20, "TRELLIS_DPR16X4": 2, "TRELLIS_FF": 16, "DP16KD": 1}
    for text in ("3. Printing statistics.\n\n=== top ===\n", "{}", "[]"):
        with pytest.raises(ValueError, match="not the output of yosys's `stat -json`"):
            parse_yosys_stat(text)


@pytest.mark.parametrize(("options", "refused"), [
    (["--freq", "90"], "--freq applies"),
    (["--speed", "8"], "--speed applies"),
    (["--nextpnr-args", "--placer heap"], "--nextpnr-args applies"),
    (["--require-target", "--freq", "90"], "--freq, --require-target apply"),
])
def test_synth_only_refuses_place_and_route_options(
        options: list[str], refused: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def no_tools(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tool ran")
    monkeypatch.setattr(synthesis, "synthesize_only", no_tools)
    monkeypatch.setattr(synthesis, "synthesize", no_tools)
    assert main(["hw", "synth", "keccak-f1600", "--synth-only", *options]) == 2
    err = capsys.readouterr().err
    assert f"--synth-only runs yosys alone: {refused} to place and route (nextpnr)" in err


def test_synth_without_synth_only_keeps_its_defaults(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--freq and --speed default to None so that --synth-only can tell them given: the full
    flow still gets 125 MHz and speed 6."""
    calls: list[dict[str, object]] = []

    def fake(component: object, block: str, **kwargs: object) -> synthesis.SynthesisReport:
        calls.append(kwargs)
        return synthesis.SynthesisReport(block, "LFE5U-85F-6", 130.0, 125.0, 10, 20, 0, 1.0)
    monkeypatch.setattr(synthesis, "synthesize", fake)
    monkeypatch.setitem(synthesis.BLOCKS, "keccak-f1600", lambda k, c, w: object())
    assert main(["hw", "synth", "keccak-f1600", "--slices-per-clock", "8"]) == 0
    assert (calls[0]["target_mhz"], calls[0]["speed"]) == (125.0, 6)
    assert "| keccak-f1600 w=8 | 130.0 | 10 | 20 | 0 |" in capsys.readouterr().out


def test_synth_only_runs_yosys_on_a_tiny_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The real yosys (a second or two) on an 8-bit registered adder in place of a Keccak core:
    one CCU2C per two bits, eight flip-flops, and no Fmax claimed."""
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Adder(wiring.Component):
        def __init__(self) -> None:
            super().__init__({"a": In(8), "b": In(8), "o": Out(8)})

        def elaborate(self, platform: object) -> Module:
            m = Module()
            m.d.sync += self.o.eq(self.a + self.b)
            return m

    monkeypatch.setitem(synthesis.BLOCKS, "keccak-f1600", lambda k, c, w: Adder())
    keep = tmp_path / "keep"
    assert main(["hw", "synth", "keccak-f1600", "--synth-only", "--keep", str(keep)]) == 0
    captured = capsys.readouterr()
    row = captured.out.splitlines()[-1]
    cells = parse_yosys_stat((keep / "stat.json").read_text())
    assert cells["TRELLIS_FF"] == 8 and cells["CCU2C"] == 4
    luts = cells.get("LUT4", 0) + 2 * cells["CCU2C"]
    assert row == f"| keccak-f1600 k=1 c=1 | not placed/routed | {luts} | 8 | 0 | " \
                  f"{cells.get('LUT4', 0)} | 4 | 0 |"
    assert "Fmax" in captured.out.splitlines()[0] and "MHz" not in row
    assert "no Fmax" in captured.err and not (keep / "nextpnr.log").exists()


# -- One real build -------------------------------------------------------------------------------


@pytest.mark.slow
def test_ulx3s_loopback_builds_and_meets_its_clock(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The whole flow with the YoWASP tools: about 15 s once their WebAssembly is compiled."""
    out = tmp_path / "ulx3s"
    assert main(["hw", "build", "--board", "ulx3s-85f", "--design", "loopback",
                 "--out", str(out)]) == 0
    assert (out / "top.bit").stat().st_size > 100_000
    figures = parse_nextpnr_log((out / "top.tim").read_text())
    assert figures.passed and figures.target_mhz == 30.0
    out_text = capsys.readouterr().out
    assert "meets the 30 MHz constraint" in out_text
    assert "| loopback: byte echo through a 16-byte FIFO |" in out_text
    script = (out / "build_top.sh").read_text()
    assert script.count("--placer") == 1 and "--placer static" in script  # ECP5's default
