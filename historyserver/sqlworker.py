"""A SQL worker process (`python -m historyserver.sqlworker`): opens a sandbox from its definition and runs one
user query in it, request after request, answering over its standard input and output.

A query's memory is this process's, not the server's: DuckDB allocates a huge value (`repeat('x', 1e7)`) outside
its memory limit, so the server (historyserver.sqlpool) watches this process's size and kills it past its
budget. The pool starts it at a lower CPU priority than the server, so pages stay quick while queries run.

Frames are an 8-byte big-endian length and a pickle; both ends are this project's code.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
from dataclasses import dataclass
from typing import IO, Any

from .sandbox import QueryTimeout, ResultTooLarge, SandboxDefinition, SandboxError, open_sandbox, run_query

HEADER = struct.Struct(">Q")
# Below the server's priority (0), set by the pool as it starts the process: the kernel gives pages the CPU
# first when both want it.
NICENESS = 10


@dataclass(frozen=True)
class Request:
    definition: SandboxDefinition
    sql: str
    timeout_s: float
    max_rows: int
    max_bytes: int
    memory_limit: str
    threads: int


def write_frame(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next value, or None once the other end closed."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def answer(request: Request) -> tuple[str, Any]:
    """("ok", QueryResult), ("refused", kind, message, numbers) for the user, or ("failed", message)."""
    try:
        views = request.definition.views
        with open_sandbox(views, request.definition.allowed_dirs, memory_limit=request.memory_limit,
                          threads=request.threads) as sandbox:  # fmt: skip
            return "ok", run_query(request.sql, sandbox, timeout_s=request.timeout_s, max_rows=request.max_rows,
                                   max_bytes=request.max_bytes)  # fmt: skip
    except QueryTimeout as exc:
        return "refused", "timeout", str(exc), exc.timeout_s
    except ResultTooLarge as exc:
        return "refused", "too_large", str(exc), exc.max_bytes
    except SandboxError as exc:
        return "refused", "error", str(exc), None
    except MemoryError:
        return "refused", "memory", "The query needs more memory than a query may take.", None
    except Exception as exc:  # the server's own views failed: its log says why
        return "failed", f"{type(exc).__name__}: {exc}"


def main() -> None:
    requests = sys.stdin.buffer
    # The answers get a descriptor of their own, and the standard output becomes the log's: DuckDB draws its
    # progress bar on descriptor 1 from C++, and a stray print must not land in the answers either.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    while (request := read_frame(requests)) is not None:
        write_frame(answers, answer(request))


if __name__ == "__main__":
    main()
