"""Ray 2.60's log API (`api/v0/logs`, `api/v0/logs/file`) over the captured session's archived logs,
compared with the live dashboard's answers and with the files the node wrote (tests/fixtures/.../logs/run1).

The capture's folder holds a part of the node's files (some cut to their head): the listing is compared
where both have a file, and Ray's grouping is checked on the whole live listing."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from historyserver.rayapi import logfiles

from .conftest import FIXTURES, fixture_bytes
from .conftest import live_answer as live

SESSION = "session_2026-11-28_19-03-57_108652_5250"
BASE = f"{'/ray/default/local/'}{SESSION}"
NODE = "50dae9eb11ba41e336fa66cb35aa1a3832f70b5b1c80e9d237bec012"
COUNTER_WORKER_OUT = "worker-57b6114a4f85cb01276f7fd53549d46c07575eb2162a7e6e6783747c-02000000-6509.out"
SQUARE_TASK = "e5cbd90b7f1fb776ffffffffffffffffffffffff02000000"  # square(), on worker pid 6355
RUN1 = FIXTURES / "logs" / "run1"


def log_file(client: TestClient, **params: str | int) -> bytes:
    answer = client.get(f"{BASE}/api/v0/logs/file", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.headers["content-disposition"] == 'attachment; filename="file.txt"'
    return answer.content


def test_rays_grouping_rebuilds_the_live_listing() -> None:
    expected = live("api_v0_logs_node.json")["data"]["result"]
    every_name = [name for names in expected.values() for name in names]
    assert {group: sorted(names) for group, names in logfiles.categorize(every_name).items()} == \
        {group: sorted(names) for group, names in expected.items()}  # fmt: skip


def test_a_dead_nodes_listing_is_grouped_as_the_live_one(client: TestClient) -> None:
    expected = live("api_v0_logs_node.json")
    answer = client.get(f"{BASE}/api/v0/logs", params={"node_id": NODE}).json()
    assert (answer["result"], answer["msg"]) == (expected["result"], expected["msg"])
    ours, theirs = answer["data"]["result"], expected["data"]["result"]
    group_of = {name: group for group, names in theirs.items() for name in names}
    shared = [name for names in ours.values() for name in names if name in group_of]
    # Every archived file the live node had is listed in the same group; folders end with "/" as Ray's.
    assert len(shared) >= 20
    assert all(name in ours[group_of[name]] for name in shared)
    assert {"raylet.err", COUNTER_WORKER_OUT, "jobs/", "events/", "job-driver-probe-job-2.log"} <= set(shared)
    assert all("/" not in name.rstrip("/") for names in ours.values() for name in names)  # "*" is one level
    by_ip = client.get(f"{BASE}/api/v0/logs", params={"node_ip": "192.0.2.2"}).json()
    assert by_ip == answer


def test_glob_filters_as_the_agent_does(client: TestClient) -> None:
    inside = client.get(f"{BASE}/api/v0/logs", params={"node_id": NODE, "glob": "jobs/*"}).json()
    assert inside["data"]["result"] == {"internal": ["jobs/supervisor-probe-job-2.log"]}
    workers = client.get(f"{BASE}/api/v0/logs", params={"node_id": NODE, "glob": "*6509*out"}).json()
    assert workers["data"]["result"] == {"worker_out": [COUNTER_WORKER_OUT]}
    deep = client.get(f"{BASE}/api/v0/logs", params={"node_id": NODE, "glob": "**/*.log"}).json()["data"]["result"]
    assert "jobs/supervisor-probe-job-2.log" in deep["internal"] and "raylet.err" not in deep.get("raylet", [])


def test_refusals_of_the_listing(client: TestClient) -> None:
    missing = client.get(f"{BASE}/api/v0/logs", params={"node_id": ""})
    assert missing.status_code == 400 and missing.json() == live("api_v0_logs_node_id_.json")
    assert client.get(f"{BASE}/api/v0/logs", params={"node_ip": "10.9.9.9"}).status_code == 404
    for hostile in ("../*", "/etc/*", "jobs/../../*"):
        refused = client.get(f"{BASE}/api/v0/logs", params={"node_id": NODE, "glob": hostile})
        assert refused.status_code == 400 and refused.json()["result"] is False, hostile


def test_a_file_by_node_and_name_is_the_nodes_file(client: TestClient) -> None:
    for name in ("raylet.err", COUNTER_WORKER_OUT, "jobs/supervisor-probe-job-2.log"):
        assert log_file(client, node_id=NODE, filename=name, lines=-1) == (RUN1 / name).read_bytes(), name
    whole = (RUN1 / "monitor.log").read_bytes()
    assert 500 < whole.count(b"\n") < 1000
    # Ray's default is the last 1,000 lines (0 too, as the agent reads it); `lines` asks for another tail.
    assert log_file(client, node_id=NODE, filename="monitor.log") == whole
    assert log_file(client, node_id=NODE, filename="monitor.log", lines=0) == whole
    assert log_file(client, node_id=NODE, filename="monitor.log", lines=500) == b"".join(whole.splitlines(True)[-500:])
    assert log_file(client, node_id=NODE, filename="monitor.log", lines=3) == b"".join(whole.splitlines(True)[-3:])
    by_ip = client.get(f"{BASE}/api/v0/logs/file", params={"node_ip": "192.0.2.2", "filename": "raylet.err"})
    assert by_ip.content == (RUN1 / "raylet.err").read_bytes()


def test_a_tail_is_whole_lines_like_the_live_gcs_tail(client: TestClient) -> None:
    captured = fixture_bytes("dashboard_api", "run6_logs_file_gcs_tail.txt")
    count = captured.count(b"\n")
    assert captured.endswith(b"\n") and count == 5
    ours = log_file(client, node_id=NODE, filename="gcs_server.out.job_actor_lines", lines=count)
    source = (RUN1 / "gcs_server.out.job_actor_lines").read_bytes()
    assert ours.count(b"\n") == count and source.endswith(ours) and ours.endswith(b"\n")
    # The same kind of lines as the live tail: the GCS's log format.
    pattern = rb"\[\d{4}-\d\d-\d\d [\d:,]+ [IWE] \d+ \d+\] \(gcs_server\) "
    assert all(re.match(pattern, line) for line in ours.splitlines()) and re.match(pattern, captured)


def test_ansi_codes_are_filtered_when_asked(client: TestClient) -> None:
    raw = log_file(client, node_id=NODE, filename="job-driver-probe-job-2.log", lines=-1)
    assert b"\x1b[" in raw and raw == (RUN1 / "job-driver-probe-job-2.log").read_bytes()
    clean = log_file(client, node_id=NODE, filename="job-driver-probe-job-2.log", lines=-1, filter_ansi_code="true")
    assert b"\x1b[" not in clean and clean == re.sub(rb"\x1b\[[0-9;]+m", b"", raw)


def test_a_tasks_output_is_what_it_printed_like_the_live_answer(client: TestClient) -> None:
    captured = fixture_bytes("dashboard_api", "run6_logs_file_by_task_id.txt").decode()
    shape = re.sub(r"\d+", r"\\d+", re.escape(captured))  # "square(2) running on pid 19604\n" in run 6
    ours = log_file(client, task_id=SQUARE_TASK).decode()
    assert re.fullmatch(shape, ours), ours
    assert ours.endswith("running on pid 6355\n")
    assert log_file(client, task_id=SQUARE_TASK, attempt_number=0, suffix="err") == b""  # it printed nothing there
    missing = client.get(f"{BASE}/api/v0/logs/file", params={"task_id": SQUARE_TASK, "attempt_number": 3})
    assert missing.status_code == 404


def test_an_actors_and_a_pids_output_is_their_workers_file(client: TestClient) -> None:
    expected = (RUN1 / COUNTER_WORKER_OUT).read_bytes()
    assert log_file(client, actor_id="cf86f9f800d79224ccbfe34102000000") == expected  # Counter
    assert log_file(client, node_id=NODE, pid=6509) == expected
    err = COUNTER_WORKER_OUT.replace(".out", ".err")
    assert log_file(client, node_id=NODE, pid=6509, suffix="err") == (RUN1 / err).read_bytes()
    assert client.get(f"{BASE}/api/v0/logs/file", params={"node_id": NODE, "pid": 1}).status_code == 404
    # Ray needs the node to find a pid's file.
    assert client.get(f"{BASE}/api/v0/logs/file", params={"pid": 6509}).status_code == 400
    by_submission = log_file(client, node_id=NODE, submission_id="probe-job-2", lines=-1)
    assert by_submission == (RUN1 / "job-driver-probe-job-2.log").read_bytes()


@pytest.mark.parametrize(
    "filename", ["../../../etc/passwd", "/etc/passwd", "jobs/../../x", "a\0b", "%2e%2e%2fetc%2fpasswd", "..\\x"]
)
def test_hostile_file_names_are_refused(client: TestClient, filename: str) -> None:
    answer = client.get(f"{BASE}/api/v0/logs/file", params={"node_id": NODE, "filename": filename})
    assert answer.status_code == 400, answer.text


def test_encoded_climbing_in_the_raw_url_is_refused(client: TestClient) -> None:
    for query in ("filename=..%2F..%2Fetc%2Fpasswd", "filename=%2Fetc%2Fpasswd", "filename=a%00b",
                  "filename=%252e%252e%252fetc"):  # fmt: skip
        answer = client.get(f"{BASE}/api/v0/logs/file?node_id={NODE}&{query}")
        assert answer.status_code == 400, query


def test_other_refusals_and_absences(client: TestClient) -> None:
    for params in ({"filename": "raylet.err"}, {"node_id": NODE}, {"node_id": NODE, "filename": "x", "suffix": "log"},
                   {"node_id": NODE, "node_ip": "192.0.2.2", "filename": "raylet.err"},
                   {"node_id": NODE, "filename": "raylet.err", "lines": "many"}):  # fmt: skip
        assert client.get(f"{BASE}/api/v0/logs/file", params=params).status_code == 400, params
    assert client.get(f"{BASE}/api/v0/logs/file", params={"node_id": NODE, "filename": "nope.log"}).status_code == 404
    # Event files are archived as events, not text: said so, not answered empty.
    events = client.get(f"{BASE}/api/v0/logs/file", params={"node_id": NODE, "filename": "events/event_JOBS.log"})
    assert events.status_code == 404 and "events" in events.text
    assert client.get(f"{BASE}/api/v0/logs/tail", params={"node_id": NODE, "filename": "raylet.err"}).status_code == 400


def test_following_a_log_says_the_cluster_is_gone(client: TestClient) -> None:
    answer = client.get(f"{BASE}/api/v0/logs/stream", params={"node_id": NODE, "filename": "raylet.err"})
    assert answer.status_code == 501
    assert "gone" in answer.text and "api/v0/logs/file" in answer.text


def test_an_unterminated_last_line_counts_as_a_line() -> None:
    assert logfiles.last_lines(b"a\nb\nc", 2) == b"b\nc"  # as the agent's tail: "c" is the last line
    assert logfiles.last_lines(b"a\nb\n", 1) == b"b\n" and logfiles.last_lines(b"a\n", -1) == b"a\n"
