"""The timeline page's Gantt: task attempts per worker, as bars when few enough, else per-pixel aggregates.

A million-task session cannot be sent to a browser bar by bar. The page asks for a time window, its
width in pixels and the rows it shows; this answers the attempts themselves when at most `max_bars`
fall in that window, and otherwise one cell per (row, pixel) holding how many attempts start there,
their dominant state or function and how far the longest of them reaches, so a long task still reads
as a long bar. Either answer is bounded: by `max_bars`, or by rows x width.

Attempts are read once per opened session into `_gantt`, a compact native table (small integer keys for
the row, state and function, sorted by start), so a window is a scan of a few narrow columns, not of
the wide `tasks` table with its text.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from .errors import BadRequest

MAX_BARS = 20_000  # individual bars a browser draws smoothly; above it, aggregates
MAX_BARS_LIMIT = 100_000
MAX_WIDTH_PX = 10_000
MAX_ROWS = 1_000  # rows one request may cover: with the width, the bound on the cells of an answer
COLOR_BY = {"state": "state_key", "function": "func_key"}
MAX_KEYS = 200  # legend entries; rarer functions share the last colour anyway

TABLE = "_gantt"
_build_lock = threading.Lock()

# Driver tasks are left out: they have no worker, and one that outlived its job (Ray reports them
# until the cluster ends) would stretch the window over nothing. An attempt with no end (a closed
# session's lost attempt) is drawn as an instant at its start, not as running until some guess.
BUILD = f"""
CREATE TABLE {TABLE} AS
WITH attempts AS (
    SELECT task_id, attempt_number, job_id, state, func_or_class_name, node_id, worker_id,
           start_time_ms AS start_ms, greatest(coalesce(end_time_ms, start_time_ms), start_time_ms) AS end_ms
    FROM tasks WHERE start_time_ms IS NOT NULL AND coalesce(type, '') <> 'DRIVER_TASK'
), nodes AS (
    SELECT node_id, min(start_ms) AS first_ms FROM attempts GROUP BY node_id
), workers AS (
    -- Nodes in the order they started running tasks, a node's workers likewise; no node last.
    SELECT a.node_id, a.worker_id,
           (row_number() OVER (ORDER BY n.node_id IS NULL, n.first_ms, n.node_id, min(a.start_ms),
                               a.worker_id NULLS LAST) - 1)::INTEGER AS row_id
    FROM attempts a JOIN nodes n ON n.node_id IS NOT DISTINCT FROM a.node_id
    GROUP BY a.node_id, a.worker_id, n.node_id, n.first_ms
), states AS (
    SELECT state, (row_number() OVER (ORDER BY count(*) DESC, state) - 1)::INTEGER AS state_key
    FROM attempts GROUP BY state
), funcs AS (
    SELECT func_or_class_name, (row_number() OVER (ORDER BY count(*) DESC, func_or_class_name) - 1)::INTEGER AS func_key
    FROM attempts GROUP BY func_or_class_name
)
SELECT w.row_id, a.start_ms, a.end_ms, s.state_key, f.func_key, a.state = 'FAILED' AS failed, a.job_id,
       a.task_id, a.attempt_number, w.node_id, w.worker_id, a.state, a.func_or_class_name
