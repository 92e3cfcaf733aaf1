"""The job index objects (`jobindex/{namespace}.parquet`): the jobs of every ended session of a namespace, as the
history server indexed them.

A history server with an empty cache would otherwise read each ended session's `jobs` snapshot table to search jobs
across sessions (a listing and two reads per session: 10,000 sessions cost 30,000 requests). An object holds, per
session, its path, what its rows came from (the events parts' fingerprint, whether and when the session had ended,
as the snapshot's manifest says them) and the snapshot's `jobs` rows themselves, so a start reads one object per
namespace. Only the jobs are kept, not what the catalog says of the session (owner, status): the reader joins the
catalog's row, and the catalog stays the authority on what exists (a session it no longer lists is not indexed,
whatever an object says) and on how a session ended (rows from a session that ended otherwise are not used).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import layout
from .parquet import read_checked, table_to_parquet
from .schema import SNAPSHOT_SCHEMA_VERSION, SNAPSHOT_TABLES

INDEX_TABLE = "job_index"
# Bump when the columns change: a reader ignores an object of another version (and the server rewrites it). The
# jobs rows' own version is the snapshot's, kept beside it: an object of older rows is ignored the same way.
INDEX_VERSION = 1
JOBS = SNAPSHOT_TABLES["jobs"]
INDEX_SCHEMA = pa.schema(
    [
        pa.field("path", pa.string(), nullable=False),
        pa.field("parts", pa.string(), nullable=False),
        pa.field("closed", pa.bool_(), nullable=False),
        pa.field("end_ns", pa.int64()),
        pa.field("jobs", pa.list_(pa.struct(list(JOBS))), nullable=False),
    ],
    metadata={
        "ray_history.table": INDEX_TABLE,
        "ray_history.schema_version": str(INDEX_VERSION),
        "ray_history.snapshot_schema_version": str(SNAPSHOT_SCHEMA_VERSION),
    },
)
_META_KEYS = (b"ray_history.table", b"ray_history.schema_version", b"ray_history.snapshot_schema_version")
_VERSIONS = (INDEX_TABLE, str(INDEX_VERSION), str(SNAPSHOT_SCHEMA_VERSION))


class InvalidIndex(ValueError):
    """An index object that is not one this reader understands (corrupt, truncated, another version)."""


@dataclass(frozen=True)
class IndexedSession:
    """One session's jobs as indexed: `jobs` has the snapshot's columns (archive.schema SNAPSHOT_TABLES["jobs"])."""

    path: str  # namespace/cluster/session
    parts: str
    closed: bool
    end_ns: int | None
    jobs: pa.Table


def encode_index(namespace: str, sessions: Sequence[IndexedSession]) -> bytes:
    """The object's bytes: sessions sorted by path, so the same sessions always give the same object."""
    ordered = sorted(sessions, key=lambda session: session.path)
    for session in ordered:
        if _namespace_of(session.path) != namespace:
            raise ValueError(f"session {session.path!r} is not of namespace {namespace!r}")
    jobs = pa.concat_tables([session.jobs.select(JOBS.names).cast(JOBS) for session in ordered] or
                            [JOBS.empty_table()]).combine_chunks()  # fmt: skip
    rows = pa.StructArray.from_arrays([_one_chunk(column) for column in jobs.columns], fields=list(JOBS))
    offsets = np.cumsum([0, *(session.jobs.num_rows for session in ordered)], dtype=np.int32)
    table = pa.table(
        {
            "path": pa.array([session.path for session in ordered], pa.string()),
            "parts": pa.array([session.parts for session in ordered], pa.string()),
            "closed": pa.array([session.closed for session in ordered], pa.bool_()),
            "end_ns": pa.array([session.end_ns for session in ordered], pa.int64()),
            "jobs": pa.ListArray.from_arrays(pa.array(offsets), rows),
        },
        schema=INDEX_SCHEMA,
    )
    return table_to_parquet(table)


def decode_index(namespace: str, data: bytes) -> dict[str, IndexedSession]:
    """The sessions of an index object by path; InvalidIndex if it is not a readable index of this version, or
    names a session outside its namespace (an object copied under another name must not speak for another one)."""
    table = read_checked(data, INDEX_SCHEMA, dict(zip(_META_KEYS, _VERSIONS, strict=True)), InvalidIndex)
    lists = table.column("jobs").combine_chunks()
    jobs = pa.Table.from_struct_array(pc.list_flatten(lists)) if len(lists) else JOBS.empty_table()
    starts = np.concatenate([[0], np.cumsum(pc.list_value_length(lists).to_numpy(zero_copy_only=False))])
    sessions: dict[str, IndexedSession] = {}
    columns = [table.column(name).to_pylist() for name in ("path", "parts", "closed", "end_ns")]
    for index, (path, parts, closed, end_ns) in enumerate(zip(*columns, strict=True)):
        if _namespace_of(path) != namespace:
            raise InvalidIndex(f"session {path!r} is not of namespace {namespace!r}")
        rows = jobs.slice(int(starts[index]), int(starts[index + 1] - starts[index]))
        sessions[path] = IndexedSession(path, parts, closed, end_ns, rows)
    return sessions


def _namespace_of(path: str) -> str | None:
    """The namespace of a session path, or None if the path names no session (archive.layout's names)."""
    bits = path.split("/")
    try:
        return layout.SessionRef(*bits).namespace if len(bits) == 3 else None
    except layout.InvalidName:
        return None


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks or [pa.array([], column.type)])
