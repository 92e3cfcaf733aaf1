"""The storage backends against real stores: a directory, moto's S3 and SeaweedFS."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from archive.storage import (
    InvalidKey,
    ObjectNotFound,
    S3Options,
    Storage,
    StorageError,
    open_storage,
)
from archive.storage.local import LocalStorage
from archive.storage.s3 import S3Storage

from .objectstores import SeaweedFS, create_bucket, moto_server, seaweedfs_server

BUCKET = "ray-history-test"
MOTO_KEYS = ("testing", "testing")
HOSTILE_KEYS = ["../x", "/abs", "a/../b", "a//b", "", ".", "a/./b", "a\\b", "a/", "nul\x00l"]
BACKENDS = ["local", "moto", "seaweedfs"]
S3_BACKENDS = ["moto", "seaweedfs"]


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        create_bucket(endpoint, *MOTO_KEYS, BUCKET)
        yield endpoint


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        server.create_bucket(BUCKET)
        yield server


def _s3(endpoint: str, access_key: str, secret_key: str, prefix: str) -> S3Storage:
    options = S3Options(endpoint_url=endpoint, region="us-east-1", access_key=access_key, secret_key=secret_key)
    return S3Storage(BUCKET, prefix, options)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    # Servers are looked up lazily so that `-k local` starts none; each test gets a fresh
    # prefix in the shared bucket, so tests never see each other's objects.
    prefix = f"t-{uuid.uuid4().hex[:12]}/archive"
    if request.param == "local":
        return LocalStorage(tmp_path / "archive")
    if request.param == "moto":
        return _s3(request.getfixturevalue("moto_endpoint"), *MOTO_KEYS, prefix)
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return _s3(server.endpoint_url, server.access_key, server.secret_key, prefix)


@pytest.fixture(params=S3_BACKENDS)
def s3_storage(request: pytest.FixtureRequest) -> S3Storage:
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    if request.param == "moto":
        return _s3(request.getfixturevalue("moto_endpoint"), *MOTO_KEYS, prefix)
    server: SeaweedFS = request.getfixturevalue("seaweed")
    return _s3(server.endpoint_url, server.access_key, server.secret_key, prefix)


def _keys(storage: Storage, prefix: str = "") -> list[str]:
    return [info.key for info in storage.list(prefix)]


# --- the contract, on every backend ---------------------------------------------------------


def test_put_get_round_trip(storage: Storage) -> None:
    data = bytes(range(256)) * 17
    storage.put("events/ns/c1/s1/n1/part-000001.parquet", data)
    assert storage.get("events/ns/c1/s1/n1/part-000001.parquet") == data
    storage.put("sessions/empty.json", b"")
    assert storage.get("sessions/empty.json") == b""


def test_overwrite_replaces(storage: Storage) -> None:
    storage.put("sessions/ns/c/s/manifest.json", b"first, and longer than the second")
    storage.put("sessions/ns/c/s/manifest.json", b"second")
    assert storage.get("sessions/ns/c/s/manifest.json") == b"second"
    assert _keys(storage) == ["sessions/ns/c/s/manifest.json"]


def test_list_by_prefix_sorted_and_relative(storage: Storage) -> None:
    objects = {
        "events/ns/c1/y": b"yy",
        "logs/ns/a": b"l",
        "events/ns2/z": b"z",
        "events/ns/c1/x": b"x",
        "events/ns-b/q": b"qqq",
        "events/ns/a.txt": b"a",
    }
    for key, data in objects.items():
        storage.put(key, data)

    everything = list(storage.list())
    # '-' < '/' < '2': the order of the keys as strings, not of a directory walk.
    assert [i.key for i in everything] == [
        "events/ns-b/q",
        "events/ns/a.txt",
        "events/ns/c1/x",
        "events/ns/c1/y",
        "events/ns2/z",
        "logs/ns/a",
    ]
    assert {i.key: i.size for i in everything} == {k: len(v) for k, v in objects.items()}
    assert all(i.mtime_ns > 1_600_000_000 * 10**9 for i in everything)

    assert _keys(storage, "events/ns/") == ["events/ns/a.txt", "events/ns/c1/x", "events/ns/c1/y"]
    # A prefix is a string prefix, not a directory: "events/ns" also matches "events/ns2".
    assert _keys(storage, "events/ns") == [
        "events/ns-b/q",
        "events/ns/a.txt",
        "events/ns/c1/x",
        "events/ns/c1/y",
        "events/ns2/z",
    ]
    assert _keys(storage, "events/ns/c1/x") == ["events/ns/c1/x"]
    assert _keys(storage, "logs") == ["logs/ns/a"]
    assert _keys(storage, "metrics/") == []
    assert _keys(storage, "nothing/at/all/") == []


def test_delete(storage: Storage) -> None:
    storage.put("logs/ns/c/s/n/part-1.parquet", b"1")
    storage.put("logs/ns/c/s/n/part-2.parquet", b"2")
    storage.delete("logs/ns/c/s/n/part-1.parquet")
    with pytest.raises(ObjectNotFound):
        storage.get("logs/ns/c/s/n/part-1.parquet")
    assert _keys(storage) == ["logs/ns/c/s/n/part-2.parquet"]
    # Deleting what is not there is not an error (retention may race a second replica).
    storage.delete("logs/ns/c/s/n/part-1.parquet")
    storage.delete("never/existed")
    storage.delete("logs/ns/c/s/n/part-2.parquet")
    assert _keys(storage) == []


def test_missing_key(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.get("sessions/none/such/closed.json")
    storage.put("sessions/a/b", b"x")
    # A key prefix is not an object.
    with pytest.raises(ObjectNotFound):
        storage.get("sessions/a")
    with pytest.raises(KeyError):
        storage.get("sessions/a/b/c")


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.put(key, b"x")
    with pytest.raises(InvalidKey):
        storage.get(key)
    with pytest.raises(InvalidKey):
        storage.delete(key)
    with pytest.raises(InvalidKey):
        storage.get_tags(key)
    assert _keys(storage) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a/../", "a//b/"])
def test_hostile_prefixes_refused(storage: Storage, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        list(storage.list(prefix))


def test_concurrent_puts(storage: Storage) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(5):
                storage.put(f"metrics/ns/c/s/node-{n}/part-{i}.parquet", f"{n}:{i}".encode())
                # Everyone also rewrites one shared key: last writer wins, nobody sees a torn object.
                storage.put("sessions/ns/c/s/nodes/shared.json", f"{n}:{i}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(_keys(storage, "metrics/")) == 30
    n, i = storage.get("sessions/ns/c/s/nodes/shared.json").decode().split(":")
    assert 0 <= int(n) < 6 and 0 <= int(i) < 5


# --- tags -----------------------------------------------------------------------------------


def test_tags_round_trip(s3_storage: S3Storage) -> None:
    assert s3_storage.supports_tags
    tags = {"kind": "events", "namespace": "team-a", "cluster": "rayjob x7=a+b/c:d@e"}
    s3_storage.put("events/team-a/rayjob/s/n/part-1.parquet", b"p", tags=tags)
    assert s3_storage.get_tags("events/team-a/rayjob/s/n/part-1.parquet") == tags
    s3_storage.put("events/untagged", b"u")
    assert s3_storage.get_tags("events/untagged") == {}
    with pytest.raises(ObjectNotFound):
        s3_storage.get_tags("events/missing")


def test_local_ignores_tags(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    assert not storage.supports_tags
    storage.put("events/a", b"x", tags={"kind": "events"})
    assert storage.get_tags("events/a") == {}
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == ["a"]


# --- S3 failures ----------------------------------------------------------------------------


def test_seaweedfs_refuses_wrong_credentials(seaweed: SeaweedFS) -> None:
    good = _s3(seaweed.endpoint_url, seaweed.access_key, seaweed.secret_key, "creds")
    good.put("k", b"v")
    for access_key, secret_key in [(seaweed.access_key, "not-the-secret"), ("nobody", "nothing")]:
        bad = _s3(seaweed.endpoint_url, access_key, secret_key, "creds")
        for op in (lambda s=bad: s.put("k2", b"v"), lambda s=bad: s.get("k"), lambda s=bad: list(s.list())):
            with pytest.raises(StorageError) as info:
                op()
            # Refused is not "missing": a caller must not conclude the object is gone.
            assert not isinstance(info.value, ObjectNotFound)
            message = str(info.value)
            assert seaweed.endpoint_url in message and "credentials" in message and BUCKET in message
    assert good.get("k") == b"v"
    assert [i.key for i in good.list()] == ["k"]


def test_missing_bucket(moto_endpoint: str) -> None:
    storage = S3Storage("no-such-bucket", "p", S3Options(moto_endpoint, "us-east-1", True, *MOTO_KEYS))
    with pytest.raises(StorageError, match=r"no-such-bucket.*does not exist"):
        storage.put("k", b"v")
    with pytest.raises(StorageError) as info:
        storage.get("k")
    assert not isinstance(info.value, ObjectNotFound)


def test_endpoint_down_fails_fast() -> None:
    # Bound but never listening: the port stays ours and every connection is refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{holder.getsockname()[1]}"
        storage = _s3(endpoint, "k", "s", "down")
        for op in (lambda: storage.put("a", b"x"), lambda: storage.get("a"), lambda: list(storage.list())):
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                op()
            assert time.monotonic() - started < 15
            assert endpoint in str(info.value)
            assert not isinstance(info.value, ObjectNotFound)


# --- local specifics ------------------------------------------------------------------------


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))


def test_local_failed_put_leaves_old_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("sessions/ns/c/s/manifest.json", b"old")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError):
        storage.put("sessions/ns/c/s/manifest.json", b"new and different")
    with pytest.raises(StorageError):
        storage.put("sessions/ns/c/s/closed.json", b"{}")
    monkeypatch.undo()

    assert storage.get("sessions/ns/c/s/manifest.json") == b"old"
    with pytest.raises(ObjectNotFound):
        storage.get("sessions/ns/c/s/closed.json")
    assert _leftovers(tmp_path) == []
    assert [i.key for i in storage.list()] == ["sessions/ns/c/s/manifest.json"]


def test_local_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path)
    storage.put("logs/a", b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(StorageError, match="no space left"):
        storage.put("logs/a", b"new" * 1000)
    monkeypatch.undo()
    assert storage.get("logs/a") == b"old"
    assert _leftovers(tmp_path) == []


def test_local_put_is_durable_layout(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    assert storage.uri == f"file://{tmp_path / 'root'}"
    storage.put("a/b/c/d", b"x")
    assert (tmp_path / "root" / "a" / "b" / "c" / "d").read_bytes() == b"x"
    # Temp files from a crashed writer are invisible to readers.
    (tmp_path / "root" / "a" / "b" / ".d.1234.tmp").write_bytes(b"partial")
    assert [i.key for i in storage.list()] == ["a/b/c/d"]
    with pytest.raises(InvalidKey):
        storage.put("a/.x.tmp", b"would be invisible")


def test_local_delete_prunes_empty_dirs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = LocalStorage(root)
    storage.put("logs/ns/c/s/n/part-1", b"1")
    storage.put("logs/ns/c/other", b"2")
    storage.delete("logs/ns/c/s/n/part-1")
    assert not (root / "logs/ns/c/s").exists()
    assert (root / "logs/ns/c/other").exists()
    storage.delete("logs/ns/c/other")
    assert root.is_dir() and list(root.iterdir()) == []


def test_local_refuses_symlink_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s")
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    storage = LocalStorage(root)
    with pytest.raises(InvalidKey):
        storage.get("link/secret")
    with pytest.raises(InvalidKey):
        storage.put("link/new", b"x")
    with pytest.raises(InvalidKey):
        storage.delete("link/secret")
    with pytest.raises(InvalidKey):
        list(storage.list("link/"))
    assert [i.key for i in storage.list()] == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_local_missing_root_lists_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not-yet")
    assert list(storage.list()) == []
    with pytest.raises(ObjectNotFound):
        storage.get("x")
    storage.delete("x")
    assert not (tmp_path / "not-yet").exists()


# --- configuration --------------------------------------------------------------------------


def test_open_storage_uris(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = open_storage(f"file://{tmp_path}/archive")
    assert isinstance(local, LocalStorage) and local.uri == f"file://{tmp_path}/archive"

    monkeypatch.chdir(tmp_path)
    relative = open_storage("rel/archive")
    assert isinstance(relative, LocalStorage) and relative.uri == f"file://{tmp_path}/rel/archive"

    options = S3Options(endpoint_url="http://127.0.0.1:1", region="us-east-1", access_key="a", secret_key="b")
    s3 = open_storage("s3://bucket/some/prefix/", options)
    assert isinstance(s3, S3Storage)
    assert (s3.uri, s3.bucket, s3.prefix) == ("s3://bucket/some/prefix", "bucket", "some/prefix")
    assert open_storage("s3://bucket", options).uri == "s3://bucket"

    for bad in ["gs://bucket/x", "hdfs:///x", "s3:bucket", "", "file://host/x", "s3:///x", "s3://b/a/../c"]:
        with pytest.raises(StorageError) as info:
            open_storage(bad, options)
        if bad.startswith(("gs", "hdfs")):
            assert "file://" in str(info.value) and "s3://" in str(info.value)


def test_s3_options_from_env() -> None:
    assert S3Options.from_env({}) == S3Options(None, None, True, None, None)
    env = {
        "AWS_ENDPOINT_URL": "http://generic:9000",
        "AWS_ENDPOINT_URL_S3": "http://s3-only:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "RAY_HISTORY_S3_PATH_STYLE": "false",
    }
    options = S3Options.from_env(env)
    assert options == S3Options("http://s3-only:9000", "eu-west-1", False)
    assert S3Options.from_env({"AWS_ENDPOINT_URL": "http://g:1", "AWS_REGION": "r"}).endpoint_url == "http://g:1"
    assert S3Options.from_env({"AWS_REGION": "r", "AWS_DEFAULT_REGION": "d"}).region == "r"
    assert S3Options.from_env({"RAY_HISTORY_S3_PATH_STYLE": "1"}).path_style is True
    assert S3Options.from_env({"RAY_HISTORY_S3_PATH_STYLE": "0"}).path_style is False
    with pytest.raises(StorageError, match="RAY_HISTORY_S3_PATH_STYLE"):
        S3Options.from_env({"RAY_HISTORY_S3_PATH_STYLE": "maybe"})
    assert "secret" not in repr(S3Options(access_key="a", secret_key="secret"))
