"""Whether the object store answers, judged from every call the server makes to it.

The server reaches the store through one `WatchedStorage`, which tells the server's one `StoreHealth` how each
call went. An outage is logged twice, whatever the traffic: a WARNING when the store stops answering and an INFO
when it answers again, with how many calls failed meanwhile; `/readyz` reports the rest (last success, last
error). While the store is down, one call at a time still goes to it (a probe: the first success ends the
outage) and the others fail at once with the outage's reason, so a frozen store costs only the probe its time
budget, and the catalog's readers or the job index do not queue behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from archive.storage import InvalidKey, ObjectInfo, ObjectNotFound, Storage, StorageError, StoreUnreachable

log = logging.getLogger(__name__)

T = TypeVar("T")

# A probe that has not come back after this long (a backend without a time budget) lets another call try.
PROBE_AFTER_S = 30.0
# Errors that are not an outage (refused credentials, a store's 500) are logged at most this often.
ERROR_LOG_INTERVAL_S = 60.0


class StoreHealth:
    """The store's state as the server's calls found it: reachable or not since when, last success, last error."""

    def __init__(self, where: str, *, clock: Callable[[], float] = time.time) -> None:
        self.where = where
        self._clock = clock
        self._lock = threading.Lock()
        self.calls = 0
        self.failed_calls = 0
        self.unreachable_calls = 0  # failed for want of an answer (the store down, or refused while it is)
        self.last_success_ms: int | None = None
        self.last_error: str | None = None
        self.last_error_ms: int | None = None
        self._down_since_ms: int | None = None
        self._failed_while_down = 0
        self._probe_started: float | None = None  # monotonic; while down, the call that is trying the store
        self._errors_unlogged = 0
        self._error_logged_at = -ERROR_LOG_INTERVAL_S

    @property
    def reachable(self) -> bool:
        return self._down_since_ms is None

    def admit(self) -> bool:
        """Before a call: True if the call is a probe of a store that is down. Raises StoreUnreachable, at once,
        for a call that must not wait while another probes."""
        with self._lock:
            self.calls += 1
            if self._down_since_ms is None:
                return False
            now = time.monotonic()
            if self._probe_started is not None and now - self._probe_started < PROBE_AFTER_S:
                self.failed_calls += 1
                self.unreachable_calls += 1
                self._failed_while_down += 1
                raise StoreUnreachable(self._outage())
            self._probe_started = now
            return True

    def succeeded(self, probe: bool) -> None:
        """The store answered (a missing object is an answer too)."""
        now_ms = self._now_ms()
        with self._lock:
            self.last_success_ms = now_ms
            if probe:
                self._probe_started = None
            if self._down_since_ms is None:
                return
            down_s = (now_ms - self._down_since_ms) / 1000
            failed = self._failed_while_down
            self._down_since_ms = None
            self._probe_started = None
        log.info("the object store %s is back after %.1f s; %d calls failed meanwhile", self.where, down_s, failed)

    def failed(self, error: StorageError, probe: bool) -> None:
        now_ms = self._now_ms()
        other: int | None = None  # an error that is no outage, to log: how many went unlogged before it
        went_down = False
        with self._lock:
            self.failed_calls += 1
            self.last_error, self.last_error_ms = str(error), now_ms
            if probe:
                self._probe_started = None
            if not isinstance(error, StoreUnreachable):
                self._errors_unlogged += 1
                if time.monotonic() - self._error_logged_at >= ERROR_LOG_INTERVAL_S:
                    self._error_logged_at = time.monotonic()
                    other, self._errors_unlogged = self._errors_unlogged - 1, 0
            else:
                self.unreachable_calls += 1
                if self._down_since_ms is not None:
                    self._failed_while_down += 1
                else:
                    self._down_since_ms, self._failed_while_down = now_ms, 1
                    went_down = True
        if other is not None:
            more = f" (and {other} more since the last such line)" if other else ""
            log.warning("the object store %s failed a call%s: %s", self.where, more, error)
        if went_down:
            log.warning("the object store %s is unreachable: %s; requests that need it answer 503 until it is back, "
                        "opened sessions are still served", self.where, error)  # fmt: skip

    def released(self, probe: bool) -> None:
        """The call ended without an answer either way (the caller's own error): let another probe go."""
        if probe:
            with self._lock:
                self._probe_started = None

    def report(self) -> dict[str, Any]:
        """What /readyz says of the store."""
        with self._lock:
            return {
                "where": self.where, "reachable": self._down_since_ms is None,
                "unreachable_since_ms": self._down_since_ms, "last_success_ms": self.last_success_ms,
                "last_error": self.last_error, "last_error_ms": self.last_error_ms, "calls": self.calls,
                "failed_calls": self.failed_calls,
            }  # fmt: skip

    def _outage(self) -> str:
        since = time.strftime("%H:%M:%S", time.gmtime((self._down_since_ms or 0) / 1000))
        return (f"the object store {self.where} has not answered since {since} UTC ({self._failed_while_down} calls "
                f"failed); last error: {self.last_error}")  # fmt: skip

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def describe(storage: Storage) -> str:
    """The store as an operator names it: its URI, and the endpoint it is reached at if it has one."""
    endpoint = getattr(storage, "endpoint_url", None)
    return f"{storage.uri} at {endpoint}" if endpoint else storage.uri


class WatchedStorage:
    """A Storage that reports every call to a StoreHealth and counts calls by method, kind of key and outcome.

    Anything else (a local archive's `local_path`, an S3 store's `endpoint_url`) is the wrapped storage's.
    """

    def __init__(self, storage: Storage, health: StoreHealth) -> None:
        self.inner = storage
        self.health = health
        self.uri = storage.uri
        self.supports_tags = storage.supports_tags
        self._lock = threading.Lock()
        self._calls: Counter[tuple[str, str, str]] = Counter()  # (method, kind, outcome)
        self._listed: Counter[str] = Counter()  # objects listed, by kind

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made): no endless lookup
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"WatchedStorage({self.inner!r})"

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        self._call("put", key, lambda: self.inner.put(key, data, tags))

    def get(self, key: str) -> bytes:
        return self._call("get", key, lambda: self.inner.get(key))

    def get_tags(self, key: str) -> dict[str, str]:
        return self._call("get_tags", key, lambda: self.inner.get_tags(key))

    def delete(self, key: str) -> None:
        self._call("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        kind = _kind(prefix)
        probe = self._admit("list", kind)
        listed = 0
        outcome = "aborted"
        try:
            for info in self.inner.list(prefix, start_after=start_after):
                listed += 1
                yield info
            outcome = "ok"
        except (ObjectNotFound, InvalidKey):
            outcome = "ok"
            raise
        except StorageError as exc:
            outcome = "failed"
            self.health.failed(exc, probe)
            raise
        finally:
            if outcome == "ok":
                self.health.succeeded(probe)
            elif outcome == "aborted":
                # The caller stopped reading, or its own code failed: what was listed was an answer.
                self.health.succeeded(probe) if listed else self.health.released(probe)
            self._count("list", kind, outcome, listed)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """Calls so far by (method, kind of key, outcome: ok, failed, refused, aborted)."""
        with self._lock:
            return dict(self._calls)

    def calls(self, method: str | None = None, kind: str | None = None, outcome: str | None = None) -> int:
        """Calls so far, of this method, kind of key and outcome where given."""
        with self._lock:
            return sum(n for (m, k, o), n in self._calls.items()
                       if method in (None, m) and kind in (None, k) and outcome in (None, o))  # fmt: skip

    def listed(self, kind: str) -> int:
        """Objects listed so far under this kind of key (sessions, events...)."""
        with self._lock:
            return self._listed[kind]

    def _admit(self, method: str, kind: str) -> bool:
        try:
            return self.health.admit()
        except StoreUnreachable:
            self._count(method, kind, "refused")
            raise

    def _call(self, method: str, key: str, call: Callable[[], T]) -> T:
        kind = _kind(key)
        probe = self._admit(method, kind)
        try:
            result = call()
        except (ObjectNotFound, InvalidKey):
            # The store answered; the object is not there (or the key was refused before asking).
            self.health.succeeded(probe)
            self._count(method, kind, "ok")
            raise
        except StorageError as exc:
            self.health.failed(exc, probe)
            self._count(method, kind, "failed")
            raise
        except BaseException:
            self.health.released(probe)
            self._count(method, kind, "aborted")
            raise
        self.health.succeeded(probe)
        self._count(method, kind, "ok")
        return result

    def _count(self, method: str, kind: str, outcome: str, listed: int = 0) -> None:
        with self._lock:
            self._calls[(method, kind, outcome)] += 1
            if listed:
                self._listed[kind] += listed


def _kind(key: str) -> str:
    """A key's first segment (sessions, events, logs, metrics, snapshots): a label of few values."""
    return key.partition("/")[0]
