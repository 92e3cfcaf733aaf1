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
