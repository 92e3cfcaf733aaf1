"""A fresh clone, with nothing beside it, has every file its tests read: what a new contributor gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The tests that read the Ray captures, each kind of capture at least once.
FIXTURE_READERS = [
    "tests/test_events.py",
    "tests/test_reconstruct.py",
    "tests/test_tailer.py",
    "tests/test_polling.py",
    "tests/test_logs.py",
    "tests/test_collector.py::test_every_posted_event_is_archived_once_and_rebuilds_exactly",
    "tests/test_collector.py::test_snake_case_posts_are_accepted_too",
    "tests/test_archive_synth.py::test_parts_are_keyed_and_typed_as_the_collector_leaves_them",
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # The clone's own packages, not the checkout's, come first on the path (`python -m` puts cwd first).
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RAY_HISTORY_FIXTURES")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".git").exists():
        pytest.fail("the tests run from a git checkout: this test clones it")
    target = tmp_path_factory.mktemp("fresh") / "ray-history"
    done = _run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target)], cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert [path.name for path in target.parent.iterdir()] == ["ray-history"]  # nothing beside the clone
    return target


def _collected(output: str) -> int:
    last = [line for line in output.splitlines() if "collected" in line][-1]
    return int(last.split()[0])


def test_a_fresh_clone_collects_the_whole_suite_without_a_missing_file(clone: Path) -> None:
    here = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=REPO)
    there = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], cwd=clone)
    assert there.returncode == 0, there.stdout[-3000:] + there.stderr[-3000:]
    # Only committed files count: the clone collects what this checkout collects (when its tree is clean).
    assert _collected(there.stdout) > 400
    if not _run(["git", "status", "--porcelain", "--", "tests"], cwd=REPO).stdout.strip():
        assert _collected(there.stdout) == _collected(here.stdout)


def test_the_tests_that_read_the_captures_pass_in_a_fresh_clone(clone: Path) -> None:
    done = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not ray", *FIXTURE_READERS],
                cwd=clone)  # fmt: skip
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "passed" in done.stdout.splitlines()[-1]
    assert "FileNotFoundError" not in done.stdout


def test_nothing_committed_reads_outside_the_repository(clone: Path) -> None:
    pattern = r"\.\./shared|shared/fixtures|PERFORMANCE-NOTES|DESIGN\.md"
    tracked = _run(["git", "grep", "-lE", pattern, "--", ":!tests/test_clean_clone.py"], cwd=clone)
    assert tracked.stdout.split() == [], f"files citing material outside the repository: {tracked.stdout}"
