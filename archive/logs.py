"""Log files in the archive, both ways: a chunk of a file turned into line rows (schema.LOGS), as the
collector ships them, and a file's exact bytes rebuilt from its rows, as the server serves them.

A chunk's lines are found with numpy, and the text column is built straight from the chunk's bytes
with the newlines taken out, so shipping runs at the speed of zstd rather than of the interpreter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import LOGS

_ROTATION = re.compile(r"\.\d+$")
_HEX8 = "[0-9a-f]{8}"
_HEX56 = "[0-9a-f]{56}"
_NAME_PATTERNS = (
    re.compile(rf"^worker-(?P<worker_id>{_HEX56})-(?P<job_id>{_HEX8})-(?P<pid>\d+)\.(?:out|err)$"),
    re.compile(rf"^python-core-worker-(?P<worker_id>{_HEX56})_(?P<pid>\d+)\.log$"),
    re.compile(rf"^python-core-driver-(?P<worker_id>(?P<job_id>{_HEX8})f{{48}})_(?P<pid>\d+)\.log$"),
    re.compile(r"^job-driver-(?P<submission_id>.+)\.log$"),
    re.compile(r"^supervisor-(?P<submission_id>.+)\.log$"),
    re.compile(rf"^runtime_env_setup-(?P<job_id>{_HEX8})\.log$"),
)
_NO_JOB = "ffffffff"  # a worker started before any job claimed it


@dataclass(frozen=True)
class FileIdentity:
    """What a log file's name says about whose output it holds."""

    job_id: str | None = None
    worker_id: str | None = None
    pid: int | None = None
    submission_id: str | None = None
    # Worker .out/.err files carry Ray's `:task_name:` / `:actor_name:` / `:job_id:` markers.
    has_markers: bool = False


def identify(file_name: str) -> FileIdentity:
    """Parse Ray's log file names; a rotated file (`.1`, `.2`) is named like the file it was."""
    name = _ROTATION.sub("", file_name.rsplit("/", 1)[-1])
    for pattern in _NAME_PATTERNS:
        match = pattern.match(name)
        if match:
            found = match.groupdict()
            job = found.get("job_id")
            return FileIdentity(
                job_id=None if job in (None, _NO_JOB) else job,
                worker_id=found.get("worker_id"),
                pid=int(found["pid"]) if found.get("pid") else None,
                submission_id=found.get("submission_id"),
                has_markers=pattern is _NAME_PATTERNS[0],
            )
    return FileIdentity()


@dataclass
class Attribution:
    """Whose output the next line is: carried from one chunk of a file to the next."""

    job_id: str | None = None
    task_name: str | None = None
    actor_name: str | None = None
    partial: str | None = None  # the start of an unfinished last line that may be a marker


@dataclass(frozen=True)
class FileChunk:
    """Bytes read from one file, and where they sit in it."""

    node: str
    node_id: str | None
    file: str
    file_id: str
    offset: int
    line_number: int  # the line the chunk's first byte belongs to
    data: bytes
    read_at_ns: int


