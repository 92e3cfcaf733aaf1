"""What the log pages add to the log queries: the nodes the files came from (dead ones too), the parts of a
file the archive left out, what a search matched on each line, and a line's text as a page shows it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import duckdb
from markupsafe import Markup, escape

from .queries import rows

# Colours and cursor moves Ray's drivers print: meaningless once escaped into a page.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def node_states(cur: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """What the session's events say of each node, by Ray's node id."""
    sql = "SELECT node_id, state, node_ip, hostname, is_head_node, end_time_ms FROM nodes"
    return {node["node_id"]: node for node in rows(cur.execute(sql))}


def log_nodes(files: list[dict[str, Any]], states: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per node that shipped files, in the files' order, with its state if the events know it.

    Grouped by the archive's node segment: a file whose Ray node id was never learned still has one.
    """
    nodes: dict[str, dict[str, Any]] = {}
    for file in files:
        node = nodes.get(file["node"])
        if node is None:
            known = states.get(file["node_id"] or "", {})
            node = nodes[file["node"]] = {
                "node": file["node"], "node_id": file["node_id"], "state": known.get("state"),
                "node_ip": known.get("node_ip"), "hostname": known.get("hostname"),
                "is_head_node": known.get("is_head_node"), "end_time_ms": known.get("end_time_ms"),
                "files": 0, "size_bytes": 0,
            }  # fmt: skip
        node["files"] += 1
        node["size_bytes"] += file["size_bytes"] or 0
    return list(nodes.values())


def log_jobs(files: Iterable[dict[str, Any]]) -> list[str]:
    """The job ids and submission ids the file names carry: what a job's zip can be asked for."""
    return sorted({value for file in files for value in (file["job_id"], file["submission_id"]) if value})


def left_out(cur: duckdb.DuckDBPyConnection, file_id: str) -> list[dict[str, Any]]:
    """The byte ranges of a file the collector did not ship (too big, excluded, renamed), and why."""
    sql = """SELECT "offset", omitted_bytes, omitted_reason FROM logs
             WHERE file_id = ? AND omitted_bytes IS NOT NULL ORDER BY "offset" """
    return rows(cur.execute(sql, [file_id]))


def matched_texts(cur: duckdb.DuckDBPyConnection, pattern: str, texts: list[str]) -> list[list[str]]:
    """Each text's matches of `pattern`, in order, by the same RE2 engine the search ran (so a pattern
    Python's `re` reads differently, or would backtrack on for ever, still marks what was found)."""
    if not texts:
        return []
    sql = "SELECT list_transform(?::VARCHAR[], lambda t: regexp_extract_all(t, ?))"
    [(found,)] = cur.execute(sql, [texts, pattern]).fetchall()
    return [[match for match in matches or [] if match] for matches in found]


def plain(text: str | None) -> str:
    return ANSI.sub("", text or "")


def marked(text: str | None, matches: list[str] | None) -> Markup:
    """The line escaped, without terminal colours, each match in <mark>."""
    text, pieces, at = text or "", [], 0
    for match in matches or []:
        found = text.find(match, at)
        if found < 0:
            break
        pieces += [escape(plain(text[at:found])), Markup("<mark>{}</mark>").format(plain(match))]
        at = found + len(match)
    pieces.append(escape(plain(text[at:])))
    return Markup("").join(pieces)
