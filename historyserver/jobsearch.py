"""Job search over the job index's `jobs` table: a JobQuery to SQL, and a page of it found fast at any depth.

A page sorted by a column with a tie-break over the session's path and the job's ids is what a user wants (ties
grouped by session, the same order on every replica), but DuckDB's top-N then builds a string sort key for every
matching row and carries every column of the kept rows: a page at offset 50,000 of 400,000 jobs took 115 ms.
So a page is found in three small steps instead (`search`): the sort column alone, at the page's offset, gives the
values the page starts and ends at (a top-N on one plain column: about 11 ms); what sorts before the first of
them is counted (with the total, in one scan); and only the rows between those two values are sorted in full,
the page taken from them. The answer is exactly that of the single ORDER BY ... LIMIT ... OFFSET, ties included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import msgspec

from . import queries
from .errors import BadRequest

JOB_STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
SORTABLE = frozenset({"start_time_ms", "end_time_ms", "duration_ms", "status", "namespace", "cluster",
                      "submission_id", "job_id", "entrypoint"})  # fmt: skip
DEFAULT_SORT = "-start_time_ms"
# After the sort column, what orders ties, so that paging never repeats or skips a job and every replica answers
# alike: the session's path, then the submission id, then the job id, nulls last. As one text (the index's
# `tie_break` column, made from this on insert) that sorts as the three would: chr(1) ends a value (no name of
# a path holds a character below it, archive.layout, nor does an id), and chr(2) before a value or chr(3) for a
# null puts nulls after every value.
TIE_BREAK = ("concat(path, chr(1), ifnull(chr(2) || submission_id, chr(3)), chr(1), "
             "ifnull(chr(2) || job_id, chr(3)))")  # fmt: skip
_ROW_DECODER = msgspec.json.Decoder(dict[str, Any])


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


def search(cur: duckdb.DuckDBPyConnection, query: JobQuery) -> tuple[int, list[dict[str, Any]]]:
    """(how many jobs match, the requested page of them), read through `cur` (in one transaction: the total and
    the page of one state)."""
    where, params = _where(query)
    column, descending = _sort_of(query.sort)
    queries.check_page(query.limit, query.offset)
    direction = "DESC" if descending else "ASC"
    bounds = cur.execute(f"SELECT {column} FROM jobs WHERE {where} ORDER BY {column} {direction} NULLS LAST "
                         "LIMIT ? OFFSET ?", [*params, query.limit, query.offset]).fetchall()  # fmt: skip
    if not bounds:  # past the end: only the total
        total = cur.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()
        return (total[0] if total else 0), []
    first, last = bounds[0][0], bounds[-1][0]
    # What sorts before the page's first value, and the range of values the page is in. NULLS LAST: a null sorts
    # after every value, so a range from a value to a null runs on into the nulls.
    ahead = ">" if descending else "<"
    before: tuple[str, list[Any]]
    between: tuple[str, list[Any]]
    if first is None:
        before, between = (f"{column} IS NOT NULL", []), (f"{column} IS NULL", [])
    elif last is None:
        before, between = (f"{column} {ahead} ?", [first]), (f"({column} IS NULL OR NOT {column} {ahead} ?)", [first])
    else:
        before = (f"{column} {ahead} ?", [first])
        between = (f"{column} BETWEEN ? AND ?", [last, first] if descending else [first, last])
    # The total and what comes before the page in one scan.
    counted = cur.execute(f"SELECT count(*), count(*) FILTER (WHERE {before[0]}) FROM jobs WHERE {where}",
                          [*before[1], *params]).fetchone()  # fmt: skip
    total, skipped = counted if counted else (0, 0)
    found = cur.execute(
        f"SELECT row_json FROM jobs WHERE {where} AND {between[0]} "
        f"ORDER BY {column} {direction} NULLS LAST, tie_break LIMIT ? OFFSET ?",
        [*params, *between[1], query.limit, query.offset - skipped],
    ).fetchall()
    return total, [_ROW_DECODER.decode(row) for (row,) in found]


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


def _sort_of(sort: str | None) -> tuple[str, bool]:
    """(column, descending) of a sort parameter; only allow-listed names ever reach the SQL."""
    sort = sort or DEFAULT_SORT
    column = sort.removeprefix("-")
    if column not in SORTABLE:
        raise BadRequest(f"cannot sort jobs by {column!r}; sort by one of: {', '.join(sorted(SORTABLE))} "
                         "(prefix - to reverse)")  # fmt: skip
    return column, sort.startswith("-")
