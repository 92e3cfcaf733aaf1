"""The collector's own Prometheus metrics, in a registry per collector (tests run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ns = "ray_history_collector"
        self.events_received = Counter(
            f"{ns}_events_received", "Events accepted into the spool, by source.", ["source"],
            registry=self.registry,
        )  # fmt: skip
        self.events_duplicate = Counter(
            f"{ns}_events_duplicate", "Events dropped as repeats of an event id already spooled.",
            registry=self.registry,
        )  # fmt: skip
        self.events_quarantined = Counter(
            f"{ns}_events_quarantined", "Malformed events set aside in quarantine (kept in the archive).",
            registry=self.registry,
        )  # fmt: skip
        self.requests_rejected = Counter(
            f"{ns}_requests_rejected",
            "POSTs refused, by reason (unauthorized, bad_body, too_large, timeout, spool_full, spool_error).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.segments_set_aside = Counter(
            f"{ns}_segments_set_aside", "Spool segments that could not be converted at all, moved to "
            "spool/unshippable/ (their events are not in the archive).", registry=self.registry,
        )  # fmt: skip
        self.bytes_set_aside = Counter(
            f"{ns}_bytes_set_aside", "Bytes of the spool segments set aside.", registry=self.registry
        )
        self.spool_bytes = Gauge(f"{ns}_spool_bytes", "Bytes waiting in the spool.", registry=self.registry)
        self.parts_uploaded = Counter(
            f"{ns}_parts_uploaded", "Parquet parts written to the archive.", ["kind"], registry=self.registry
        )
        self.rows_uploaded = Counter(
            f"{ns}_rows_uploaded", "Rows written to the archive.", ["kind"], registry=self.registry
        )
        self.upload_failures = Counter(
            f"{ns}_upload_failures", "Failed attempts to write to the archive.", registry=self.registry
        )
        self.upload_seconds = Histogram(
            f"{ns}_upload_seconds", "Time to write one object to the archive.", registry=self.registry
        )
        self.lag_seconds = Gauge(
            f"{ns}_lag_seconds", "Age of the oldest data not yet in the archive.", registry=self.registry
        )
        self.log_bytes = Counter(
            f"{ns}_log_bytes_shipped", "Bytes of Ray's log files shipped to the archive.", registry=self.registry
        )
        self.scrape_failures = Counter(
            f"{ns}_scrape_failures", "Failed scrapes of a Prometheus endpoint, by target.", ["target"],
            registry=self.registry,
        )  # fmt: skip
        self.poll_failures = Counter(
            f"{ns}_dashboard_poll_failures", "Failed polls of the head's dashboard, by endpoint.", ["endpoint"],
            registry=self.registry,
        )  # fmt: skip
