"""Applying a retention plan, in two phases: mark, then (after the grace) delete.

Phase 1 writes each planned session's retention document (`sessions/{path}/retention.json`), merged
with what is there: the server hides a deleted session as soon as it sees the mark, and says an
expired kind expired instead of showing it empty. A mark is never undone nor postponed: a second run
keeps the first run's times.

Phase 2 deletes the objects of marks whose grace has passed (`delete_after_ms`), reading the marks
from the store, never from the plan: whatever a plan says, nothing is deleted that the archive's own
retention document does not name. A deleted session goes kind by kind (events, logs, metrics,
snapshots), then its documents, and its retention document last, so that until the very end the mark
is there to hide what is left and to tell the next run what remains. An expired kind deletes that
kind's objects only: an expired snapshot its `snapshots/{path}/` objects, expired events never a
snapshot.

Killed at any moment and run again, it converges: the marks left say what remains, deleting a missing
key is no error, and each key is listed again before it is deleted. Two cleaners at once do no harm:
both merge the same marks and delete the same keys. At worst a cleaner that read no mark rewrites one
just after another finished the session; that lone document names no objects, hides a session that
is gone, and the next run deletes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from archive import changes, documents, layout
from archive.storage import ObjectInfo, ObjectNotFound, Storage

from .inventory import RETENTION
from .planner import Plan, PlannedSession
from .policy import KINDS

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000


@dataclass
class ApplyReport:
    marked: int = 0  # retention documents written
    sessions_deleted: int = 0  # sessions whose last object (the retention document) is gone
    kinds_expired: int = 0  # a session's kind whose objects were deleted
    objects_deleted: int = 0
    bytes_deleted: int = 0
    journal_deleted: int = 0  # change markers past the journal's retention (archive.changes)
    waiting: list[tuple[str, int]] = field(default_factory=list)  # (session path, when its objects may go)

    def to_json(self) -> dict[str, object]:
        return {
            "marked": self.marked, "sessions_deleted": self.sessions_deleted, "kinds_expired": self.kinds_expired,
            "objects_deleted": self.objects_deleted, "bytes_deleted": self.bytes_deleted,
            "journal_deleted": self.journal_deleted,
            "waiting": [{"session": path, "delete_after_ms": after} for path, after in self.waiting],
        }  # fmt: skip


class Cleaner:
    def __init__(self, storage: Storage, *, grace_ms: int = HOUR_MS, now_ms: int | None = None,
                 threads: int = 16) -> None:  # fmt: skip
        """`grace_ms`: how long a mark stands before its objects go (the server's refresh must see it first);
        `threads` sessions are handled at once (an object store's calls are mostly waiting)."""
        self.storage = storage
        self.grace_ms = grace_ms
        self.now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        self.threads = threads
        self._lock = threading.Lock()  # the report, updated from every thread

    def apply(self, plan: Plan) -> ApplyReport:
        report = ApplyReport()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="retention") as pool:
            # Every mark first: the server hides all the doomed sessions before any of them loses an object.
            marks = list(pool.map(lambda entry: self.mark(entry, report), plan.sessions))
            due = [(entry, retention) for entry, retention in zip(plan.sessions, marks, strict=True) if retention]
            # Sessions at once; within one, its objects in order, its retention document last. A failure is
            # raised once the others are done: the marks left say what remains.
            list(pool.map(lambda pair: self._delete_due(*pair, report), due))
        report.journal_deleted = self.prune_journal()
        return report

    def prune_journal(self) -> int:
        """Delete the change markers past the journal's retention (archive.changes); how many. By the real
        clock, never `now_ms` (a what-if's time): readers trust the journal for a day back from now."""
        return changes.prune(self.storage)

    # -- phase 1 ----------------------------------------------------------------------------------------

    def mark(self, entry: PlannedSession, report: ApplyReport) -> documents.Retention | None:
        """Write (merge) the entry's marks; the retention document as it now stands, or None to leave it."""
        key = layout.retention_key(entry.ref)
        current = self._read(key)
        if current is None and entry.marked:
            # The plan saw a mark that is gone: retention.json goes last, so another cleaner finished this.
            log.info("%s: its retention document is gone, another run finished it", entry.ref.path)
            return None
        merged = merge(current or documents.Retention(), entry, self.now_ms, self.grace_ms)
        if merged != current:
            self.storage.put(key, documents.encode(merged), tags=layout.object_tags("sessions", entry.ref))
            changes.record(self.storage, entry.ref)  # the server's catalog hides the session at its next refresh
            with self._lock:
                report.marked += 1
        return merged

    def _read(self, key: str) -> documents.Retention | None:
        try:
            return documents.decode(self.storage.get(key), documents.Retention)
        except ObjectNotFound:
            return None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("unreadable %s (%s): written again from the plan", key, exc)
            return documents.Retention()

    # -- phase 2 ----------------------------------------------------------------------------------------

    def _delete_due(self, entry: PlannedSession, retention: documents.Retention, report: ApplyReport) -> None:
        ref = entry.ref
        if retention.deleted is not None:
            if retention.deleted.delete_after_ms > self.now_ms:
                with self._lock:
                    report.waiting.append((ref.path, retention.deleted.delete_after_ms))
                return
            for kind in KINDS:
                self._delete(self.storage.list(f"{kind}/{ref.path}/"), report)
            session = list(self.storage.list(layout.session_prefix(ref)))
            self._delete((info for info in session if not info.key.endswith("/" + RETENTION)), report)
            # Last: until now the mark hid what was left, and told a rerun what remains.
            self._delete((info for info in session if info.key.endswith("/" + RETENTION)), report)
            changes.record(self.storage, ref)
            with self._lock:
                report.sessions_deleted += 1
            log.info("%s: deleted (%s)", ref.path, retention.deleted.reason)
            return
        # Kinds the plan saw objects of; a marked kind not in the plan has none left.
        for kind in entry.kinds:
            mark = retention.expired.get(kind)
            if mark is None:
                continue
            if mark.delete_after_ms > self.now_ms:
                with self._lock:
                    report.waiting.append((f"{ref.path} {kind}", mark.delete_after_ms))
                continue
            self._delete(self.storage.list(f"{kind}/{ref.path}/"), report)
            with self._lock:
                report.kinds_expired += 1
            log.info("%s: %s expired (%s)", ref.path, kind, mark.reason)

    def _delete(self, objects: Iterable[ObjectInfo], report: ApplyReport) -> None:
        for info in list(objects):
            self.storage.delete(info.key)
            log.debug("deleted %s", info.key)
            with self._lock:
                report.objects_deleted += 1
                report.bytes_deleted += info.size


def merge(current: documents.Retention, entry: PlannedSession, now_ms: int, grace_ms: int) -> documents.Retention:
    """The marks of `current` with the entry's added; an existing mark keeps its times and reason."""

    def mark(reason: str) -> documents.ExpiredKind:
        return documents.ExpiredKind(at_ms=now_ms, delete_after_ms=now_ms + grace_ms, reason=reason)

    deleted = current.deleted
    expired = dict(current.expired)
    if entry.action == "delete" and deleted is None:
        deleted = mark(f"rule {entry.rule}: {entry.reason}")
    if entry.action == "expire":
        for kind in entry.kinds:
            if kind not in expired:
                expired[kind] = mark(f"rule {entry.rule}: {entry.kind_reasons.get(kind, entry.reason)}")
    return documents.Retention(deleted=deleted, expired=dict(sorted(expired.items())))
