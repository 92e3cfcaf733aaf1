"""The collector, assembled: receiver, spool, shipper, event-file tailer and session documents."""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import uvicorn

from archive.storage import Storage, StorageError

from . import raysession
from .app import create_app, guarded_protocol
from .config import CollectorConfig
from .ingest import Deduper, Ingest, remembered_ids
from .logs import LogShipper
from .metrics import CollectorMetrics
from .polling import Poller
from .records import decode_record
from .sessions import SessionDocuments, SessionFacts
from .shipper import Loop, Shipper
from .spool import Spool, SpoolTarget, read_records
from .tailer import EventFileTailer

log = logging.getLogger(__name__)

WORK_INTERVAL = 0.5
# How long past the shutdown deadline the final markers may take before the collector leaves anyway.
DEADLINE_SLACK = 1.0
POLL_TICK = 1.0


class Collector:
    def __init__(self, config: CollectorConfig, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        self.metrics = CollectorMetrics()
        target = SpoolTarget(storage.uri, config.namespace, config.cluster, config.node)
        self.spool = Spool(config.spool_dir, config.spool_max_bytes, config.segment_max_bytes, target)
        self.ingest = Ingest(self.spool, self._rebuild_deduper(), self.metrics)
        self.documents = SessionDocuments(config, storage)
        self.shipper = Shipper(config, self.spool, storage, self.documents, self.metrics)
        self.tailer = EventFileTailer(
            config.ray_temp_dir, self.ingest, config.spool_dir / "tail-offsets.json", self._on_session
        )
        self.logs = LogShipper(
            config.logs, config.ray_temp_dir, config.node, storage, self.documents.ref, self.metrics,
            config.spool_dir / "log-offsets.json",
        )  # fmt: skip
        self.app = create_app(self.ingest, self.metrics, config)
        self.current_session: str | None = None
        self._loop = Loop("collector-work", WORK_INTERVAL, self._work)
        self._log_loop = Loop("collector-logs", config.logs.interval, self._ship_logs)
        polling = config.polling if config.is_head else replace(config.polling, dashboard_url=None)
        self.poller = Poller(polling, config.ray_temp_dir, config.node, self.ingest, self.metrics)
        self._poll_loop = Loop("collector-polls", POLL_TICK, self.poller.step)
        self._next_tail = 0.0
        self._next_heartbeat = 0.0
        self._server: uvicorn.Server | None = None
        self._stopped = threading.Event()

    def _rebuild_deduper(self) -> Deduper:
        """Ids already spooled but not shipped are remembered across a restart."""
        deduper = Deduper(self.config.dedup_max_bytes)
        for segment in self.spool.sealed_segments():
            for raw in read_records(segment.path):
                deduper.add(remembered_ids(decode_record(raw)))
        return deduper

    def _on_session(self, session_dir: Path) -> None:
        name = session_dir.name
        known = self.documents.sessions.get(name)
        # Only the head's GCS logs the Ray version: workers stop looking once they know their node id.
        if known is None or known.ray_node_id is None or (self.config.is_head and known.ray_version is None):
            self.documents.observe(
                name,
                SessionFacts(
                    start_time_ms=raysession.start_time_ms(session_dir) or int(time.time() * 1000),
                    ray_version=raysession.ray_version(session_dir),
                    ray_node_id=raysession.node_id(session_dir),
                ),
            )
            self.ingest.node_id = self.documents.sessions[name].ray_node_id
        if self.current_session not in (None, name):
            # Ray restarted in this pod: the old session is over.
            self._retire(self.current_session)
        self.current_session = name
        self.ingest.session = name

    def _work(self) -> None:
        now = time.monotonic()
        if now >= self._next_tail:
            self.tailer.poll()
            self._next_tail = now + self.config.tail_interval
        self.shipper.step()
        if now >= self._next_heartbeat and self.documents.sessions:
            self._heartbeat(final=False)
            self._next_heartbeat = now + self.config.heartbeat_interval

    def _ship_logs(self, final: bool = False, deadline: float | None = None) -> bool:
        """Ship log parts until the files are read to their end. True if nothing is left."""
        # Rounds go on while the files keep giving, until a stop (the final call runs on alone).
        while (final or not self._stopped.is_set()) and (deadline is None or time.monotonic() < deadline):
            try:
                if self.logs.poll(final=final):
                    return True
            except StorageError as exc:
                log.warning("could not ship logs (they stay on disk and are retried): %s", exc)
                return False
        return False

    def _heartbeat(self, final: bool) -> None:
        try:
            self.documents.write_manifests()
            self.documents.write_node_markers(final=final, counts=self.shipper.counts())
        except StorageError as exc:
            log.warning("could not write the heartbeat: %s", exc)

    def _retire(self, session: str) -> None:
        try:
            self.documents.retire(session, self.shipper.counts())
        except StorageError as exc:
            log.warning("could not write the final marker of %s: %s", session, exc)
        self._write_closed(session, "Ray restarted with a new session")

    def _write_closed(self, session: str, reason: str) -> None:
        try:
            self.documents.write_closed(session, reason)
        except StorageError as exc:
            log.warning("could not write closed.json for %s: %s", session, exc)

    def start(self) -> None:
        self._loop.start()
        self._log_loop.start()
        self._poll_loop.start()

    def serve(self) -> bool:
        """Serve until SIGTERM/SIGINT or request_stop(), then flush within the deadline. True if all shipped."""
        stop_requested_at: list[float] = []
        # Uvicorn restores and re-raises the signal after it stops: ours must be harmless then.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop_requested_at.append(time.monotonic()))
        config = uvicorn.Config(
            self.app, host=self.config.listen_host, port=self.config.listen_port,
            log_level="warning", lifespan="off", timeout_graceful_shutdown=3,
            http=guarded_protocol(self.config.max_connections, self.config.read_timeout),
            timeout_keep_alive=min(5, self.config.read_timeout),
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self.start()
        self._server.run()
        return self.shutdown_within(min(stop_requested_at or [time.monotonic()]) + self.config.shutdown_deadline)

    def request_stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True

    def shutdown_within(self, deadline: float) -> bool:
        """shutdown(), given up at the deadline whatever the object store does (a pod is killed then)."""
        done: list[bool] = []
        flush = threading.Thread(target=lambda: done.append(self.shutdown(deadline)), name="collector-flush",
                                 daemon=True)  # fmt: skip
        flush.start()
        flush.join(max(0.0, deadline - time.monotonic()) + DEADLINE_SLACK)
        if not done:
            log.error("the shutdown deadline passed while the archive did not answer: %d bytes stay in the spool "
                      "at %s and ship on next start", self.spool.size_bytes, self.config.spool_dir)  # fmt: skip
            return False
        return done[0]

    def shutdown(self, deadline: float) -> bool:
        """Stop taking data, ship all of it, write the final markers. True if nothing was left behind."""
        if self._stopped.is_set():
            return True
        self._stopped.set()
        self._loop.stop()
        self._log_loop.stop()
        self._poll_loop.stop()
        try:
            self.tailer.poll()
        except Exception:
            log.exception("the last read of Ray's event files failed")
        # What the dashboard knows at the very end (the final state of placement groups and jobs).
        self.poller.poll_dashboard(final=True, deadline=deadline)
        self.spool.seal()
        # The last moments are kept for the final markers and closed.json.
        uploads_until = deadline - min(2.0, 0.1 * self.config.shutdown_deadline)
        events_complete = logs_complete = False
        while time.monotonic() < uploads_until and not (events_complete and logs_complete):
            events_complete = events_complete or self.shipper.ship_sealed(uploads_until)
            logs_complete = logs_complete or self._ship_logs(final=True, deadline=uploads_until)
            if not (events_complete and logs_complete):
                time.sleep(min(1.0, max(0.0, uploads_until - time.monotonic())))
        complete = events_complete and logs_complete
        self.shipper.close()
        self._heartbeat(final=complete)
        if self.config.is_head:
            # Without a session folder (a volume not mounted as expected) the sessions are those the events named.
            for session in [self.current_session] if self.current_session else self.documents.live():
                self._write_closed(session, "the collector was stopped (the cluster is shutting down)")
        self.spool.close()
        if self.shipper.segments_set_aside:
            complete = False
            log.error("%d spool segments could not be converted and are NOT in the archive: they are kept in %s",
                      self.shipper.segments_set_aside, self.config.spool_dir / "unshippable")  # fmt: skip
        if complete:
            log.info("collector stopped: everything is in the archive (%d malformed events among it, quarantined "
                     "with their reasons)", self.shipper.quarantined)  # fmt: skip
        if not events_complete:
            log.error("collector stopped with %d bytes still in the spool at %s; they ship on next start",
                      self.spool.size_bytes, self.config.spool_dir)  # fmt: skip
        if not logs_complete:
            log.error("collector stopped before every log file was shipped; the rest ships on next start")
        return complete
