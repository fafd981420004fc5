"""A regular (non-editable) install carries every package folder under its ocee.* name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_holds_every_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("ocee-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"ocee/{path.relative_to(ROOT).as_posix()}"
                for top in ("hw", "host", "sim") for path in (ROOT / top).rglob("*.py")}
    assert expected <= names, f"missing from the wheel: {sorted(expected - names)}"
    assert any(n.endswith("entry_points.txt") for n in names)
