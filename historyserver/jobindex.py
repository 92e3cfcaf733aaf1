"""Jobs across sessions: every session's `jobs` snapshot table, gathered into one DuckDB table.

An operator asks "which RayJobs failed last night" across hundreds of clusters; opening each
session for that would take minutes. The index holds the few job rows of every session whose
snapshot the server has seen, with the session's name and owner beside them. It is fed twice:
each time a session is opened (its fresh snapshot), and by the server's background pass over
ended sessions (historyserver.server), which reads their written-back `jobs` table, or derives
the snapshot once when no replica has yet.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from archive import job_index, layout
from archive.schema import SNAPSHOT_TABLES

from .cachedb import open_cache_database, registered, reset_if_other, transaction
from .jobsearch import TIE_BREAK, JobQuery, search

__all__ = ["Entry", "Indexed", "JobIndex", "JobQuery"]

# What a row carries besides the job's own columns: which session, and who ran it.
OWNER_COLUMNS = ("owner_kind", "owner_name", "rayjob", "queue")  # from the session's catalog row
SESSION_COLUMNS = ("namespace", "cluster", "session", "session_status", *OWNER_COLUMNS)
JOB_COLUMNS = tuple(SNAPSHOT_TABLES["jobs"].names)

# Bump when the tables below change: a job index file of another version is rebuilt.
JOB_INDEX_VERSION = "2"
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS jobindex_meta (name VARCHAR NOT NULL, value VARCHAR NOT NULL)",
    # A page reads few columns of scattered rows, which costs a compressed column's whole vector for each row, so
    # what it reads is kept uncompressed, as the catalog's rows are: `row_json`, the public row as one JSON text
    # (one column fetched rather than 25: 12 ms of a page at 400,000 jobs, then 2), and `tie_break`, the order of
    # ties (historyserver.jobsearch) as one text rather than three. Compressed, the rows' file was 5 times
    # smaller (170 MB for 100,000 sessions, against 800), but in a server that had appended them (rather than
    # opened the file) fetching a page's rows took 30 to 50 ms instead of 8.
    f"""CREATE TABLE IF NOT EXISTS jobs (
    path VARCHAR NOT NULL, {", ".join(f"{column} VARCHAR" for column in SESSION_COLUMNS)},
    job_id VARCHAR, submission_id VARCHAR, type VARCHAR, status VARCHAR, entrypoint VARCHAR, message VARCHAR,
    error_type VARCHAR, start_time_ms BIGINT, end_time_ms BIGINT, duration_ms BIGINT, metadata JSON,
    runtime_env JSON, driver_node_id VARCHAR, driver_ip_address VARCHAR, driver_pid BIGINT,
    driver_exit_code INTEGER, driver_agent_http_address VARCHAR, is_hidden BOOLEAN NOT NULL,
    tie_break VARCHAR NOT NULL USING COMPRESSION uncompressed,
    row_json VARCHAR NOT NULL USING COMPRESSION uncompressed)""",
    # What each indexed session's rows came from (Indexed), a session without jobs included.
    """CREATE TABLE IF NOT EXISTS indexed (
        path VARCHAR NOT NULL, namespace VARCHAR NOT NULL, parts VARCHAR NOT NULL, closed BOOLEAN NOT NULL,
        end_ns BIGINT)""",
    # (sessions, digest) of each namespace's index object in the archive as this index last read or wrote it.
    """CREATE TABLE IF NOT EXISTS index_published (
        namespace VARCHAR NOT NULL, sessions BIGINT NOT NULL, digest VARCHAR NOT NULL)""",
]
_TABLES = ("jobindex_meta", "jobs", "indexed", "index_published")
# What a search answers of each job, in this order.
PUBLIC_COLUMNS = (*SESSION_COLUMNS, *(column for column in JOB_COLUMNS if column != "is_hidden"), "duration_ms")
_JSON_COLUMNS = ("metadata", "runtime_env")  # JSON text in the snapshot, JSON values in an answer
_ROW_JSON = "json_object({})::VARCHAR".format(
    ", ".join(f"'{column}', {column}{'::JSON' if column in _JSON_COLUMNS else ''}" for column in PUBLIC_COLUMNS)
)
_INSERT_JOBS = f"""INSERT INTO jobs BY NAME SELECT *, {TIE_BREAK} AS tie_break, {_ROW_JSON} AS row_json
                   FROM (SELECT *, end_time_ms - start_time_ms AS duration_ms FROM _incoming)"""


@dataclass
class _Known:
    """What the job index keeps in memory beside its tables."""

    indexed: dict[str, Indexed] = field(default_factory=dict)  # path -> what its rows came from
    # Per namespace, (sessions, digest) of the ended sessions' sources, kept as they are put and forgotten.
    digests: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Sessions per namespace: a viewer's progress line is then a few additions, not a pass over every session.
    per_namespace: Counter[str] = field(default_factory=Counter)
    published: dict[str, tuple[int, int]] = field(default_factory=dict)  # namespace -> as last written


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


def _with_sessions(entries: Sequence[Entry]) -> pa.Table | None:
    """The entries' jobs as one table of one chunk, each row with its session's columns; None if there are none.

    Built column by column for all the entries at once (10,000 sessions' small tables, a column added to each,
    took 3.5 s), and as one chunk: DuckDB scans an Arrow table chunk by chunk, and 2,000 sessions' chunks of a
    few rows each took it 1.9 s to insert, against 0.1 s as one."""
    with_jobs = [entry for entry in entries if entry.jobs.num_rows]
    if not with_jobs:
        return None
    table = pa.concat_tables([entry.jobs.select(JOB_COLUMNS) for entry in with_jobs],
                             promote_options="default").combine_chunks()  # fmt: skip
    values: dict[str, list[Any]] = {column: [] for column in ("path", *SESSION_COLUMNS)}
    for entry in with_jobs:
        rows = entry.jobs.num_rows
        values["path"] += [entry.ref.path] * rows
        for column in SESSION_COLUMNS:
            values[column] += [entry.session.get("status" if column == "session_status" else column)] * rows
    for column, column_values in values.items():
        table = table.append_column(column, pa.array(column_values, pa.string()))
    return table


class JobIndex:
    """The jobs of every indexed session. `database` None keeps them in memory; a file (under --cache-dir) keeps
    them across restarts, with what each session's rows came from, so a restart reads no session again. A file
    of another version or another archive starts empty, as does one that cannot be read (historyserver.cachedb).
    """

    def __init__(self, database: Path | None = None, archive: str = "") -> None:
        self._wanted = {"version": JOB_INDEX_VERSION, "archive": archive}
        self._db = open_cache_database(database, self._prepare, _TABLES, "job index")
        self._lock = threading.Lock()  # one writer at a time; readers take a cursor of their own
        self._cursor_lock = threading.Lock()
        # What the file holds is read on first use (a second at 100,000 sessions, which the port must not wait for).
        self._known_loaded: _Known | None = None
        self._load_lock = threading.Lock()

    @property
    def _known(self) -> _Known:
        with self._load_lock:
            if self._known_loaded is None:
                self._known_loaded = self._load()
            return self._known_loaded

    def _load(self) -> _Known:
        with closing(self._cursor()) as cur:
            found = cur.execute("SELECT path, parts, closed, end_ns FROM indexed").fetchall()
            published = cur.execute("SELECT namespace, sessions, digest FROM index_published").fetchall()
        known = _Known(
            indexed={path: Indexed(parts, closed, end_ns) for path, parts, closed, end_ns in found},
            published={namespace: (sessions, int(digest)) for namespace, sessions, digest in published},
        )
        for path, source in known.indexed.items():
            _count(known, path, source, 1)
        return known

    @property
    def _indexed(self) -> dict[str, Indexed]:
        return self._known.indexed

    @property
    def _digests(self) -> dict[str, tuple[int, int]]:
        return self._known.digests

    @property
    def _per_namespace(self) -> Counter[str]:
        return self._known.per_namespace

    @property
    def _published(self) -> dict[str, tuple[int, int]]:
        return self._known.published

    @property
    def restored(self) -> bool:
        """Whether the file held an index: a restart then needs nothing from the archive's index objects."""
        return bool(self._indexed)

    def close(self) -> None:
        self._db.close()

    def _prepare(self, cur: duckdb.DuckDBPyConnection) -> None:
        reset_if_other(cur, "jobindex_meta", self._wanted, _TABLES, "job index")
        for statement in _SCHEMA:
            cur.execute(statement)
        if cur.execute("SELECT count(*) FROM jobindex_meta").fetchone() == (0,):
            cur.executemany("INSERT INTO jobindex_meta VALUES (?, ?)", list(self._wanted.items()))

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        # Cursors are safe across threads; only making one needs the connection to itself.
        with self._cursor_lock:
            return self._db.cursor()

    def _count(self, path: str, source: Indexed | None, sign: int) -> None:
        _count(self._known, path, source, sign)

    def indexed(self, path: str) -> Indexed | None:
        """What the session's rows came from (None if it is not indexed); `path` is namespace/cluster/session."""
        return self._indexed.get(path)

    def sessions_indexed(self, namespaces: frozenset[str] | None = None) -> int:
        """Sessions indexed, of these namespaces only when given."""
        if namespaces is None:
            return len(self._indexed)
        return sum(self._per_namespace.get(namespace, 0) for namespace in namespaces)

    def put(self, entries: Sequence[Entry]) -> None:
        """Replace the jobs of each entry's session with the entry's, in one transaction."""
        entries = list({entry.ref.path: entry for entry in entries}.values())  # a session twice: the last one
        incoming = _with_sessions(entries)
        paths = pa.table({"path": pa.array([entry.ref.path for entry in entries], pa.string())})
        sources = pa.table({
            "path": paths["path"], "namespace": [entry.ref.namespace for entry in entries],
            "parts": [entry.source.parts for entry in entries], "closed": [entry.source.closed for entry in entries],
            "end_ns": pa.array([entry.source.end_ns for entry in entries], pa.int64()),
        })  # fmt: skip
        with self._lock:
            # Only sessions indexed before have rows to replace: new ones need no DELETE (a scan of every row).
            known = [entry.ref.path for entry in entries if entry.ref.path in self._indexed]
            with closing(self._cursor()) as cur, transaction(cur):
                if known:
                    _delete_paths(cur, pa.table({"path": pa.array(known, pa.string())}))
                with registered(cur, "_sources", sources):
                    cur.execute("INSERT INTO indexed BY NAME SELECT * FROM _sources")
                if incoming is not None:
                    with registered(cur, "_incoming", incoming):
                        cur.execute(_INSERT_JOBS)
            # Only once committed: a failed put leaves the sessions to be indexed again.
            for entry in entries:
                self._count(entry.ref.path, self._indexed.get(entry.ref.path), -1)
                self._indexed[entry.ref.path] = entry.source
                self._count(entry.ref.path, entry.source, 1)

    def forget(self, paths: set[str]) -> None:
        """Drop the sessions no longer in the archive (retention deleted them)."""
        if not paths:
            return
        with self._lock:
            with closing(self._cursor()) as cur, transaction(cur):
                _delete_paths(cur, pa.table({"path": pa.array(sorted(paths), pa.string())}))
            for path in paths:
                self._count(path, self._indexed.pop(path, None), -1)

    def paths(self) -> set[str]:
        return set(self._indexed)

    def counts(self, paths: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(jobs, failed jobs) of each indexed session among `paths`; Ray's internal drivers left out."""
        with closing(self._cursor()) as cur:
            found = cur.execute(
                """SELECT path, count(*), count(*) FILTER (WHERE status = 'FAILED') FROM jobs
                   WHERE list_contains(?, path) AND NOT is_hidden GROUP BY path""",
                [list(paths)],
            ).fetchall()
        counts = {path: (0, 0) for path in paths if path in self._indexed}
        counts.update({path: (jobs, failed) for path, jobs, failed in found})
        return counts

    def list_jobs(self, query: JobQuery) -> tuple[int, list[dict[str, Any]]]:
        """(how many jobs match, the requested page of them); BadRequest for a query that cannot hold."""
        # One transaction: the total and the page come from the same state even while sessions are put.
        with closing(self._cursor()) as cur, transaction(cur):
            return search(cur, query)

    # -- what the archive's index objects are written from (historyserver.jobobjects) -----------------------

    def ended_digests(self) -> dict[str, tuple[int, int]]:
        """(sessions, digest) of the ended sessions' sources, by namespace: whether an index object would change."""
        return dict(self._digests)

    def export(self, namespace: str) -> list[job_index.IndexedSession]:
        """The namespace's ended sessions with their jobs: what its index object holds."""
        sources = {path: source for path, source in list(self._indexed.items())
                   if source.closed and path.split("/", 1)[0] == namespace}  # fmt: skip
        with closing(self._cursor()) as cur:
            rows = cur.sql(f"SELECT path, {', '.join(JOB_COLUMNS)} FROM jobs WHERE list_contains(?, path) "
                           "ORDER BY path, tie_break", params=[sorted(sources)]).to_arrow_table()  # fmt: skip
        # Rows come ordered by path: each session's are one slice.
        spans: dict[str, list[int]] = {}
        for index, path in enumerate(rows.column("path").to_pylist()):
            spans.setdefault(path, [index, 0])[1] += 1
        jobs = rows.drop_columns(["path"])
        return [job_index.IndexedSession(path, source.parts, source.closed, source.end_ns,
                                         jobs.slice(*spans.get(path, (0, 0))))
                for path, source in sorted(sources.items())]  # fmt: skip

    def published(self) -> dict[str, tuple[int, int]]:
        """(sessions, digest) of each namespace's index object as this index last read or wrote it."""
        return dict(self._published)

    def set_published(self, published: dict[str, tuple[int, int]]) -> None:
        """Remember what the archive's index objects hold, across restarts (a namespace that did not change
        since is not written again)."""
        with self._lock, closing(self._cursor()) as cur, transaction(cur):
            cur.execute("DELETE FROM index_published")
            rows = [(namespace, count, str(digest)) for namespace, (count, digest) in sorted(published.items())]
            if rows:
                cur.executemany("INSERT INTO index_published VALUES (?, ?, ?)", rows)
            self._known.published = dict(published)


def _count(known: _Known, path: str, source: Indexed | None, sign: int) -> None:
    """Add (sign 1) or take out (-1) a session from its namespace's count, and its source from its namespace's
    digest (of ended sessions only)."""
    if source is None:
        return
    namespace = path.split("/", 1)[0]
    known.per_namespace[namespace] += sign
    if not known.per_namespace[namespace]:
        del known.per_namespace[namespace]
    if not source.closed:
        return
    count, digest = known.digests.get(namespace, (0, 0))
    count, digest = count + sign, digest ^ source_hash(path, source)
    if count:
        known.digests[namespace] = (count, digest)
    else:
        known.digests.pop(namespace, None)


def source_hash(path: str, source: Indexed) -> int:
    """A session's part of its namespace's digest (XORed together, so a put or forget updates it alone). The same
    in every process, unlike Python's hash: a digest is compared with the one of an index object read back."""
    text = f"{path}\0{source.parts}\0{source.closed}\0{source.end_ns}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _delete_paths(cur: duckdb.DuckDBPyConnection, paths: pa.Table) -> None:
    with registered(cur, "_paths", paths):
        for table in ("jobs", "indexed"):
            cur.execute(f"DELETE FROM {table} WHERE path IN (SELECT path FROM _paths)")
