"""Retention and the bucket backstop on real S3 servers: SeaweedFS (signatures checked) and moto.

An S3 store dates objects itself, so sessions written here all ended "now": the plans are made as of a
later moment (`now`), which is also what an operator's what-if does.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive import documents, layout
from archive.storage import S3Options
from archive.storage.s3 import S3Storage
from maintenance import lifecycle
from maintenance.cleaner import Cleaner
from maintenance.counting import CountingStorage
from maintenance.inventory import scan
from maintenance.planner import Planner
from maintenance.policy import DAY_MS, Flags, Policy, load_policy
from maintenance.usage import GROUPINGS, totals, usage_of
from ray_history.cli import main

from .objectstores import SeaweedFS, create_bucket, moto_server, s3_client, seaweedfs_server
from .retention_archive import Spec, keys, keys_of, write
from .test_retention import Crash, CrashingStorage

BUCKET = "ray-history-retention"
MOTO_KEYS = ("testing", "testing")
HOUR_MS = 3_600_000
POLICY = """
[defaults]
max_age = "90d"
failed_max_age = "45d"
kinds = { events = "30d", logs = "14d", metrics = "60d", snapshots = "365d" }

[[rules]]
name = "scratch"
namespaces = ["scratch"]
max_age = "7d"
failed_max_age = "0d"

[[rules]]
name = "ml nightly"
namespaces = ["ml"]
owners = ["RayJob/nightly-*"]
max_age = "10d"
failed_max_age = "0d"

