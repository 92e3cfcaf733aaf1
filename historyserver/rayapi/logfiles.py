"""What Ray 2.60's log API does to a node's log folder, done to the archived names and bytes instead:
the glob the agent lists with (`Path(logs).glob`), the grouping `LogsManager._categorize_log_files` answers,
the tail of the last N lines (`find_start_offset_last_n_lines_from_offset`) and the ANSI filter."""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

DEFAULT_LINES = 1000  # ray.util.state.common.DEFAULT_LOG_LIMIT; the agent also reads 0 as this
# state_head.ANSI_ESC_PATTERN: colour codes (ESC [ digits and semicolons m).
ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;]+m")
WORKER_FILE = re.compile(r".*worker-([0-9a-f]+)-([0-9a-f]+)-(\d+).(out|err)")  # log_manager.WORKER_LOG_PATTERN
LINE = re.compile(rb"[^\n]*\n|[^\n]+$")  # a line with its newline, or the unterminated last one
PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")


class UnsafePath(ValueError):
    """A file name or glob that could reach outside the session's log folder: refused, never looked up."""


def checked_relative(path: str, what: str) -> str:
    """`path` when it names something inside the log folder. The archive is keyed by names, so nothing
    here touches a disk; refusing climbing names anyway keeps this API's contract what Ray's agent
    promises (a relative path without '..'), and a name still percent-encoded after the URL was decoded
    is a second encoding meant to slip past such a check."""
    if not path:
        raise UnsafePath(f"Invalid {what}: it is empty.")
    if "\0" in path or "\\" in path or PERCENT_ENCODED.search(path):
        raise UnsafePath(f"Invalid {what}: {path!r}. It must be a plain relative path.")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise UnsafePath(f"Invalid {what}: {path}. It must be a relative path and cannot contain '..'.")
    return path


def entries(files: Iterable[str]) -> set[str]:
    """Every file and every folder holding one, folders with a trailing slash (as the agent lists them)."""
    found: set[str] = set()
    for name in files:
        found.add(name)
        parts = name.split("/")
        found.update("/".join(parts[:depth]) + "/" for depth in range(1, len(parts)))
    return found


def _matches(pattern: list[str], parts: list[str]) -> bool:
    """pathlib's glob on one path: `*`, `?` and `[...]` within a segment, `**` across any number of them."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_matches(pattern[1:], parts[skip:]) for skip in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pattern[0]) and _matches(pattern[1:], parts[1:])


def glob(files: Iterable[str], pattern: str) -> list[str]:
    """The entries of the log folder `Path(logs).glob(pattern)` gives, relative, folders ending in "/"."""
    checked_relative(pattern, "glob filter")
    segments = [segment for segment in pattern.split("/") if segment not in ("", ".")]
    return sorted(entry for entry in entries(files) if _matches(segments, entry.rstrip("/").split("/")))


def categorize(names: Iterable[str]) -> dict[str, list[str]]:
    """`LogsManager._categorize_log_files`, test for test and in Ray's order of tests."""
    result: dict[str, list[str]] = {}
    for name in names:
        if "worker" in name and name.endswith(".out"):
            group = "worker_out"
        elif "worker" in name and name.endswith(".err"):
            group = "worker_err"
        elif "core-worker" in name and name.endswith(".log"):
            group = "core_worker"
        elif "core-driver" in name and name.endswith(".log"):
            group = "driver"
        elif "raylet." in name:
            group = "raylet"
        elif "gcs_server." in name:
            group = "gcs_server"
        elif "log_monitor" in name:
            group = "internal"
        elif "monitor" in name:
            group = "autoscaler"
        elif "agent." in name:
            group = "agent"
        elif "dashboard." in name:
            group = "dashboard"
        else:
            group = "internal"
        result.setdefault(group, []).append(name)
    return result


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of `data` (-1: all of it), an unterminated last line counting as one, as the
    agent's tail does."""
    if count < 0:
        return data
    lines = LINE.findall(data)
    return b"".join(lines[-count:]) if count else b""


def without_ansi(data: bytes) -> bytes:
    return ANSI_ESCAPE.sub(b"", data)


def worker_file(names: Iterable[str], pid: int, suffix: str) -> str | None:
    """`_resolve_worker_file` by pid: the worker-<id>-<job>-<pid>.<suffix> file of that process."""
    for name in sorted(names):
        found = WORKER_FILE.match(name)
        if found and int(found.group(3)) == pid and name.endswith("." + suffix):
            return name
    return None
