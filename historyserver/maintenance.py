"""The server's own housekeeping: retention and compaction run on an interval (off unless asked for), and the
archive's usage (what `ray-history du` prints) kept for the /metrics gauges.

The same classes as the CLI and the CronJob (maintenance.Planner, Cleaner, Compactor), so a server and a
CronJob may both run them: every step is idempotent and two runs at once do no harm. Usage is one listing
of the archive, no object read; it is taken after each maintenance pass, or on its own interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from archive.storage import Storage, StoreUnreachable
from maintenance.cleaner import Cleaner
from maintenance.compactor import Compactor
from maintenance.inventory import scan
from maintenance.planner import Planner
from maintenance.policy import Policy, load_policy
from maintenance.usage import GROUPINGS, UsageRow, totals, usage_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MaintenanceSettings:
    interval_s: float = 0.0  # retention and compaction every this many seconds; 0: never (a CronJob does it)
    policy: Path | None = None  # the retention policy; without one, only compaction runs
    grace_s: float = 3600.0  # a mark stands, and a compacted part's originals stay, this long before deletion
    usage_interval_s: float = 900.0  # the usage gauges' listing, when no maintenance pass takes it; 0: never
    heartbeat_timeout_s: float = 90.0  # a session heard from more recently is running: never touched
    first_delay_s: float = 60.0  # the first pass or listing after the server starts


@dataclass
class Usage:
    """The archive's usage by every grouping, as of `taken_at` (0: not taken yet)."""

    by: dict[str, list[UsageRow]] = field(default_factory=dict)
    total: UsageRow | None = None
    taken_at: float = 0.0


class Maintenance:
    def __init__(self, storage: Storage, settings: MaintenanceSettings) -> None:
        self.storage = storage
        self.settings = settings
        # Read once, so a bad policy file stops the server at start rather than at the first pass.
        self.policy: Policy | None = load_policy(settings.policy) if settings.policy is not None else None
        self.usage = Usage()
        self.passes = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()  # one pass at a time

    @property
    def enabled(self) -> bool:
        return self.settings.interval_s > 0

    def run_once(self) -> None:
        """One pass: retention (if there is a policy), then compaction, then usage. A failing step is logged
        and the next still runs: compaction is worth doing when retention could not plan."""
        with self._lock:
            self.last_error = None
            grace_ms = int(self.settings.grace_s * 1000)
            if self.policy is not None:
                self._step("retention", self._retention, grace_ms)  # its cleaner prunes the journal too
            else:
                self._step("journal", Cleaner(self.storage).prune_journal)
            self._step("compaction", self._compaction)
            self._step("usage", self.take_usage)
            self.passes += 1

    def _retention(self, grace_ms: int) -> None:
        assert self.policy is not None
        plan = Planner(self.storage, self.policy, heartbeat_timeout_s=self.settings.heartbeat_timeout_s).plan()
        report = Cleaner(self.storage, grace_ms=grace_ms).apply(plan)
        if plan.sessions or report.objects_deleted:
            log.info("retention: %d sessions planned (%d bytes); %d marked, %d objects deleted", len(plan.sessions),
                     plan.bytes, report.marked, report.objects_deleted)  # fmt: skip

    def _compaction(self) -> None:
        report = Compactor(self.storage, grace_s=self.settings.grace_s).run()
        done = [session for session in report.sessions if session.kinds and not session.skipped]
        if done:
            log.info("compaction: %d sessions compacted in %.1f s", len(done), report.seconds)

    def take_usage(self) -> None:
        inventory = scan(self.storage)
        self.usage = Usage({by: usage_of(inventory, by) for by in GROUPINGS}, totals(inventory), time.time())

    def _step(self, name: str, work: Callable[..., object], *args: object) -> None:
        try:
            work(*args)
        except StoreUnreachable as exc:  # the store's watcher says it once, when it goes and when it is back
            self.last_error = f"{name}: {exc}"
        except Exception as exc:  # a bad object, a refused call: said once per pass, the server goes on
            self.last_error = f"{name}: {exc}"
            log.warning("maintenance %s failed: %s (the next pass tries again)", name, exc)

    def loop(self, stop: threading.Event, after: threading.Event | None = None) -> None:
        """Passes (or, when maintenance is off, usage listings) until `stop` is set; the first once `after` is
        (the catalog's first load: a usage listing during it would list sessions/ a second time)."""
        interval = self.settings.interval_s if self.enabled else self.settings.usage_interval_s
        if interval <= 0:
            return
        while after is not None and not after.wait(1.0):
            if stop.is_set():
                return
        # Not at once: the first catalog load is what a starting server's store and CPU are for.
        stop.wait(min(interval, self.settings.first_delay_s))
        while not stop.is_set():
            if self.enabled:
                self.run_once()
            else:
                self._step("usage", self.take_usage)
            stop.wait(interval)


class UsageGauges(Collector):
    """/metrics: what `ray-history du` prints, as of the last listing: sessions, objects and bytes of the whole
    archive and by kind, and by namespace only where every reader of /metrics may know the namespaces (no
    auth file, or /metrics private): a namespace's name is itself something a tenant may not see."""

    def __init__(self, maintenance: Maintenance, by_namespace: bool) -> None:
        self.maintenance = maintenance
        self.groupings = ("kind", "namespace") if by_namespace else ("kind",)

    def collect(self) -> Iterator[Metric]:
        usage = self.maintenance.usage
        if usage.total is None:
            return
        yield GaugeMetricFamily("ray_history_archive_listed_at_seconds", "When the archive's usage was listed.",
                                value=usage.taken_at)  # fmt: skip
        for what in ("sessions", "objects", "bytes"):
            total = GaugeMetricFamily(f"ray_history_archive_{what}", f"The archive's {what}, as last listed.",
                                      value=getattr(usage.total, what))  # fmt: skip
            yield total
            for by in self.groupings:
                family = GaugeMetricFamily(f"ray_history_archive_{what}_by_{by}",
                                           f"The archive's {what} by {by}, as last listed.", labels=[by])  # fmt: skip
                for row in usage.by.get(by, []):
                    family.add_metric([row.group], getattr(row, what))
                yield family
