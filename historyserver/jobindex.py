"""Jobs across sessions: every session's `jobs` snapshot table, gathered into one DuckDB table.

An operator asks "which RayJobs failed last night" across hundreds of clusters; opening each
session for that would take minutes. The index holds the few job rows of every session whose
snapshot the server has seen, with the session's name and owner beside them. It is fed twice:
each time a session is opened (its fresh snapshot), and by the server's background pass over
ended sessions (historyserver.server), which reads their written-back `jobs` table, or derives
the snapshot once when no replica has yet.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from archive import layout
from archive.schema import SNAPSHOT_TABLES

from . import queries
from .errors import BadRequest

JOB_STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
# What a row carries besides the job's own columns: which session, and who ran it.
OWNER_COLUMNS = ("owner_kind", "owner_name", "rayjob", "queue")  # from the session's catalog row
SESSION_COLUMNS = ("namespace", "cluster", "session", "session_status", *OWNER_COLUMNS)
JOB_COLUMNS = tuple(SNAPSHOT_TABLES["jobs"].names)
SORTABLE = frozenset({"start_time_ms", "end_time_ms", "duration_ms", "status", "namespace", "cluster",
                      "submission_id", "job_id", "entrypoint"})  # fmt: skip
DEFAULT_SORT = "-start_time_ms"

_SCHEMA = f"""CREATE TABLE jobs (
    path VARCHAR NOT NULL, {", ".join(f"{column} VARCHAR" for column in SESSION_COLUMNS)},
    job_id VARCHAR, submission_id VARCHAR, type VARCHAR, status VARCHAR, entrypoint VARCHAR, message VARCHAR,
    error_type VARCHAR, start_time_ms BIGINT, end_time_ms BIGINT, duration_ms BIGINT, metadata JSON,
    runtime_env JSON, driver_node_id VARCHAR, driver_ip_address VARCHAR, driver_pid BIGINT,
    driver_exit_code INTEGER, driver_agent_http_address VARCHAR, is_hidden BOOLEAN NOT NULL)"""
_PUBLIC = (*SESSION_COLUMNS, *(column for column in JOB_COLUMNS if column != "is_hidden"), "duration_ms")


@dataclass(frozen=True)
class JobQuery:
    """Which jobs to list across sessions. Checked by JobIndex.list_jobs (BadRequest)."""

    namespace: str | None = None
    cluster: str | None = None
    status: str | None = None  # a submission or driver status: PENDING ... FAILED
    submission_id: str | None = None
    job_id: str | None = None
    queue: str | None = None  # the Kueue queue that admitted the session's cluster
    entrypoint: str | None = None  # a substring of the entrypoint, any case
    metadata: Sequence[str] = ()  # each "key=value"; all must hold
    started_after_ms: int | None = None  # inclusive
    started_before_ms: int | None = None  # exclusive
    include_hidden: bool = False  # Ray's internal drivers (the dashboard's own), hidden as /api/jobs/ hides them
    # Only sessions of these namespaces (the viewer's, historyserver.access); None: every namespace.
    namespaces: frozenset[str] | None = None
    sort: str | None = DEFAULT_SORT
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True)
class Indexed:
    """What an indexed session's rows came from: its snapshot, and how the session had ended."""

    parts: str
    closed: bool
    end_ns: int | None


@dataclass(frozen=True)
class Entry:
    """A session's jobs, as the index takes them: the snapshot's rows and the catalog's row of the session."""

    ref: layout.SessionRef
    session: dict[str, Any]
    jobs: pa.Table
    source: Indexed


def _with_session(entry: Entry) -> pa.Table:
    table = entry.jobs.select(JOB_COLUMNS)
    values = {column: entry.session.get(column) for column in SESSION_COLUMNS}
    values["session_status"] = entry.session.get("status")
    values["path"] = entry.ref.path
    for column, value in values.items():
        table = table.append_column(column, pa.array([value] * table.num_rows, pa.string()))
    return table


