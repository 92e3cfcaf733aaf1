"""kill -9 mid-work: every event that got a 200, and every log line, is archived exactly once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from archive.ids import b64_to_hex
from archive.logs import file_ids_by_name, rebuild_file
from archive.parquet import parquet_to_table
from archive.storage import open_storage
from bench.synth import Synth, post_bodies
from ray_history.localray import collector_command, free_port, wait_healthy

from .collectors import start_collector_process, stop_collector_process


def _post_until_refused(url: str, bodies, acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client:
        for body, ids in bodies:
            if stop.is_set():
                return
            try:
                answer = client.post(f"{url}/v1/events", content=body, headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                return  # the collector is gone: this batch was never acknowledged
            if answer.status_code == 200:
                acked.extend(ids)


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_running(pid: int) -> bool:
    """Alive and not a zombie waiting for its parent to collect it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill_9_mid_stream_loses_and_repeats_nothing_acknowledged(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = collector_command(
        str(tmp_path / "archive"), port, tmp_path / "spool", tmp_path / "ray", "--seal-interval", "0.5",
        "--segment-max-mib", "1",
    )  # fmt: skip
    bodies = post_bodies(Synth(seed=7).events(60_000), batch=500)
    acked: list[str] = []

    first = start_collector_process(command, tmp_path / "collector-1.log")
    wait_healthy(url, process=first)
    stop = threading.Event()
    sender = threading.Thread(target=_post_until_refused, args=(url, bodies, acked, stop))
    sender.start()
    deadline = time.monotonic() + 60
    while len(acked) < 15_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    converters = children_of(first.pid)
    assert converters, "the collector converts in a process of its own"
    os.kill(first.pid, signal.SIGKILL)  # no flush, no goodbye: segments and uploads cut mid-way
    first.wait()
    sender.join(timeout=30)
    acked_before_crash = len(acked)
    assert acked_before_crash >= 15_000
    # Its converter cannot be told to stop: it must notice and leave on its own.
    deadline = time.monotonic() + 10
    while any(is_running(pid) for pid in converters) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(is_running(pid) for pid in converters), "the killed collector's converter is still running"

    second = start_collector_process(command, tmp_path / "collector-2.log")
    wait_healthy(url, process=second)
    # Ray would now resend what was not acknowledged; send the rest of the stream.
    _post_until_refused(url, bodies, acked, threading.Event())
    assert stop_collector_process(second) == 0
    assert len(acked) > acked_before_crash

    storage = open_storage(str(tmp_path / "archive"))
    archived: Counter[str] = Counter()
    for info in storage.list("events/"):
        archived.update(parquet_to_table(storage.get(info.key)).column("event_id").to_pylist())
    missing = [event_id for event_id in acked if b64_to_hex(event_id) not in archived]
    repeated = [event_id for event_id, count in archived.items() if count > 1]
    assert missing == [] and repeated == []
    assert len(list((tmp_path / "spool").glob("seg-*.wal"))) == 0


def test_a_log_rotated_while_the_collector_was_killed_is_shipped_whole_after_restart(tmp_path: Path) -> None:
    session = tmp_path / "ray" / "session_2026-11-28_10-00-00_000000_1"
    (session / "logs").mkdir(parents=True)
    (tmp_path / "ray" / "session_latest").symlink_to(session)
    raylet = session / "logs" / "raylet.out"
    raylet.write_bytes(b"".join(b"[state-dump] line %d\n" % i for i in range(1000)))
    port = free_port()
    command = collector_command(
        str(tmp_path / "archive"), port, tmp_path / "spool", tmp_path / "ray", "--log-interval", "0.2",
        "--dashboard-url", "",
    )  # fmt: skip
    first = start_collector_process(command, tmp_path / "collector-1.log")
    wait_healthy(f"http://127.0.0.1:{port}", process=first)
    storage = open_storage(str(tmp_path / "archive"))
    deadline = time.monotonic() + 30
    while not any(True for _ in storage.list("logs/")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # While the collector is down Ray writes on, rotates, and starts a new file under the old name.
    with open(raylet, "ab") as handle:
        handle.write(b"".join(b"written while down %d\n" % i for i in range(1000)))
    raylet.rename(session / "logs" / "raylet.out.1")
    raylet.write_bytes(b"after the rotation\n")

    second = start_collector_process(command, tmp_path / "collector-2.log")
    wait_healthy(f"http://127.0.0.1:{port}", process=second)
    assert stop_collector_process(second) == 0
    rows = pa.concat_tables([parquet_to_table(storage.get(info.key)) for info in storage.list("logs/")])
    by_name = file_ids_by_name(rows)
    for name in ("raylet.out.1", "raylet.out"):
        path = session / "logs" / name
        assert rebuild_file(rows.filter(pc.equal(rows["file_id"], by_name[f"logs/{name}"]))) == path.read_bytes()
    lines = rows.filter(pc.is_null(rows["omitted_bytes"]))
    assert lines.num_rows == len(set(zip(lines["file_id"].to_pylist(), lines["offset"].to_pylist(), strict=True)))
