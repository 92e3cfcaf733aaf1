"""Read-only SQL over a session's views, safe to offer to untrusted users.

`ray-history sql` and `POST /api/v1/sql` run user SQL over the views `sessions`, `jobs`, `tasks`,
`actors`, `nodes`, `logs`, `metrics` and `events`. A user must be able to read those views and
nothing else: no other file, no network, no writes, no configuration changes.

The defence is layered, DuckDB's own enforcement first:

1. The database (DuckDB 2.0.1) enforces, once `open_sandbox` has locked it:
   - `enable_external_access = false` with `allowed_directories` = the cache: every file or URL a
     query names (read_csv, read_text, read_blob, glob, read_parquet, `FROM 'path'`, COPY, ATTACH of
     a file, EXPORT/IMPORT DATABASE, INSTALL, LOAD, secrets, http/s3 URLs) is refused with a
     PermissionException unless it lies under an allowed directory. Paths are normalised (`..`)
     and symlinks are resolved before the check, so a link in the cache cannot point out of it.
   - `lock_configuration = true`: no SET, RESET or PRAGMA can change any setting, including
     turning external access back on; a cursor of the locked connection is just as locked.
   - `autoinstall/autoload_known_extensions = false`, `allow_community_extensions = false`,
     `allow_extension_repositories = 'forbidden'`: nothing is downloaded or loaded behind a query.
   - `python_enable_replacements = false`: a bare name never resolves to a Python variable of the
     calling frame (DuckDB's Python replacement scan).
   - `temp_directory = ''`: nothing spills to disk, and the default `.tmp` folder of the working
     directory is not added to the allowed directories. `memory_limit` and `threads` bound what
     one query can take.
2. What DuckDB still allows is refused by parsing the query with DuckDB's own parser:
   - `extract_statements`: exactly one statement, of type SELECT (which includes FROM-first,
     VALUES, WITH, DESCRIBE, SUMMARIZE, SHOW TABLES). CREATE, INSERT, UPDATE, DELETE, DROP, ALTER,
     ATTACH (`:memory:` is not a file, so DuckDB allows it), DETACH, SET, PRAGMA, CALL, USE,
     transactions, CHECKPOINT, VACUUM, PREPARE/EXECUTE, EXPLAIN are refused here.
   - `json_serialize_sql` (the parsed tree as JSON): every table a query reads must be one of the
     views or one of its own CTEs (so the system catalog, which shows the views' SQL and thus the
     cache layout, stays hidden), table functions are limited to row generators (`range`,
     `unnest`...), and functions that reveal the server's configuration (`current_setting`) are
     refused. This layer gives the clearest messages; the file and network boundary does not rest
     on it.

What this cannot stop: a single huge value (`repeat('x', 2000000000)`, `range(1e8)` as one list)
is allocated outside DuckDB's buffer manager, so `memory_limit` does not bound it, and DuckDB only
notices an interrupt between vectors, so the time limit is late. Such a query can take gigabytes and
seconds. The history server therefore runs user queries in worker processes (historyserver.sqlpool),
killed past their memory budget: a sandbox opened inside `run_remotely` is only its definition (the
views' SQL and tables), and its queries run in such a worker. `max_bytes` bounds what a result may hold.

Threading: a `Sandbox` is one in-memory DuckDB database holding the views. `run_query` opens a
cursor per query (a new DuckDB connection to the same database, which shares its views, settings
and lock but has its own transaction, temporary objects and interrupt), so queries run concurrently
and a time limit stops only its own query. Open a sandbox per set of views (per session, or one for
all sessions) and keep it while those views are valid.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_MEMORY_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "FORMATS",
    "QueryError",
    "QueryRefused",
    "QueryResult",
    "QueryTimeout",
    "ResultTooLarge",
    "Sandbox",
    "SandboxError",
    "ViewSource",
    "format_result",
    "open_sandbox",
    "run_query",
    "run_remotely",
    "views_over_parquet",
]

ViewSource = str | pa.Table | duckdb.DuckDBPyRelation
"""A view's definition: the text of a SELECT (usually over read_parquet of cache files), an Arrow
table, or a DuckDB relation (materialised into the sandbox, since it belongs to another connection)."""

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MEMORY_LIMIT = "1GB"
FORMATS = ("table", "csv", "json", "parquet")

# Row generators only: every other table function reads files, runs SQL from a string
# (query, query_table), shows the catalog or configuration (duckdb_*), or changes state
# (checkpoint, enable_logging).
ALLOWED_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "json_each", "json_tree"})

# Scalar functions that reveal the server rather than the data.
REFUSED_FUNCTIONS: Mapping[str, str] = {
    "current_setting": "it reads the server's configuration",
    "getenv": "it reads the server's environment",
    "pg_get_viewdef": "it shows the views' definitions, which name the server's files",
}

# SHOW TABLES and SHOW ALL TABLES list only the views; other SHOWs (databases, schemas...) have
# nothing a user needs.
_ALLOWED_SHOW_TABLES = frozenset({"tables", "__show_tables_expanded"})

_VIEW_QUALIFIERS = frozenset({("", "main"), ("", "memory"), ("memory", "main")})

_STATEMENT_NAMES: Mapping[duckdb.StatementType, str] = {
    duckdb.StatementType.LOAD: "INSTALL/LOAD",
    duckdb.StatementType.SET: "SET/RESET/USE",
    duckdb.StatementType.VARIABLE_SET: "SET VARIABLE",
    duckdb.StatementType.TRANSACTION: "BEGIN/COMMIT/ROLLBACK",
    duckdb.StatementType.EXPORT: "EXPORT DATABASE",
    duckdb.StatementType.COPY_DATABASE: "COPY FROM DATABASE",
    duckdb.StatementType.MULTI: "PIVOT without an IN list",
}

_ALLOWED_SQL = "Only a single read-only SELECT (or WITH, FROM, VALUES, DESCRIBE, SUMMARIZE, SHOW TABLES) is allowed"

# How often the watchdog repeats an interrupt: DuckDB may clear one that lands between binding and
# execution, so it keeps interrupting until the query has stopped.
_INTERRUPT_REPEAT_S = 0.05

# Rows per Arrow batch read from DuckDB (fewer when max_rows is smaller, so a 10-row query does not
# wait for a full batch): few round trips, and little read past max_rows.
_BATCH_ROWS = 65_536
_BYTE_CAPPED_BATCH_ROWS = 2_048


class SandboxError(Exception):
    """Base of every error a sandboxed query raises; its message is meant for the user as is."""


class QueryRefused(SandboxError):
    """The query tried something the sandbox does not allow (`refused`), and what is allowed instead."""

    def __init__(self, refused: str, allowed: str, detail: str = "") -> None:
        self.refused = refused
        self.allowed = allowed
        self.detail = detail
        reason = f"{refused} is not allowed" + (f" ({detail})" if detail else "")
        super().__init__(f"{reason}. {allowed}.")


class QueryTimeout(SandboxError):
    """The query ran past its time limit and was interrupted."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"The query ran longer than the time limit of {timeout_s:g} s and was stopped. "
            "Filter on fewer rows, aggregate, or add a LIMIT."
        )


