"""Retention on a local archive: the policy matrix, the plan, the two-phase apply, and what survives a crash.

Sessions are dated through their files' times (what a listing shows); the plan is made as of a fixed
`now`. The same flows run on SeaweedFS in test_retention_s3.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive import documents, layout
from archive.storage import ObjectInfo, Storage
from archive.storage.local import LocalStorage
from maintenance.cleaner import Cleaner
from maintenance.counting import CountingStorage
from maintenance.inventory import SessionObjects, scan
from maintenance.outcomes import SnapshotJobs
from maintenance.planner import Plan, Planner
from maintenance.policy import Flags, Policy, load_policy
from maintenance.usage import GROUPINGS, totals, usage_all, usage_of
from ray_history.cli import main

from .retention_archive import DAY_MS, Crash, CrashingStorage, Spec, keys, keys_of, write

HOUR_MS = 3_600_000


@pytest.fixture
def now() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def archive(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "archive")


def flags(**limits: object) -> Policy:
    kinds = limits.pop("kinds", {})
    return load_policy(None, Flags(kind_ages=kinds, **limits))  # type: ignore[arg-type]


def policy_file(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path)


def plan_of(storage: Storage, policy: Policy, now: int, **kwargs: object) -> Plan:
    return Planner(storage, policy, now_ms=now, **kwargs).plan()  # type: ignore[arg-type]


def actions(plan: Plan) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {entry.ref.path: (entry.action, entry.kinds) for entry in plan.sessions}


def entry_of(plan: Plan, ref: layout.SessionRef):
    return next(entry for entry in plan.sessions if entry.ref == ref)


def size_of(storage: Storage, ref: layout.SessionRef, kinds: tuple[str, ...] = ("sessions", "events", "logs",
            "metrics", "snapshots")) -> int:  # fmt: skip
    return sum(info.size for kind in kinds for info in storage.list(f"{kind}/{ref.path}/"))


def retention_of(storage: Storage, ref: layout.SessionRef) -> documents.Retention:
    return documents.decode(storage.get(layout.retention_key(ref)), documents.Retention)


# -- the policy matrix -------------------------------------------------------------------------------


def test_max_age_deletes_ended_sessions_and_never_a_running_one(archive: LocalStorage, now: int) -> None:
    old = write(archive, Spec("team/c1/s-old", ended_days=40), now)
    young = write(archive, Spec("team/c1/s-young", ended_days=20), now)
    quiet = write(archive, Spec("team/c2/s-quiet", ended_days=40, closed=False), now)  # incomplete: no closed.json
    running = write(archive, Spec("team/c3/s-running", ended_days=None), now)

    plan = plan_of(archive, flags(max_age="30d"), now)
    assert actions(plan) == {
        old.path: ("delete", ("events", "logs", "metrics", "sessions")),
        quiet.path: ("delete", ("events", "logs", "metrics", "sessions")),
    }
    entry = entry_of(plan, old)
    assert (entry.rule, entry.reason, entry.status) == ("defaults", "ended 40.0d ago; max_age 30d", "closed")
    assert entry.bytes == size_of(archive, old) and plan.bytes == size_of(archive, old) + size_of(archive, quiet)
    assert (plan.scanned, plan.running) == (4, 1)

    kept = keys_of(archive, [young, running])
    report = Cleaner(archive, grace_ms=0, now_ms=now).apply(plan)
    assert keys(archive) == kept
    # The plan's objects, and the two retention documents written (and deleted last) on the way.
    assert (report.sessions_deleted, report.objects_deleted) == (2, sum(e.objects for e in plan.sessions) + 2)
    # Even an age of a second leaves the running session alone; the ended one goes.
    assert actions(plan_of(archive, flags(max_age="1s"), now)) == {
        young.path: ("delete", ("events", "logs", "metrics", "sessions"))
    }


def test_a_failed_job_keeps_a_session_longer_and_unknown_jobs_count_as_failed(archive: LocalStorage, now: int) -> None:
    failed = write(archive, Spec("team/c/failed-40", ended_days=40, snapshot=True, failed=True), now)
    fine = write(archive, Spec("team/c/fine-40", ended_days=40, snapshot=True, failed=False), now)
    unknown = write(archive, Spec("team/c/unknown-40", ended_days=40), now)  # no snapshot
    stale = write(archive, Spec("team/c/stale-40", ended_days=40, snapshot=True, failed=False, stale_snapshot=True),
                  now)  # fmt: skip
    very_old = write(archive, Spec("team/c/failed-100", ended_days=100, snapshot=True, failed=True), now)
    hidden_only = write(archive, Spec("team/c/hidden-40", ended_days=40, snapshot=True, failed=False), now)

    plan = plan_of(archive, flags(max_age="30d", failed_max_age="90d"), now)
    assert set(actions(plan)) == {fine.path, very_old.path, hidden_only.path}
    assert entry_of(plan, fine).reason == "ended 40.0d ago; max_age 30d"
    assert entry_of(plan, very_old).reason == "ended 100.0d ago; max_age 30d and failed_max_age 90d"
    # Only the sessions whose fate hangs on it, with a snapshot written after their end, cost a read.
    assert plan.reads["jobs"] == 3
    assert {failed, unknown, stale}.isdisjoint({entry.ref for entry in plan.sessions})


def test_the_server_can_say_which_jobs_failed_and_a_planner_kept_reads_each_table_once(archive: LocalStorage,
                                                                                       now: int) -> None:  # fmt: skip
    listed = write(archive, Spec("team/c/failed-per-index", ended_days=40), now)  # no snapshot: unknown here
    fine = write(archive, Spec("team/c/fine", ended_days=40, snapshot=True, failed=False), now)
    policy = flags(max_age="30d", failed_max_age="90d")

    class JobIndex:  # what the server's job index knows, passed instead of reading snapshots
        def failed(self, session: SessionObjects) -> bool | None:
            return session.ref == listed

    assert set(actions(plan_of(archive, policy, now, outcomes=JobIndex()))) == {fine.path}
    assert set(actions(plan_of(archive, policy, now, outcomes=NoneKnown()))) == set()

    jobs = SnapshotJobs(archive)
    first, second = (plan_of(archive, policy, now, outcomes=jobs) for _ in range(2))
    assert (first.reads["jobs"], second.reads["jobs"]) == (1, 0) and actions(first) == actions(second)


class NoneKnown:
    def failed(self, session: SessionObjects) -> bool | None:
        return None


def test_kinds_expire_by_their_own_ages_and_expired_events_never_take_the_snapshot(archive: LocalStorage,
                                                                                  now: int) -> None:  # fmt: skip
    specs = {days: Spec(f"team/c/ended-{days}", ended_days=days, snapshot=True, failed=False)
             for days in (10, 20, 40, 70, 400)}  # fmt: skip
    refs = {days: write(archive, spec, now) for days, spec in specs.items()}
    no_snapshot = write(archive, Spec("team/c/raw-only-40", ended_days=40, kinds=("events", "logs")), now)
    policy = flags(kinds={"events": "30d", "logs": "14d", "metrics": "60d", "snapshots": "365d"})

    plan = plan_of(archive, policy, now)
    assert actions(plan) == {
        refs[20].path: ("expire", ("logs",)),
        refs[40].path: ("expire", ("events", "logs")),
        refs[70].path: ("expire", ("events", "logs", "metrics")),
        refs[400].path: ("delete", ("events", "logs", "metrics", "snapshots", "sessions")),
        no_snapshot.path: ("delete", ("events", "logs", "sessions")),
    }
    assert entry_of(plan, refs[70]).reason == ("events: ended 70.0d ago; events 30d; logs: ended 70.0d ago; logs 14d; "
                                               "metrics: ended 70.0d ago; metrics 60d")  # fmt: skip
    assert entry_of(plan, no_snapshot).reason.startswith("every kind it holds expired: events: ended 40.0d ago")
    assert entry_of(plan, refs[40]).bytes == size_of(archive, refs[40], ("events", "logs"))

    snapshots = keys_of(archive, [refs[40], refs[70]], ("snapshots",))
    survivors = keys_of(archive, [refs[10]]) | keys_of(
        archive, [refs[20], refs[40], refs[70]], ("sessions", "snapshots")
    )
    survivors |= keys_of(archive, [refs[20], refs[40]], ("metrics",)) | keys_of(archive, [refs[20]], ("events",))
    Cleaner(archive, grace_ms=0, now_ms=now).apply(plan)
    retention_keys = {layout.retention_key(refs[days]) for days in (20, 40, 70)}
    assert keys(archive) == survivors | retention_keys
    assert snapshots <= keys(archive)
    marks = retention_of(archive, refs[70])
    assert marks.deleted is None and sorted(marks.expired) == ["events", "logs", "metrics"]
    assert marks.expired["events"].reason == "rule defaults: ended 70.0d ago; events 30d"
    # Done: the same policy at the same moment finds nothing more to do.
    assert plan_of(archive, policy, now).sessions == ()


def test_max_sessions_keeps_the_newest_of_each_cluster_or_namespace(archive: LocalStorage, now: int,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    shared = [write(archive, Spec(f"team/shared-1/s-{days}", ended_days=days), now) for days in (1, 2, 3, 4)]
    running = write(archive, Spec("team/shared-1/s-running", ended_days=None), now)
    small = [write(archive, Spec(f"team/shared-2/s-{days}", ended_days=days), now) for days in (1, 2)]
    other = [write(archive, Spec(f"team/other/s-{days}", ended_days=days), now) for days in (1, 2, 3, 4)]
    spread = [write(archive, Spec(f"ns2/{cluster}/s-{days}", ended_days=days), now)
              for cluster, days in (("a", 1), ("b", 2), ("a", 3), ("b", 4))]  # fmt: skip
    policy = policy_file(
        tmp_path,
        """
