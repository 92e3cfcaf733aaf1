"""Users' SQL in its own bounded pool: a few worker processes (historyserver.sqlworker), at most one query each.

Why processes: a query's memory must not be the server's. DuckDB's memory limit bounds its buffers, not a
huge value a query makes (`SELECT repeat('x', 10000000) FROM range(50)` allocated 500 MB past a 512 MB limit),
and DuckDB only notices an interrupt between vectors. A worker is watched from here and killed past its memory
budget or its time, and started again; the server's own memory never holds more than a capped result.
Why a pool: `concurrency` queries run at once, a few more wait a short while, the rest are told to come back
(429 with Retry-After) at once, so SQL holds few of the server's request threads and pages stay quick.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from .limits import Admission, Busy, show_size
from .sandbox import QueryResult, QueryTimeout, SandboxDefinition, SandboxError, run_remotely
from .sqlworker import NICENESS, Request, read_frame, write_frame

log = logging.getLogger(__name__)

# DuckDB's share of a query's memory budget; the rest is the worker's own (Python, Arrow, the result).
DUCKDB_SHARE = 0.75
# How often a running query's worker is measured: a query allocating 1 GB/s overshoots by about this much.
WATCH_S = 0.01
# A worker still busy this long past the query's time limit is stuck in one huge value: killed.
STUCK_GRACE_S = 5.0
# A worker holding more than this share of its budget between queries (freed memory an allocator kept) is
# started again, so that the next query has its whole budget.
REST_SHARE = 0.6
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Worker:
    """One worker process, started on first use; killed and started again when it outgrows its budget or hangs."""

    def __init__(self, memory_bytes: int) -> None:
        self.memory_bytes = memory_bytes
        self._process: subprocess.Popen[bytes] | None = None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            # The package's own folder first, so the worker runs this server's code whatever the working directory.
            root = str(Path(__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
            self._process = subprocess.Popen([sys.executable, "-m", "historyserver.sqlworker"], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, bufsize=0, env=env)  # fmt: skip
            # Below the server's priority from its first instruction: its start (importing DuckDB and Arrow, a
            # second of CPU after each query stopped past its budget) must not slow the pages either.
            with contextlib.suppress(AttributeError, OSError):
                os.setpriority(os.PRIO_PROCESS, self._process.pid, NICENESS)
        return self._process

    def rss(self) -> int:
        """The worker's resident memory in bytes (0 when unknown)."""
        if self._process is None:
            return 0
        try:
            with open(f"/proc/{self._process.pid}/statm", "rb") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """A fresh process at once: it starts (imports DuckDB and Arrow) while the next query is on its way."""
        self.stop()
        self._started()

    def run(self, request: Request) -> QueryResult:
        """The query's result; SandboxError (for the user) when it is refused, fails, or outgrows its budget."""
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        try:
            write_frame(process.stdin, request)
        except OSError:  # it died between two queries: once more, on a new one
            self.stop()
            process = self._started()
            write_frame(process.stdin, request)  # type: ignore[arg-type]
        reply = self._wait(process, request)
        if self.rss() > self.memory_bytes * REST_SHARE:
            self.restart()
        kind, *rest = reply
        if kind == "ok":
            return rest[0]  # type: ignore[no-any-return]
        if kind == "refused":
            what, message, number = rest
            raise QueryTimeout(number) if what == "timeout" else SandboxError(message)
        raise RuntimeError(f"the SQL worker failed: {rest[0]}")

    def _wait(self, process: subprocess.Popen[bytes], request: Request) -> tuple[Any, ...]:
        stuck_at = time.monotonic() + request.timeout_s + STUCK_GRACE_S
        answers = process.stdout
        assert answers is not None
        while True:
            ready, _, _ = select.select([answers], [], [], WATCH_S)
            if ready:
                reply = read_frame(_Exact(answers))
                if reply is None:
                    self.restart()
                    raise SandboxError("The query stopped the process that ran it (out of memory?); try a smaller one.")
                return reply  # type: ignore[no-any-return]
            if self.rss() > self.memory_bytes:
                self.restart()
                raise SandboxError(
                    f"The query needed more than {show_size(self.memory_bytes)} of memory, what one query may take "
                    "(--sql-memory), and was stopped. Select fewer or narrower columns, filter, aggregate, "
                    "or add a LIMIT."
                )
            if time.monotonic() > stuck_at:
                self.restart()
                raise QueryTimeout(request.timeout_s)


class _Exact:
    """A raw pipe read as a stream whose read(n) returns n bytes (or fewer at its end only)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.raw.read(left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class SqlPool:
    """`concurrency` workers; a query takes one for its whole request (its views are built, then it runs)."""

    def __init__(self, concurrency: int = 2, memory_bytes: int = 512 * 2**20, threads: int = 1,
                 max_bytes: int = 16 * 2**20, queue: int = 8, queue_wait_s: float = 5.0) -> None:  # fmt: skip
        self.concurrency = concurrency
        self.memory_bytes = memory_bytes
        self.threads = threads
        self.max_bytes = max_bytes
        self.queue_wait_s = queue_wait_s
        self.admission = Admission(concurrency, queue)
        self._idle = [Worker(memory_bytes) for _ in range(concurrency)]
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A worker for this block: a sandbox opened in it runs its queries there. Busy (429) when none is free
        within the queue's wait."""
        busy = Busy(f"{self.concurrency} SQL queries are running and more are waiting: try again in a few seconds",
                    429, max(1, round(self.queue_wait_s)))  # fmt: skip
        with self.admission.held(0, self.queue_wait_s, busy):
            with self._lock:
                worker = self._idle.pop()
            try:
                with run_remotely(functools.partial(self._run, worker)):
                    yield
            finally:
                with self._lock:
                    self._idle.append(worker)

    def _run(self, worker: Worker, definition: SandboxDefinition, sql: str, timeout_s: float,
             max_rows: int) -> QueryResult:  # fmt: skip
        duckdb_mib = max(64, int(self.memory_bytes * DUCKDB_SHARE) // 2**20)
        request = Request(definition, sql, timeout_s, max_rows, self.max_bytes, f"{duckdb_mib}MiB", self.threads)
        return worker.run(request)

    def close(self) -> None:
        with self._lock:
            for worker in self._idle:
                worker.stop()


P = ParamSpec("P")
T = TypeVar("T")


def in_sql_pool(pool_of: Callable[..., SqlPool]) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Run the decorated function (which opens a sandbox and runs the user's query) holding one of the pool's
    workers; `pool_of` gets the function's first argument (the request) and answers the pool."""

    def decorate(run: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(run)
        def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            with pool_of(args[0]).slot():
                return run(*args, **kwargs)

        return limited

    return decorate
