"""Admission: how many of one kind of heavy work (a user's SQL query, a session's derivation) run at once, and
how much memory they may hold together, so that a burst of them cannot starve the other requests or run the
server out of memory. What does not fit waits a short while in a bounded queue, then is answered `Busy` (429 or
503 with Retry-After): a request told to come back, never a thread held for minutes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# Niceness of the threads doing heavy work in the server's own process (derivations, writing snapshots): the
# kernel gives the request threads (0) the CPU first when both want it. Threads a niced thread starts inherit it.
BACKGROUND_NICENESS = 10


def lower_priority() -> None:
    """Give the calling thread (on Linux, where niceness is per thread) the background's priority, for good:
    only for threads of their own, such as an executor's (its `initializer`)."""
    # Not Linux: the work runs at the server's priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)


class Busy(Exception):
    """Heavy work of this kind is at its limit: answered `status` (429 or 503) with this message and Retry-After."""

    def __init__(self, message: str, status: int, retry_after_s: int) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class Admission:
    """At most `slots` holders at once, whose costs add up to at most `budget` (one holder is always let in,
    whatever its cost: a session bigger than the budget is still derived, alone). At most `queue` wait."""

    def __init__(self, slots: int, queue: int, budget: int | None = None) -> None:
        if slots < 1:
            raise ValueError("at least one slot is needed")
        self.slots = slots
        self.queue = queue
        self.budget = budget
        self.running = 0
        self.reserved = 0
        self.waiting = 0
        self.refused = 0  # since start (/metrics and the load test read it)
        self._changed = threading.Condition()

    def _fits(self, cost: int) -> bool:
        if self.running >= self.slots:
            return False
        return self.running == 0 or self.budget is None or self.reserved + cost <= self.budget

    def enter(self, cost: int = 0, wait_s: float | None = 0.0) -> bool:
        """Take a slot for work of this cost; wait at most `wait_s` (None: as long as it takes). False when it
        does not fit in time, or the queue is full."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._changed:
            if not self._fits(cost):
                if wait_s is not None and self.waiting >= self.queue:
                    self.refused += 1
                    return False
                self.waiting += 1
                try:
                    while not self._fits(cost):
                        left = None if deadline is None else deadline - time.monotonic()
                        if left is not None and left <= 0:
                            self.refused += 1
                            return False
                        self._changed.wait(left)
                finally:
                    self.waiting -= 1
            self.running += 1
            self.reserved += cost
            return True

    def leave(self, cost: int = 0) -> None:
        with self._changed:
            self.running -= 1
            self.reserved -= cost
            self._changed.notify_all()

    @contextmanager
    def held(self, cost: int, wait_s: float | None, busy: Busy) -> Iterator[None]:
        """A slot for the block, or `busy` raised when none is free in time."""
        if not self.enter(cost, wait_s):
            raise busy
        try:
            yield
        finally:
            self.leave(cost)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 10**3, "KB": 10**3, "KIB": 2**10, "M": 10**6, "MB": 10**6, "MIB": 2**20,
          "G": 10**9, "GB": 10**9, "GIB": 2**30, "T": 10**12, "TB": 10**12, "TIB": 2**40}  # fmt: skip


def parse_size(text: str | int) -> int:
    """Bytes of '512MB', '2GiB', '16MiB' or a plain number (DuckDB's spellings)."""
    if isinstance(text, int):
        return text
    found = _SIZE.match(text)
    unit = (found.group(2) or "").upper() if found else ""
    if found is None or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (such as 512MB, 2GiB or 16MiB)")
    return int(float(found.group(1)) * _UNITS[unit])


def show_size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