[[rules]]
name = "two per shared cluster"
clusters = ["shared-*"]
max_sessions = 2

[[rules]]
name = "three per namespace"
namespaces = ["ns2"]
max_sessions = 3
max_sessions_per = "namespace"
""",
    )
    plan = plan_of(archive, policy, now)
    # The running session counts among the newest two, and is not touched.
    assert set(actions(plan)) == {shared[1].path, shared[2].path, shared[3].path, spread[3].path}
    assert entry_of(plan, shared[2]).reason == ("number 4 of 5 in cluster team/shared-1 by end, newest first; "
                                                "max_sessions 2")  # fmt: skip
    assert entry_of(plan, shared[2]).rule == "two per shared cluster"
    assert entry_of(plan, spread[3]).reason.startswith("number 4 of 4 in namespace ns2")
    assert all(ref.path not in actions(plan) for ref in (running, *small, *other))


def test_max_bytes_deletes_the_oldest_sessions_until_the_namespace_fits(archive: LocalStorage, now: int,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    refs = {days: write(archive, Spec(f"big/c/s-{days}", ended_days=days, rows=5 + days), now) for days in (1, 2, 3, 4)}
    running = write(archive, Spec("big/c/s-running", ended_days=None), now)
    elsewhere = write(archive, Spec("small/c/s-9", ended_days=9, rows=20), now)
    sizes = {days: size_of(archive, ref) for days, ref in refs.items()}
    budget = sizes[1] + sizes[2] + size_of(archive, running) + 1  # room for the newest two and the running one
    policy = policy_file(tmp_path, f'[[rules]]\nname = "big budget"\nnamespaces = ["big"]\nmax_bytes = {budget}\n')

    plan = plan_of(archive, policy, now)
    assert set(actions(plan)) == {refs[3].path, refs[4].path}
    assert entry_of(plan, refs[4]).reason.startswith("namespace big holds ")
    Cleaner(archive, grace_ms=0, now_ms=now).apply(plan)
    left = sum(size_of(archive, ref) for ref in (refs[1], refs[2], running))
    assert left <= budget and keys_of(archive, [elsewhere]) and keys_of(archive, [running])
    assert plan_of(archive, policy, now).sessions == ()


PRECEDENCE = """
[defaults]
max_age = "30d"