def chunk_rows(chunk: FileChunk, identity: FileIdentity, attribution: Attribution) -> tuple[pa.Table, int]:
    """The chunk as rows, and the line number of its next byte. Updates `attribution` past the chunk."""
    data = chunk.data
    newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    complete = len(newlines)
    tail = len(data) > (int(newlines[-1]) + 1 if complete else 0)
    count = complete + int(tail)
    starts = np.empty(count, dtype=np.int64)
    if count:
        starts[0] = 0
        starts[1:] = newlines[: count - 1] + 1
    # Line i is preceded by i newlines: with them taken out, its text starts at starts[i] - i.
    stripped = data.replace(b"\n", b"")
    offsets = np.empty(count + 1, dtype=np.int32)
    offsets[:count] = starts - np.arange(count)
    offsets[count] = len(stripped)
    text, raw = _text_columns(count, offsets, stripped)
    newline = np.ones(count, dtype=bool)
    if tail:
        newline[-1] = False
    columns = {
        "node": pa.repeat(chunk.node, count),
        "node_id": pa.repeat(pa.scalar(chunk.node_id, pa.string()), count),
        "file": pa.repeat(chunk.file, count),
        "file_id": pa.repeat(chunk.file_id, count),
        "offset": pa.array(starts + chunk.offset),
        "line_number": pa.array(np.arange(chunk.line_number, chunk.line_number + count, dtype=np.int64)),
        "text": text,
        "raw": raw,
        "newline": pa.array(newline),
        "job_id": pa.repeat(pa.scalar(attribution.job_id or identity.job_id, pa.string()), count),
        "worker_id": pa.repeat(pa.scalar(identity.worker_id, pa.string()), count),
        "pid": pa.repeat(pa.scalar(identity.pid, pa.int32()), count),
        "submission_id": pa.repeat(pa.scalar(identity.submission_id, pa.string()), count),
        "task_name": pa.repeat(pa.scalar(attribution.task_name, pa.string()), count),
        "actor_name": pa.repeat(pa.scalar(attribution.actor_name, pa.string()), count),
        "read_at": pa.repeat(pa.scalar(chunk.read_at_ns, pa.timestamp("ns", tz="UTC")), count),
        "omitted_bytes": pa.nulls(count, pa.int64()),
        "omitted_reason": pa.nulls(count, pa.string()),
    }
    if identity.has_markers and count:
        _attribute(columns, text, tail, attribution)
    return pa.table(columns, schema=LOGS), chunk.line_number + complete


def marker_row(chunk: FileChunk, omitted_bytes: int | None = None, reason: str | None = None) -> pa.Table:
    """A row with no text: `omitted_bytes` left out from the chunk's offset on and why, or, with
    neither, an empty piece that records that the file exists (an empty file is one such row)."""
    identity = identify(chunk.file)
    row = {
        "node": chunk.node, "node_id": chunk.node_id, "file": chunk.file, "file_id": chunk.file_id,
        "offset": chunk.offset, "line_number": chunk.line_number, "text": "", "raw": None, "newline": False,
        "job_id": identity.job_id, "worker_id": identity.worker_id, "pid": identity.pid,
        "submission_id": identity.submission_id, "task_name": None, "actor_name": None,
        "read_at": chunk.read_at_ns, "omitted_bytes": omitted_bytes, "omitted_reason": reason,
    }  # fmt: skip
    return pa.Table.from_pylist([row], schema=LOGS)


def _text_columns(count: int, offsets: np.ndarray, stripped: bytes) -> tuple[pa.Array, pa.Array]:
    """The text column, and the raw column that is set only where a line is not valid UTF-8."""
    text = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(stripped))
    if stripped.isascii():
        return text, pa.nulls(count, pa.binary())
    try:
        text.validate(full=True)
        return text, pa.nulls(count, pa.binary())
    except pa.ArrowInvalid:
        pass
    lines = pa.BinaryArray.from_buffers(pa.binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(stripped)])
    texts: list[str] = []
    raws: list[bytes | None] = []
    for value in lines.to_pylist():
        try:
            texts.append(value.decode("utf-8"))
            raws.append(None)
        except UnicodeDecodeError:
            texts.append(value.decode("utf-8", "replace"))
            raws.append(value)
    return pa.array(texts, pa.string()), pa.array(raws, pa.binary())