class QueryError(SandboxError):
    """The query is allowed but failed: a syntax error, an unknown column, out of memory... (DuckDB's message)."""


class ResultTooLarge(SandboxError):
    """The result holds more bytes than the limit: it was not read past it."""

    def __init__(self, max_bytes: int, rows_read: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(
            f"The result is larger than the limit of {_size(max_bytes)} (over it after {rows_read:,} rows) and "
            "was not sent. Select fewer or narrower columns (substr() of long text), filter, aggregate, "
            "or add a LIMIT."
        )


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"


@dataclass(frozen=True)
class SandboxDefinition:
    """What `open_sandbox` was given, to open the same sandbox in another process: views as SQL text or
    Arrow tables (both picklable), and the directories they read."""

    views: dict[str, str | pa.Table]
    allowed_dirs: tuple[str, ...]


# Runs one query of a definition elsewhere: (definition, sql, timeout_s, max_rows) -> result.
RemoteRunner = Callable[[SandboxDefinition, str, float, int], "QueryResult"]
_REMOTE: ContextVar[RemoteRunner | None] = ContextVar("sandbox_remote_runner", default=None)


@contextmanager
def run_remotely(runner: RemoteRunner) -> Iterator[None]:
    """Sandboxes opened in this block are definitions only (nothing is opened here) whose queries `runner`
    runs: the SQL pool's worker process, with the pool's memory limit and threads, so that a query's memory
    is never this process's."""
    token = _REMOTE.set(runner)
    try:
        yield
    finally:
        _REMOTE.reset(token)


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool
    """True when the query returned more rows than max_rows; `table` holds the first max_rows."""
    elapsed_s: float = 0.0

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _directory_prefixes(allowed_dirs: Iterable[str | os.PathLike[str]]) -> list[str]:
    prefixes: list[str] = []
    for entry in allowed_dirs:
        given = os.path.normpath(os.path.abspath(os.fspath(entry)))
        # DuckDB resolves symlinks in the paths a query opens, so a cache reached through a link
        # must be allowed under its real path too; the spelling the views use is kept as well.
        for path in (given, os.path.realpath(given)):
            if path == os.path.dirname(path):
                raise ValueError(f"allowed directory {entry!r} is a filesystem root: queries could read every file")
            # The trailing separator keeps /cache from also allowing /cache2.
            prefix = path.rstrip(os.sep) + os.sep
            if prefix not in prefixes:
                prefixes.append(prefix)
    if not prefixes:
        raise ValueError("at least one allowed directory is needed (the cache the views read)")
    return prefixes


class Sandbox:
    """A locked, in-memory DuckDB database whose only readable objects are the given views.

    Build it with `open_sandbox`. Thread-safe: each query runs on its own cursor.
    """

    def __init__(self, connection: duckdb.DuckDBPyConnection | None, view_names: Iterable[str],
                 remote: tuple[RemoteRunner, SandboxDefinition] | None = None) -> None:  # fmt: skip
        self._connection = connection
        self._remote = remote
        self._view_names = tuple(view_names)
        self._view_keys = frozenset(name.lower() for name in self._view_names)
        # The Python connection object is not documented as safe for concurrent cursor() calls.
        self._cursor_lock = threading.Lock()
        self._closed = False

    @property
    def views(self) -> tuple[str, ...]:
        return self._view_names

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the sandbox database: DuckDB's lock applies, the statement checks do not.

        For trusted callers (and tests); user SQL goes through `run`.
        """
        with self._cursor_lock:
            if self._closed:
                raise SandboxError("the sandbox is closed")
            if self._connection is None:
                raise SandboxError("this sandbox runs its queries in another process: use run()")
            return self._connection.cursor()

    def run(self, sql: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_rows: int = DEFAULT_MAX_ROWS) -> QueryResult:
        if self._remote is not None:
            runner, definition = self._remote
            return runner(definition, sql, timeout_s, max_rows)
        return run_query(sql, self, timeout_s=timeout_s, max_rows=max_rows)

    def close(self) -> None:
        with self._cursor_lock:
            if not self._closed:
                self._closed = True
                if self._connection is not None:
                    self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _allowed_tables(self) -> str:
        return "Queries can read the views " + ", ".join(self._view_names) + " (and their own CTEs)"


def open_sandbox(
    views: Mapping[str, ViewSource],
    allowed_dirs: Iterable[str | os.PathLike[str]],
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
) -> Sandbox:
    """Create the views in a fresh in-memory database, then lock it down.

    `views` maps a view name to a SELECT's text, an Arrow table or a DuckDB relation; the SQL is
    trusted (it comes from the server, not the user) and runs before the lock. `allowed_dirs` are
    the directories the views' SQL reads (the cache); queries can open files under them only.
    Arrow tables and relations are copied into the database, so they count against memory_limit.
    Every view is bound once after the lock, so a view reading outside `allowed_dirs` fails here
    (ValueError) rather than in a user's query.
    """
    prefixes = _directory_prefixes(allowed_dirs)
    names = list(views)
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip() or "\0" in name:
            raise ValueError(f"invalid view name {name!r}")
        # DuckDB matches names case-insensitively, so Tasks and tasks would be one view.
        if name.lower() in seen:
            raise ValueError(f"view names {seen[name.lower()]!r} and {name!r} collide (names are case-insensitive)")
        seen[name.lower()] = name
    remote = _REMOTE.get()
    if remote is not None:
        # Relations belong to this process's connections: their rows travel as Arrow tables.
        sources = {name: source.to_arrow_table() if isinstance(source, duckdb.DuckDBPyRelation) else source
                   for name, source in views.items()}  # fmt: skip
        definition = SandboxDefinition(sources, tuple(str(entry) for entry in allowed_dirs))  # type: ignore[arg-type]
        return Sandbox(None, names, remote=(remote, definition))

    config: dict[str, str | bool | int] = {
        "memory_limit": memory_limit,
        "temp_directory": "",
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_extension_repositories": "forbidden",
        "allow_persistent_secrets": False,
        "python_enable_replacements": False,
    }
    if threads is not None:
        config["threads"] = threads
    connection = duckdb.connect(":memory:", config=config)
    try:
        # Every query re-binds the views, which would read the Parquet footers of every part again.
        # (An option of the parquet extension: connect() does not know it yet.)
        connection.execute("SET parquet_metadata_cache = true")
        for index, (name, source) in enumerate(views.items()):
            try:
                _create_view(connection, name, source, index)
            except duckdb.Error as error:
                raise ValueError(f"view {name!r} cannot be created: {error}") from None
        # Order matters: allowed_directories cannot change once external access is off, and
        # nothing can change once the configuration is locked.
        directories = ", ".join(_quote_string(prefix) for prefix in prefixes)
        connection.execute(f"SET allowed_directories = [{directories}]")
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
        sandbox = Sandbox(connection, names)
        _check_views(sandbox)
    except BaseException:
        connection.close()
        raise
    return sandbox


def _create_view(connection: duckdb.DuckDBPyConnection, name: str, source: ViewSource, index: int) -> None:
    quoted = _quote_identifier(name)
    if isinstance(source, str):
        statements = connection.extract_statements(source)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise ValueError(f"view {name!r} must be defined by a single SELECT, got: {source!r}")
        connection.execute(f"CREATE VIEW {quoted} AS {statements[0].query.strip().rstrip(';')}")
        return
    if isinstance(source, duckdb.DuckDBPyRelation):
        source = source.to_arrow_table()
    if not isinstance(source, pa.Table):
        raise TypeError(f"view {name!r}: expected SQL text, a pyarrow.Table or a DuckDB relation, got {type(source)}")
    # A registered Arrow table is a temporary view of this one connection, invisible to the cursors
    # queries run on; a real table is shared by all of them.
    temporary = f"__sandbox_source_{index}"
    connection.register(temporary, source)
    try:
        connection.execute(f"CREATE TABLE {quoted} AS SELECT * FROM {_quote_identifier(temporary)}")
    finally:
        connection.unregister(temporary)


def _check_views(sandbox: Sandbox) -> None:
    cursor = sandbox.cursor()
    try:
        for name in sandbox.views:
            try:
                cursor.execute(f"SELECT * FROM {_quote_identifier(name)} LIMIT 0").fetchall()
            except duckdb.Error as error:
                raise ValueError(f"view {name!r} cannot be read inside the sandbox: {error}") from None
    finally:
        cursor.close()


def run_query(
    sql: str,
    sandbox: Sandbox,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_bytes: int | None = None,
) -> QueryResult:
    """Run one user SELECT in the sandbox; at most `max_rows` rows come back, in at most `timeout_s`, and
    with `max_bytes`, a result holding more bytes (as Arrow holds it) is refused as soon as it is read past it.

    Raises QueryRefused (not allowed), QueryTimeout (too slow), ResultTooLarge or QueryError (failed); all
    are SandboxError, and their messages carry no Python traceback.
    """
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    if max_rows < 0:
        raise ValueError("max_rows must not be negative")
    started = time.perf_counter()
    cursor = sandbox.cursor()
    watchdog = _Watchdog(cursor, timeout_s)
    try:
        with watchdog:
            _check_statement(sql, cursor, sandbox)
            # The user's text runs as it is (wrapping it in a LIMIT would be text DuckDB re-parses,
            # and its errors would point at lines the user never wrote). The result streams, and
            # reading stops at max_rows + 1 rows, which tells whether there were more.
            relation = cursor.sql(sql)
            if relation is None:  # a statement without a result, which _check_statement refused
                raise QueryRefused("A statement without a result", _ALLOWED_SQL)
            # With a byte limit, small batches: the limit is checked between them, so a result of wide rows
            # is refused after little more than the limit is read.
            batch_rows = _BATCH_ROWS if max_bytes is None else _BYTE_CAPPED_BATCH_ROWS
            reader = relation.to_arrow_reader(min(max_rows + 1, batch_rows))
            table = _read_at_most(reader, max_rows + 1, max_bytes)
    # An error after the first batch comes through Arrow's stream interface: an OSError that
    # carries DuckDB's message but not its exception class.
    except (duckdb.Error, OSError, pa.ArrowException) as error:
        if watchdog.fired and _kind_of(error) == "interrupt":
            raise QueryTimeout(timeout_s) from None
        raise _translate(error, sandbox) from None
    finally:
        cursor.close()
    truncated = table.num_rows > max_rows
    if truncated:
        table = table.slice(0, max_rows)
    return QueryResult(table=table, truncated=truncated, elapsed_s=time.perf_counter() - started)


def _read_at_most(reader: pa.RecordBatchReader, limit: int, max_bytes: int | None = None) -> pa.Table:
    batches: list[pa.RecordBatch] = []
    fetched = held = 0
    while fetched < limit:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        batches.append(batch)
        fetched += batch.num_rows
        # Only the rows kept count: a batch read past max_rows is cut to it.
        held += batch.slice(0, max(0, limit - 1 - (fetched - batch.num_rows))).nbytes
        if max_bytes is not None and held > max_bytes:
            reader.close()
            raise ResultTooLarge(max_bytes, fetched)
    return pa.Table.from_batches(batches, schema=reader.schema)


class _Watchdog:
    """Interrupts a cursor once the time limit has passed, and keeps at it until the query stops."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, timeout_s: float) -> None:
        self._cursor = cursor
        self._timeout_s = timeout_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="sandbox-query-watchdog", daemon=True)
        self.fired = False

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        if self._done.wait(self._timeout_s):
            return
        self.fired = True
        while not self._done.is_set():
            self._cursor.interrupt()
            self._done.wait(_INTERRUPT_REPEAT_S)


