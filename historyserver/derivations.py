"""Bounded derivations: how many sessions are replayed from their raw events at once, and with how much memory.

A first open of a session nobody derived replays every raw event (seconds, and gigabytes for a big session);
a burst of people opening different sessions must not run the server out of memory. Each derivation is
admitted with a cost estimated from its events parts' bytes, against `budget_bytes` for all of them, and at
most `slots` at once; it holds its share until its files are written (the writer holds its tables in Arrow).
Its DuckDB database gets that share as its memory limit (with a folder of the cache to spill to); one DuckDB
finds too small is run again alone with the whole budget, never past it: the server does not run out of
memory, and a session too big for the budget is answered 503 saying so. A request whose derivation is not
admitted within `wait_s` is answered 503 with Retry-After, saying the session is being prepared; the job
index's background pass waits its turn instead.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import duckdb

from archive import layout
from archive.storage import ObjectInfo

from .limits import Admission, Busy, lower_priority, show_size

log = logging.getLogger(__name__)
T = TypeVar("T")

# Peak memory of a derivation per byte of its events parts (Parquet, zstd), measured on a bench.archive_synth
# session of 100,000 tasks (41 MiB of events: the process grew by 522 MiB unbounded; docs/benchmarks.md).
BYTES_PER_EVENTS_BYTE = 12
# What any derivation is given at least: DuckDB refused a 5,000-task session at 64 MiB.
MIN_COST = 256 * 2**20
# DuckDB threads of one derivation: half the cores, the other half answering pages meanwhile (a first open of a
# big session takes longer; nobody else waits for it).
THREADS = max(1, (os.cpu_count() or 2) // 2)
# How long to ask a client to wait before it asks again: a session of a million tasks takes ~15 s to derive.
RETRY_AFTER_S = 10


class Derivations:
    def __init__(self, slots: int = 2, budget_bytes: int = 2 * 2**30, wait_s: float = 5.0,
                 cache_dir: Path | None = None, queue: int = 16) -> None:  # fmt: skip
        self.budget_bytes = budget_bytes
        self.wait_s = wait_s
        self.admission = Admission(slots, queue, budget_bytes)
        # Spilled pages of a derivation past its share; in the cache, whose disk is sized for sessions.
        self.temp_dir = (cache_dir or Path("/tmp/ray-history-cache")) / "derive-spill"
        self.retried = 0  # derivations run again with the whole budget, their estimate too low
        self._learned: dict[layout.SessionRef, int] = {}  # sessions whose estimate was too low: the whole budget
        self._lock = threading.Lock()
        # Replays run on threads of their own at a lower priority (the thread that runs a query works on it
        # too): pages come first when both want the CPU. The requester waits for its replay there.
        self._replayers = ThreadPoolExecutor(slots, thread_name_prefix="derivation", initializer=lower_priority)

    def cost(self, ref: layout.SessionRef, parts: Iterable[ObjectInfo]) -> int:
        """The memory a derivation of these events parts is expected to take, within [MIN_COST, budget]."""
        estimate = sum(part.size for part in parts) * BYTES_PER_EVENTS_BYTE
        return self._learned.get(ref) or min(self.budget_bytes, max(MIN_COST, estimate))

    def replay(self, ref: layout.SessionRef, parts: list[ObjectInfo], patient: bool,
               work: Callable[[duckdb.DuckDBPyConnection], T]) -> tuple[duckdb.DuckDBPyConnection, T, int]:  # fmt: skip
        """`work` on a fresh database bounded to the derivation's share, holding its turn: (the database, what
        `work` answered, the cost the caller gives back with `leave` once done with the database). A derivation
        DuckDB finds its share too small for is run again alone with the whole budget, which that session is
        given from then on; past the whole budget, Busy (503) saying so."""
        cost = self.cost(ref, parts)
        while True:
            self.enter(ref, cost, patient)
            try:
                # Connected here: the database's own worker threads (past the first, on a machine of more than
                # two cores) later answer this session's pages too, at the server's priority.
                database = self.connect(cost)
            except BaseException:
                self.leave(cost)
                raise
            try:
                return database, self._replayers.submit(work, database).result(), cost
            except duckdb.OutOfMemoryException as exc:
                self.leave(cost)
                database.close()
                if cost >= self.budget_bytes:
                    allowed = show_size(self.budget_bytes)
                    raise Busy(f"session {ref.path} needs more memory to be prepared than the server's "
                               f"--derive-memory ({allowed}) allows: {exc}", 503, 60) from exc  # fmt: skip
                log.info("deriving %s again with the whole budget: %s was too little", ref.path, show_size(cost))
                with self._lock:
                    self._learned[ref] = cost = self.budget_bytes
                    self.retried += 1
            except BaseException:
                self.leave(cost)
                database.close()
                raise

    def enter(self, ref: layout.SessionRef, cost: int, patient: bool) -> None:
        """A turn to derive `ref`; Busy (503) when a request's does not come within `wait_s`."""
        if self.admission.enter(cost, None if patient else self.wait_s):
            return
        raise being_prepared(ref, f"{self.admission.running} other sessions are being prepared")

    def leave(self, cost: int) -> None:
        self.admission.leave(cost)

    def connect(self, cost: int) -> duckdb.DuckDBPyConnection:
        """A database for one derivation, bounded to its share of the budget."""
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        limit_mib = max(1, math.ceil(cost / 2**20))
        config = {"memory_limit": f"{limit_mib}MiB", "temp_directory": str(self.temp_dir), "threads": THREADS}
        database = duckdb.connect(config=config)
        # No progress bar: DuckDB draws one on the server's output for a replay of a few seconds.
        database.execute("SET enable_progress_bar = false")
        return database


def being_prepared(ref: layout.SessionRef, why: str) -> Busy:
    return Busy(f"session {ref.path} is being prepared ({why}); this page will be ready shortly, try again in "
                f"{RETRY_AFTER_S} s", 503, RETRY_AFTER_S)  # fmt: skip
