"""The catalog's first load, watched: how far it is, how fast it goes, and when it is done.

`ray-history serve` opens its port at once and reads the catalog in the background (on S3, 2,000 sessions
took 16-21 s; 100,000 would take many minutes). Until the load has read every session document, /readyz
answers 503 with how far it is, requests that need the catalog answer 503 with a Retry-After, and the log
says every few seconds how many documents are read, of how many, at what rate. The documents read are counted
where they are read, the server's WatchedStorage (gets under sessions/); how many there are is what the
catalog's own listing found (the store's count of objects listed would also count anyone else's listing of
sessions/, such as a usage listing, and a second listing had the total double).
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archive.storage import StorageError

from .storehealth import StoreHealth, WatchedStorage

log = logging.getLogger(__name__)

# How often the first load says how far it is; and, while it is stuck (the store down), that it still is.
PROGRESS_INTERVAL_S = 3.0
STUCK_INTERVAL_S = 60.0
# Retry-After bounds while loading: ask again soon, but not in a tight loop.
RETRY_AFTER_S = (1, 30)
# Why the catalog is not usable before its first load began (it waits for the app's first answer).
NOT_STARTED = "the catalog's first load has not started yet"
# How long the first load waits for the server's own app to answer before it begins anyway.
SERVING_WAIT_S = 5.0


@dataclass(frozen=True)
class Progress:
    """How far the first load is: documents read (gets under sessions/), of how many the listing found."""

    attempts: int
    seconds: float
    documents_read: int
    documents_listed: int | None  # None until the listing of sessions/ has come back
    sessions: int  # sessions in the catalog so far (committed in batches as documents are read)

    @property
    def rate(self) -> float:
        return self.documents_read / self.seconds if self.seconds > 0 else 0.0

    def describe(self, rate: float | None = None) -> str:
        """The progress in words; `rate` (documents a second) instead of the average since the load began."""
        if self.documents_listed is None:
            return f"loading the catalog: listing the archive's session documents ({self.seconds:.0f} s so far)"
        return (f"loading the catalog: {self.documents_read:,} of {self.documents_listed:,} session documents "
                f"read ({self.rate if rate is None else rate:,.0f}/s), {self.sessions:,} sessions so far")  # fmt: skip


class CatalogLoad:
    """The first load of the catalog: run by the refresh loop until it has read every session document."""

    def __init__(self, storage: WatchedStorage, health: StoreHealth, count_sessions: Callable[[], int],
                 documents_listed: Callable[[], int | None], from_index: Callable[[], int] = lambda: 0,
                 ) -> None:  # fmt: skip
        """`from_index`: how many documents the catalog has taken from the archive's index objects so far (they
        count as read, though no GET read them: a new replica's load is mostly those)."""
        self._storage = storage
        self._health = health
        self._count_sessions = count_sessions
        self._documents_listed = documents_listed
        self._from_index = from_index
        self.loaded = threading.Event()
        self._lock = threading.Lock()
        self._started: float | None = None  # monotonic, when the first attempt began
        self._attempts = 0
        self._base = 0  # gets under sessions/ before the current attempt
        self._read_before = 0  # documents read by earlier attempts
        self._last_failure: str | None = None
        self._calls_before: dict[tuple[str, str, str], int] = {}
        self.seconds: float | None = None  # how long the load took, once done
        self.calls: dict[str, int] = {}  # the store calls it took by method, once done
        self.from_file = False  # served from the catalog file the last run left, not loaded from the store

    @property
    def done(self) -> bool:
        return self.loaded.is_set()

    @property
    def attempts(self) -> int:
        return self._attempts

    def run(self, refresh: Callable[[], object], *, partial_ok: bool = False) -> bool:
        """One attempt: `refresh()`, then done unless the store stopped answering meanwhile (or `partial_ok`).
        Documents the store refused for another reason (one it may not read) do not hold the load up: the
        catalog reads them again at each refresh. A StorageError is noted and raised."""
        with self._lock:
            first = self._started is None
            if first:
                self._started = time.monotonic()
                self._calls_before = self._storage.counts()
            self._attempts += 1
            self._read_before += self._read_now()
            self._base = self._storage.calls("get", "sessions", "ok") + self._from_index()
        if first:
            threading.Thread(target=self._report, name="catalog-progress", daemon=True).start()
        outages = self._health.unreachable_calls
        try:
            refresh()
        except StorageError as exc:
            self._last_failure = str(exc)
            raise
        if not partial_ok and self._health.unreachable_calls != outages:
            self._last_failure = self._health.last_error
            return False
        self.seconds = time.monotonic() - (self._started or 0.0)
        for (method, kind, outcome), count in self._storage.counts().items():
            spent = count - self._calls_before.get((method, kind, outcome), 0)
            if spent:
                self.calls[method] = self.calls.get(method, 0) + spent
        self.loaded.set()
        progress = self.progress()
        log.info("catalog loaded: %s sessions from %s session documents in %.1f s (%s/s)", f"{progress.sessions:,}",
                 f"{progress.documents_read:,}", self.seconds, f"{progress.rate:,.0f}")  # fmt: skip
        return True

    def restored(self) -> None:
        """Done at once: the catalog was kept from the last run (its file under --cache-dir) and is served as it
        was, while the refresh loop reads what changed since."""
        with self._lock:
            self._started = time.monotonic()
        self.seconds = 0.0
        self.from_file = True
        self.loaded.set()
        log.info("catalog restored from its file: %s sessions, as the last run left them; refreshing",
                 f"{self._count_sessions():,}")  # fmt: skip

    def progress(self) -> Progress:
        with self._lock:
            # Known when the listing has come back whole (an empty archive is loaded at once anyway).
            listed = self._documents_listed()
            attempts, started, read = self._attempts, self._started, self._read_before + self._read_now()
        return Progress(
            attempts=attempts,
            seconds=time.monotonic() - started if started is not None else 0.0,
            documents_read=read,
            documents_listed=listed or None,
            sessions=self._count_sessions(),
        )

    def reason(self, progress: Progress | None = None, rate: float | None = None) -> str:
        """Why the catalog is not usable yet (for /readyz and the 503s)."""
        if self._started is None:
            return NOT_STARTED
        text = (progress or self.progress()).describe(rate)
        if not self._health.reachable:
            text += f"; waiting for the object store: {self._health.last_error}"
        return text

    def retry_after_s(self) -> int:
        """When to ask again: when the load should be done at its pace, within RETRY_AFTER_S."""
        low, high = RETRY_AFTER_S
        progress = self.progress()
        if not self._health.reachable or progress.documents_listed is None or progress.rate == 0:
            return 5
        left = max(progress.documents_listed - progress.documents_read, 0) / progress.rate
        return int(min(max(left, low), high))

    def report(self) -> dict[str, Any]:
        """What /readyz says of the catalog."""
        if self.done:
            return {"state": "loaded", "seconds": round(self.seconds or 0.0, 3), "sessions": self._count_sessions(),
                    "store_calls": self.calls, "from_file": self.from_file}  # fmt: skip
        progress = self.progress()
        return {
            "state": "loading", "attempts": progress.attempts, "seconds": round(progress.seconds, 3),
            "documents_read": progress.documents_read, "documents_listed": progress.documents_listed,
            "documents_per_s": round(progress.rate, 1), "sessions": progress.sessions,
            "last_failure": self._last_failure,
        }  # fmt: skip

    def _read_now(self) -> int:
        """Documents read (or taken from an index object) by the current attempt (failed reads are read again by
        the next one)."""
        return self._storage.calls("get", "sessions", "ok") + self._from_index() - self._base

    def _report(self) -> None:
        """Every few seconds until the load is done, how far it is (the operator's only sign of life); while
        the store is down (StoreHealth has said so) the load waits for it, and says so once a minute only."""
        said, read = time.monotonic(), 0
        while not self.loaded.wait(PROGRESS_INTERVAL_S):
            if self._health.reachable or time.monotonic() - said >= STUCK_INTERVAL_S:
                # The rate since the last line: the average would count the listing's time as slowness.
                progress = self.progress()
                rate = (progress.documents_read - read) / max(time.monotonic() - said, 1e-3)
                log.info("%s", self.reason(progress, rate))
                said, read = time.monotonic(), progress.documents_read


def wait_until_serving(host: str, port: int, timeout: float = SERVING_WAIT_S) -> bool:
    """Whether the server's own app answered /healthz on host:port within `timeout`, before the first load takes
    the CPU (its reading threads held Python's lock from the starting server: a restart's app answered a second
    later). An HTTP answer, not a connection: the port was bound before the app existed (historyserver.starting),
    so a connection is accepted into its backlog from the start."""
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{target}]' if ':' in target else target}:{port}/healthz"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP(S)_PROXY
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with direct.open(url, timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False
