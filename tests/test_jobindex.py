"""The job index on its own: sessions' jobs put, replaced, listed across sessions and forgotten."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from archive import layout
from archive.schema import SNAPSHOT_TABLES
from historyserver.errors import BadRequest
from historyserver.jobindex import Entry, Indexed, JobIndex, JobQuery

JOBS = SNAPSHOT_TABLES["jobs"]


def jobs(*rows: dict[str, Any]) -> pa.Table:
    defaults = {"type": "SUBMISSION", "is_hidden": False, "metadata": "{}", "runtime_env": "{}"}
    return pa.Table.from_pylist([defaults | row for row in rows], schema=JOBS)


def entry(namespace: str, session: str, table: pa.Table, status: str = "closed") -> Entry:
    ref = layout.SessionRef(namespace, "train", session)
    row = {"namespace": namespace, "cluster": "train", "session": session, "status": status,
           "owner_kind": "RayJob", "owner_name": f"{namespace}-nightly", "rayjob": f"{namespace}-nightly"}  # fmt: skip
    return Entry(ref, row, table, Indexed("1:1:1", status == "closed", 1))


@pytest.fixture
def index() -> JobIndex:
    index = JobIndex()
    index.put([
        entry("vision", "s1", jobs(
            {"submission_id": "a", "job_id": "02000000", "status": "FAILED", "entrypoint": "python train.py",
             "start_time_ms": 1_000, "end_time_ms": 5_000, "metadata": '{"team": "vision", "run": "7"}'},
            {"job_id": "01000000", "type": "DRIVER", "status": "SUCCEEDED", "is_hidden": True, "start_time_ms": 900},
        )),
        entry("nlp", "s2", jobs(
            {"submission_id": "b", "job_id": "02000000", "status": "SUCCEEDED", "entrypoint": "python Eval.py",
             "start_time_ms": 2_000, "end_time_ms": 2_500, "metadata": '{"team": "nlp"}'},
        )),
        entry("nlp", "s3", jobs()),  # a session that ran no job is indexed all the same
    ])  # fmt: skip
    return index


def listed(index: JobIndex, **query: Any) -> list[tuple[str, str | None]]:
    _, items = index.list_jobs(JobQuery(**query))
    return [(item["namespace"], item["submission_id"]) for item in items]


def test_jobs_of_every_session_newest_first_with_their_session(index: JobIndex) -> None:
    total, items = index.list_jobs(JobQuery())
    assert total == 2 and [item["submission_id"] for item in items] == ["b", "a"]
    assert items[1]["session"] == "s1" and items[1]["rayjob"] == "vision-nightly"
    assert items[1]["metadata"] == {"team": "vision", "run": "7"} and items[1]["duration_ms"] == 4_000
    assert index.sessions_indexed() == 3
    assert listed(index, include_hidden=True, sort="start_time_ms")[0] == ("vision", None)


def test_filters(index: JobIndex) -> None:
    assert listed(index, status="failed") == [("vision", "a")]
    assert listed(index, entrypoint="EVAL") == [("nlp", "b")]
    assert listed(index, metadata=["team=vision", "run=7"]) == [("vision", "a")]
    assert listed(index, metadata=["team=vision", "run=8"]) == []
    assert listed(index, started_after_ms=1_500) == [("nlp", "b")]
    assert listed(index, started_before_ms=1_500) == [("vision", "a")]
    assert listed(index, namespace="nlp", submission_id="b") == [("nlp", "b")]
    assert listed(index, sort="-duration_ms") == [("vision", "a"), ("nlp", "b")]


def test_a_session_is_replaced_whole_and_forgotten_when_it_leaves_the_archive(index: JobIndex) -> None:
    index.put([entry("vision", "s1", jobs({"submission_id": "c", "status": "RUNNING", "start_time_ms": 3_000}))])
    assert listed(index) == [("vision", "c"), ("nlp", "b")]
    index.forget({"nlp/train/s2", "nlp/train/s3"})
    assert listed(index) == [("vision", "c")] and index.sessions_indexed() == 1


@pytest.mark.parametrize("query", [JobQuery(status="DONE"), JobQuery(metadata=["team"]), JobQuery(sort="secret"),
                                   JobQuery(limit=0), JobQuery(offset=-1)])  # fmt: skip
def test_bad_queries_say_why(index: JobIndex, query: JobQuery) -> None:
    with pytest.raises(BadRequest):
        index.list_jobs(query)


def test_every_page_at_every_depth_is_the_single_order_by_one_with_ties_and_nulls() -> None:
    """A page is found in steps (historyserver.jobsearch); it must be exactly what one ORDER BY ... LIMIT ...
    OFFSET over the whole sort, tie-break included, gives: ties at a page's edges, nulls last, either way."""
    index = JobIndex()
    rows = []
    for number in range(60):
        start = None if number % 7 == 0 else 1_000 + (number % 9) * 10  # many ties, and nulls
        rows.append({"submission_id": None if number % 5 == 0 else f"s{number % 4}", "job_id": f"{number:08x}",
                     "status": ("FAILED", "SUCCEEDED", "RUNNING")[number % 3], "start_time_ms": start,
                     "end_time_ms": None if number % 11 == 0 else 5_000,
                     "entrypoint": f"python {number % 4}.py"})  # fmt: skip
    index.put([entry(namespace, f"s{part}", jobs(*rows[part::6])) for part, namespace in
               enumerate(("a", "b", "a", "c", "b", "a"))])  # fmt: skip
    for sort in ("start_time_ms", "-start_time_ms", "status", "-duration_ms", "submission_id", "-entrypoint"):
        _, everything = index.list_jobs(JobQuery(sort=sort, limit=1000))
        expected = ordered(index, sort)
        assert [key(item) for item in everything] == expected
        for limit in (1, 4, 7):
            for offset in range(0, 62, 3):
                total, items = index.list_jobs(JobQuery(sort=sort, limit=limit, offset=offset))
                assert total == 60 and [key(item) for item in items] == expected[offset : offset + limit]


def key(item: dict[str, Any]) -> tuple[str, str | None, str | None]:
    return item["session"], item["submission_id"], item["job_id"]


def ordered(index: JobIndex, sort: str) -> list[tuple[str, str | None, str | None]]:
    """The order as one ORDER BY says it, from the table itself."""
    column = sort.removeprefix("-")
    direction = "DESC" if sort.startswith("-") else "ASC"
    found = index._db.execute(
        f"SELECT session, submission_id, job_id FROM jobs WHERE NOT is_hidden ORDER BY {column} {direction} "
        "NULLS LAST, path, submission_id NULLS LAST, job_id NULLS LAST"
    ).fetchall()
    return [tuple(row) for row in found]
