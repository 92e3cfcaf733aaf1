"""Read-only SQL over one session's views or the whole archive's, sandboxed (historyserver.sandbox)."""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ..errors import BadRequest
from ..sandbox import SandboxError, format_result
from ..sqlviews import sandbox_for
from .common import Views, server_of

views = Views("sql")

MEDIA_TYPES = {"json": "application/json", "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
               "table": "text/plain"}  # fmt: skip


class SqlRequest(BaseModel):
    sql: str = Field(..., description="one SELECT over sessions, jobs, tasks, actors, nodes, workers, "
                     "placement_groups, events, logs, metrics", max_length=100_000)  # fmt: skip
    session: str | None = Field(None, description="namespace/cluster/session; all sessions when absent")
    format: Literal["json", "csv", "parquet", "table"] = "json"


@views.api.post("/sql")
def run_sql(request: Request, body: SqlRequest) -> Response:
    server = server_of(request)
    with sandbox_for(server, body.session) as sandbox:
        try:
            result = sandbox.run(body.sql, timeout_s=server.settings.sql_timeout, max_rows=server.settings.sql_max_rows)
        except SandboxError as exc:
            raise BadRequest(str(exc)) from exc
    headers = {"X-Rows": str(result.num_rows), "X-Truncated": str(result.truncated).lower()}
    return Response(format_result(result, body.format), media_type=MEDIA_TYPES[body.format], headers=headers)
