"""The compactor: an ended session's small parts rewritten into few large Parquet objects, losslessly.

For each session that has ended (`maintenance.ended`) and kind (events, logs, metrics), each node's
live parts are merged in groups (`maintenance.compaction_plan`) into compacted objects
(`archive.compacted`), put whole under `layout.compacted_key`: from that put on, every reader reads the
compacted object instead of the parts in its range (`archive.parts.live`), so a reader sees each row once
whenever it lists. The replaced parts are deleted by a later run (or this one, with no grace) once the
compacted object is older than the grace: the listing is the only record of what waits, so there is no
document to keep right, and a run killed at any moment is finished by the next one.

Two compactors at once: the groups follow from the listing alone and the files from the parts alone,
so two runs that list the same objects put the same keys with the same bytes. Before each put the node
is listed again and a group is dropped if a compacted object now covers it or overlaps it without
nesting; after the put, should such an overlap have appeared in between, the compactor deletes its own
object (what it was made of is still there), so readers are never left reading rows twice. Groups are
rewritten on `jobs` threads at once (zstd and Arrow let go of the GIL).

After compacting events, a snapshot derived from the parts as they were is still right (same rows), but
its fingerprint (`archive.parts.parts_fingerprint`) no longer matches the live parts and the server would
derive it again: the compactor writes the new fingerprint into snapshot.json when the old one matched.
One derived from fewer parts than the live ones (stale: a part came after it) is marked stale, since once
the parts are compacted it would look like one that knows more than the parts left, which the server keeps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import msgspec

from archive import documents, layout
from archive.compacted import CompactedWriter, read_object
from archive.layout import PART_KINDS, PartKind, SessionRef
from archive.parts import live, parts_fingerprint
from archive.storage import ObjectInfo, ObjectNotFound, Storage, StorageError

from .compaction_plan import Held, by_node, crosses_any, deletions, groups
from .ended import find_sessions, retention_of, why_not_ended

DEFAULT_MAX_BYTES = 256 * 1000**2
DEFAULT_GRACE_S = 3600.0
DEFAULT_JOBS = min(4, os.cpu_count() or 1)
NS = 1_000_000_000
# A snapshot.json whose `parts` starts with this was derived from other parts than the live ones: derived again.
STALE = "stale:"


@dataclass
class KindReport:
    """One kind of one session: the live objects before and after, and what this run did."""

    kind: str
    parts_before: int = 0
    bytes_before: int = 0
    parts_after: int = 0
    bytes_after: int = 0
    written: list[str] = field(default_factory=list)  # compacted objects put (a dry run: would put)
    written_bytes: int = 0
    read_bytes: int = 0  # parts read to write them
    deleted: int = 0  # replaced objects deleted (a dry run: would delete)
    deleted_bytes: int = 0
    waiting: int = 0  # replaced objects kept until the grace has passed
    waiting_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # late parts, overlaps, groups another compactor took


@dataclass
class SessionReport:
    namespace: str
    cluster: str
    session: str
    skipped: str | None = None  # why the session was left alone
    error: str | None = None
    kinds: list[KindReport] = field(default_factory=list)
    snapshot_updated: bool = False  # snapshot.json got the new fingerprint (a dry run: would get)
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.cluster}/{self.session}"


@dataclass
class CompactionReport:
    dry_run: bool
    sessions: list[SessionReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def read_bytes(self) -> int:
        return sum(kind.read_bytes for session in self.sessions for kind in session.kinds)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "read_bytes": self.read_bytes,
            "sessions": [
                {
                    "namespace": s.namespace, "cluster": s.cluster, "session": s.session, "skipped": s.skipped,
                    "error": s.error, "snapshot_updated": s.snapshot_updated, "notes": s.notes,
                    "kinds": [vars(kind) for kind in s.kinds],
                }
                for s in self.sessions
            ],
        }  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """Where a run is: the parts of one node and kind read so far, or a compacted object just written."""

    session: str
    kind: str
    node: str
    done: int
    total: int
    bytes_done: int
    bytes_total: int
    written: str | None = None


def _no_progress(_: Progress) -> None:
    return None


class Compactor:
    def __init__(
        self,
        storage: Storage,
        grace_s: float = DEFAULT_GRACE_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        dry_run: bool = False,
        progress: Callable[[Progress], None] = _no_progress,
        clock_ns: Callable[[], int] = time.time_ns,
        quiet_s: float | None = None,
        jobs: int = DEFAULT_JOBS,
    ) -> None:
        """`quiet_s`: how long after its last part a session may be compacted (default: the grace); `jobs`:
        groups rewritten at once (each holds up to ROW_GROUP_BYTES of rows and its output in memory);
        `progress` is called from their threads."""
        if max_bytes < 1 or jobs < 1 or grace_s < 0 or (quiet_s or 0) < 0:
            raise ValueError("the size bound and jobs must be positive, the grace and quiet time not negative")
        self.jobs = jobs
        self.storage = storage
        self.grace_ns = int(grace_s * NS)
        self.quiet_ns = self.grace_ns if quiet_s is None else int(quiet_s * NS)
        self.max_bytes = max_bytes
        self.dry_run = dry_run
        self.progress = progress
        self.clock_ns = clock_ns

    def run(self, only: SessionRef | None = None) -> CompactionReport:
        """Compact every ended session (or only `only`); what was done, session by session."""
        started = time.perf_counter()
        report = CompactionReport(self.dry_run)
        for docs in find_sessions(self.storage, only):
            ref = docs.ref
            session = SessionReport(ref.namespace, ref.cluster, ref.session)
            report.sessions.append(session)
            try:
                retention = retention_of(self.storage, docs)
                if retention is not None and retention.deleted is not None:
                    session.skipped = "retention deletes this session"
                    continue
                session.skipped = why_not_ended(self.storage, docs)
                if session.skipped is None:
                    self._session(ref, session, set(retention.expired) if retention else set())
            except StorageError as exc:
                session.error = str(exc)
        report.seconds = time.perf_counter() - started
        return report

    def _session(self, ref: SessionRef, report: SessionReport, expired: set[str]) -> None:
        kinds = [kind for kind in PART_KINDS if kind not in expired]
        listings = {kind: list(self.storage.list(layout.parts_prefix(kind, ref))) for kind in kinds}
        newest = max((info.mtime_ns for kind in kinds for info in listings[kind] if _is_plain(info)), default=0)
        if self.clock_ns() - newest < self.quiet_ns:
            # A collector restarted after closed.json may still ship what it had spooled: let it land first.
            report.skipped = "parts were written lately: a collector may still ship late ones"
            return
        for kind in kinds:
            kind_report, listing_after = self._kind(ref, kind, listings[kind])
            report.kinds.append(kind_report)
            if kind == "events" and "snapshots" not in expired:
                self._keep_snapshot_current(ref, listings[kind], listing_after, report)

    def _kind(self, ref: SessionRef, kind: PartKind, listing: list[ObjectInfo]) -> tuple[KindReport, list[ObjectInfo]]:
        report = KindReport(kind)
        before = live(listing)
        report.parts_before, report.bytes_before = len(before), sum(info.size for info in before)
        settled_before_ns = self.clock_ns() - self.grace_ns
        planned = [(node, group) for node, objects in by_node(listing).items()
                   for group in groups(objects, self.max_bytes, settled_before_ns)]  # fmt: skip
        written: list[ObjectInfo] = []
        for part, infos in self._rewrite_all(ref, kind, planned):
            written += infos
            report.written += part.written
            report.written_bytes += part.written_bytes
            report.read_bytes += part.read_bytes
            report.notes += part.notes
        # The deletions are decided on a new listing: it holds what this run and any other put.
        after = list(self.storage.list(layout.parts_prefix(kind, ref))) if not self.dry_run else listing + written
        gone: set[str] = set()
        for node, objects in by_node(after).items():
            found = deletions(objects, self.clock_ns(), self.grace_ns)
            for a, b in found.overlapping:
                report.notes.append(f"{node}: {a} and {b} overlap without nesting: nothing of the node deleted")
            for info in found.late:
                report.notes.append(f"{info.key} is newer than the compacted object covering it: kept, not read")
            for info in found.delete:
                if not self.dry_run:
                    self.storage.delete(info.key)
                gone.add(info.key)
                report.deleted += 1
                report.deleted_bytes += info.size
            report.waiting += len(found.waiting)
            report.waiting_bytes += sum(info.size for info in found.waiting)
        remaining = [info for info in after if info.key not in gone]
        now_live = live(remaining)
        report.parts_after, report.bytes_after = len(now_live), sum(info.size for info in now_live)
        return report, remaining

    def _rewrite_all(self, ref: SessionRef, kind: PartKind,
                     planned: list[tuple[str, list[Held]]]) -> list[tuple[KindReport, list[ObjectInfo]]]:  # fmt: skip
        """Each group rewritten on a thread of its own (zstd and Arrow let go of the GIL), reported in order."""

        def one(node: str, group: list[Held]) -> tuple[KindReport, list[ObjectInfo]]:
            part = KindReport(kind)
            return part, self._rewrite(ref, kind, node, group, part)

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="compact")
        futures = [pool.submit(one, node, group) for node, group in planned]
        try:
            return [future.result() for future in futures]
        finally:
            # On a failure the groups not begun are dropped: the next run plans them again.
            pool.shutdown(wait=True, cancel_futures=True)

    def _rewrite(self, ref: SessionRef, kind: PartKind, node: str, group: list[Held],
                 report: KindReport) -> list[ObjectInfo]:  # fmt: skip
        """Write the group's rows as compacted objects, one per run of parts that share a schema."""
        written: list[ObjectInfo] = []
        writer: CompactedWriter | None = None
        members: list[Held] = []
        total = sum(held.info.size for held in group)
        done = 0
        for index, held in enumerate(group):
            try:
                data = self.storage.get(held.key)
            except ObjectNotFound:
                # Another compactor merged it (and its grace was 0): what is left is planned again next run.
                report.notes.append(f"{held.key} vanished while being compacted: its group is left for the next run")
                if writer is not None:
                    writer.abandon()
                return written
            table, sources = read_object(data, held.name.first)
            report.read_bytes += len(data)
            done += len(data)
            if writer is not None and not writer.accepts(table.schema):
                written += self._finish(ref, kind, node, writer, members, report)
                writer = None
            if writer is None:
                writer, members = CompactedWriter(kind, table.schema), []
            writer.append(table, sources)
            members.append(held)
            self.progress(Progress(ref.path, kind, node, index + 1, len(group), done, total))
        if writer is not None:
            written += self._finish(ref, kind, node, writer, members, report)
        return written

    def _finish(self, ref: SessionRef, kind: PartKind, node: str, writer: CompactedWriter, members: list[Held],
                report: KindReport) -> list[ObjectInfo]:  # fmt: skip
        """Put one compacted object (unless it holds a single part); what was put, for the deletions."""
        if len(members) < 2:
            writer.abandon()  # a lone part between two schema changes: nothing to merge it with
            return []
        key = layout.compacted_key(kind, ref, node, members[0].name.first, members[-1].name.last)
        data = writer.finish()
        if not self.dry_run and not self._put_alone(key, members, data, ref, kind, node, report):
            return []
        report.written.append(key)
        report.written_bytes += len(data)
        self.progress(Progress(ref.path, kind, node, len(members), len(members), 0, 0, written=key))
        return [ObjectInfo(key, len(data), self.clock_ns())]

    def _put_alone(self, key: str, members: list[Held], data: bytes, ref: SessionRef, kind: PartKind, node: str,
                   report: KindReport) -> bool:  # fmt: skip
        """Put the object unless another compactor's covers or crosses its range; False if not put."""
        first, last = members[0].name.first, members[-1].name.last
        prefix = layout.parts_prefix(kind, ref, node)
        present = by_node(self.storage.list(prefix)).get(node, [])
        if any(held.key == key for held in present):
            report.notes.append(f"{key} was already there (another compactor): the same rows, left as it is")
            return False
        covered = any(h.name.compacted and h.name.first <= first and last <= h.name.last for h in present)
        if covered or crosses_any(first, last, present):
            report.notes.append(f"{key} not written: another compacted object now covers or crosses its range")
            return False
        self.storage.put(key, data, tags=layout.object_tags(kind, ref))
        others = [held for held in by_node(self.storage.list(prefix)).get(node, []) if held.key != key]
        if crosses_any(first, last, others):
            listed = {held.key for held in others}
            if all(held.key in listed for held in members):
                # Put at the same moment as a crossing one: what it was made of is all still there, so taking
                # it back leaves every row read once.
                self.storage.delete(key)
                report.notes.append(f"{key} taken back: another compactor put a crossing range at the same moment")
                return False
            # Another run (grace 0) deleted some of what it holds: it must stay. No run deletes anything of
            # the node while the two cross; an operator deletes the newer once the other's parts are checked.
            report.notes.append(f"{key} crosses another compacted object put at the same moment: check the node")
        return True

    def _keep_snapshot_current(self, ref: SessionRef, before: list[ObjectInfo], after: list[ObjectInfo],
                               report: SessionReport) -> None:  # fmt: skip
        """Give snapshot.json the fingerprint of the live events parts if it was derived from the same rows;
        mark it stale if it was derived from fewer (see `_stale`)."""
        old, wanted = parts_fingerprint(live(before)), parts_fingerprint(live(after))
        if old == wanted:
            return  # nothing the server reads changed
        plain_before = {(info.key, info.size, info.mtime_ns) for info in before if _is_plain(info)}
        if any((info.key, info.size, info.mtime_ns) not in plain_before for info in after if _is_plain(info)):
            return  # a part came or changed meanwhile: whatever the snapshot holds, the server will see it
        key = layout.snapshot_manifest_key(ref)
        try:
            manifest = documents.decode(self.storage.get(key), documents.SnapshotManifest)
        except (ObjectNotFound, msgspec.DecodeError):
            return  # none, or one the server derives again anyway
        if manifest.parts == old:
            parts = wanted
            report.snapshot_updated = True
        elif _stale(manifest.parts, old):
            parts = f"{STALE}{manifest.parts}"
            report.notes.append(f"snapshot.json was derived from other events parts ({manifest.parts}, now "
                                f"{old}): marked stale, so the next open derives it again")  # fmt: skip
        else:
            return  # derived from more parts than are left (retention's rule keeps it): left as it is
        if not self.dry_run:
            updated = msgspec.structs.replace(manifest, parts=parts)
            self.storage.put(key, documents.encode(updated), tags=layout.object_tags("snapshots", ref))


def _stale(stored: str, listed: str) -> bool:
    """Whether a snapshot of fingerprint `stored` was derived from no more events parts and bytes than `listed`
    (and not from them): the server would derive it again. After compaction there are fewer live objects and
    bytes, and the server's rule for expired parts (a snapshot that knows more is kept, whatever its
    fingerprint) would keep it instead: so the compactor marks it stale first."""
    try:
        stored_count, stored_bytes = (int(value) for value in stored.split(":")[:2])
        listed_count, listed_bytes = (int(value) for value in listed.split(":")[:2])
    except ValueError:
        return False  # not a fingerprint (already marked): nothing to do
    return stored_count <= listed_count and stored_bytes <= listed_bytes


def _is_plain(info: ObjectInfo) -> bool:
    name = layout.parse_data_key(info.key)
    return name is not None and not name.compacted