[[rules]]
name = "audit"
namespaces = ["audit-*"]
max_age = "never"
kinds = { snapshots = "never", events = "never" }
"""


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        create_bucket(endpoint, *MOTO_KEYS, BUCKET)
        yield endpoint


def _storage(endpoint: str, access: str, secret: str, prefix: str) -> S3Storage:
    options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key=access, secret_key=secret)
    return S3Storage(BUCKET, prefix, options)


@pytest.fixture
def archive(seaweed: SeaweedFS) -> S3Storage:
    return _storage(seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, f"t-{uuid.uuid4().hex[:10]}")


def flags(**limits: object) -> Policy:
    kinds = limits.pop("kinds", {})
    return load_policy(None, Flags(kind_ages=kinds, **limits))  # type: ignore[arg-type]


def _sessions(archive: S3Storage) -> dict[str, layout.SessionRef]:
    specs = {
        "plain": Spec("team/c1/plain", snapshot=True, failed=False),
        "failed": Spec("team/c1/failed", snapshot=True, failed=True),
        "raw": Spec("team/c2/raw", nodes=2),
    }
    return {name: write(archive, spec) for name, spec in specs.items()}


def test_plan_then_marks_then_deletion_after_the_grace_on_seaweedfs(archive: S3Storage) -> None:
    refs = _sessions(archive)
    now = time.time_ns() // 1_000_000 + 40 * DAY_MS
    policy = flags(max_age="50d", failed_max_age="60d", kinds={"logs": "14d"})
    counting = CountingStorage(archive)
    plan = Planner(counting, policy, now_ms=now).plan()
    # A failed job, or jobs unknown (no snapshot), keep the logs too; the plain session's go.
    assert [(e.ref, e.action, e.kinds) for e in plan.sessions] == [(refs["plain"], "expire", ("logs",))]
    # 5 listings (a request each here), and the jobs tables of the two sessions with a snapshot.
    assert counting.calls == {"list": 5, "get": 2} and counting.http == {"ListObjectsV2": 5, "GetObject": 2}

    before = keys(archive)
    report = Cleaner(archive, grace_ms=HOUR_MS, now_ms=now).apply(plan)
    assert (report.marked, report.objects_deleted) == (1, 0)
    assert keys(archive) == before | {layout.retention_key(refs["plain"])}
    # The mark is a real document, with the tags every object carries.
    assert archive.get_tags(layout.retention_key(refs["plain"])) == {"kind": "sessions", "namespace": "team",
                                                                     "cluster": "c1"}  # fmt: skip
    Cleaner(archive, grace_ms=HOUR_MS, now_ms=now + HOUR_MS // 2).apply(Planner(archive, policy, now_ms=now).plan())
    assert keys(archive) == before | {layout.retention_key(refs["plain"])}

    later = now + HOUR_MS + 1
    Cleaner(archive, grace_ms=HOUR_MS, now_ms=later).apply(Planner(archive, policy, now_ms=later).plan())
    assert keys_of(archive, [refs["plain"]], ("logs",)) == set()
    assert keys_of(archive, [refs["plain"]], ("events", "metrics", "snapshots"))
    marks = documents.decode(archive.get(layout.retention_key(refs["plain"])), documents.Retention)
    assert list(marks.expired) == ["logs"] and marks.deleted is None

    # Fifteen days on, the plain session's age is reached; the others are kept for their jobs.
    much_later = now + 15 * DAY_MS
    plan = Planner(archive, policy, now_ms=much_later).plan()
    assert [(e.ref, e.action) for e in plan.sessions] == [(refs["plain"], "delete")]
    Cleaner(archive, grace_ms=0, now_ms=much_later).apply(plan)
    assert keys(archive) == keys_of(archive, [refs["failed"], refs["raw"]]) and keys_of(archive, [refs["raw"]])


@pytest.mark.parametrize("after", [0, 4, 15])
def test_an_interrupted_apply_converges_on_seaweedfs(archive: S3Storage, after: int) -> None:
    refs = _sessions(archive)
    now = time.time_ns() // 1_000_000 + 40 * DAY_MS
    policy = flags(max_age="35d")
    with pytest.raises(Crash):
        Cleaner(CrashingStorage(archive, "delete", after), grace_ms=0, now_ms=now).apply(  # type: ignore[arg-type]
            Planner(archive, policy, now_ms=now).plan()
        )
    assert keys_of(archive, refs.values())  # killed with work left
    Cleaner(archive, grace_ms=0, now_ms=now).apply(Planner(archive, policy, now_ms=now).plan())
    assert keys(archive) == set()
    assert Planner(archive, policy, now_ms=now).plan().sessions == ()


def test_two_cleaners_at_once_on_seaweedfs(archive: S3Storage) -> None:
    for index in range(6):
        write(archive, Spec(f"team/c{index % 2}/s-{index}", snapshot=index % 2 == 0, failed=False))
    now = time.time_ns() // 1_000_000 + 20 * DAY_MS
    policy = flags(kinds={"events": "10d", "logs": "10d"})  # every session keeps its metrics and snapshot
    expected = {key for key in keys(archive) if key.split("/")[0] not in ("events", "logs")}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            Cleaner(archive, grace_ms=0, now_ms=now).apply(Planner(archive, policy, now_ms=now).plan())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    marks = {key for key in keys(archive) if key.endswith("/retention.json")}
    assert keys(archive) - marks == expected and len(marks) == 6
    assert Planner(archive, policy, now_ms=now).plan().sessions == ()


def test_du_on_seaweedfs_is_what_the_listing_sums(archive: S3Storage) -> None:
    _sessions(archive)
    listing = [info for kind in ("sessions", "events", "logs", "metrics", "snapshots")
               for info in archive.list(f"{kind}/")]  # fmt: skip
    inventory = scan(archive)
    assert (totals(inventory).objects, totals(inventory).bytes) == (len(listing), sum(i.size for i in listing))
    for by in GROUPINGS:
        assert sum(row.bytes for row in usage_of(inventory, by)) == sum(i.size for i in listing)


def test_the_cli_on_seaweedfs(archive: S3Storage, seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    refs = _sessions(archive)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 40 * 86400))
    env = {"AWS_ACCESS_KEY_ID": seaweed.access_key, "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
           "RAY_HISTORY_ARCHIVE": archive.uri, "RAY_HISTORY_S3_ENDPOINT": seaweed.endpoint_url}  # fmt: skip
    result = CliRunner().invoke(main, ["retention", "--max-age", "30d", "--now", at, "--format", "json", "--grace",
                                       "0s"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert {entry["session"] for entry in shown["sessions"]} == {ref.session for ref in refs.values()}
    # Nothing is left but the change journal's markers of the deletions (archive.changes; pruned after a day).
    left = {key for key in keys(archive) if not key.startswith("changes/")}
    assert shown["applied"]["sessions_deleted"] == 3 and left == set()


# -- the bucket backstop -----------------------------------------------------------------------------


def test_lifecycle_rules_expire_later_than_the_policy_and_never_before_it(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    policy = load_policy(path)
    found = {(e.kind, e.namespace): e.days for e in lifecycle.expiries(policy)}
    assert found == {
        # Every namespace: the longest any rule keeps the kind (failed jobs included), plus the 7-day margin.
        # The audit rule keeps events and snapshots forever: no bucket rule may touch them, nor the documents.
        ("logs", None): 45 + 7, ("metrics", None): 60 + 7,
        # scratch is decided by its own rule alone: 7 days for everything.
        **{(kind, "scratch"): 7 + 7 for kind in ("sessions", "events", "logs", "metrics", "snapshots")},
        # ml partly (nightly RayJobs: 10 days), the rest by the defaults: shorter than forever only.
        ("events", "ml"): 45 + 7, ("snapshots", "ml"): 90 + 7, ("sessions", "ml"): 90 + 7,
    }  # fmt: skip
    # Whatever the rule that decides a session, its objects outlive the policy's age by the margin.
    for (kind, namespace), days in found.items():
        rules = policy.rules if namespace is None else lifecycle.rules_for(policy, namespace)
        kinds = ("events", "logs", "metrics", "snapshots") if kind == "sessions" else (kind,)
        for rule in rules:
            lives = [rule.limits.lifetime_ms(k) for k in kinds]
            assert all(life is not None and days * DAY_MS >= life + 7 * DAY_MS for life in lives), (kind, rule.name)


def test_lifecycle_json_is_accepted_by_moto_and_keeps_the_buckets_other_rules(moto_endpoint: str,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    client = s3_client(moto_endpoint, *MOTO_KEYS)
    foreign = {"ID": "someone else's", "Status": "Enabled", "Filter": {"Prefix": "other-app/"},
               "Expiration": {"Days": 3}}  # fmt: skip
    client.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": [foreign]})
    env = {"AWS_ACCESS_KEY_ID": MOTO_KEYS[0], "AWS_SECRET_ACCESS_KEY": MOTO_KEYS[1],
           "RAY_HISTORY_S3_ENDPOINT": moto_endpoint}  # fmt: skip
    args = ["lifecycle", "--archive", f"s3://{BUCKET}/team-archive", "--policy", str(path), "--apply"]
    for _ in range(2):  # applying again replaces this archive's rules, it does not add to them
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    rules = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    by_id = {rule["ID"]: rule for rule in rules}
    assert len(rules) == len(printed["Rules"]) + 1 and by_id["someone else's"]["Expiration"] == {"Days": 3}
    housekeeping = by_id["ray-history[team-archive/] housekeeping"]
    assert housekeeping["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert housekeeping["Filter"] == {"Prefix": "team-archive/"}
    logs = by_id["ray-history[team-archive/] logs"]
    assert logs["Filter"] == {"Prefix": "team-archive/logs/"} and logs["Expiration"] == {"Days": 45 + 7}
    scratch = by_id["ray-history[team-archive/] events scratch"]
    assert scratch["Filter"]["And"]["Prefix"] == "team-archive/events/scratch/"
    assert scratch["Filter"]["And"]["Tags"] == [{"Key": "kind", "Value": "events"},
                                                {"Key": "namespace", "Value": "scratch"}]  # fmt: skip
    assert "kept the bucket's 1 other rules" in result.stderr


def test_lifecycle_is_accepted_by_seaweedfs(seaweed: SeaweedFS, archive: S3Storage) -> None:
    policy = flags(max_age="30d", kinds={"logs": "14d"})
    applied = lifecycle.apply_configuration(archive, lifecycle.s3_configuration(policy, f"{archive.prefix}/"))
    client = s3_client(seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key)
    stored = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    ours = [rule for rule in stored if lifecycle.owns(rule["ID"], f"{archive.prefix}/")]
    assert len(ours) == applied.rules == 2 + 5  # housekeeping, the change journal, and sessions + the four kinds
    assert {rule["ID"].split("] ")[1]: rule.get("Expiration", {}).get("Days") for rule in ours} == {
        "housekeeping": None,
        "change journal": 1,
        "sessions": 37,
        "events": 37,
        "logs": 21,
        "metrics": 37,
        "snapshots": 37,
    }


def test_minio_commands_say_the_same_rules() -> None:
    policy = flags(max_age="30d", kinds={"logs": "14d"})
    commands = lifecycle.minio_commands(policy, "myminio/archive", "ray/")
    assert "mc ilm rule add --prefix ray/logs/ --expire-days 21 myminio/archive" in commands
    assert any("--noncurrent-expire-days 7 --expire-delete-marker" in line for line in commands)
    assert "mc ilm rule add --prefix ray/changes/ --expire-days 1 myminio/archive" in commands
    assert sum(line.startswith("mc ilm rule add") for line in commands) == 2 + 5
