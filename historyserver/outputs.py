"""What a task attempt or an actor printed, from the session's archived logs: one read for every face."""

from __future__ import annotations

from typing import Any

import duckdb

from archive.logs import rebuild_file

from . import queries
from .errors import NotFound

STREAMS = ("stdout", "stderr")


def task_output(cur: duckdb.DuckDBPyConnection, task_id: str, attempt_number: int | None, stream: str,
                ) -> dict[str, Any]:  # fmt: skip
    """The byte range of the attempt's worker file that Ray's taskLogInfo marks, else its marked lines."""
    attempts = queries.task_attempts(cur, task_id)
    attempt = attempts[-1] if attempt_number is None else next(
        (entry for entry in attempts if entry["attempt_number"] == attempt_number), None)  # fmt: skip
    if attempt is None:
        raise NotFound(f"task {task_id} has no attempt {attempt_number}")
    info = attempt.get("task_log_info") or {}
    path, start, end = info.get(f"{stream}_file"), info.get(f"{stream}_start"), info.get(f"{stream}_end")
    answer = {"task_id": task_id, "attempt_number": attempt["attempt_number"], "node_id": attempt["node_id"],
              "stream": stream}  # fmt: skip
    if path and start is not None and end is not None:
        filename = path.split("/logs/", 1)[-1]
        text = rebuild_file(queries.log_slice(cur, attempt["node_id"], filename, start, end)).decode("utf-8", "replace")
        first = queries.line_at_offset(cur, attempt["node_id"], filename, start)
        return {**answer, "source": "task_log_info", "filename": filename, "start": start, "end": end,
                "start_line": first, "text": text}  # fmt: skip
    # Ray did not say where this attempt's output is: the lines its worker printed under the task's
    # `:task_name:` marker (every attempt of the task that ran on that worker).
    lines = queries.marked_lines(cur, attempt["worker_id"] or "", attempt["name"] or "", stream)
    if not lines:
        raise NotFound(f"no {stream} of attempt {attempt['attempt_number']} of task {task_id} in this session")
    return {**answer, "source": "markers", "filename": lines[0]["filename"], "start_line": lines[0]["line_number"],
            "text": "".join(line["text"] + "\n" for line in lines)}  # fmt: skip


def actor_output(cur: duckdb.DuckDBPyConnection, actor_id: str, stream: str) -> dict[str, Any]:
    """An actor's worker's .out or .err file (a worker runs one actor)."""
    actor = queries.one(cur, queries.ACTORS, actor_id=actor_id)
    suffix = ".out" if stream == "stdout" else ".err"
    files = [
        file for file in queries.worker_log_files(cur, actor["worker_id"] or "") if file["filename"].endswith(suffix)
    ]
    if not files:
        raise NotFound(f"no {stream} file of actor {actor_id}'s worker in this session")
    text = rebuild_file(queries.log_rows(cur, files[0]["file_id"]))
    return {"actor_id": actor_id, "filename": files[0]["filename"], "node_id": files[0]["node_id"], "stream": stream,
            "text": text.decode("utf-8", "replace")}  # fmt: skip
