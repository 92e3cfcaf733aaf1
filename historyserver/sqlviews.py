"""The views read-only SQL sees: sessions, jobs, tasks, actors, nodes, workers, placement_groups,
events, logs and metrics, for one session or across the archive, each with namespace, cluster and
session columns. The SQL here is the server's own; the user's runs in historyserver.sandbox.

For a viewer restricted to some namespaces (historyserver.access) the views are built over those namespaces'
sessions and files only, before any query runs: the `sessions` view lists theirs, each table view reads
their sessions' files, the listings behind the raw views are of their namespaces' prefixes, and DuckDB's own
allowed directories are their namespaces' folders, so no query can reach another namespace's file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from archive import layout
from archive.parts import list_live, live
from archive.schema import SNAPSHOT_TABLES
from archive.storage import ObjectInfo

from .access import EVERYONE, Viewer
from .catalog import SessionQuery
from .errors import BadRequest
from .mirror import empty_select_sql, read_parquet_sql
from .sandbox import Sandbox, open_sandbox
from .server import HistoryServer
from .sessions import RAW_SCHEMAS, OpenSession

SNAPSHOT_VIEWS = ("jobs", "tasks", "actors", "nodes", "workers", "placement_groups")
RAW_VIEWS: tuple[layout.PartKind, ...] = ("events", "logs", "metrics")
# Every local copy or in-place file sits at .../{kind}/{namespace}/{cluster}/{session}/...
_SESSION_OF_PATH = r"/(?:events|logs|metrics|snapshots)/([^/]+)/([^/]+)/([^/]+)/"
# The archive's prefixes a session has files under (archive.layout), each followed by its namespace.
_FILE_KINDS = ("events", "logs", "metrics", "snapshots")


def _over_files(paths: list[Path], schema: pa.Schema) -> str:
    if not paths:
        session = pa.schema([("namespace", pa.string()), ("cluster", pa.string()), ("session", pa.string())])
        return empty_select_sql(pa.unify_schemas([session, schema]))
    return (
        f"SELECT regexp_extract(filename, '{_SESSION_OF_PATH}', 1) AS namespace, "
        f"regexp_extract(filename, '{_SESSION_OF_PATH}', 2) AS cluster, "
        f"regexp_extract(filename, '{_SESSION_OF_PATH}', 3) AS session, * EXCLUDE (filename) "
        f"FROM {read_parquet_sql(paths, filename=True, union_by_name=True)}"
    )


def _sessions_table(server: HistoryServer, ref: layout.SessionRef | None,
                    namespaces: frozenset[str] | None = None) -> pa.Table:  # fmt: skip
    if ref is not None:
        rows = [server.session_row(ref.namespace, ref.cluster, ref.session)]
    else:
        rows, offset = [], 0
        while True:
            query = SessionQuery(limit=1000, offset=offset, namespaces=namespaces)
            total, page = server.catalog.list_sessions(query)
            rows.extend(page)
            offset += len(page)
            if not page or offset >= total:
                break
    if not rows:  # no session (to see): the view keeps its columns, so queries over it still bind
        return server.catalog.public_schema().empty_table()
    return pa.Table.from_pylist([{key: _plain(value) for key, value in row.items()} for row in rows])


def _plain(value: Any) -> Any:
    # Labels and similar maps become JSON text: one column type whatever the keys.
    import json

    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def sandbox_for(server: HistoryServer, session: str | None, derive_missing: Callable[[str], None] | None = None,
                viewer: Viewer = EVERYONE) -> Sandbox:  # fmt: skip
    """The views of one session ("namespace/cluster/session"), or of the whole archive when None, as far as
    `viewer` may see: a session of another namespace is not found, and the archive is the viewer's part of it."""
    if session is None:
        return archive_sandbox(server, derive_missing, viewer)
    parts = session.split("/")
    if len(parts) != 3:
        raise BadRequest(f"a session is namespace/cluster/session, got {session!r}")
    opened = server.open(*parts, viewer)
    return session_sandbox(server, opened, None if viewer.sees_all else frozenset({opened.ref.namespace}))


def session_sandbox(server: HistoryServer, opened: OpenSession, namespaces: frozenset[str] | None = None) -> Sandbox:
    """Views over one session: its snapshot tables and its raw parts."""
    views: dict[str, Any] = {"sessions": _sessions_table(server, opened.ref)}
    server.sessions.snapshots.wait_written(opened.ref)
    for name in SNAPSHOT_VIEWS:
        path = opened.snapshot.tables.get(name)
        views[name] = _with_session(opened.ref, f"SELECT * FROM {read_parquet_sql([path])}") if path else None
    for kind in RAW_VIEWS:
        # An expired kind is being deleted: none of it is read (its view is empty), as in the API.
        parts = [] if kind in opened.expired else list_live(server.storage, kind, opened.ref)
        views[kind] = _over_files(server.sessions.mirror.paths(parts), RAW_SCHEMAS[kind])
    return open_sandbox({name: sql for name, sql in views.items() if sql is not None},
                        _readable_dirs(server, namespaces))  # fmt: skip


