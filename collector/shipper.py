"""Ships the spool to the archive: seal, convert to Parquet, upload, and only then forget.

Runs in its own thread. Conversion runs in a child process (when configured) so the CPU-heavy
part does not hold the receiver's interpreter lock. An upload that fails is retried with backoff
while the spool keeps absorbing what Ray sends.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor

from archive import layout
from archive.storage import Storage, StorageError

from .config import CollectorConfig
from .metrics import CollectorMetrics
from .records import ConvertedSegment, convert_segment
from .sessions import SessionDocuments
from .spool import Segment, Spool

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0


def exit_with_parent(parent: int) -> None:
    """In the converter process: leave when the collector is gone. A collector killed with -9 cannot
    stop its converter, which would otherwise wait for work forever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class Shipper:
    def __init__(
        self,
        config: CollectorConfig,
        spool: Spool,
        storage: Storage,
        documents: SessionDocuments,
        metrics: CollectorMetrics,
    ) -> None:
        self.config = config
        self.spool = spool
        self.storage = storage
        self.documents = documents
        self.metrics = metrics
        self.events_uploaded = 0
        self.parts_uploaded = 0
        self.quarantined = 0
        self.segments_set_aside = 0
        self._executor: Executor | None = None
        self._backoff = 0.0
        self._retry_at = 0.0
        self._oldest_pending: float | None = None

    def _convert(self, segment: Segment) -> ConvertedSegment:
        if not self.config.convert_in_subprocess:
            return convert_segment(segment.path)
        if self._executor is None:
            # spawn, not fork: the parent has threads (the HTTP server) and fork would copy their locks.
            self._executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=exit_with_parent, initargs=(os.getpid(),))  # fmt: skip
        return self._executor.submit(convert_segment, segment.path).result()

    def ship_sealed(self, deadline: float | None = None) -> bool:
        """Upload every sealed segment, oldest first. False if something is left (error or deadline)."""
        for segment in self.spool.sealed_segments():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not self._ship(segment):
                return False
        self._oldest_pending = None
        self.metrics.lag_seconds.set(0)
        return True

    def _ship(self, segment: Segment) -> bool:
        try:
            converted = self._convert(segment)
        except BrokenExecutor as exc:
            # The converter process died (killed, out of memory): start a new one and try again.
            self._executor = None
            self._failed(exc)
            return False
        except Exception:
            # Conversion quarantines bad events one by one, so this is a segment that cannot be read at
            # all (a bug, a disk error): it must not block the ones behind it, nor vanish unannounced.
            kept = self.spool.set_aside(segment)
            self.segments_set_aside += 1
            self.metrics.segments_set_aside.inc()
            self.metrics.bytes_set_aside.inc(segment.size)
            log.exception("COULD NOT CONVERT spool segment %s (%d bytes of acknowledged data): it is NOT in the "
                          "archive; kept at %s for inspection", segment.path, segment.size, kept)  # fmt: skip
            return True
        try:
            for (kind, session), data in converted.parts.items():
                self.documents.observe(session)
                ref = self.documents.ref(session)
                key = layout.part_key(kind, ref, self.config.node, segment.name)
                started = time.perf_counter()
                self.storage.put(key, data, tags=layout.object_tags(kind, ref))
                self.metrics.upload_seconds.observe(time.perf_counter() - started)
                self.metrics.parts_uploaded.labels(kind).inc()
                self.metrics.rows_uploaded.labels(kind).inc(converted.rows[kind, session])
            self.documents.write_manifests()
        except StorageError as exc:
            self._failed(exc)
            return False
        self.spool.remove(segment)
        self.metrics.spool_bytes.set(self.spool.size_bytes)
        self.events_uploaded += converted.events
        self.parts_uploaded += len(converted.parts)
        self.quarantined += converted.quarantined
        self._backoff = 0.0
        return True

    def _failed(self, exc: Exception) -> None:
        self.metrics.upload_failures.inc()
        self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
        self._retry_at = time.monotonic() + self._backoff
        log.warning("archive write failed, retrying in %.0f s (events stay in the spool): %s", self._backoff, exc)

    def step(self) -> None:
        """One round: seal the active segment if it is old enough, then ship what is sealed."""
        if self.spool.active_age() >= self.config.seal_interval:
            self.spool.seal()
        self.metrics.spool_bytes.set(self.spool.size_bytes)
        pending = self.spool.sealed_segments()
        if pending:
            self._oldest_pending = self._oldest_pending or time.monotonic()
            self.metrics.lag_seconds.set(time.monotonic() - self._oldest_pending)
            if time.monotonic() >= self._retry_at:
                self.ship_sealed()

    def counts(self) -> dict[str, int]:
        return {
            "events_uploaded": self.events_uploaded,
            "parts_uploaded": self.parts_uploaded,
            "events_quarantined": self.quarantined,
            "spool_bytes": self.spool.size_bytes,
        }

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


class Loop(threading.Thread):
    """Call `work` every `interval` seconds until stopped; an exception is logged, not fatal."""

    def __init__(self, name: str, interval: float, work) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name=name, daemon=True)
        self.interval = interval
        self.work = work
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.work()
            except Exception:
                log.exception("%s failed; trying again in %.0f s", self.name, self.interval)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
