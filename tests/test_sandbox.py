"""The SQL sandbox: users' SELECTs work over the views, and every way out is refused with a clear reason."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from historyserver import sandbox as sandbox_module
from historyserver.sandbox import (
    QueryError,
    QueryRefused,
    QueryResult,
    QueryTimeout,
    Sandbox,
    SandboxError,
    format_result,
    open_sandbox,
    run_query,
    views_over_parquet,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
NS = 1_000_000_000


def _tasks() -> pa.Table:
    names = ["load", "train", "train", "flaky", "flaky", "eval"]
    states = ["FINISHED", "FINISHED", "FAILED", "FAILED", "FINISHED", "FINISHED"]
    start = int(T0.timestamp()) * NS
    return pa.table(
        {
            "task_id": [f"t{i}" for i in range(6)],
            "attempt": [0, 0, 1, 0, 1, 0],
            "job_id": ["01000000", "01000000", "01000000", "02000000", "02000000", "02000000"],
            "name": names,
            "state": states,
            # Nanoseconds past the second, as the archive writes them: no datetime can hold these.
            "start_time": pa.array([start + i * NS + 123 for i in range(6)], pa.timestamp("ns", tz="UTC")),
            "duration_s": [1.5, 10.0, 3.25, 0.5, 0.75, 2.0],
        }
    )


def _jobs() -> pa.Table:
    return pa.table({"job_id": ["01000000", "02000000"], "entrypoint": ["python train.py", "python eval.py"]})


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = tmp_path_factory.mktemp("cache")
    session = cache / "snapshots" / "ns" / "cluster" / "session_1"
    session.mkdir(parents=True)
    pq.write_table(_tasks(), session / "tasks.parquet")
    pq.write_table(_jobs(), session / "jobs.parquet")
    other = tmp_path_factory.mktemp("other")
    pq.write_table(pa.table({"secret": ["do not read"]}), other / "x.parquet")
    (other / "secret.csv").write_text("key,value\napi_token,hunter2\n")
    return {"cache": cache, "session": session, "other": other}


@pytest.fixture(scope="module")
def box(dirs: dict[str, Path]) -> Iterator[Sandbox]:
    views = views_over_parquet(
        dirs["cache"],
        {"tasks": "snapshots/*/*/*/tasks.parquet", "jobs": "snapshots/ns/cluster/session_1/jobs.parquet"},
    )
    with open_sandbox(views, [dirs["cache"]], memory_limit="512MB", threads=2) as sandbox:
        yield sandbox


def run(box: Sandbox, sql: str, max_rows: int = 1000, timeout_s: float = 10.0) -> QueryResult:
    return run_query(sql, box, timeout_s=timeout_s, max_rows=max_rows)


def rows(result: QueryResult) -> list[dict[str, object]]:
    return result.table.to_pylist()


# What users may do -------------------------------------------------------------------------------


def test_select_join_aggregate(box: Sandbox) -> None:
    result = run(
        box,
        """
        SELECT j.entrypoint, count(*) AS attempts, sum(t.duration_s) AS seconds
        FROM tasks t JOIN jobs j USING (job_id)
        GROUP BY ALL ORDER BY j.entrypoint
        """,
    )
    assert rows(result) == [
        {"entrypoint": "python eval.py", "attempts": 3, "seconds": 3.25},
        {"entrypoint": "python train.py", "attempts": 3, "seconds": 14.75},
    ]
    assert not result.truncated


def test_window_functions_and_ctes(box: Sandbox) -> None:
    result = run(
        box,
        """
        WITH last AS (
            SELECT name, state, row_number() OVER (PARTITION BY name ORDER BY attempt DESC) AS rn FROM tasks
        ), numbers AS (
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT * FROM n
        )
        SELECT name, state, (SELECT max(i) FROM numbers) AS three FROM last WHERE rn = 1 ORDER BY name
        """,
    )
    assert [(r["name"], r["state"], r["three"]) for r in rows(result)] == [
        ("eval", "FINISHED", 3),
        ("flaky", "FINISHED", 3),
        ("load", "FINISHED", 3),
        ("train", "FAILED", 3),
    ]


@pytest.mark.parametrize(
    "sql",
    [
        "FROM tasks SELECT name WHERE state = 'FAILED'",
        "SELECT * FROM memory.main.tasks",
        "SELECT * FROM main.tasks",
        "SELECT * FROM TASKS",
        "DESCRIBE tasks",
        "SUMMARIZE tasks",
        "SHOW TABLES",
        "VALUES (1, 'a'), (2, 'b')",
        "SELECT range FROM range(3)",
        "SELECT unnest([1, 2, 3]) AS x",
        "SELECT * FROM tasks, unnest([1, 2]) AS u(x)",
        "PIVOT tasks ON state IN ('FINISHED', 'FAILED') USING count(*) GROUP BY name",
        "SELECT name, list(state ORDER BY attempt) FROM tasks GROUP BY name",
        "SELECT * FROM tasks WHERE task_id IN (SELECT task_id FROM tasks QUALIFY row_number() OVER () = 1)",
        "SELECT 1;",
        "SELECT 1 -- a comment",
        # A CTE may shadow a view: it can only name what the query itself computes.
        "WITH tasks AS (SELECT 42 AS answer) SELECT * FROM tasks",
    ],
)
def test_other_read_only_forms_are_allowed(box: Sandbox, sql: str) -> None:
    assert run(box, sql).num_rows >= 1


def test_arrow_table_and_relation_views(dirs: dict[str, Path]) -> None:
    source = duckdb.connect()
    relation = source.sql("SELECT 'n1' AS node_id, 8 AS cpus UNION ALL SELECT 'n2', 16")
    views = {
        "tasks": f"SELECT * FROM read_parquet('{dirs['session'] / 'tasks.parquet'}')",
        "jobs": _jobs(),
        "nodes": relation,
    }
    with open_sandbox(views, [dirs["cache"]]) as sandbox:
        result = run(sandbox, "SELECT sum(cpus) AS cpus, (SELECT count(*) FROM jobs) AS jobs FROM nodes")
        assert rows(result) == [{"cpus": 24, "jobs": 2}]
        # Each query runs on its own cursor, which sees the copied tables as well as the views.
        assert run(sandbox, "SELECT count(*) AS n FROM tasks").table.column("n").to_pylist() == [6]
        assert set(sandbox.views) == {"tasks", "jobs", "nodes"}


# What users may not do ---------------------------------------------------------------------------

OTHER = "<other>"  # replaced by the real directory outside the cache
OTHER_NAME = "<other-name>"  # its name, for a path that climbs out of the cache with ..
CACHE = "<cache>"

ESCAPES: list[tuple[str, list[str]]] = [
    # Files outside the views.
    ("SELECT * FROM read_csv('/etc/passwd')", ["read_csv", "views tasks, jobs"]),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", ["read_csv_auto"]),
    ("SELECT * FROM read_text('/etc/passwd')", ["read_text"]),
    ("SELECT * FROM read_blob('/etc/passwd')", ["read_blob"]),
    ("SELECT * FROM read_json('/etc/hostname')", ["read_json"]),
    ("SELECT * FROM glob('/etc/*')", ["glob"]),
    (f"SELECT * FROM glob('{CACHE}/**')", ["glob"]),
    ("SELECT * FROM sniff_csv('/etc/passwd')", ["sniff_csv"]),
    ("SELECT * FROM '/etc/passwd'", ["'/etc/passwd'", "files can only be read through the views"]),
    (f"SELECT * FROM read_parquet('{OTHER}/x.parquet')", ["read_parquet"]),
    (f"SELECT * FROM '{OTHER}/x.parquet'", ["x.parquet", "files can only be read through the views"]),
    (f"SELECT * FROM parquet_metadata('{OTHER}/x.parquet')", ["parquet_metadata"]),
    # Even the cache itself is read through the views only (it may hold other sessions).
    (f"SELECT * FROM read_parquet('{CACHE}/snapshots/*/*/*/jobs.parquet')", ["read_parquet"]),
    ("SELECT (SELECT count(*) FROM read_text('/etc/passwd')) AS n", ["read_text"]),
    ("SELECT * FROM tasks, LATERAL read_text(tasks.name)", ["read_text"]),
    ("DESCRIBE '/etc/passwd'", ["'/etc/passwd'"]),
    ("SUMMARIZE SELECT * FROM read_csv('/etc/passwd')", ["read_csv"]),
    ("SELECT * FROM tasks UNION ALL SELECT * FROM read_parquet('/etc/x.parquet')", ["read_parquet"]),
    # A view name collision: a CTE or a new view named like a view, over a file.
    ("WITH tasks AS (SELECT * FROM read_csv('/etc/passwd')) SELECT * FROM tasks", ["read_csv"]),
    ("CREATE OR REPLACE TEMP VIEW tasks AS SELECT * FROM read_csv('/etc/passwd')", ["CREATE"]),
    ("CREATE OR REPLACE VIEW tasks AS SELECT 1", ["CREATE"]),
    # The network.
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", ["read_parquet"]),
    ("SELECT * FROM 's3://bucket/x.parquet'", ["s3://bucket/x.parquet"]),
    ("INSTALL httpfs", ["INSTALL"]),
    ("LOAD httpfs", ["LOAD"]),
    ("FORCE INSTALL httpfs", ["INSTALL/LOAD"]),
    ("UPDATE EXTENSIONS", ["UPDATE"]),
    # Writes.
    ("CREATE TABLE t AS SELECT 1 AS x", ["CREATE"]),
    ("CREATE MACRO m(x) AS x", ["CREATE"]),
    ("INSERT INTO tasks (task_id) VALUES ('x')", ["INSERT"]),
    ("WITH x AS (SELECT 1) INSERT INTO tasks (attempt) SELECT * FROM x", ["INSERT"]),
    ("UPDATE tasks SET state = 'FINISHED'", ["UPDATE"]),
    ("DELETE FROM tasks", ["DELETE"]),
    ("DROP VIEW tasks", ["DROP"]),
    ("ALTER VIEW tasks RENAME TO t2", ["ALTER"]),
    ("COPY (SELECT 1) TO 'x.csv'", ["COPY"]),
    (f"COPY (SELECT * FROM tasks) TO '{CACHE}/leak.csv'", ["COPY"]),
    ("COPY tasks FROM '/etc/passwd'", ["COPY"]),
    ("EXPORT DATABASE '/tmp/sandbox-export'", ["EXPORT"]),
    ("IMPORT DATABASE '/tmp/sandbox-export'", ["IMPORT"]),
    # Other databases.
    ("ATTACH ':memory:' AS x", ["ATTACH"]),
    (f"ATTACH '{OTHER}/new.duckdb' AS x", ["ATTACH"]),
    ("DETACH memory", ["DETACH"]),
    ("USE system", ["USE"]),
    # Configuration.
    ("SET enable_external_access = true", ["SET"]),
    ("RESET enable_external_access", ["SET/RESET"]),
    ("SET lock_configuration = false", ["SET"]),
    ("SET allowed_directories = ['/']", ["SET"]),
    ("SET VARIABLE x = 1", ["SET"]),
    ("PRAGMA threads = 1", ["PRAGMA"]),
    ("PRAGMA version", ["PRAGMA"]),
    ("CALL pragma_version()", ["CALL"]),
    ("CALL enable_logging()", ["CALL"]),
    ("CHECKPOINT", ["CHECKPOINT"]),
    ("SELECT * FROM duckdb_settings()", ["duckdb_settings"]),
    ("SELECT * FROM enable_logging()", ["enable_logging"]),
    # Leaks of the server's environment, configuration and layout.
    ("SELECT getenv('HOME')", ["getenv", "environment"]),
    ("SELECT current_setting('allowed_directories')", ["current_setting", "configuration"]),
    ("SELECT 'x'.current_setting()", ["current_setting"]),
    ("SELECT sql FROM duckdb_views()", ["duckdb_views"]),
    ("SELECT * FROM duckdb_views", ["'duckdb_views'", "not one of the views"]),
    ("SELECT * FROM information_schema.tables", ["information_schema.tables"]),
    ("SELECT pg_get_viewdef(1)", ["pg_get_viewdef"]),
    ("SHOW databases", ["SHOW databases"]),
    # SQL run from a string, and everything else that is not a single SELECT.
    ("SELECT * FROM query('SELECT 1')", ["query"]),
    ("SELECT * FROM query_table('tasks')", ["query_table"]),
    ("SELECT 1; SELECT 2", ["More than one statement"]),
    ("SELECT 1; DROP VIEW tasks", ["More than one statement"]),
    ("BEGIN", ["BEGIN"]),
    ("VACUUM", ["VACUUM"]),
    ("PREPARE p AS SELECT 1", ["PREPARE"]),
    ("EXPLAIN SELECT 1", ["EXPLAIN"]),
    ("PIVOT tasks ON state", ["PIVOT", "IN"]),
]


@pytest.mark.parametrize(("sql", "expected"), ESCAPES, ids=[sql for sql, _ in ESCAPES])
def test_escape_is_refused(box: Sandbox, dirs: dict[str, Path], sql: str, expected: list[str]) -> None:
    sql = _fill(sql, dirs)
    with pytest.raises(QueryRefused) as caught:
        run(box, sql)
    message = str(caught.value)
    assert "is not allowed" in message
    for part in expected:
        assert part in message, message
    # The reason and what is allowed instead are both in the message and on the exception.
    assert caught.value.refused and caught.value.allowed
    assert "allowed" in caught.value.allowed or "views" in caught.value.allowed
    assert "Traceback" not in message
    assert not (dirs["cache"] / "leak.csv").exists()
    # Nothing changed: the views are still there, with their data.
    assert run(box, "SELECT count(*) AS n FROM tasks").table.column("n").to_pylist() == [6]


# DuckDB's own enforcement, with the statement checks out of the way ---------------------------

DUCKDB_REFUSES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    f"SELECT * FROM read_parquet('{OTHER}/x.parquet')",
    f"SELECT * FROM read_parquet('{CACHE}/../{OTHER_NAME}/x.parquet')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
    "COPY (SELECT 1) TO 'x.csv'",
    f"ATTACH '{OTHER}/new.duckdb' AS x",
    "EXPORT DATABASE '/tmp/sandbox-export'",
    "INSTALL httpfs",
    "LOAD httpfs",
]


def _fill(sql: str, dirs: dict[str, Path]) -> str:
    return (
        sql.replace(OTHER_NAME, dirs["other"].name)
        .replace(OTHER, str(dirs["other"]))
        .replace(CACHE, str(dirs["cache"]))
    )


@pytest.mark.parametrize("sql", DUCKDB_REFUSES)
def test_duckdb_itself_refuses_files_network_and_extensions(box: Sandbox, dirs: dict[str, Path], sql: str) -> None:
    cursor = box.cursor()
    try:
        with pytest.raises(duckdb.PermissionException):
            cursor.execute(_fill(sql, dirs)).fetchall()
    finally:
        cursor.close()


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "SET allowed_directories = ['/']",
        "SET autoinstall_known_extensions = true",
        "SET python_enable_replacements = true",
        "PRAGMA threads = 1",
    ],
)
def test_a_cursor_of_the_locked_connection_is_locked(box: Sandbox, sql: str) -> None:
    cursor = box.cursor()
    try:
        with pytest.raises(duckdb.InvalidInputException, match="configuration has been locked"):
            cursor.execute(sql)
        settings = dict(
            cursor.execute(
                "SELECT name, value FROM duckdb_settings() "
                "WHERE name IN ('enable_external_access', 'lock_configuration', 'autoload_known_extensions')"
            ).fetchall()
        )
        assert settings == {
            "enable_external_access": "false",
            "lock_configuration": "true",
            "autoload_known_extensions": "false",
        }
        # The views defined before the lock still read their Parquet files under the lock.
        assert cursor.execute("SELECT count(*) FROM tasks").fetchall() == [(6,)]
    finally:
        cursor.close()


def test_duckdb_refusal_is_reported_as_refused(
    box: Sandbox, dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the table-function check to let read_csv through, DuckDB's own refusal still holds and
    # comes back as QueryRefused naming the path.
    monkeypatch.setattr(sandbox_module, "ALLOWED_TABLE_FUNCTIONS", frozenset({"read_csv", "read_parquet"}))
    with pytest.raises(QueryRefused, match=r"Access to the file '/etc/passwd' is not allowed") as caught:
        run(box, "SELECT * FROM read_csv('/etc/passwd')")
    assert "views tasks, jobs" in str(caught.value)
    with pytest.raises(QueryRefused, match=r"x\.parquet"):
        run(box, f"SELECT * FROM read_parquet('{dirs['other']}/x.parquet')")
    # ... and reading the cache through the function is DuckDB's to allow.
    assert run(box, f"SELECT * FROM read_parquet('{dirs['session']}/jobs.parquet')").num_rows == 2


def test_a_symlink_in_the_cache_cannot_lead_out_of_it(tmp_path: Path, dirs: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    pq.write_table(_jobs(), cache / "jobs.parquet")
    (cache / "passwd").symlink_to("/etc/passwd")
    (cache / "other").symlink_to(dirs["other"], target_is_directory=True)
    with open_sandbox({"jobs": f"SELECT * FROM '{cache}/jobs.parquet'"}, [cache]) as sandbox:
        cursor = sandbox.cursor()
        try:
            for sql in [
                f"SELECT * FROM read_csv('{cache}/passwd')",
                f"SELECT * FROM read_parquet('{cache}/other/x.parquet')",
            ]:
                with pytest.raises(duckdb.PermissionException):
                    cursor.execute(sql).fetchall()
        finally:
            cursor.close()


def test_python_variables_are_not_tables(box: Sandbox) -> None:
    secret_table = pa.table({"secret": ["in the server's memory"]})
    assert secret_table.num_rows == 1
    cursor = box.cursor()
    try:
        with pytest.raises(duckdb.CatalogException):
            cursor.execute("SELECT * FROM secret_table").fetchall()
    finally:
        cursor.close()
    with pytest.raises(QueryRefused, match="'secret_table' is not allowed"):
        run(box, "SELECT * FROM secret_table")


def test_views_must_stay_inside_the_allowed_directories(dirs: dict[str, Path]) -> None:
    outside = {"tasks": f"SELECT * FROM read_parquet('{dirs['other']}/x.parquet')"}
    with pytest.raises(ValueError, match="view 'tasks' cannot be read inside the sandbox"):
        open_sandbox(outside, [dirs["cache"]])


@pytest.mark.parametrize(
    ("views", "allowed", "message"),
    [
        ({"tasks": "SELECT 1", "Tasks": "SELECT 2"}, None, "collide"),
        ({"tasks": "SELECT 1; DROP VIEW x"}, None, "single SELECT"),
        ({"tasks": "CREATE TABLE x (a INT)"}, None, "single SELECT"),
        ({"tasks": "SELECT * FROM nowhere"}, None, "cannot be created"),
        ({"": "SELECT 1"}, None, "invalid view name"),
        ({"tasks": "SELECT 1"}, "/", "filesystem root"),
        ({"tasks": "SELECT 1"}, "", "at least one allowed directory"),
    ],
)
def test_open_sandbox_checks_its_arguments(
    dirs: dict[str, Path], views: dict[str, str], allowed: str | None, message: str
) -> None:
    allowed_dirs = [dirs["cache"]] if allowed is None else ([allowed] if allowed else [])
    with pytest.raises(ValueError, match=message):
        open_sandbox(views, allowed_dirs)


# Limits ------------------------------------------------------------------------------------------

SLOW = "SELECT count(*) FROM range(1000000000) a CROSS JOIN range(1000000) b WHERE a.range + b.range = 1"


def test_time_limit(box: Sandbox) -> None:
    started = time.perf_counter()
    with pytest.raises(QueryTimeout, match=r"longer than the time limit of 0.5 s") as caught:
        run(box, SLOW, timeout_s=0.5)
    assert caught.value.timeout_s == 0.5
    assert time.perf_counter() - started < 5
    assert isinstance(caught.value, SandboxError)
    # The sandbox is unharmed.
    assert run(box, "SELECT count(*) AS n FROM tasks").table.column("n").to_pylist() == [6]


def test_time_limit_while_rows_stream(box: Sandbox) -> None:
    # The first batch comes at once, the next never: the interrupt lands while the result is
    # read through Arrow, where DuckDB's error arrives as an OSError.
    sql = "SELECT range FROM range(1000000000000) WHERE range < 70000 OR hash(range) % 100000000000 = 0"
    with pytest.raises(QueryTimeout):
        run(box, sql, max_rows=100_000, timeout_s=0.5)


def test_an_error_while_rows_stream_is_a_query_error(box: Sandbox) -> None:
    sql = "SELECT CASE WHEN range = 300000 THEN 'a'::INT ELSE range END AS x FROM range(1000000)"
    with pytest.raises(QueryError, match="Could not convert string 'a'"):
        run(box, sql, max_rows=1_000_000)


def test_a_timeout_stops_only_its_own_query(box: Sandbox) -> None:
    outcome: dict[str, object] = {}

    def slow() -> None:
        try:
            run(box, SLOW, timeout_s=1.5)
        except SandboxError as error:
            outcome["slow"] = error

    thread = threading.Thread(target=slow)
    thread.start()
    # Queries beside the slow one run on their own cursors and finish.
    for _ in range(5):
        assert run(box, "SELECT count(*) AS n FROM tasks JOIN jobs USING (job_id)").table.column("n").to_pylist() == [6]
    thread.join(timeout=10)
    assert isinstance(outcome.get("slow"), QueryTimeout)


def test_concurrent_queries(box: Sandbox) -> None:
    sql = (
        "SELECT name, count(*) AS n FROM tasks JOIN jobs USING (job_id) WHERE attempt >= {} GROUP BY name ORDER BY name"
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: run(box, sql.format(i % 2)), range(32)))
    assert all(rows(result) == rows(results[i % 2]) for i, result in enumerate(results))
    assert rows(results[1]) == [{"name": "flaky", "n": 1}, {"name": "train", "n": 1}]


def test_row_limit_truncates(box: Sandbox) -> None:
    result = run(box, "SELECT task_id, duration_s FROM tasks ORDER BY duration_s DESC", max_rows=3)
    assert result.truncated
    assert result.num_rows == 3
    # The limit keeps the query's order: the first rows, not any rows.
    assert result.table.column("duration_s").to_pylist() == [10.0, 3.25, 2.0]

    whole = run(box, "SELECT * FROM tasks", max_rows=6)
    assert (whole.num_rows, whole.truncated) == (6, False)

    # Rows stream and reading stops at max_rows + 1: a trillion rows are never made.
    many = run(box, "SELECT range FROM range(1000000000000)", max_rows=5)
    assert (many.num_rows, many.truncated) == (5, True)

    none = run(box, "SELECT * FROM tasks", max_rows=0)
    assert (none.num_rows, none.truncated) == (0, True)


# Errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELEC 1", "syntax error"),
        ("SELECT nope FROM tasks", 'Referenced column "nope" not found'),
        ("SELECT 1 / 'a'", "Could not convert string 'a'"),
        ("SELECT 1,\n  1 / 'a'", "LINE 2"),
        ("", "empty"),
        ("-- nothing", "empty"),
        ("SELECT * FROM tasks WHERE task_id = ?", "parameter"),
    ],
)
def test_sql_errors_carry_duckdbs_message(box: Sandbox, sql: str, expected: str) -> None:
    with pytest.raises(QueryError) as caught:
        run(box, sql)
    assert expected.lower() in str(caught.value).lower()
    assert "Traceback" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_error_classes() -> None:
    for cls in (QueryRefused, QueryTimeout, QueryError):
        assert issubclass(cls, SandboxError)
    assert str(QueryRefused("The statement COPY", "Only SELECT is allowed")) == (
        "The statement COPY is not allowed. Only SELECT is allowed."
    )


# Formats -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(box: Sandbox) -> QueryResult:
    return run(
        box,
        """
        SELECT task_id, name, attempt, duration_s, start_time,
               sum(attempt) OVER () AS total_attempts,
               [start_time] AS times, {'state': state, 'at': start_time} AS detail,
               CASE WHEN name = 'eval' THEN 'nan'::DOUBLE END AS score,
               CASE WHEN name = 'eval' THEN 'line 1' || chr(10) || 'line 2' END AS note
        FROM tasks ORDER BY task_id
        """,
        max_rows=4,
    )


def test_format_json(sample: QueryResult) -> None:
    data = json.loads(format_result(sample, "json"))
    assert isinstance(data, list) and len(data) == 4
    first = data[0]
    assert first["task_id"] == "t0" and first["attempt"] == 0 and first["duration_s"] == 1.5
    # ISO 8601, nanoseconds kept, nested ones too.
    assert first["start_time"] == "2025-03-01T12:00:00.000000123+00:00"
    assert first["times"] == ["2025-03-01T12:00:00.000000123+00:00"]
    assert first["detail"] == {"state": "FINISHED", "at": "2025-03-01T12:00:00.000000123+00:00"}
    assert dt.datetime.fromisoformat(data[1]["start_time"][:26] + "+00:00") == T0 + dt.timedelta(seconds=1)
    assert data[1]["start_time"].endswith("+00:00")
    # DuckDB sums integers as HUGEINT (Arrow decimal); JSON gets a plain number.
    assert first["total_attempts"] == 2


def test_format_json_values_json_cannot_hold(box: Sandbox) -> None:
    result = run(
        box,
        "SELECT 'nan'::DOUBLE AS nan, '\\xFF\\x00'::BLOB AS raw, INTERVAL 3 DAY + INTERVAL 1500 MILLISECOND AS wait, "
        "1.25::DECIMAL(6, 2) AS price, DATE '2025-03-01' AS day, MAP {'k': 1} AS m, 1 AS a, 2 AS a",
    )
    assert json.loads(format_result(result, "json")) == [
        {
            "nan": None,
            "raw": "/wA=",
            "wait": "P0M3DT1.5S",
            "price": 1.25,
            "day": "2025-03-01",
            "m": {"k": 1},
            "a": 1,
            "a_1": 2,
        }
    ]
    parquet = pq.read_table(io.BytesIO(format_result(result, "parquet")))
    assert parquet.column("wait").to_pylist() == ["P0M3DT1.5S"]
    assert parquet.column_names[-2:] == ["a", "a_1"]


def test_format_csv(sample: QueryResult) -> None:
    lines = list(csv.reader(io.StringIO(format_result(sample, "csv").decode())))
    assert lines[0] == [
        "task_id",
        "name",
        "attempt",
        "duration_s",
        "start_time",
        "total_attempts",
        "times",
        "detail",
        "score",
        "note",
    ]
    assert lines[1][:6] == ["t0", "load", "0", "1.5", "2025-03-01T12:00:00.000000123+00:00", "2"]
    assert json.loads(lines[1][7]) == {"state": "FINISHED", "at": "2025-03-01T12:00:00.000000123+00:00"}
    assert lines[1][8] == ""  # NULL
    assert len(lines) == 5


def test_format_table(sample: QueryResult, box: Sandbox) -> None:
    text = format_result(sample, "table").decode()
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "task_id"
    assert set(lines[1]) <= {"-", "+"}
    # The columns line up: the separators sit at the same places on the header and every row.
    bars = {tuple(i for i, char in enumerate(line) if char == "|") for line in [lines[0], *lines[2:6]]}
    assert len(bars) == 1 and len(next(iter(bars))) == 9
    assert lines[0].index("| name") == lines[2].index("| load")
    # Numbers are right-aligned, text left-aligned.
    assert lines[2].split("|")[2] == "       0 " and lines[2].split("|")[1] == " load  "
    assert lines[-1] == "(4 rows, truncated: the query returned more)"
    assert "2025-03-01T12:00:00.000000123+00:00" in text

    notes = format_result(run(box, "SELECT 'a' || chr(10) || 'b' AS note, NULL AS nothing"), "table").decode()
    assert "a\\nb" in notes and "NULL" in notes and notes.endswith("(1 row)\n")


def test_format_parquet(sample: QueryResult) -> None:
    table = pq.read_table(io.BytesIO(format_result(sample, "parquet")))
    assert table.num_rows == 4
    assert table.column("start_time").type.unit == "ns"
    assert table.column("task_id").to_pylist() == ["t0", "t1", "t2", "t3"]


def test_format_empty_result(box: Sandbox) -> None:
    empty = run(box, "SELECT task_id, start_time FROM tasks WHERE false")
    assert json.loads(format_result(empty, "json")) == []
    assert format_result(empty, "csv") == b"task_id,start_time\n"
    assert format_result(empty, "table").decode().splitlines()[-1] == "(0 rows)"
    assert pq.read_table(io.BytesIO(format_result(empty, "parquet"))).num_rows == 0


def test_format_unknown(sample: QueryResult) -> None:
    with pytest.raises(ValueError, match="one of table, csv, json, parquet"):
        format_result(sample, "xml")


def test_temp_files_stay_out_of_the_working_directory(box: Sandbox) -> None:
    # No spill directory: the default '.tmp' of the working directory would be readable too.
    cursor = box.cursor()
    try:
        allowed = cursor.execute("SELECT value FROM duckdb_settings() WHERE name = 'allowed_directories'").fetchall()
    finally:
        cursor.close()
    assert ".tmp" not in allowed[0][0]
    assert os.path.join(os.getcwd(), ".tmp") not in allowed[0][0]
