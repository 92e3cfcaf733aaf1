"""Ships every file under the session's logs/ folder to the archive as line rows, while Ray runs.

Files are followed by inode: a file that rotation renames (`raylet.out` to `raylet.out.1`) is read on
to its end under its new name, and keeps its file id; a file truncated or replaced in place starts a
new file id. A part is uploaded before the checkpoint moves on, and a part's name comes from the
checkpoint: after a crash the same part is written again from the same offsets, under the same
name, so no line is repeated and none is skipped.

A last line without its newline is held back while the file still grows (Ray is writing it) and
shipped once the file stops growing or the collector stops; if more of it comes later, that arrives
as another piece with the same line number.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO

import msgspec
import pyarrow as pa

from archive import layout
from archive.logs import Attribution, FileChunk, chunk_rows, identify, marker_row
from archive.parquet import table_to_parquet
from archive.storage import Storage, StorageError

from .config import LogSettings
from .metrics import CollectorMetrics
from .raysession import current_session_dir, node_id
from .spool import write_file_atomic

log = logging.getLogger(__name__)

_FINGERPRINT_BYTES = 64
MIB = 1024 * 1024


class TrackedFile(msgspec.Struct):
    file_id: str
    path: str  # relative to the session folder, as last seen
    offset: int = 0  # bytes accounted for: shipped, or recorded as left out
    line_number: int = 1  # the line the byte at `offset` belongs to
    held_size: int = -1  # the file's size when its unfinished last line was held back
    fingerprint: int = 0  # crc32 of the bytes just before `offset`: a rewrite to the same size shows
    job_id: str | None = None
    task_name: str | None = None
    actor_name: str | None = None
    partial_marker: str | None = None


class LogCheckpoint(msgspec.Struct):
    run_id: str
    next_part: int = 0
    session_dir: str | None = None
    files: dict[str, TrackedFile] = msgspec.field(default_factory=dict)  # key: "dev:inode"


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


class LogShipper:
    def __init__(
        self,
        settings: LogSettings,
        ray_temp_dir: Path,
        node: str,
        storage: Storage,
        session_ref: Callable[[str], layout.SessionRef],
        metrics: CollectorMetrics,
        checkpoint_path: Path,
    ) -> None:
        self.settings = settings
        self.ray_temp_dir = ray_temp_dir
        self.node = node
        self.storage = storage
        self.session_ref = session_ref
        self.metrics = metrics
        self.checkpoint_path = checkpoint_path
        self.checkpoint = self._load()
        self._node_ids: dict[str, str | None] = {}
        self._skipped: set[Path] = set()

    def _load(self) -> LogCheckpoint:
        try:
            return msgspec.json.decode(self.checkpoint_path.read_bytes(), type=LogCheckpoint)
        except FileNotFoundError:
            return LogCheckpoint(run_id=f"{time.time_ns() // 1_000_000:013d}")
        except (msgspec.DecodeError, OSError) as exc:
            # Starting over under a new run id: files are shipped again whole, never merged with old parts.
            log.warning("unreadable log checkpoint %s (%s): log files are shipped again from the start",
                        self.checkpoint_path, exc)  # fmt: skip
            return LogCheckpoint(run_id=f"{time.time_ns() // 1_000_000:013d}")

    def _save(self, checkpoint: LogCheckpoint) -> None:
        write_file_atomic(self.checkpoint_path, msgspec.json.encode(checkpoint))
        self.checkpoint = checkpoint

    def poll(self, final: bool = False) -> bool:
        """Ship one part's worth of new log bytes. True when nothing is left to read for now.

        `final` also ships unfinished last lines: the collector is stopping. Raises StorageError
        when the archive refused the part; the checkpoint has not moved, so the next call retries.
        """
        latest = current_session_dir(self.ray_temp_dir)
        previous = Path(self.checkpoint.session_dir) if self.checkpoint.session_dir else None
        if previous is not None and previous != latest:
            # Ray restarted: the old session's files are complete; read them to their end first.
            if previous.is_dir() and not self._ship_round(previous, final=True):
                return False
            if latest is None:
                return True
            self._save(LogCheckpoint(self.checkpoint.run_id, self.checkpoint.next_part, str(latest)))
        if latest is None:
            return True
        if self.checkpoint.session_dir is None:
            self._save(LogCheckpoint(self.checkpoint.run_id, self.checkpoint.next_part, str(latest)))
        return self._ship_round(latest, final)

    def _ship_round(self, session_dir: Path, final: bool) -> bool:
        work = msgspec.json.decode(msgspec.json.encode(self.checkpoint), type=LogCheckpoint)
        round_ = _Round(self, session_dir, work, final)
        done = round_.read_files()
        if round_.tables:
            table = pa.concat_tables(round_.tables)
            self._upload(session_dir.name, work.next_part, table)
            work.next_part += 1
            self.metrics.log_bytes.inc(round_.bytes_read)
        if round_.tables or round_.changed:
            self._save(work)
        return done

    def _upload(self, session: str, part: int, table: pa.Table) -> None:
        ref = self.session_ref(session)
        key = layout.part_key("logs", ref, self.node, f"{self.checkpoint.run_id}-{part:08d}")
        started = time.perf_counter()
        try:
            self.storage.put(key, table_to_parquet(table), tags=layout.object_tags("logs", ref))
        except StorageError:
            self.metrics.upload_failures.inc()
            raise
        self.metrics.upload_seconds.observe(time.perf_counter() - started)
        self.metrics.parts_uploaded.labels("logs").inc()
        self.metrics.rows_uploaded.labels("logs").inc(table.num_rows)

    def skip_once(self, path: Path, reason: str) -> None:
        if path not in self._skipped:
            self._skipped.add(path)
            log.warning("not shipping %s: %s", _text_path(str(path)), reason)

    def node_id(self, session_dir: Path) -> str | None:
        key = str(session_dir)
        if self._node_ids.get(key) is None:
            self._node_ids[key] = node_id(session_dir)
        return self._node_ids[key]


class _Round:
    """One pass over a session's log files, gathering at most one part's worth of rows."""

    def __init__(self, shipper: LogShipper, session_dir: Path, work: LogCheckpoint, final: bool) -> None:
        self.shipper = shipper
        self.settings = shipper.settings
        self.session_dir = session_dir
        self.work = work
        self.final = final
        self.node_id = shipper.node_id(session_dir)
        self.read_at = time.time_ns()
        self.tables: list[pa.Table] = []
        self.bytes_read = 0
        self.changed = False

    def read_files(self) -> bool:
        """Read what is new in every file; False if the part filled up before the end."""
        seen: set[str] = set()
        done = True
        for path in _log_files(self.session_dir / "logs"):
            try:
                stat = path.lstat()
            except FileNotFoundError:
                continue  # deleted between listing and reading
            if not S_ISREG(stat.st_mode):
                # A link could point at the sidecar's own secrets (its service account token): not followed.
                self.shipper.skip_once(path, "not a regular file (symbolic links are not followed)")
                continue
            key = f"{stat.st_dev}:{stat.st_ino}"
            seen.add(key)
            if self.bytes_read >= self.settings.part_max_bytes:
                done = False
                continue
            done &= self._read_file(key, path, stat.st_size)
        gone = [key for key in self.work.files if key not in seen]
        for key in gone:
            del self.work.files[key]
        self.changed |= bool(gone)
        return done

    def _read_file(self, key: str, path: Path, size: int) -> bool:
        relative = _text_path(path.relative_to(self.session_dir).as_posix())
        entry = self.work.files.get(key)
        is_new = entry is None
        if entry is None:
            entry = self.work.files[key] = TrackedFile(_new_id(), relative)
            self.changed = True
        elif size < entry.offset or (entry.offset and _fingerprint(path, entry.offset) != entry.fingerprint):
            # Ray rewrites some files in place (debug_state.txt every few seconds): quietly.
            log.debug("%s was truncated or replaced: shipping it again as a new file", relative)
            entry = self.work.files[key] = TrackedFile(_new_id(), relative)
            self.changed = is_new = True
        tables_before = len(self.tables)
        renamed_from = entry.path if entry.path != relative else None
        entry.path = relative
        excluded = self._exclusion(relative)
        if excluded is not None:
            self._omit(entry, path, size - entry.offset, excluded)
            done = True
        else:
            done = self._read_lines(entry, path, size)
            cap = self.settings.max_file_bytes
            if cap and entry.offset >= cap and size > entry.offset:
                self._omit(
                    entry, path, size - entry.offset, f"past the per-file cap of {cap} bytes (--log-max-file-mib)"
                )
        if len(self.tables) == tables_before:
            # Nothing to ship, but the archive must learn that the file exists, or its new name.
            if renamed_from is not None:
                self.tables.append(marker_row(self._chunk(entry, b""), 0, f"renamed from {renamed_from}"))
            elif is_new:
                self.tables.append(marker_row(self._chunk(entry, b"")))
        self.changed |= renamed_from is not None
        return done

    def _exclusion(self, relative: str) -> str | None:
        inside_logs = relative.removeprefix("logs/")
        for pattern in self.settings.exclude:
            if fnmatch.fnmatchcase(inside_logs, pattern):
                return f"excluded by --log-exclude {pattern!r}"
        return None

    def _omit(self, entry: TrackedFile, path: Path, count: int, reason: str) -> None:
        if count <= 0:
            return
        self.tables.append(marker_row(self._chunk(entry, b""), count, reason))
        entry.offset += count
        entry.fingerprint = _fingerprint(path, entry.offset)

    def _chunk(self, entry: TrackedFile, data: bytes) -> FileChunk:
        return FileChunk(self.shipper.node, self.node_id, entry.path, entry.file_id, entry.offset,
                         entry.line_number, data, self.read_at)  # fmt: skip

    def _read_lines(self, entry: TrackedFile, path: Path, size: int) -> bool:
        cap = self.settings.max_file_bytes
        end = min(size, cap) if cap else size
        if end <= entry.offset:
            return True
        budget = min(self.settings.read_max_bytes, self.settings.part_max_bytes - self.bytes_read)
        want = min(end - entry.offset, budget)
        try:
            with _open_log(path) as handle:
                handle.seek(entry.offset)
                data = handle.read(want)
        except FileNotFoundError:
            return True
        except OSError as exc:
            # One unreadable file must not hold back the others; it is tried again next round.
            log.warning("cannot read %s, skipping it this round: %s", path, exc)
            return True
        capped_read = len(data) < end - entry.offset
        whole = data.rfind(b"\n") + 1
        held = False
        if whole < len(data):
            # An unfinished last line. If the read was cut short, its end is on disk: read it next
            # round, unless one line alone fills a read (it must still make progress). Otherwise ship
            # it once Ray has stopped writing to the file, at the per-file cap, or when we stop.
            if capped_read:
                held = whole > 0
            else:
                held = not (self.final or size == entry.held_size or end < size)
                if held:
                    entry.held_size = size
                    self.changed = True
            if held:
                data = data[:whole]
        if not data:
            return not capped_read
        attribution = Attribution(entry.job_id, entry.task_name, entry.actor_name, entry.partial_marker)
        table, next_line = chunk_rows(self._chunk(entry, data), identify(entry.path), attribution)
        self.tables.append(table)
        self.bytes_read += len(data)
        entry.offset += len(data)
        entry.line_number = next_line
        entry.job_id, entry.task_name = attribution.job_id, attribution.task_name
        entry.actor_name, entry.partial_marker = attribution.actor_name, attribution.partial
        waiting = held and not capped_read  # for Ray to finish the last line: nothing more to read now
        entry.held_size = size if waiting else -1
        tail = data[-_FINGERPRINT_BYTES:]
        entry.fingerprint = zlib.crc32(tail) if len(tail) == _FINGERPRINT_BYTES else _fingerprint(path, entry.offset)
        return entry.offset >= end or waiting


def _log_files(logs_dir: Path) -> list[Path]:
    found: list[Path] = []
    for root, _, names in os.walk(logs_dir):
        found.extend(Path(root, name) for name in names)
    found.sort()
    return found


def _open_log(path: Path) -> BinaryIO:
    """Open for reading without following a link that replaced the file since it was listed."""
    return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _text_path(path: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as surrogates) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _fingerprint(path: Path, offset: int) -> int:
    start = max(0, offset - _FINGERPRINT_BYTES)
    try:
        with _open_log(path) as handle:
            handle.seek(start)
            return zlib.crc32(handle.read(offset - start))
    except OSError:
        return 0
