"""Pages of a table through kept orderings: every page, filter and eviction gives what a plain query gives."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import duckdb
import pytest

from historyserver import queries

TASKS = queries.TASKS


@pytest.fixture
def db() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute("""CREATE TABLE tasks AS SELECT
        printf('%04d', i) AS task_id, 0 AS attempt_number, ['FAILED', 'FINISHED', 'RUNNING'][i % 3 + 1] AS state,
        CASE WHEN i % 50 = 0 THEN 'DRIVER_TASK' ELSE 'NORMAL_TASK' END AS type, 'f' || (i % 4) AS func_or_class_name,
        (i * 7919) % 1000 AS duration_ms, i AS creation_time_ms
        FROM range(1000) r(i)""")
    return db


def expected(db: duckdb.DuckDBPyConnection, where: str, sort: str, limit: int, offset: int) -> tuple[int, list[str]]:
    column, direction = sort.removeprefix("-"), "DESC" if sort.startswith("-") else "ASC"
    sql = f"""SELECT task_id FROM tasks WHERE type != 'DRIVER_TASK' {where}
              ORDER BY {column} {direction} NULLS LAST, rowid LIMIT ? OFFSET ?"""
    rows = db.execute(sql, [limit, offset]).fetchall()
    [(total,)] = db.execute(f"SELECT count(*) FROM tasks WHERE type != 'DRIVER_TASK' {where}").fetchall()
    return total, [task_id for (task_id,) in rows]


def test_pages_through_kept_orderings_match_a_plain_query_even_after_eviction(db: duckdb.DuckDBPyConnection) -> None:
    ordering = queries.Ordering(TASKS, keep=2)
    asks = [({"state": "FAILED"}, "-duration_ms", "AND state = 'FAILED'"),
            ({"func_or_class_name": "f1"}, "duration_ms", "AND func_or_class_name = 'f1'"),
            ({}, "-creation_time_ms", ""),
            ({"state": "FAILED"}, "-duration_ms", "AND state = 'FAILED'")]  # fmt: skip
    for filters, sort, where in asks:
        for offset in (0, 20, 300):
            query = queries.ListQuery(filters, sort, 20, offset, detail=True)
            total, items = queries.page(db.cursor(), TASKS, query, ordering)
            assert (total, [item["task_id"] for item in items]) == expected(db, where, sort, 20, offset)
    assert len(ordering._built) == 2, "orderings beyond `keep` are dropped"


def test_pages_read_in_parallel_while_orderings_are_evicted_all_answer_right(db: duckdb.DuckDBPyConnection) -> None:
    # No lock is held across a page's query: a numbering evicted while others read it must still answer them.
    ordering = queries.Ordering(TASKS, keep=2)
    asks = [({"state": "FAILED"}, "-duration_ms", "AND state = 'FAILED'"),
            ({"func_or_class_name": "f1"}, "duration_ms", "AND func_or_class_name = 'f1'"),
            ({}, "-creation_time_ms", ""), ({}, "-duration_ms", "")]  # fmt: skip
    wanted = {(i, offset): expected(db, where, sort, 20, offset)
              for i, (_, sort, where) in enumerate(asks) for offset in (0, 40)}  # fmt: skip

    def read(i: int, offset: int) -> tuple[int, list[str]]:
        filters, sort, _ = asks[i]
        total, items = queries.page(db.cursor(), TASKS, queries.ListQuery(filters, sort, 20, offset), ordering)
        return total, [item["task_id"] for item in items]

    calls = [(i, offset) for _ in range(10) for i in range(len(asks)) for offset in (0, 40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda call: read(*call), calls))
    assert answers == [wanted[call] for call in calls]
    assert len(ordering._built) == 2, "orderings beyond `keep` are dropped"


def test_drivers_tasks_only_when_asked(db: duckdb.DuckDBPyConnection) -> None:
    ordering = queries.Ordering(TASKS)
    hidden = queries.page(db.cursor(), TASKS, queries.ListQuery(limit=1000), ordering)[0]
    everything = queries.page(db.cursor(), TASKS, queries.ListQuery(limit=1000, include_hidden=True), ordering)[0]
    assert (hidden, everything) == (980, 1000)
