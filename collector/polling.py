"""The periodic pulls: this node's Prometheus endpoints, and (on the head) the dashboard.

Each answer goes into the spool as it came, to be turned into rows with the rest of the segment.
An endpoint that is down is logged when it goes down and when it comes back, counted, and retried
on the next round; it never stops the collector.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import msgspec

from .config import PollSettings
from .dashboard import (
    DASHBOARD_PATHS,
    POLL_TIMEOUT,
    AnswerMemory,
    DashboardAnswer,
    NotOffered,
    PlacementStrategies,
    PollFailed,
    fetch_json,
    with_strategies,
)
from .ingest import Ingest
from .metrics import CollectorMetrics
from .raysession import current_session_dir
from .scrape import Scrape, ScrapeFailed, fetch, local_hosts, metrics_targets
from .spool import SpoolFull, SpoolWriteError

log = logging.getLogger(__name__)

# At shutdown Ray is often stopping too: a hung dashboard must not eat the pod's grace period.
FINAL_POLL_TIMEOUT = 2.0


class Poller:
    def __init__(self, settings: PollSettings, ray_temp_dir: Path, node: str, ingest: Ingest,
                 metrics: CollectorMetrics) -> None:  # fmt: skip
        self.settings = settings
        self.ray_temp_dir = ray_temp_dir
        self.node = node
        self.ingest = ingest
        self.metrics = metrics
        self.hosts = local_hosts()
        self.answers = AnswerMemory()
        self.strategies = PlacementStrategies()
        self.endpoints = dict(DASHBOARD_PATHS)
        self._down: set[str] = set()
        self._next_scrape = 0.0
        self._next_dashboard = 0.0

    def step(self) -> None:
        """Scrape and poll whatever is due."""
        now = time.monotonic()
        if now >= self._next_scrape:
            self._next_scrape = now + self.settings.metrics_interval
            self.scrape()
        if self.settings.dashboard_url and now >= self._next_dashboard:
            self._next_dashboard = now + self.settings.dashboard_interval
            self.poll_dashboard()

    def scrape(self) -> None:
        session_dir = current_session_dir(self.ray_temp_dir)
        if session_dir is None:
            return
        for target in metrics_targets(session_dir, self.ray_temp_dir, self.settings.metrics_port, self.hosts):
            try:
                text = fetch(target)
            except ScrapeFailed as exc:
                self._failed(target, exc)
                self.metrics.scrape_failures.labels(target).inc()
                continue
            self._answered(target)
            self._spool("scrape", session_dir.name, msgspec.json.encode(Scrape(self.node, target, text)))

    def poll_dashboard(self, final: bool = False, deadline: float | None = None) -> None:
        """One answer of each endpoint. `final`: the last poll at shutdown, stored even if unchanged."""
        session_dir = current_session_dir(self.ray_temp_dir)
        if session_dir is None or not self.settings.dashboard_url:
            return
        for endpoint, path in list(self.endpoints.items()):
            if deadline is not None and time.monotonic() >= deadline:
                return
            url = self.settings.dashboard_url.rstrip("/") + path
            try:
                body = fetch_json(url, timeout=FINAL_POLL_TIMEOUT if final else POLL_TIMEOUT)
            except NotOffered as exc:
                log.info("the dashboard does not offer %s; not asking again (%s)", endpoint, exc)
                del self.endpoints[endpoint]
                continue
            except PollFailed as exc:
                self._failed(endpoint, exc)
                self.metrics.poll_failures.labels(endpoint).inc()
                continue
            self._answered(endpoint)
            if endpoint == "placement_groups":
                body = with_strategies(body, self.strategies.update(session_dir))
            if self.answers.is_new(endpoint, body) or final:
                answer = DashboardAnswer(endpoint, msgspec.Raw(body))
                self._spool("dashboard", session_dir.name, msgspec.json.encode(answer))

    def _spool(self, kind: str, session: str, body: bytes) -> None:
        try:
            self.ingest.polled(kind, session, body)
        except (SpoolFull, SpoolWriteError) as exc:
            log.warning("a %s answer was dropped: %s", kind, exc)

    def _failed(self, source: str, exc: Exception) -> None:
        if source not in self._down:
            self._down.add(source)
            log.warning("%s is not answering (retried every round): %s", source, exc)

    def _answered(self, source: str) -> None:
        if source in self._down:
            self._down.discard(source)
            log.info("%s answers again", source)