class JobIndex:
    def __init__(self) -> None:
        self._db = duckdb.connect()
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._indexed: dict[str, Indexed] = {}

    def indexed(self, path: str) -> Indexed | None:
        """What the session's rows came from (None if it is not indexed); `path` is namespace/cluster/session."""
        return self._indexed.get(path)

    def sessions_indexed(self, namespaces: frozenset[str] | None = None) -> int:
        """Sessions indexed, of these namespaces only when given."""
        if namespaces is None:
            return len(self._indexed)
        return sum(path.split("/", 1)[0] in namespaces for path in list(self._indexed))

    def put(self, entries: Sequence[Entry]) -> None:
        """Replace the jobs of each entry's session with the entry's, in one transaction."""
        tables = [_with_session(entry) for entry in entries if entry.jobs.num_rows]
        with self._lock, closing(self._db.cursor()) as cur:
            cur.begin()
            try:
                paths = pa.table({"path": [entry.ref.path for entry in entries]})
                cur.register("_paths", paths)
                cur.execute("DELETE FROM jobs WHERE path IN (SELECT path FROM _paths)")
                cur.unregister("_paths")
                if tables:
                    cur.register("_incoming", pa.concat_tables(tables, promote_options="default"))
                    cur.execute("""INSERT INTO jobs BY NAME
                                   SELECT *, end_time_ms - start_time_ms AS duration_ms FROM _incoming""")
                    cur.unregister("_incoming")
            except BaseException:
                cur.rollback()
                raise
            cur.commit()
            for entry in entries:
                self._indexed[entry.ref.path] = entry.source

    def forget(self, paths: set[str]) -> None:
        """Drop the sessions no longer in the archive (retention deleted them)."""
        with self._lock, closing(self._db.cursor()) as cur:
            for path in paths:
                cur.execute("DELETE FROM jobs WHERE path = ?", [path])
                self._indexed.pop(path, None)

    def paths(self) -> set[str]:
        return set(self._indexed)

    def counts(self, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(jobs, failed jobs) of each indexed session among `paths`; Ray's internal drivers left out."""
        with self._lock, closing(self._db.cursor()) as cur:
            found = cur.execute(
                """SELECT path, count(*), count(*) FILTER (WHERE status = 'FAILED') FROM jobs
                   WHERE list_contains(?, path) AND NOT is_hidden GROUP BY path""",
                [list(paths)],
            ).fetchall()
        counts = {path: (0, 0) for path in paths if path in self._indexed}
        counts.update({path: (jobs, failed) for path, jobs, failed in found})
        return counts

    def list_jobs(self, query: JobQuery) -> tuple[int, list[dict[str, Any]]]:
        where, params = _where(query)
        order = _order_by(query.sort)
        queries.check_page(query.limit, query.offset)
        columns = ", ".join(_PUBLIC)
        with self._lock, closing(self._db.cursor()) as cur:
            total = cur.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()
            result = cur.execute(f"SELECT {columns} FROM jobs WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                                 [*params, query.limit, query.offset])  # fmt: skip
            items = queries.rows(result, frozenset({"metadata", "runtime_env"}))
        return (total[0] if total else 0), items


def _where(query: JobQuery) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column in ("namespace", "cluster", "submission_id", "job_id", "queue"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.namespaces is not None:
        clauses.append("list_contains(?, namespace)")
        params.append(sorted(query.namespaces))
    if query.status is not None:
        if query.status.upper() not in JOB_STATUSES:
            raise BadRequest(f"invalid status {query.status!r}: use one of {', '.join(JOB_STATUSES)}")
        clauses.append("status = ?")
        params.append(query.status.upper())
    if query.entrypoint:
        clauses.append("contains(lower(entrypoint), ?)")
        params.append(query.entrypoint.lower())
    for term in [query.metadata] if isinstance(query.metadata, str) else query.metadata:
        key, sep, value = term.partition("=")
        if not sep or not key:
            raise BadRequest(f"metadata filters are key=value, got {term!r}")
        # json_extract_string with a JSON path built from a bound key: the key can hold no SQL.
        clauses.append("json_extract_string(metadata, concat('$.', to_json(?::VARCHAR))) = ?")
        params += [key, value]
    if query.started_after_ms is not None:
        clauses.append("start_time_ms >= ?")
        params.append(query.started_after_ms)
    if query.started_before_ms is not None:
        clauses.append("start_time_ms < ?")
        params.append(query.started_before_ms)
    if not query.include_hidden:
        clauses.append("NOT is_hidden")
    return (" AND ".join(clauses) or "true"), params


def _order_by(sort: str | None) -> str:
    sort = sort or DEFAULT_SORT
    column = sort.removeprefix("-")
    if column not in SORTABLE:
        raise BadRequest(f"cannot sort jobs by {column!r}; sort by one of: {', '.join(sorted(SORTABLE))} "
                         "(prefix - to reverse)")  # fmt: skip
    direction = "DESC" if sort.startswith("-") else "ASC"
    return f"{column} {direction} NULLS LAST, path, submission_id NULLS LAST, job_id"