def _attribute(columns: dict[str, pa.Array], text: pa.Array, tail: bool, attribution: Attribution) -> None:
    """Fill job, task and actor from the markers Ray prints before each task's or actor's output.

    In bulk: each line takes the value of the last marker at or before it (a running count of
    markers indexes the values), and a task marker clears the actor and the other way round.
    """
    count = len(text)
    detect = text
    if attribution.partial is not None:
        # The start of this first line was shipped earlier, without its end: judge the whole line.
        detect = pa.concat_arrays([pa.array([attribution.partial + text[0].as_py()], pa.string()), text[1:]])
    last = detect[count - 1].as_py() if tail else None
    # An unfinished last line is judged once whole, so its start is carried to the next chunk.
    attribution.partial = last if last is not None and last.startswith(":") and len(last) <= 256 else None
    whole = detect.slice(0, count - int(tail))
    candidates = np.flatnonzero(pc.starts_with(whole, ":").to_numpy(zero_copy_only=False))
    if not len(candidates):
        return
    lines = whole.take(pa.array(candidates))
    job_at, jobs = _markers(lines, candidates, ":job_id:")
    task_at, tasks = _markers(lines, candidates, ":task_name:")
    actor_at, actors = _markers(lines, candidates, ":actor_name:")
    job_values = pa.concat_arrays([pa.array([attribution.job_id or columns["job_id"][0].as_py()], pa.string()), jobs])
    job_index = _last_mark(job_at, count)
    columns["job_id"] = job_values.take(pa.array(job_index))
    # Task and actor markers share one running count: a marker of either kind replaces the other.
    owner_at = np.concatenate([task_at, actor_at])
    order = np.argsort(owner_at, kind="stable")
    owner_tasks = pa.concat_arrays(
        [pa.array([attribution.task_name], pa.string()), tasks, pa.nulls(len(actors), pa.string())]
    )
    owner_actors = pa.concat_arrays(
        [pa.array([attribution.actor_name], pa.string()), pa.nulls(len(tasks), pa.string()), actors]
    )
    ranked = np.concatenate([[0], order + 1])  # value index of the i-th owner marker in line order
    which = pa.array(ranked[_last_mark(owner_at[order], count)])
    columns["task_name"] = owner_tasks.take(which)
    columns["actor_name"] = owner_actors.take(which)
    attribution.job_id = columns["job_id"][count - 1].as_py()
    attribution.task_name = columns["task_name"][count - 1].as_py()
    attribution.actor_name = columns["actor_name"][count - 1].as_py()


def _markers(lines: pa.Array, positions: np.ndarray, prefix: str) -> tuple[np.ndarray, pa.Array]:
    """Line positions of the markers with this prefix, and the values they name."""
    hits = pc.starts_with(lines, prefix).to_numpy(zero_copy_only=False)
    values = pc.utf8_trim_whitespace(pc.utf8_slice_codeunits(lines.filter(pa.array(hits)), len(prefix)))
    return positions[hits], values


def _last_mark(marked_at: np.ndarray, count: int) -> np.ndarray:
    """For each line, how many of the (sorted) marker positions are at or before it: 0 for none."""
    marks = np.zeros(count, dtype=np.int64)
    np.add.at(marks, marked_at, 1)
    return np.cumsum(marks)


# --- reading back ------------------------------------------------------------------------------


def rebuild_file(rows: pa.Table) -> bytes:
    """The bytes of one file (the rows of one file_id), in offset order; left-out ranges stay out."""
    rows = rows.filter(pc.is_null(rows["omitted_bytes"])).sort_by("offset")
    texts = rows["text"].to_pylist()
    raws = rows["raw"].to_pylist()
    newlines = rows["newline"].to_pylist()
    pieces: list[bytes] = []
    for text, raw, newline in zip(texts, raws, newlines, strict=True):
        pieces.append(raw if raw is not None else text.encode())
        if newline:
            pieces.append(b"\n")
    return b"".join(pieces)


def file_ids_by_name(rows: pa.Table) -> dict[str, str]:
    """Each file name's file id as the node has it now: a rotated file is known by its latest name,
    and where a name was truncated or re-created, its newest generation wins."""
    latest: dict[str, tuple[tuple[int, int], str]] = {}  # file_id -> ((read_at, offset), name)
    first_seen: dict[str, int] = {}
    columns = rows.select(["file_id", "file", "offset"]).to_pydict()
    read_ats = rows["read_at"].cast(pa.int64()).to_pylist()
    for file_id, name, read_at, offset in zip(
        columns["file_id"], columns["file"], read_ats, columns["offset"], strict=True
    ):
        stamp = (read_at, offset)
        if file_id not in latest or stamp > latest[file_id][0]:
            latest[file_id] = (stamp, name)
        first_seen[file_id] = min(first_seen.get(file_id, stamp[0]), stamp[0])
    by_name: dict[str, str] = {}
    for file_id, (_, name) in latest.items():
        if name not in by_name or first_seen[file_id] > first_seen[by_name[name]]:
            by_name[name] = file_id
    return by_name
