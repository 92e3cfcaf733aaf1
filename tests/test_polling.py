"""Metrics scraping and dashboard polling, against HTTP servers answering what Ray 2.60 answered."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pyarrow as pa

from archive.documents import Manifest, decode
from archive.parquet import parquet_to_table, table_rows
from archive.storage import open_storage
from collector.podinfo import kubernetes_facts, parse_downward_api, read_pod_metadata
from collector.scrape import metrics_targets
from ray_history.localray import collector_command, free_port, wait_healthy

from .collectors import collector_thread, start_collector_process, stop_collector_process
from .conftest import CAPTURED_NODE, CAPTURED_SESSION, fixture_bytes

SESSION = CAPTURED_SESSION
NODE_HEX = CAPTURED_NODE


@contextmanager
def http_server(answers: dict[str, bytes]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering fixed bodies by path (404 otherwise)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not here")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def archived(tmp_path: Path, kind: str) -> list[dict]:
    storage = open_storage(str(tmp_path / "archive"))
    tables = [parquet_to_table(storage.get(info.key)) for info in storage.list(f"{kind}/")]
    return table_rows(pa.concat_tables(tables)) if tables else []


def test_targets_come_from_the_session_folder_and_service_discovery(session_dir: Path) -> None:
    (session_dir / f"metrics_export_port_{NODE_HEX}").write_text("8080")
    groups = [{"labels": {"job": "ray"}, "targets": ["10.0.0.5:8080", "10.0.0.5:44217", "10.0.0.9:8080"]}]
    (session_dir / "prom_metrics_service_discovery.json").write_text(json.dumps(groups))
    targets = metrics_targets(session_dir, session_dir.parent, None, {"127.0.0.1", "10.0.0.5"})
    # This node's own port on loopback, its autoscaler endpoint; another node's endpoints are its own business.
    assert targets == ["127.0.0.1:8080", "10.0.0.5:44217"]
    assert metrics_targets(session_dir, session_dir.parent, 9999, {"127.0.0.1"})[0] == "127.0.0.1:9999"


def test_scraped_samples_become_metrics_rows_and_a_down_endpoint_is_reported(tmp_path: Path, session_dir: Path) -> None:
    scrape = fixture_bytes("metrics", "run1_scrape_8080_trimmed.txt")
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    with http_server({"/metrics": scrape}) as node:
        port = int(node.rsplit(":", 1)[1])
        (session_dir / f"metrics_export_port_{NODE_HEX}").write_text(str(port))
        (session_dir / "prom_metrics_service_discovery.json").write_text(json.dumps([{"targets": [down]}]))
        with collector_thread(tmp_path, ray_temp_dir=tmp_path / "ray") as collector:
            collector.poller.scrape()
            collector.poller.scrape()
            metrics_text = httpx.get(f"{collector.url}/metrics").text
    rows = archived(tmp_path, "metrics")
    tasks = [row for row in rows if row["name"] == "ray_tasks"]
    assert tasks and all(row["type"] == "gauge" and row["node"] == "node-a" for row in tasks)
    assert {json.loads(row["labels"])["State"] for row in tasks} >= {"FINISHED"}
    scrapes = len({row["timestamp"] for row in rows})  # each scrape has its own time
    assert scrapes >= 2  # ours, and the collector's own first round
    assert all(row["node_id"] == NODE_HEX and row["target"] == node for row in rows)
    # The endpoint that is down was tried as often, counted, and stopped nothing.
    assert f'ray_history_collector_scrape_failures_total{{target="{down}"}} {scrapes}.0' in metrics_text


def test_dashboard_answers_become_snapshot_rows_once_per_change(tmp_path: Path, session_dir: Path) -> None:
    answers = {
        "/api/v0/placement_groups?detail=1&limit=10000": fixture_bytes(
            "dashboard_api", "api_v0_placement_groups_detail_1.json"
        ),
        "/api/jobs/": fixture_bytes("dashboard_api", "api_jobs_.json"),
        "/api/cluster_status": fixture_bytes("dashboard_api", "api_cluster_status.json"),
    }
    # The state API leaves the strategy out; the GCS logged it when the group registered.
    (session_dir / "logs" / "gcs_server.out").write_text(
        "[2026-11-28 19:04:50,245 I 5306 5306] (gcs_server) gcs_placement_group_manager.cc:367: Registering "
        "placement group, placement group id = ec387092f55e0e4df8bda2e1f2f002000000, name = probe_pg, strategy = 0\n"
    )
    with http_server(answers) as dashboard, collector_thread(tmp_path, ray_temp_dir=tmp_path / "ray") as collector:
        collector.poller.settings = type(collector.poller.settings)(dashboard_url=f"http://{dashboard}")
        collector.poller.poll_dashboard()
        collector.poller.poll_dashboard()  # unchanged: not stored again
        metrics_text = httpx.get(f"{collector.url}/metrics").text
    rows = archived(tmp_path, "events")
    groups = [row for row in rows if row["event_type"] == "DASHBOARD_PLACEMENT_GROUP"]
    assert len(groups) == 1
    group = json.loads(groups[0]["payload"])
    assert groups[0]["placement_group_id"] == "ec387092f55e0e4df8bda2e1f2f002000000"
    assert groups[0]["state"] == "REMOVED" and groups[0]["job_id"] == "02000000"
    assert [bundle["unit_resources"] for bundle in group["bundles"]] == [{"CPU": 0.5}, {"CPU": 0.5}]
    assert group["strategy"] == "PACK"
    jobs = {row["submission_id"]: row["state"] for row in rows if row["event_type"] == "DASHBOARD_JOB"}
    assert jobs == {"probe-job-2": "SUCCEEDED", "probe-job-1": "FAILED", None: "SUCCEEDED"}
    assert [row["event_type"] for row in rows].count("DASHBOARD_CLUSTER_STATUS") == 1
    assert all(row["session_name"] == SESSION for row in rows)
    # Serve and cluster metadata are not offered here (404, as Ray answers 501 without Serve): asked
    # once, not counted as failures, and the rest still stored.
    assert "dashboard_poll_failures_total{" not in metrics_text
    assert set(collector.poller.endpoints) == {"placement_groups", "jobs", "cluster_status"}


def test_the_downward_api_files_fill_the_kubernetes_part_of_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "labels").write_text(
        'app.kubernetes.io/created-by="kuberay-operator"\n'
        'kueue.x-k8s.io/queue-name="team-a-queue"\n'
        'ray.io/cluster="train-7f9c-raycluster-x2"\n'
        'ray.io/originated-from-crd="RayJob"\n'
        'ray.io/originated-from-cr-name="train-7f9c"\n'
        'team="vision"\n'
    )
    (tmp_path / "annotations").write_text(
        'kubectl.kubernetes.io/last-applied-configuration="{\\"huge\\": true}"\nnote="line one\\nline two"\n'
    )
    labels, annotations = read_pod_metadata(tmp_path)
    facts = kubernetes_facts(labels, annotations, pod="train-7f9c-head-abcde")
    assert (facts.raycluster, facts.rayjob, facts.queue) == ("train-7f9c-raycluster-x2", "train-7f9c", "team-a-queue")
    assert facts.pod_labels["team"] == "vision"
    assert facts.pod_annotations == {"note": "line one\nline two"}
    assert parse_downward_api('{"a": "b"}') == {"a": "b"}


def test_collect_puts_the_pod_metadata_in_the_manifest(tmp_path: Path) -> None:
    session = tmp_path / "ray" / SESSION
    session.mkdir(parents=True)
    (tmp_path / "ray" / "session_latest").symlink_to(session)
    port = free_port()
    command = collector_command(
        str(tmp_path / "archive"), port, tmp_path / "spool", tmp_path / "ray",
        "--pod-info-dir", str(tmp_path / "nowhere"), "--dashboard-url", "", "--namespace", "ml",
    )  # fmt: skip
    labels = 'ray.io/cluster="rc-1"\nray.io/originated-from-crd="RayJob"\nray.io/originated-from-cr-name="nightly"\n'
    process = start_collector_process(
        command, tmp_path / "collector.log", env={"POD_LABELS": labels + 'kueue.x-k8s.io/queue-name="q1"'}
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process=process)
    finally:
        assert stop_collector_process(process) == 0
    key = f"sessions/ml/rc-1/{SESSION}/manifest.json"
    manifest = decode(open_storage(str(tmp_path / "archive")).get(key), Manifest)
    assert (manifest.owner.kind, manifest.owner.name) == ("RayJob", "nightly")
    assert manifest.kubernetes.queue == "q1"
    assert manifest.labels["kueue.x-k8s.io/queue-name"] == "q1"
