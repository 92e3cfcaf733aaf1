"""The retention plan: which sessions to delete and which kinds to expire, as of a moment, and why.

The planner reads the archive once (`inventory.scan`: a listing of sessions/ and of each data prefix)
and reads documents only where the listing cannot answer, each at most once and several at a time:
- a session's manifest, when the first rule its listing matches selects by labels, owner or queue;
- its retention document, when it has one (what an earlier run marked, never undone);
- its snapshot's jobs table, when an age would remove something that failed_max_age would keep.
`Plan.reads` counts them. Nothing is written: the Cleaner applies a plan.

Precedence is the policy's (maintenance.policy); every planned session names the rule that decided
and why, and a session already marked shows what is left to do for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from archive import documents, layout
from archive.storage import ObjectNotFound, Storage, StorageError

from .inventory import ALL_KINDS, MANIFEST, SESSIONS, Inventory, SessionObjects, scan
from .outcomes import JobOutcomes, SnapshotJobs
from .policy import DAY_MS, KINDS, Policy, Rule, format_duration, format_size

log = logging.getLogger(__name__)

Action = Literal["delete", "expire"]
MARKED = "marked"  # the rule shown for what an earlier run decided


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """Milliseconds since the epoch of an ISO time ("2026-12-01T00:00:00Z"; UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an ISO time: use e.g. 2026-12-01T00:00:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_age(ms: int) -> str:
    return f"{ms / DAY_MS:.1f}d" if ms >= DAY_MS else f"{ms / 3_600_000:.1f}h"


@dataclass(frozen=True)
class PlannedSession:
    ref: layout.SessionRef
    action: Action
    kinds: tuple[str, ...]  # delete: every kind it still holds, "sessions" (its documents) last
    bytes: int
    objects: int
    reason: str
    rule: str
    status: str
    end_ms: int | None
    kind_reasons: Mapping[str, str] = field(default_factory=dict)  # expire: why each kind
    marked: bool = False  # an earlier run marked it: what is shown is what remains to do

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.ref.namespace, "cluster": self.ref.cluster, "session": self.ref.session,
            "action": self.action, "kinds": list(self.kinds), "bytes": self.bytes, "reason": self.reason,
            "rule": self.rule, "objects": self.objects, "status": self.status, "ended_at": iso(self.end_ms),
            "marked": self.marked,
        }  # fmt: skip


@dataclass(frozen=True)
class Plan:
    now_ms: int
    sessions: tuple[PlannedSession, ...]
    scanned: int  # sessions in the archive
    running: int  # of which running: never touched
    listed: int  # objects listed
    reads: Mapping[str, int]  # documents read, by what for
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(entry.bytes for entry in self.sessions)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now_ms), "sessions": [entry.to_json() for entry in self.sessions], "bytes": self.bytes,
            "objects": sum(entry.objects for entry in self.sessions), "sessions_scanned": self.scanned,
            "running": self.running, "objects_listed": self.listed, "reads": dict(self.reads),
        }  # fmt: skip


@dataclass
class _Session:
    """One session while the plan is made."""

    objects: SessionObjects
    status: str
    end_ms: int | None
    rule: Rule | None = None
    manifest: documents.Manifest | None = None
    marks: documents.Retention | None = None
    failed: bool | None = None  # a failed job (None: unknown, treated as failed)
    asked: bool = False  # whether its jobs were looked at (only when its fate depends on them)
    delete: str | None = None  # why the whole session goes
    expire: dict[str, str] = field(default_factory=dict)  # kind -> why it expires now

    @property
    def ref(self) -> layout.SessionRef:
        return self.objects.ref

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def marked_deleted(self) -> bool:
        return self.marks is not None and self.marks.deleted is not None

    @property
    def gone(self) -> bool:
        """Deleted by this plan or an earlier one."""
        return self.delete is not None or self.marked_deleted

    def marked_kinds(self) -> dict[str, documents.ExpiredKind]:
        return dict(self.marks.expired) if self.marks is not None else {}

    def remaining_bytes(self) -> int:
        """What the session will hold once the kinds expiring (now or before) are deleted."""
        going = set(self.expire) | set(self.marked_kinds())
        return self.objects.bytes_of(kind for kind in ALL_KINDS if kind not in going)


