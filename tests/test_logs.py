"""Log shipping: every file rebuilt byte for byte, through rotation, truncation, restarts and outages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from archive import layout
from archive.logs import file_ids_by_name, rebuild_file
from archive.parquet import parquet_to_table, table_rows
from archive.storage import Storage, StorageError, open_storage
from collector.config import LogSettings
from collector.logs import LogShipper
from collector.metrics import CollectorMetrics

from .conftest import CAPTURED_NODE, CAPTURED_SESSION, FIXTURES

SESSION = CAPTURED_SESSION
NODE_HEX = CAPTURED_NODE


def make_shipper(tmp_path: Path, storage: Storage | None = None, **settings: object) -> LogShipper:
    return LogShipper(
        LogSettings(**settings),  # type: ignore[arg-type]
        ray_temp_dir=tmp_path / "ray",
        node="node-a",
        storage=storage or open_storage(str(tmp_path / "archive")),
        session_ref=lambda session: layout.SessionRef("default", "local", session),
        metrics=CollectorMetrics(),
        checkpoint_path=tmp_path / "log-offsets.json",
    )


def ship_all(shipper: LogShipper, final: bool = False) -> None:
    while not shipper.poll(final=final):
        pass


def archived_rows(tmp_path: Path) -> pa.Table:
    storage = open_storage(str(tmp_path / "archive"))
    tables = [parquet_to_table(storage.get(info.key)) for info in storage.list("logs/")]
    return pa.concat_tables(tables)


def archived_file(rows: pa.Table, name: str) -> bytes:
    file_id = file_ids_by_name(rows)[name]
    return rebuild_file(rows.filter(pa.compute.equal(rows["file_id"], file_id)))


def test_every_log_file_is_rebuilt_byte_for_byte(tmp_path: Path, session_dir: Path) -> None:
    shutil.copytree(FIXTURES / "logs" / "run1", session_dir / "logs", dirs_exist_ok=True)
    ship_all(make_shipper(tmp_path), final=True)
    rows = archived_rows(tmp_path)
    files = sorted(p for p in (session_dir / "logs").rglob("*") if p.is_file())
    assert len(files) > 20
    for path in files:
        name = path.relative_to(session_dir).as_posix()
        assert archived_file(rows, name) == path.read_bytes(), name
    assert set(rows["node_id"].to_pylist()) == {NODE_HEX}
    keys = [info.key for info in open_storage(str(tmp_path / "archive")).list("logs/")]
    assert all(key.startswith(f"logs/default/local/{SESSION}/node-a/part-") for key in keys)


def test_worker_lines_are_attributed_to_their_task_actor_job_and_worker(tmp_path: Path, session_dir: Path) -> None:
    shutil.copytree(FIXTURES / "logs" / "run1", session_dir / "logs", dirs_exist_ok=True)
    ship_all(make_shipper(tmp_path), final=True)
    rows = table_rows(archived_rows(tmp_path))
    by_text = {row["text"]: row for row in rows}
    flaky = by_text["flaky: retry attempt succeeded"]
    assert (flaky["task_name"], flaky["actor_name"], flaky["job_id"]) == ("flaky", None, "02000000")
    assert flaky["worker_id"] == "48e47177eed42ab21019d88d2b782ef8babad866d75ed1f4fb2b4abd"
    assert flaky["pid"] == 6355
    counter = by_text["Counter.incr -> 1"]
    assert (counter["actor_name"], counter["task_name"]) == ("Counter", None)
    driver = next(row for row in rows if row["file"] == "logs/job-driver-probe-job-2.log")
    assert driver["submission_id"] == "probe-job-2"
    supervisor = next(row for row in rows if row["file"] == "logs/jobs/supervisor-probe-job-2.log")
    assert supervisor["submission_id"] == "probe-job-2"


def test_invalid_utf8_a_10_mb_line_and_a_last_line_without_newline_round_trip(
    tmp_path: Path, session_dir: Path
) -> None:
    content = b"ok\n" + b"caf\xc3\xa9 \xff\xfe broken\n" + b"x" * (10 * 1024 * 1024) + b"\n" + b"\x00tail"
    (session_dir / "logs" / "odd.log").write_bytes(content)
    shipper = make_shipper(tmp_path, read_max_bytes=4 * 1024 * 1024)
    ship_all(shipper)
    # The last line has no newline yet: held back while Ray may still be writing it.
    assert archived_file(archived_rows(tmp_path), "logs/odd.log") == content[: -len(b"\x00tail")]
    ship_all(shipper, final=True)
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/odd.log") == content
    texts = rows["text"].to_pylist()
    assert "caf\u00e9 \ufffd\ufffd broken" in texts  # searchable text, exact bytes kept beside it


def test_a_last_line_is_shipped_once_the_file_stops_growing_and_its_rest_joins_it(
    tmp_path: Path, session_dir: Path
) -> None:
    path = session_dir / "logs" / "progress.log"
    path.write_bytes(b"first\nsecond hal")
    shipper = make_shipper(tmp_path)
    ship_all(shipper)
    ship_all(shipper)  # unchanged since the last round: the unfinished line goes now
    with open(path, "ab") as handle:
        handle.write(b"f\nthird\n")
    ship_all(shipper)
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/progress.log") == b"first\nsecond half\nthird\n"
    pieces = [(row["line_number"], row["text"]) for row in table_rows(rows.sort_by("offset"))]
    assert pieces == [(1, "first"), (2, "second hal"), (2, "f"), (3, "third")]


def test_a_file_rotated_while_the_collector_was_down_is_shipped_whole_after_restart(
    tmp_path: Path, session_dir: Path
) -> None:
    logs = session_dir / "logs"
    (logs / "raylet.out").write_bytes(b"".join(b"before %d\n" % i for i in range(100)))
    ship_all(make_shipper(tmp_path))
    # The collector is down: Ray writes on, rotates, and starts a new file under the old name.
    with open(logs / "raylet.out", "ab") as handle:
        handle.write(b"".join(b"while down %d\n" % i for i in range(100)))
    os.rename(logs / "raylet.out", logs / "raylet.out.1")
    (logs / "raylet.out").write_bytes(b"after rotation\n")
    ship_all(make_shipper(tmp_path), final=True)
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/raylet.out.1") == (logs / "raylet.out.1").read_bytes()
    assert archived_file(rows, "logs/raylet.out") == b"after rotation\n"
    # Nothing was shipped twice: each byte of the rotated file is in exactly one row.
    rotated = rows.filter(pa.compute.equal(rows["file_id"], file_ids_by_name(rows)["logs/raylet.out.1"]))
    offsets = rotated.filter(pa.compute.is_null(rotated["omitted_bytes"]))["offset"].to_pylist()
    assert len(offsets) == len(set(offsets)) == 200


def test_a_rename_without_new_bytes_is_recorded(tmp_path: Path, session_dir: Path) -> None:
    logs = session_dir / "logs"
    (logs / "gcs_server.out").write_bytes(b"one\ntwo\n")
    shipper = make_shipper(tmp_path)
    ship_all(shipper)
    os.rename(logs / "gcs_server.out", logs / "gcs_server.out.1")
    ship_all(shipper)
    rows = archived_rows(tmp_path)
    assert set(file_ids_by_name(rows)) == {"logs/gcs_server.out.1"}
    assert archived_file(rows, "logs/gcs_server.out.1") == b"one\ntwo\n"


def test_a_truncated_file_is_shipped_again_as_a_new_generation(tmp_path: Path, session_dir: Path) -> None:
    path = session_dir / "logs" / "dashboard.log"
    path.write_bytes(b"old line 1\nold line 2\n")
    shipper = make_shipper(tmp_path)
    ship_all(shipper)
    path.write_bytes(b"new\n")  # copytruncate-style: same inode, shorter
    ship_all(shipper)
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/dashboard.log") == b"new\n"
    assert len(set(rows["file_id"].to_pylist())) == 2  # the old generation is kept too


def test_files_that_appear_late_are_picked_up(tmp_path: Path, session_dir: Path) -> None:
    shipper = make_shipper(tmp_path)
    assert shipper.poll()
    (session_dir / "logs" / "ray-data").mkdir()
    (session_dir / "logs" / "ray-data" / "ray-data.log").write_bytes(b"dataset started\n")
    (session_dir / "logs" / "raylet.err").write_bytes(b"")
    ship_all(shipper)
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/ray-data/ray-data.log") == b"dataset started\n"
    assert archived_file(rows, "logs/raylet.err") == b""  # an empty file is listed too


def test_a_restart_after_an_upload_whose_checkpoint_was_lost_repeats_nothing(tmp_path: Path, session_dir: Path) -> None:
    path = session_dir / "logs" / "raylet.out"
    shipper = make_shipper(tmp_path)
    ship_all(shipper)
    saved = shipper.checkpoint_path.read_bytes()
    path.write_bytes(b"a\nb\n")
    ship_all(shipper)
    # A crash after the upload but before the checkpoint was written: the old checkpoint is back.
    shipper.checkpoint_path.write_bytes(saved)
    with open(path, "ab") as handle:
        handle.write(b"c\n")
    ship_all(make_shipper(tmp_path))
    rows = archived_rows(tmp_path)
    assert archived_file(rows, "logs/raylet.out") == b"a\nb\nc\n"
    assert rows.num_rows == 3


def test_excluded_and_capped_files_say_what_was_left_out(tmp_path: Path, session_dir: Path) -> None:
    logs = session_dir / "logs"
    (logs / "debug_state.txt").write_bytes(b"x" * 5000)
    (logs / "big.log").write_bytes(b"line\n" * 1000)
    (logs / "events").mkdir()
    (logs / "events" / "event_RAYLET.log").write_bytes(b'{"event_id": "1"}\n')
    shipper = make_shipper(tmp_path, exclude=("debug_state.txt", "events/*"), max_file_bytes=1000)
    ship_all(shipper)
    with open(logs / "debug_state.txt", "ab") as handle:
        handle.write(b"y" * 500)
    ship_all(shipper, final=True)
    rows = archived_rows(tmp_path)
    omitted = table_rows(rows.filter(pa.compute.is_valid(rows["omitted_bytes"])))
    left_out = {row["file"]: (row["offset"], row["omitted_bytes"], row["omitted_reason"]) for row in omitted}
    # The growth of an excluded file is recorded as it comes, all under the one file id.
    debug_state = [(row["offset"], row["omitted_bytes"]) for row in omitted if row["file"] == "logs/debug_state.txt"]
    assert debug_state == [(0, 5000), (5000, 500)]
    assert len({row["file_id"] for row in omitted if row["file"] == "logs/debug_state.txt"}) == 1
    assert "--log-exclude 'debug_state.txt'" in left_out["logs/debug_state.txt"][2]
    assert left_out["logs/big.log"][:2] == (1000, 4000)
    assert "cap" in left_out["logs/big.log"][2]
    assert archived_file(rows, "logs/big.log") == b"line\n" * 200
    assert "logs/events/event_RAYLET.log" in left_out


def test_an_archive_that_is_down_keeps_the_checkpoint_until_the_upload_succeeds(
    tmp_path: Path, session_dir: Path
) -> None:
    class Down:
        uri = "down://"

        def put(self, *args: object, **kwargs: object) -> None:
            raise StorageError("the object store is down")

    (session_dir / "logs" / "raylet.out").write_bytes(b"kept\n")
    with pytest.raises(StorageError):
        make_shipper(tmp_path, storage=Down()).poll()  # type: ignore[arg-type]
    ship_all(make_shipper(tmp_path))
    assert archived_file(archived_rows(tmp_path), "logs/raylet.out") == b"kept\n"


def test_links_are_not_followed_and_odd_file_names_are_shipped(tmp_path: Path, session_dir: Path) -> None:
    secret = tmp_path / "token"
    secret.write_bytes(b"the sidecar's service account token\n")
    (session_dir / "logs" / "innocent.log").symlink_to(secret)
    odd = os.fsencode(session_dir / "logs") + b"/worker \xff\nname.out"
    with open(odd, "wb") as handle:
        handle.write(b"printed\n")
    ship_all(make_shipper(tmp_path), final=True)
    rows = archived_rows(tmp_path)
    assert "logs/innocent.log" not in set(rows["file"].to_pylist())
    assert b"token" not in b"".join(text.encode() for text in rows["text"].to_pylist())
    assert archived_file(rows, "logs/worker \ufffd\nname.out") == b"printed\n"


WORKER_OUT = "worker-48e47177eed42ab21019d88d2b782ef8babad866d75ed1f4fb2b4abd-02000000-6355.out"


def test_a_marker_written_in_two_pieces_still_names_the_task(tmp_path: Path, session_dir: Path) -> None:
    path = session_dir / "logs" / WORKER_OUT
    path.write_bytes(b":job_id:02000000\n:task_name:first\nhello from first\n:task_na")
    shipper = make_shipper(tmp_path)
    ship_all(shipper)
    ship_all(shipper)  # the worker went idle mid-marker: the piece is shipped as it is
    with open(path, "ab") as handle:
        handle.write(b"me:second\nhello from second\n")
    ship_all(shipper)
    owners = {row["text"]: row["task_name"] for row in table_rows(archived_rows(tmp_path))}
    assert owners["hello from first"] == "first"
    assert owners["hello from second"] == "second"


def test_lines_are_not_split_where_a_read_budget_ends(tmp_path: Path, session_dir: Path) -> None:
    lines = [b":job_id:02000000\n"] + [b":task_name:t%d\nline %d of task t%d\n" % (i, i, i) for i in range(300)]
    (session_dir / "logs" / WORKER_OUT).write_bytes(b"".join(lines))
    ship_all(make_shipper(tmp_path, read_max_bytes=1000, part_max_bytes=3000), final=True)
    rows = table_rows(archived_rows(tmp_path))
    assert all(row["newline"] for row in rows)  # every line whole, in one row
    assert all(row["task_name"] == row["text"].rsplit(" ", 1)[1] for row in rows if row["text"].startswith("line"))