[[rules]]
name = "legal hold"
labels = { hold = "yes" }
max_age = "never"

[[rules]]
name = "nightly"
owners = ["RayJob/nightly-*"]
max_age = "7d"

[[rules]]
name = "gpu"
queues = ["gpu-*"]
max_age = "60d"

[[rules]]
name = "abandoned"
statuses = ["incomplete"]
max_age = "3d"
"""


def test_the_first_matching_rule_decides_and_the_plan_says_which(archive: LocalStorage, now: int,
                                                                tmp_path: Path) -> None:  # fmt: skip
    held = write(archive, Spec("ml/a/held", ended_days=400, labels={"hold": "yes"}, owner=("RayJob", "nightly-1")),
                 now)  # fmt: skip
    nightly = write(archive, Spec("ml/b/nightly", ended_days=10, owner=("RayJob", "nightly-2")), now)
    gpu = write(archive, Spec("ml/c/gpu", ended_days=40, queue="gpu-a"), now)
    gpu_nightly = write(archive, Spec("ml/d/gpu-nightly", ended_days=10, queue="gpu-a", owner=("RayJob", "nightly-3")),
                        now)  # fmt: skip
    abandoned = write(archive, Spec("ml/e/abandoned", ended_days=5, closed=False), now)
    plain_old = write(archive, Spec("ml/f/plain-old", ended_days=40), now)
    plain = write(archive, Spec("ml/f/plain", ended_days=10), now)

    plan = plan_of(archive, policy_file(tmp_path, PRECEDENCE), now)
    rules = {entry.ref: entry.rule for entry in plan.sessions}
    assert rules == {nightly: "nightly", gpu_nightly: "nightly", abandoned: "abandoned", plain_old: "defaults"}
    assert held not in rules and gpu not in rules and plain not in rules
    # The first rule selects by label, so every session's manifest was read, once.
    assert plan.reads["manifests"] == 7


def test_manifests_are_read_only_where_a_rule_needs_them(archive: LocalStorage, now: int, tmp_path: Path) -> None:
    for index in range(6):
        write(archive, Spec(f"{'ml' if index < 2 else 'web'}/c/s-{index}", ended_days=40), now)
    counting = CountingStorage(archive)
    policy = policy_file(tmp_path, '[defaults]\nmax_age = "30d"\n[[rules]]\nname = "ml hold"\nnamespaces = ["ml"]\n'
                         'labels = { hold = "yes" }\nmax_age = "never"\n')  # fmt: skip
    plan = plan_of(counting, policy, now)
    assert len(plan.sessions) == 6 and plan.reads["manifests"] == 2
    # One listing of sessions/ and of each data prefix, and the two manifests: nothing per session else.
    assert counting.calls == {"list": 5, "get": 2}
    counting.reset()
    plan_of(counting, flags(max_age="30d"), now)
    assert counting.calls == {"list": 5}


@pytest.mark.parametrize("days_later", [0, 10, 25])
def test_now_evaluates_the_policy_at_another_moment(archive: LocalStorage, now: int, days_later: int) -> None:
    ten = write(archive, Spec("team/c/ten", ended_days=10), now)
    twenty_five = write(archive, Spec("team/c/twenty-five", ended_days=25), now)
    expected = {0: set(), 10: {twenty_five.path}, 25: {ten.path, twenty_five.path}}[days_later]
    plan = plan_of(archive, flags(max_age="30d"), now + days_later * DAY_MS)
    assert set(actions(plan)) == expected
    assert keys(archive) == keys_of(archive, [ten, twenty_five])  # a plan writes nothing


def test_a_moment_before_a_session_ended_sees_it_running(archive: LocalStorage, now: int) -> None:
    ten = write(archive, Spec("team/c/ten", ended_days=10), now)
    plan = plan_of(archive, flags(max_age="1s"), now - 15 * DAY_MS)
    assert plan.sessions == () and plan.running == 1
    assert set(actions(plan_of(archive, flags(max_age="1s"), now))) == {ten.path}


# -- applying: two phases, the grace ---------------------------------------------------------------


def test_marks_first_then_objects_after_the_grace(archive: LocalStorage, now: int) -> None:
    old = write(archive, Spec("team/c/old", ended_days=40), now)
    aging = write(archive, Spec("team/c/aging", ended_days=20), now)
    policy = flags(max_age="30d", kinds={"logs": "14d"})
    before = keys(archive)

    report = Cleaner(archive, grace_ms=HOUR_MS, now_ms=now).apply(plan_of(archive, policy, now))
    assert (report.marked, report.objects_deleted, len(report.waiting)) == (2, 0, 2)
    assert keys(archive) == before | {layout.retention_key(old), layout.retention_key(aging)}
    mark = retention_of(archive, old).deleted
    assert mark is not None and (mark.at_ms, mark.delete_after_ms) == (now, now + HOUR_MS)
    assert mark.reason == "rule defaults: ended 40.0d ago; max_age 30d"
    assert list(retention_of(archive, aging).expired) == ["logs"]

    # Half-way through the grace: the plan shows what the marks left to do; nothing is deleted, nothing moves.
    later = plan_of(archive, policy, now + HOUR_MS // 2)
    assert {(e.ref, e.action, e.marked) for e in later.sessions} == {(old, "delete", True), (aging, "expire", True)}
    assert entry_of(later, old).rule.startswith("marked ") and entry_of(later, old).reason == mark.reason
    report = Cleaner(archive, grace_ms=HOUR_MS, now_ms=now + HOUR_MS // 2).apply(later)
    assert (report.marked, report.objects_deleted) == (0, 0)
    assert retention_of(archive, old).deleted == mark

    done = now + HOUR_MS + 60_000
    report = Cleaner(archive, grace_ms=HOUR_MS, now_ms=done).apply(plan_of(archive, policy, done))
    assert keys_of(archive, [old]) == set()
    assert keys_of(archive, [aging], ("logs",)) == set() and keys_of(archive, [aging], ("events",))
    assert (report.sessions_deleted, report.kinds_expired, report.waiting) == (1, 1, [])
    assert plan_of(archive, policy, done).sessions == ()


def test_a_dry_run_prints_the_plan_that_apply_carries_out(archive: LocalStorage, now: int, tmp_path: Path) -> None:
    for days in (5, 20, 40, 70):
        write(archive, Spec(f"team/c{days % 3}/s-{days}", ended_days=days, snapshot=days > 30, failed=False), now)
    write(archive, Spec("team/c9/running", ended_days=None), now)
    copy = tmp_path / "copy"
    shutil.copytree(archive.root, copy)  # file times kept
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000)) + "Z"
    args = ["--max-age", "60d", "--kind-age", "logs=14d,events=30d", "--now", at, "--format", "json"]
    sizes = {info.key: info.size for info in _listing(archive)}
    before = set(sizes)

    dry = CliRunner().invoke(main, ["retention", "--archive", str(archive.root), *args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert keys(archive) == before
    applied = CliRunner().invoke(main, ["retention", "--archive", str(copy), *args, "--grace", "0s"])
    assert applied.exit_code == 0, applied.output
    planned, done = json.loads(dry.output), json.loads(applied.output)
    assert planned["applied"] is None and planned["sessions"] and planned["sessions"] == done["sessions"]
    assert {entry["action"] for entry in planned["sessions"]} == {"delete", "expire"}
    # What went is exactly what the plan named: whole sessions, or the named kinds of them.
    gone = before - keys(LocalStorage(copy))
    assert sum(sizes[key] for key in gone) == planned["bytes"] == done["bytes"]
    named = set()
    for entry in planned["sessions"]:
        ref = layout.SessionRef(entry["namespace"], entry["cluster"], entry["session"])
        named |= keys_of(archive, [ref], tuple(entry["kinds"]))
    assert gone == named


def test_the_cli_prints_session_action_kinds_bytes_rule_and_reason(archive: LocalStorage, now: int,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    write(archive, Spec("team/c/old", ended_days=40), now)
    result = CliRunner().invoke(main, ["retention", "--archive", str(archive.root), "--max-age", "30d", "--dry-run"])
    assert result.exit_code == 0, result.output
    header, _, row, summary, dry = result.output.splitlines()
    assert header.split() == ["session", "action", "kinds", "bytes", "rule", "reason"]
    assert row.split()[:3] == ["team/c/old", "delete", "events,logs,metrics,sessions"]
    assert "defaults" in row and "ended 40.0d ago; max_age 30d" in row
    assert summary.startswith("plan as of ") and "1 sessions (1 delete, 0 expire)" in summary
    assert dry == "dry run: nothing written"
    bad = tmp_path / "bad.toml"
    bad.write_text('[defaults]\nmax_age = "forever"\n')
    result = CliRunner().invoke(main, ["retention", "--archive", str(archive.root), "--policy", str(bad)])
    assert result.exit_code == 1 and f"{bad}: line 2: [defaults] max_age" in result.output
    assert keys_of(archive, [layout.SessionRef("team", "c", "old")])


# -- crashes and concurrency ---------------------------------------------------------------------------


def assert_marked_while_incomplete(archive: Storage, before: Mapping[layout.SessionRef, SessionObjects]) -> None:
    """What the server relies on at every moment: a session that lost objects still has its retention
    document, saying what went (the server hides a deleted session and says an expired kind expired)."""
    for ref, objects in scan(archive).sessions.items():
        if objects.count_of() - (objects.retention is not None) < before[ref].count_of():
            marks = retention_of(archive, ref)
            gone = set(before[ref].data_kinds()) - set(objects.data_kinds())
            assert marks.deleted is not None or gone <= set(marks.expired), ref


def _crash_archive(root: Path, now: int) -> tuple[LocalStorage, set[str], Policy]:
    archive = LocalStorage(root)
    for index in range(8):
        write(archive, Spec(f"team/c{index % 2}/old-{index}", ended_days=40 + index, nodes=2, snapshot=index % 3 == 0,
                            failed=False), now)  # fmt: skip
    for index in range(4):
        write(archive, Spec(f"team/c{index % 2}/aging-{index}", ended_days=20, snapshot=True, failed=False), now)
    write(archive, Spec("team/c0/young", ended_days=2), now)
    policy = flags(max_age="30d", kinds={"logs": "14d", "metrics": "14d"})
    final = Path(str(root) + "-final")
    shutil.copytree(root, final)
    reference = LocalStorage(final)
    Cleaner(reference, grace_ms=0, now_ms=now).apply(plan_of(reference, policy, now))
    return archive, keys(reference), policy


@pytest.mark.parametrize(("call", "after"), [("put", 0), ("put", 3), ("delete", 0), ("delete", 1), ("delete", 9),
                                             ("delete", 40), ("delete", 90)])  # fmt: skip
def test_a_run_that_dies_at_any_point_is_finished_by_the_next(tmp_path: Path, now: int, call: str, after: int) -> None:
    archive, final, policy = _crash_archive(tmp_path / "archive", now)
    counts = scan(archive).sessions
    with pytest.raises(Crash):
        Cleaner(CrashingStorage(archive, call, after), grace_ms=0, now_ms=now).apply(plan_of(archive, policy, now))  # type: ignore[arg-type]
    assert keys(archive) != final
    assert_marked_while_incomplete(archive, counts)
    Cleaner(archive, grace_ms=0, now_ms=now).apply(plan_of(archive, policy, now))
    assert keys(archive) == final
    assert plan_of(archive, policy, now).sessions == ()


def test_kill_9_in_the_middle_of_deleting_then_a_rerun_converges(tmp_path: Path, now: int) -> None:
    archive, final, _ = _crash_archive(tmp_path / "archive", now)
    for index in range(30):  # enough objects that the kill lands mid-way
        write(archive, Spec(f"bulk/c/old-{index}", ended_days=50, nodes=3), now)
    # The bulk sessions all go: the final state is the same.
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 1000)) + "Z"
    command = [sys.executable, "-c", "from ray_history.cli import main; main()", "retention", "--archive",
               str(archive.root), "--max-age", "30d", "--kind-age", "logs=14d,metrics=14d", "--grace", "0s",
               "--now", at]  # fmt: skip
    before = keys(archive)
    counts = scan(archive).sessions
    env = {**os.environ, "RAY_HISTORY_LOG_LEVEL": "DEBUG"}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deleted = 0
    assert child.stderr is not None
    for line in child.stderr:
        if " deleted " in line:
            deleted += 1
            if deleted == 10:
                child.send_signal(signal.SIGKILL)
                break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    left = keys(archive)
    assert before - left and left - final, "the kill did not land while deleting"
    assert_marked_while_incomplete(archive, counts)

    rerun = CliRunner().invoke(main, ["retention", "--archive", str(archive.root), "--max-age", "30d", "--kind-age",
                                      "logs=14d,metrics=14d", "--grace", "0s", "--now", at])  # fmt: skip
    assert rerun.exit_code == 0, rerun.output
    assert keys(archive) == final


def test_two_cleaners_at_once_do_no_harm(tmp_path: Path, now: int) -> None:
    archive, final, policy = _crash_archive(tmp_path / "archive", now)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            storage = LocalStorage(archive.root)
            Cleaner(storage, grace_ms=0, now_ms=now).apply(plan_of(storage, policy, now))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A cleaner that read no mark may write one back after the other finished; the next run removes it.
    strays = keys(archive) - final
    assert all(key.endswith("/retention.json") for key in strays)
    Cleaner(archive, grace_ms=0, now_ms=now).apply(plan_of(archive, policy, now))
    assert keys(archive) == final


# -- du ------------------------------------------------------------------------------------------------


def test_du_figures_are_what_a_listing_sums(archive: LocalStorage, now: int) -> None:
    for index, days in enumerate((3, 35, 70)):
        write(archive, Spec(f"ns{index % 2}/c{index}/s-{days}", ended_days=days, snapshot=index == 1, failed=False),
              now)  # fmt: skip
    archive.put("events/README.txt", b"not a session's object")
    listing = [info for kind in ("sessions", "events", "logs", "metrics", "snapshots") for info in
               archive.list(f"{kind}/")]  # fmt: skip
    inventory = scan(archive)
    assert totals(inventory).objects == len(listing) and totals(inventory).bytes == sum(i.size for i in listing)
    assert totals(inventory).sessions == 3
    for by in GROUPINGS:
        rows = usage_of(inventory, by)
        assert sum(row.objects for row in rows) == len(listing), by
        assert sum(row.bytes for row in rows) == sum(info.size for info in listing), by
    by_kind = {row.group: row for row in usage_of(inventory, "kind")}
    for kind in ("sessions", "events", "logs", "metrics", "snapshots"):
        assert by_kind[kind].bytes == sum(info.size for info in archive.list(f"{kind}/")), kind
    assert by_kind["snapshots"].sessions == 1 and by_kind["events"].objects == 4  # three parts and the README
    by_namespace = {row.group: row for row in usage_of(inventory, "namespace")}
    assert by_namespace["ns0"].bytes == sum(info.size for info in listing if info.key.split("/")[1:2] == ["ns0"])
    assert by_namespace["(unparsed)"].objects == 1

    every = usage_all(archive)  # what the server's /metrics gauges are made of: one scan, every grouping
    assert list(every) == list(GROUPINGS) and every["kind"] == usage_of(inventory, "kind")
    result = CliRunner().invoke(main, ["du", "--archive", str(archive.root), "--by", "month", "--format", "json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["total"]["bytes"] == sum(info.size for info in listing)
    assert sum(group["sessions"] for group in shown["groups"]) == 3
    table = CliRunner().invoke(main, ["du", "--archive", str(archive.root), "--by", "kind"])
    assert table.exit_code == 0 and table.output.splitlines()[0].split() == ["kind", "sessions", "objects", "bytes",
                                                                              "size"]  # fmt: skip


def _listing(storage: Storage) -> list[ObjectInfo]:
    return [info for kind in ("sessions", "events", "logs", "metrics", "snapshots") for info in
            storage.list(f"{kind}/")]  # fmt: skip