class Planner:
    def __init__(
        self,
        storage: Storage,
        policy: Policy,
        *,
        now_ms: int | None = None,
        heartbeat_timeout_s: float = 90.0,
        threads: int = 16,
        outcomes: JobOutcomes | None = None,
    ) -> None:
        """`now_ms` is the moment the policy is evaluated at (default: now); `outcomes` says which sessions
        had a failed job (default: their snapshot's jobs table; the server may pass its job index)."""
        self.storage = storage
        self.policy = policy
        self.now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        self.heartbeat_timeout_ms = int(heartbeat_timeout_s * 1000)
        self.threads = threads
        self.outcomes = outcomes if outcomes is not None else SnapshotJobs(storage)
        self.reads: dict[str, int] = {"manifests": 0, "retention": 0, "jobs": 0}
        self._lock = threading.Lock()

    def plan(self) -> Plan:
        started = time.perf_counter()
        inventory = scan(self.storage)
        return replace(self.plan_inventory(inventory), seconds=time.perf_counter() - started)

    def plan_inventory(self, inventory: Inventory) -> Plan:
        jobs_read = self.outcomes.reads if isinstance(self.outcomes, SnapshotJobs) else 0
        sessions = [
            _Session(objects, objects.status(self.now_ms, self.heartbeat_timeout_ms), objects.end_ms())
            for objects in inventory.sessions.values()
        ]
        self._each([s for s in sessions if self._needs_manifest(s)], self._read_manifest)
        for s in sessions:
            s.rule = self._rule_for(s)
        self._each([s for s in sessions if s.objects.retention is not None], self._read_marks)
        self._each([s for s in sessions if self._depends_on_outcome(s)], self._read_outcome)
        ended = [s for s in sessions if not s.running]
        for s in ended:
            self._by_age(s)
        self._by_count(sessions)
        for s in ended:
            self._kinds_by_age(s)
        self._by_bytes(sessions)
        entries = [entry for s in ended if (entry := self._entry(s)) is not None]
        if isinstance(self.outcomes, SnapshotJobs):
            self.reads["jobs"] = self.outcomes.reads - jobs_read
        return Plan(self.now_ms, tuple(entries), len(sessions), len(sessions) - len(ended), inventory.listed,
                    dict(self.reads))  # fmt: skip

    # -- reading what the listing cannot tell ---------------------------------------------------------

    def _each(self, sessions: Sequence[_Session], read: Callable[[_Session], None]) -> None:
        """Reads from an object store are mostly waiting: several at once."""
        if len(sessions) <= 1 or self.threads <= 1:
            for s in sessions:
                read(s)
            return
        with ThreadPoolExecutor(self.threads, thread_name_prefix="plan-read") as pool:
            list(pool.map(read, sessions))

    def _needs_manifest(self, s: _Session) -> bool:
        """Whether the first rule the listing matches selects by what only the manifest says."""
        for rule in self.policy.rules:
            if rule.selector.matches_listing(s.ref.namespace, s.ref.cluster, s.status):
                return rule.selector.needs_manifest
        return False

    def _rule_for(self, s: _Session) -> Rule:
        for rule in self.policy.rules:
            if rule.selector.matches_listing(s.ref.namespace, s.ref.cluster, s.status) and (
                rule.selector.matches_manifest(s.manifest)
            ):
                return rule
        return self.policy.defaults

    def _read_manifest(self, s: _Session) -> None:
        if MANIFEST not in s.objects.documents:  # the listing says there is none
            return
        data = self._get(layout.manifest_key(s.ref), "manifests")
        s.manifest = _decode(data, documents.Manifest, layout.manifest_key(s.ref))

    def _read_marks(self, s: _Session) -> None:
        key = layout.retention_key(s.ref)
        s.marks = _decode(self._get(key, "retention"), documents.Retention, key)

    def _read_outcome(self, s: _Session) -> None:
        s.failed = self.outcomes.failed(s.objects)
        s.asked = True

    def _get(self, key: str, what: str) -> bytes | None:
        with self._lock:
            self.reads[what] += 1
        try:
            return self.storage.get(key)
        except ObjectNotFound:
            return None
        except StorageError as exc:
            # The run stops: deciding without a manifest or a mark could delete what a rule keeps.
            log.error("cannot read %s (%s); no plan is made", key, exc)
            raise

    # -- deciding -------------------------------------------------------------------------------------

    def _age(self, s: _Session) -> int | None:
        return None if s.end_ms is None else self.now_ms - s.end_ms

    def _depends_on_outcome(self, s: _Session) -> bool:
        """Whether an age would remove something now that failed_max_age would keep."""
        age = self._age(s)
        if s.running or s.marked_deleted or age is None or s.rule is None:
            return False
        limits = s.rule.limits
        if not limits.ages_fire_before_failed():
            return False
        pairs = [(limits.session_age_ms(False), limits.session_age_ms(True))]
        pairs += [(limits.kind_age_ms(kind, False), limits.kind_age_ms(kind, True)) for kind in s.objects.data_kinds()
                  if kind not in s.marked_kinds()]  # fmt: skip
        return any(plain is not None and age >= plain and (kept is None or age < kept) for plain, kept in pairs)

    def _raised(self, s: _Session, name: str, plain: int | None, limit: int) -> str:
        """Why an age that failed_max_age raised was still reached."""
        if not s.asked:  # past both ages: the jobs were not worth a read
            return f"{name} {format_duration(plain)} and failed_max_age {format_duration(limit)}"
        why = "a failed job" if s.failed else "its jobs are unknown: no snapshot written after its end"
        return f"failed_max_age {format_duration(limit)} ({why})"

    def _by_age(self, s: _Session) -> None:
        age, limits = self._age(s), s.rule.limits  # type: ignore[union-attr]
        limit = limits.session_age_ms(s.failed is not False)
        if age is None or limit is None or age < limit:
            return
        if limit == limits.max_age_ms or s.failed is False:
            s.delete = f"ended {format_age(age)} ago; max_age {format_duration(limits.max_age_ms)}"
        else:
            s.delete = f"ended {format_age(age)} ago; {self._raised(s, 'max_age', limits.max_age_ms, limit)}"

    def _kinds_by_age(self, s: _Session) -> None:
        age, limits = self._age(s), s.rule.limits  # type: ignore[union-attr]
        if s.gone or age is None:
            return
        marked = s.marked_kinds()
        for kind in s.objects.data_kinds():
            limit = limits.kind_age_ms(kind, s.failed is not False)
            if kind in marked or limit is None or age < limit:
                continue
            plain = limits.kind_ages_ms.get(kind)
            raised = limit != plain and s.failed is not False
            why = self._raised(s, kind, plain, limit) if raised else f"{kind} {format_duration(limit)}"
            s.expire[kind] = f"ended {format_age(age)} ago; {why}"
        held = s.objects.data_kinds()
        if held and all(kind in s.expire or kind in marked for kind in held) and s.expire:
            s.delete = "every kind it holds expired: " + "; ".join(f"{k}: {v}" for k, v in s.expire.items())

    def _by_count(self, sessions: Iterable[_Session]) -> None:
        groups: dict[tuple[str, ...], list[_Session]] = defaultdict(list)
        for s in sessions:
            limits = s.rule.limits  # type: ignore[union-attr]
            if limits.max_sessions is None or s.gone:
                continue
            per_cluster = limits.max_sessions_per == "cluster"
            key = (s.rule.name, s.ref.namespace, s.ref.cluster if per_cluster else "")  # type: ignore[union-attr]
            groups[key].append(s)
        for (_, namespace, cluster), members in groups.items():
            # Newest first: running sessions (still going), then by end; the session name breaks ties.
            members.sort(key=lambda s: (s.running, s.end_ms or 0, s.ref.session), reverse=True)
            most = members[0].rule.limits.max_sessions  # type: ignore[union-attr]
            where = f"cluster {namespace}/{cluster}" if cluster else f"namespace {namespace}"
            for rank, s in enumerate(members[most:], start=most + 1):  # type: ignore[misc]
                if not s.running:
                    s.delete = f"number {rank} of {len(members)} in {where} by end, newest first; max_sessions {most}"

    def _by_bytes(self, sessions: Iterable[_Session]) -> None:
        groups: dict[tuple[str, str], list[_Session]] = defaultdict(list)
        for s in sessions:
            if s.rule.limits.max_bytes is not None and not s.gone:  # type: ignore[union-attr]
                groups[(s.rule.name, s.ref.namespace)].append(s)  # type: ignore[union-attr]
        for (_, namespace), members in groups.items():
            most = members[0].rule.limits.max_bytes  # type: ignore[union-attr]
            total = sum(s.remaining_bytes() for s in members)
            if total <= most:  # type: ignore[operator]
                continue
            held = total
            for s in sorted(members, key=lambda s: (s.end_ms or 0, s.ref.session)):  # oldest first
                if total <= most:  # type: ignore[operator]
                    break
                if s.running:
                    continue
                s.delete = (f"namespace {namespace} holds {format_size(held)}; max_bytes {format_size(most)}, "
                            "oldest sessions first")  # fmt: skip
                total -= s.remaining_bytes()

    # -- the plan -------------------------------------------------------------------------------------

    def _entry(self, s: _Session) -> PlannedSession | None:
        objects = s.objects
        common = {"ref": s.ref, "status": s.status, "end_ms": s.end_ms}
        if s.marked_deleted and s.marks is not None and s.marks.deleted is not None:
            mark = s.marks.deleted
            kinds = (*objects.data_kinds(), SESSIONS)
            return PlannedSession(action="delete", kinds=kinds, bytes=objects.bytes_of(), objects=objects.count_of(),
                                  reason=mark.reason, rule=f"{MARKED} {iso(mark.at_ms)}", marked=True,
                                  **common)  # type: ignore[arg-type]  # fmt: skip
        rule = s.rule.name  # type: ignore[union-attr]
        if s.delete is not None:
            return PlannedSession(action="delete", kinds=(*objects.data_kinds(), SESSIONS), bytes=objects.bytes_of(),
                                  objects=objects.count_of(), reason=s.delete, rule=rule,
                                  **common)  # type: ignore[arg-type]  # fmt: skip
        held = set(objects.data_kinds())
        reasons = {kind: mark.reason for kind, mark in s.marked_kinds().items() if kind in held}
        marked = bool(reasons)
        reasons.update(s.expire)
        if not reasons:
            return None
        kinds = tuple(kind for kind in KINDS if kind in reasons)
        shown = rule if s.expire else f"{MARKED} {iso(min(m.at_ms for m in s.marked_kinds().values()))}"
        return PlannedSession(action="expire", kinds=kinds, bytes=objects.bytes_of(kinds),
                              objects=objects.count_of(kinds), reason="; ".join(f"{k}: {reasons[k]}" for k in kinds),
                              rule=shown, kind_reasons=reasons, marked=marked, **common)  # type: ignore[arg-type]  # fmt: skip


def _decode(data: bytes | None, kind: type[Any], key: str) -> Any:
    if data is None:
        return None
    try:
        return documents.decode(data, kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("unreadable %s (%s): taken as absent", key, exc)
        return None
