"""What ships is in the wheel: the server's pages need their templates and assets beside the code."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_carries_every_template_and_asset(tmp_path: Path) -> None:
    # From a fresh copy of the tree: a checkout's own build leftovers (egg-info) would hide a file the
    # packaging rules leave out.
    source = tmp_path / "source"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(source)], check=True, timeout=120)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(tmp_path),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("ray_history-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"ui/{path.relative_to(source / 'ui').as_posix()}" for path in (source / "ui").rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".md"}  # fmt: skip
    assert expected - names == set(), f"left out of the wheel: {sorted(expected - names)}"
    assert {"ui/templates/base.html", "ui/static/app.css", "historyserver/views/common.py"} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)