FROM attempts a
JOIN workers w ON w.node_id IS NOT DISTINCT FROM a.node_id AND w.worker_id IS NOT DISTINCT FROM a.worker_id
JOIN states s ON s.state IS NOT DISTINCT FROM a.state
JOIN funcs f ON f.func_or_class_name IS NOT DISTINCT FROM a.func_or_class_name
ORDER BY a.start_ms
"""


def ensure_table(db: duckdb.DuckDBPyConnection, memo: dict[tuple[str, ...], Any]) -> None:
    """`_gantt` in this session's database, built on first use (the memo is the opened session's, so a
    session opened anew, with new tables, builds its own)."""
    with _build_lock:
        if ("gantt/table",) not in memo:
            db.execute(f"DROP TABLE IF EXISTS {TABLE}")
            db.execute(BUILD)
            memo[("gantt/table",)] = True


def _job_filter(job_id: str | None) -> tuple[str, list[Any]]:
    return ("AND job_id = ?", [job_id]) if job_id else ("", [])


def summary(cur: duckdb.DuckDBPyConnection, job_id: str | None) -> dict[str, Any]:
    """What a page needs before any bar: the time extent, the rows (worker per node), the legend's
    states and functions and the jobs to filter by. Row and key ids are the session's, whatever the job,
    so bars answered for a job are placed by the same ids."""
    job, params = _job_filter(job_id)
    where = f"WHERE true {job}"
    [(attempts, start_ms, end_ms)] = cur.execute(
        f"SELECT count(*), min(start_ms), max(end_ms) FROM {TABLE} {where}", params
    ).fetchall()
    rows = cur.execute(
        f"""SELECT row_id, any_value(node_id), any_value(worker_id), count(*) FROM {TABLE} {where}
            GROUP BY row_id ORDER BY row_id""",
        params,
    ).fetchall()
    keys: dict[str, list[dict[str, Any]]] = {}
    for kind, key, name in (("states", "state_key", "state"), ("functions", "func_key", "func_or_class_name")):
        found = cur.execute(
            f"""SELECT {key}, any_value({name}), count(*) FROM {TABLE} {where}
                GROUP BY {key} ORDER BY count(*) DESC, {key} LIMIT {MAX_KEYS}""",
            params,
        ).fetchall()
        keys[kind] = [{"key": key_id, "name": label, "attempts": count} for key_id, label, count in found]
    jobs = cur.execute(
        f"SELECT job_id, count(*) FROM {TABLE} GROUP BY job_id ORDER BY min(start_ms), job_id"
    ).fetchall()
    # Rows as [id, node (its index in `nodes`), worker_id, attempts]: a big session has thousands of
    # workers, and the page gets them all (to lay out and label what it scrolls through).
    nodes: dict[str | None, dict[str, Any]] = {}
    compact = []
    for row, node, worker, count in rows:
        entry = nodes.setdefault(node, {"index": len(nodes), "node_id": node, "rows": 0, "attempts": 0})
        entry["rows"] += 1
        entry["attempts"] += count
        compact.append([row, entry["index"], worker, count])
    return {
        "job_id": job_id,
        "attempts": attempts,
        "start_ms": start_ms,
        "end_ms": end_ms,
        "nodes": list(nodes.values()),
        "rows": compact,
        **keys,
        "jobs": [{"job_id": job, "attempts": count} for job, count in jobs],
    }


def bars(cur: duckdb.DuckDBPyConnection, rows: list[int], *, start_ms: int, end_ms: int, width_px: int,
         color_by: str, job_id: str | None, max_bars: int = MAX_BARS) -> dict[str, Any]:  # fmt: skip
    """The attempts of `rows` (ids in ascending order, as `summary` lists them) overlapping
    [start_ms, end_ms): as bars if at most `max_bars`, else as cells of one pixel of `width_px`."""
    if end_ms <= start_ms:
        raise BadRequest("end_ms must be after start_ms")
    if not 0 < width_px <= MAX_WIDTH_PX:
        raise BadRequest(f"width_px must be between 1 and {MAX_WIDTH_PX}")
    if not 0 < max_bars <= MAX_BARS_LIMIT:
        raise BadRequest(f"max_bars must be between 1 and {MAX_BARS_LIMIT}")
    if color_by not in COLOR_BY:
        raise BadRequest(f"color_by must be one of {', '.join(COLOR_BY)}")
    if len(rows) > MAX_ROWS:
        raise BadRequest(f"at most {MAX_ROWS} rows at a time: narrow row_start and row_count")
    answer: dict[str, Any] = {"start_ms": start_ms, "end_ms": end_ms, "width_px": width_px, "color_by": color_by,
                              "job_id": job_id, "max_bars": max_bars}  # fmt: skip
    if not rows:
        return {**answer, "mode": "bars", "attempts": 0, "bars": []}
    job, job_params = _job_filter(job_id)
    # A job's rows are a subsequence of the session's, so the ids between its first and last row are
    # exactly its rows once the job filter holds: a range test, not a list of ids.
    where = f"WHERE start_ms < ? AND end_ms >= ? AND row_id BETWEEN ? AND ? {job}"
    params = [end_ms, start_ms, rows[0], rows[-1], *job_params]
    key = COLOR_BY[color_by]
    found = cur.execute(
        f"""SELECT row_id, start_ms, end_ms, {key}, task_id, attempt_number, state_key, func_key
            FROM {TABLE} {where} LIMIT ?""",
        [*params, max_bars + 1],
    ).fetchall()
    if len(found) <= max_bars:
        return {**answer, "mode": "bars", "attempts": len(found), "bars": [list(bar) for bar in found]}
    # Too many: a cell per row and pixel an attempt starts in (its first visible pixel), so every
    # attempt is counted once and the counts add up to the attempts in the window.
    scale = width_px / (end_ms - start_ms)
    cells = cur.execute(
        f"""SELECT row_id, px, max(end_px) AS end_px, count(*) AS attempts, mode({key}) AS key,
                   count(*) FILTER (WHERE failed) AS failed
            FROM (SELECT row_id, {key}, failed,
                         greatest(0, floor((start_ms - ?) * ?))::INTEGER AS px,
                         least(?, floor((end_ms - ?) * ?))::INTEGER AS end_px
                  FROM {TABLE} {where})
            GROUP BY row_id, px ORDER BY row_id, px""",
        [start_ms, scale, width_px - 1, start_ms, scale, *params],
    ).fetchall()
    return {**answer, "mode": "cells", "attempts": sum(cell[3] for cell in cells),
            "ms_per_px": (end_ms - start_ms) / width_px, "cells": [list(cell) for cell in cells]}  # fmt: skip
