"""The job index objects' format (archive.job_index) and keys (archive.layout): both ways, and what a reader refuses."""

from __future__ import annotations

import pyarrow as pa
import pytest

from archive import job_index, layout
from archive.parquet import table_to_parquet
from archive.schema import SNAPSHOT_TABLES

JOBS = SNAPSHOT_TABLES["jobs"]


def jobs(*ids: str) -> pa.Table:
    return pa.Table.from_pylist([{"job_id": job_id, "status": "FAILED", "metadata": '{"a": "1"}', "is_hidden": False}
                                 for job_id in ids], schema=JOBS)  # fmt: skip


SESSIONS = [
    job_index.IndexedSession("ml/rc-1/session_2", "3:100:9", True, 5_000, jobs("03000000")),
    job_index.IndexedSession("ml/rc-1/session_1", "2:80:7", True, None, jobs("01000000", "02000000")),
    job_index.IndexedSession("ml/rc-2/session_3", "0:0:0", True, 7_000, jobs()),  # a session that ran no job
]


def test_sessions_with_their_source_and_jobs_come_back_as_they_went() -> None:
    data = job_index.encode_index("ml", SESSIONS)
    assert data == job_index.encode_index("ml", list(reversed(SESSIONS)))  # the same sessions, the same bytes
    found = job_index.decode_index("ml", data)
    assert list(found) == sorted(session.path for session in SESSIONS)
    for session in SESSIONS:
        back = found[session.path]
        assert (back.parts, back.closed, back.end_ns) == (session.parts, session.closed, session.end_ns)
        assert back.jobs.to_pylist() == session.jobs.to_pylist() and back.jobs.schema.names == JOBS.names
    assert job_index.decode_index("ml", job_index.encode_index("ml", [])) == {}


def test_a_reader_refuses_what_is_not_an_index_of_its_namespace_and_version() -> None:
    with pytest.raises(ValueError):
        job_index.encode_index("data", SESSIONS)
    data = job_index.encode_index("ml", SESSIONS)
    for namespace, bad in (
        ("data", data),  # copied under another namespace's name
        ("ml", data[: len(data) // 2]),  # truncated
        ("ml", table_to_parquet(pa.table({"path": ["ml/rc-1/session_1"]}))),  # another table
    ):
        with pytest.raises(job_index.InvalidIndex):
            job_index.decode_index(namespace, bad)


def test_job_index_keys_are_their_own() -> None:
    key = layout.job_index_key("ml")
    assert key == "jobindex/ml.parquet" and layout.parse_job_index_key(key) == "ml"
    assert layout.parse_catalog_index_key(key) is None
    assert layout.parse_job_index_key(layout.catalog_index_key("ml")) is None
    for other in ("jobindex/a/b.parquet", "jobindex/.parquet", "jobindex/ml.json", "sessions/ml/c/s/manifest.json"):
        assert layout.parse_job_index_key(other) is None
    with pytest.raises(layout.InvalidName):
        layout.job_index_key("../ml")