def _check_statement(sql: str, cursor: duckdb.DuckDBPyConnection, sandbox: Sandbox) -> None:
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(str(error)) from None
    if not statements:
        raise QueryError("The query is empty.")
    if len(statements) > 1:
        raise QueryRefused(f"More than one statement ({len(statements)})", _ALLOWED_SQL)
    statement = statements[0]
    words = statement.query.split(None, 1)
    first_word = words[0].upper() if words else ""
    try:
        statement_type = statement.type
    except ValueError:
        # The Python binding lags the parser: UPDATE EXTENSIONS has a type it cannot name.
        raise QueryRefused(f"The statement {first_word}", _ALLOWED_SQL, detail="a statement of another kind") from None
    if statement_type != duckdb.StatementType.SELECT:
        kind = _STATEMENT_NAMES.get(statement_type, statement_type.name)
        shown = kind if not first_word or first_word in kind else f"{kind} ({first_word})"
        detail = "it creates types; name the values: PIVOT ... ON col IN (...)" if kind.startswith("PIVOT") else ""
        raise QueryRefused(f"The statement {shown}", _ALLOWED_SQL, detail=detail)
    # fetchall: DuckDB 2 refuses further work on a connection whose last result is not drained.
    serialized = cursor.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(serialized[0][0]) if serialized else {"error": True, "error_message": "no parse tree"}
    if tree.get("error"):
        raise QueryRefused(
            "A query the sandbox cannot inspect",
            _ALLOWED_SQL,
            detail=str(tree.get("error_message", "")),
        )
    _check_tree(tree["statements"], sandbox)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_tree(tree: Any, sandbox: Sandbox) -> None:
    nodes = list(_walk(tree))
    # A CTE may be named anywhere in the query (nested, recursive); a name that any CTE defines is
    # a name the query itself produces, so it can be read wherever it appears.
    cte_names = {
        entry["key"].lower()
        for node in nodes
        if isinstance(node.get("cte_map"), dict)
        for entry in node["cte_map"].get("map", [])
        if isinstance(entry, dict) and isinstance(entry.get("key"), str)
    }
    readable = sandbox._view_keys | cte_names
    table_functions = {
        id(node["function"]) for node in nodes if node.get("type") == "TABLE_FUNCTION" and "function" in node
    }
    for node in nodes:
        kind = node.get("type")
        if kind == "BASE_TABLE":
            _check_table(node, readable, sandbox)
        elif kind == "TABLE_FUNCTION":
            name = str(node.get("function", {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRefused(
                    f"The table function {name}()",
                    sandbox._allowed_tables()
                    + "; the only table functions are "
                    + ", ".join(sorted(ALLOWED_TABLE_FUNCTIONS)),
                    detail="files and the catalog can only be read through the views",
                )
        elif kind == "SHOW_REF" and node.get("query") is None:
            shown = str(node.get("table_name", "")).strip('"').lower()
            if shown not in _ALLOWED_SHOW_TABLES:
                raise QueryRefused(f"SHOW {shown}", "SHOW TABLES, DESCRIBE <view> and SUMMARIZE <view> are allowed")
        elif node.get("class") in ("FUNCTION", "WINDOW") and id(node) not in table_functions:
            name = str(node.get("function_name", "")).lower()
            if name in REFUSED_FUNCTIONS:
                raise QueryRefused(f"The function {name}()", _ALLOWED_SQL, detail=REFUSED_FUNCTIONS[name])


def _check_table(node: Mapping[str, Any], readable: AbstractSet[str], sandbox: Sandbox) -> None:
    name = str(node.get("table_name", ""))
    catalog = str(node.get("catalog_name", "")).lower()
    schema = str(node.get("schema_name", "")).lower()
    qualified = ".".join(part for part in (catalog, schema, name) if part)
    key = name.lower()
    if not catalog and not schema and key in readable:
        return
    # The views live in the sandbox database's main schema, so memory.main.tasks is tasks too.
    if (catalog, schema) in _VIEW_QUALIFIERS and key in sandbox._view_keys:
        return
    looks_like_file = "/" in name or "." in name or ":" in name
    raise QueryRefused(
        f"Reading {'the file ' if looks_like_file and not schema else ''}{qualified!r}",
        sandbox._allowed_tables(),
        detail="files can only be read through the views" if looks_like_file else "it is not one of the views",
    )


_PERMISSION_PATH = re.compile(r'Cannot access (file|directory) "([^"]*)"')


_ERROR_KINDS: tuple[tuple[str, type[duckdb.Error], str], ...] = (
    ("interrupt", duckdb.InterruptException, "INTERRUPT Error"),
    ("permission", duckdb.PermissionException, "Permission Error"),
    ("memory", duckdb.OutOfMemoryException, "Out of Memory Error"),
    ("catalog", duckdb.CatalogException, "Catalog Error"),
)


def _kind_of(error: Exception) -> str:
    message = str(error)
    for kind, exception_class, prefix in _ERROR_KINDS:
        if isinstance(error, exception_class) or message.startswith(prefix):
            return kind
    return "other"


def _translate(error: Exception, sandbox: Sandbox) -> SandboxError:
    message = str(error)
    kind = _kind_of(error)
    if kind == "permission":
        # The path only makes the message clearer; the refusal itself is DuckDB's.
        found = _PERMISSION_PATH.search(message)
        refused = f"Access to the {found.group(1)} {found.group(2)!r}" if found else "Access outside the sandbox"
        return QueryRefused(refused, sandbox._allowed_tables(), detail=message)
    if "configuration has been locked" in message:
        return QueryRefused("Changing the configuration", _ALLOWED_SQL, detail=message)
    if kind == "interrupt":
        return QueryError("The query was interrupted.")
    if kind == "memory":
        return QueryError(f"The query needs more memory than the sandbox allows. {message}")
    if kind == "catalog":
        return QueryError(f"{message}\n{sandbox._allowed_tables()}.")
    return QueryError(message)


# Output formats ------------------------------------------------------------------------------------

_MAX_CELL_WIDTH = 80
# Arrow writes timestamps as "2025-03-01 12:00:00.000000123+0000"; ISO 8601 wants the T and "+00:00".
_ISO_DATE_TIME_SEPARATOR = r"^(\d{4,}-\d\d-\d\d) "
_ISO_OFFSET = r"([+-]\d\d)(\d\d)$"


def format_result(result: QueryResult, fmt: str) -> bytes:
    """Render a result: "table" (aligned text for a terminal), "csv", "json" (a list of objects) or "parquet".

    In the text formats timestamps, dates and times are ISO 8601, durations are seconds, intervals
    are ISO 8601 durations, binary values are base64, nested values are JSON, and NaN is null
    (json) or empty (csv). The table format shows NULL, escapes line breaks and cuts cells at
    80 characters; csv and json keep every value whole.
    """
    if fmt == "parquet":
        buffer = io.BytesIO()
        table = _intervals_as_text(result.table)
        # Parquet readers refuse a file with two columns of one name, which a join can return.
        table = table.rename_columns(_unique_names(table.column_names))
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()
    names, columns = _columns_as_python(result.table)
    if fmt == "json":
        unique = _unique_names(names)
        rows = [dict(zip(unique, row, strict=True)) for row in zip(*columns, strict=True)] if columns else []
        return json.dumps(rows, ensure_ascii=False, allow_nan=False).encode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in zip(*columns, strict=True):
            writer.writerow(["" if value is None else _csv_text(value) for value in row])
        return out.getvalue().encode()
    if fmt == "table":
        return _text_table(result, names, columns).encode()
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def _intervals_as_text(table: pa.Table) -> pa.Table:
    # Parquet has no type for DuckDB's INTERVAL (Arrow month_day_nano): such columns become text,
    # ISO 8601 durations (or JSON when the interval is nested).
    for index, field in enumerate(table.schema):
        if _has_interval(field.type):
            values = [_plain(value) for value in table.column(index).to_pylist()]
            text = [value if value is None or isinstance(value, str) else json.dumps(value) for value in values]
            table = table.set_column(index, pa.field(field.name, pa.string()), pa.array(text, pa.string()))
    return table


def _has_interval(kind: pa.DataType) -> bool:
    if pa.types.is_interval(kind):
        return True
    return any(_has_interval(kind.field(i).type) for i in range(kind.num_fields))


def _unique_names(names: list[str]) -> list[str]:
    # A join can return two columns of the same name; neither a JSON object nor Parquet can hold both.
    seen: set[str] = set()
    unique: list[str] = []
    for name in names:
        candidate, suffix = name, 1
        while candidate in seen:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _columns_as_python(table: pa.Table) -> tuple[list[str], list[list[Any]]]:
    columns = [[_plain(value) for value in _temporals_as_text(column).to_pylist()] for column in table.columns]
    return list(table.column_names), columns


def _temporals_as_text(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    # pyarrow cannot turn nanosecond timestamps into Python objects without pandas, so temporal
    # values (nested ones too) become ISO text in Arrow, before to_pylist.
    if isinstance(array, pa.ChunkedArray):
        if not _has_temporal(array.type):
            return array
        chunks = [_temporals_as_text(chunk) for chunk in array.chunks]
        return pa.chunked_array(chunks, type=_text_type(array.type))
    kind = array.type
    if not _has_temporal(kind):
        return array
    if pa.types.is_dictionary(kind):
        return _temporals_as_text(array.dictionary_decode())
    if pa.types.is_timestamp(kind):
        text = array.cast(pa.string())
        text = pc.replace_substring_regex(text, _ISO_DATE_TIME_SEPARATOR, r"\1T")
        return pc.replace_substring_regex(text, _ISO_OFFSET, r"\1:\2")
    if pa.types.is_date(kind) or pa.types.is_time(kind):
        return array.cast(pa.string())
    if pa.types.is_duration(kind):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[kind.unit]
        return pc.divide(array.cast(pa.int64()).cast(pa.float64()), per_second)
    # from_arrays cannot combine a null mask with the offsets of a slice: copy to a fresh array first.
    if array.offset:
        array = pa.concat_arrays([array])
    if pa.types.is_struct(kind):
        children = [_temporals_as_text(child) for child in array.flatten()]
        fields = [pa.field(f.name, _text_type(f.type)) for f in kind]
        return pa.StructArray.from_arrays(children, fields=fields, mask=array.is_null())
    if pa.types.is_map(kind):
        return pa.MapArray.from_arrays(
            array.offsets,
            _temporals_as_text(array.keys),
            _temporals_as_text(array.items),
            mask=array.is_null(),
        )
    if pa.types.is_fixed_size_list(kind):
        values = _temporals_as_text(array.flatten())
        return pa.FixedSizeListArray.from_arrays(values, kind.list_size, mask=array.is_null())
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        list_class = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
        return list_class.from_arrays(array.offsets, _temporals_as_text(array.values), mask=array.is_null())
    return array


def _has_temporal(kind: pa.DataType) -> bool:
    if pa.types.is_temporal(kind) and not pa.types.is_interval(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _has_temporal(kind.value_type)
    return any(_has_temporal(kind.field(i).type) for i in range(kind.num_fields))


def _text_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(kind):
        return _text_type(kind.value_type)
    if pa.types.is_duration(kind):
        return pa.float64()
    if pa.types.is_temporal(kind) and not pa.types.is_interval(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _text_type(f.type)) for f in kind])
    if pa.types.is_map(kind):
        return pa.map_(_text_type(kind.key_type), _text_type(kind.item_type))
    if pa.types.is_fixed_size_list(kind):
        return pa.list_(_text_type(kind.value_type), kind.list_size)
    if pa.types.is_large_list(kind):
        return pa.large_list(_text_type(kind.value_type))
    if pa.types.is_list(kind):
        return pa.list_(_text_type(kind.value_type))
    return kind


def _plain(value: Any) -> Any:
    """A value as JSON can hold it."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN or infinity.
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        # DuckDB's sum() and count of big integers arrive as decimal128(38, 0).
        if not value.is_finite():
            return None
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        # pyarrow gives a map as a list of (key, value) pairs.
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(_plain(key)): _plain(item) for key, item in value}
        return [_plain(item) for item in value]
    # MonthDayNano is a named tuple: test it before plain tuples.
    if isinstance(value, pa.MonthDayNano):
        seconds = decimal.Decimal(value.nanoseconds) / 1_000_000_000
        return f"P{value.months}M{value.days}DT{seconds.normalize():f}S"
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _csv_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cell_text(value: Any) -> str:
    if value is None:
        return "NULL"
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    # One row per line: control characters would break the alignment.
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return text if len(text) <= _MAX_CELL_WIDTH else text[: _MAX_CELL_WIDTH - 1] + "…"


def _text_table(result: QueryResult, names: list[str], columns: list[list[Any]]) -> str:
    schema = result.table.schema
    numeric = [
        pa.types.is_integer(f.type) or pa.types.is_floating(f.type) or pa.types.is_decimal(f.type) for f in schema
    ]
    header = [_cell_text(name) for name in names]
    cells = [[_cell_text(value) for value in column] for column in columns]
    widths = [max([len(header[i]), *(len(text) for text in cells[i])]) for i in range(len(names))]

    def line(values: list[str]) -> str:
        padded = [value.rjust(widths[i]) if numeric[i] else value.ljust(widths[i]) for i, value in enumerate(values)]
        return " | ".join(padded).rstrip()

    lines = [line(header), "-+-".join("-" * width for width in widths)] if names else []
    lines.extend(line(list(row)) for row in zip(*cells, strict=True))
    count = result.num_rows
    footer = f"({count} row{'' if count == 1 else 's'}"
    footer += ", truncated: the query returned more)" if result.truncated else ")"
    lines.append(footer)
    return "\n".join(lines) + "\n"


def views_over_parquet(cache_dir: str | os.PathLike[str], tables: Mapping[str, str]) -> dict[str, str]:
    """View SQL for Parquet files under a cache directory: {"tasks": "snapshots/x/tasks.parquet"} ->
    {"tasks": "SELECT * FROM read_parquet('<cache>/snapshots/x/tasks.parquet')"}; globs are fine."""
    root = Path(cache_dir)
    # union_by_name: parts written over a session's life may differ by a column.
    return {
        name: f"SELECT * FROM read_parquet({_quote_string(str(root / relative))}, union_by_name = true)"
        for name, relative in tables.items()
    }
