"""Encoded answers of opened sessions, kept in a byte budget: the same request is answered again without
querying or encoding anything.

A finished session's snapshot never changes, so an answer computed once stays the answer. The key names
the snapshot it was computed from (a running session is opened anew, with another snapshot, when its
events grow), and a request still passes the session's own checks (it exists, the caller may see it)
before its answer is looked up. Ray's dashboard polls the same few lists every few seconds, and a list of
thousands of tasks costs tens of milliseconds to build: those are what this keeps.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

# One answer may take at most this share of the budget, so that one huge list never evicts all the rest.
LARGEST_SHARE = 8


class AnswerCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        """The kept answer for `key`, else `compute()` (outside the lock: two callers may both compute it)."""
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
                self.hits += 1
                return found
            self.misses += 1
        answer = compute()
        if len(answer) * LARGEST_SHARE <= self.max_bytes:
            with self._lock:
                if key not in self._answers:
                    self._answers[key] = answer
                    self.bytes += len(answer)
                while self.bytes > self.max_bytes:
                    _, dropped = self._answers.popitem(last=False)
                    self.bytes -= len(dropped)
        return answer
