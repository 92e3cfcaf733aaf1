"""Metrics in the archive: Prometheus text turned into rows (schema.METRICS), a row per sample, as the
collector ships them. They are read back by DuckDB alone (historyserver.queries): a series is one
`labels` text, the labels as a JSON object with sorted keys and no spaces, so that equal label sets
are equal strings to group by, and `labels->>'Type'` reads one label.
"""

from __future__ import annotations

import json
import math
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def encode_labels(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def sample_rows(text: str, node: str, target: str, node_id: str | None, timestamp_ns: int) -> list[dict[str, Any]]:
    """A row per sample of one scrape of `target`; a sample's own timestamp wins over the scrape's.
    Raises ValueError for text that is not Prometheus exposition format."""
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.value is None or math.isnan(sample.value):
                continue
            stamp = int(sample.timestamp * 1e9) if sample.timestamp is not None else timestamp_ns
            rows.append({
                "timestamp": stamp, "node": node, "node_id": node_id, "target": target, "name": sample.name,
                "type": family.type, "value": float(sample.value), "labels": encode_labels(sample.labels),
            })  # fmt: skip
    return rows