def archive_sandbox(server: HistoryServer, derive_missing: Callable[[str], None] | None = None,
                    viewer: Viewer = EVERYONE) -> Sandbox:  # fmt: skip
    """Views across every session `viewer` may see: snapshots where a server has derived them, raw parts
    everywhere, except what retention removes (every object of a deleted session, and each expired kind).

    With `derive_missing` (called with each session's path as it goes), every ended session without
    a written snapshot is derived first, so the views hold all of them.
    """
    namespaces = server.namespaces_of(viewer)
    sessions = _sessions_table(server, None, namespaces)
    if derive_missing is not None:
        _derive_missing(server, sessions, derive_missing)
    server.sessions.snapshots.wait_written()
    views: dict[str, Any] = {"sessions": sessions}
    withheld = server.catalog.withheld("snapshots")
    snapshot_files = [info for info in _listed(server, "snapshots", namespaces)
                      if info.key.endswith(".parquet") and _snapshot_path(info.key) not in withheld]  # fmt: skip
    for name in SNAPSHOT_VIEWS:
        wanted = [info for info in snapshot_files if info.key.endswith(f"/{name}.parquet")]
        views[name] = _over_files(server.sessions.mirror.paths(wanted), SNAPSHOT_TABLES[name])
    for kind in RAW_VIEWS:
        parts = _readable_parts(server, kind, namespaces)
        views[kind] = _over_files(server.sessions.mirror.paths(parts), RAW_SCHEMAS[kind])
    return open_sandbox(views, _readable_dirs(server, namespaces))


def _listed(server: HistoryServer, kind: str, namespaces: frozenset[str] | None) -> list[ObjectInfo]:
    """The archive's objects of this kind: of every namespace, or of these only (their prefixes are listed,
    so another namespace's objects are never even named)."""
    if namespaces is None:
        return list(server.storage.list(f"{kind}/"))
    return [info for namespace in sorted(namespaces) for info in server.storage.list(f"{kind}/{namespace}/")]


def _snapshot_path(key: str) -> str:
    """namespace/cluster/session of a key under snapshots/."""
    return "/".join(key.split("/")[1:4])


def _readable_parts(server: HistoryServer, kind: layout.PartKind,
                    namespaces: frozenset[str] | None = None) -> list[ObjectInfo]:  # fmt: skip
    """The live parts of this kind (of these namespaces only, when given), but those of sessions deleted or
    whose kind expired."""
    withheld = server.catalog.withheld(kind)
    parts = live(_listed(server, kind, namespaces))
    return [info for info in parts if (name := layout.parse_data_key(info.key)) and name.ref.path not in withheld]


def _derive_missing(server: HistoryServer, sessions: pa.Table, progress: Callable[[str], None]) -> None:
    written = {info.key for info in server.storage.list("snapshots/") if info.key.endswith("/snapshot.json")}
    for row in sessions.select(["namespace", "cluster", "session", "status"]).to_pylist():
        ref = layout.SessionRef(row["namespace"], row["cluster"], row["session"])
        if row["status"] != "running" and layout.snapshot_manifest_key(ref) not in written:
            progress(ref.path)
            server.open(ref.namespace, ref.cluster, ref.session)


def _with_session(ref: layout.SessionRef, sql: str) -> str:
    return (
        f"SELECT '{_quoted(ref.namespace)}' AS namespace, '{_quoted(ref.cluster)}' AS cluster, "
        f"'{_quoted(ref.session)}' AS session, * FROM ({sql})"
    )


def _quoted(value: object) -> str:
    return str(value).replace("'", "''")


def _readable_dirs(server: HistoryServer, namespaces: frozenset[str] | None = None) -> list[Path]:
    """The folders DuckDB may open files in: the cache and a local archive; for a restricted viewer, only
    their namespaces' folders in each (DuckDB then refuses any other file, whatever a query tries)."""
    cache = server.sessions.mirror.cache_dir
    root = getattr(server.storage, "root", None)
    bases = [cache] + ([Path(root)] if root is not None else [])
    if namespaces is None:
        return bases
    # Local snapshots sit at cache/snapshots/{namespace}/...; copies of objects at cache/objects/{key}; a local
    # archive's objects at root/{key}; every key of a session's files is {kind}/{namespace}/...
    dirs = [cache / "snapshots" / namespace for namespace in sorted(namespaces)]
    for base in [cache / "objects", *bases[1:]]:
        dirs += [base / kind / namespace for kind in _FILE_KINDS for namespace in sorted(namespaces)]
    # A viewer who sees nothing reads no file; DuckDB still wants a directory: one that holds none.
    return dirs or [cache / "no-namespace"]
