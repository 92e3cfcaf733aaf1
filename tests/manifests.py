"""deploy/ as the tests see it: kustomizations built with the real kubectl, the samples, the Dockerfile, the CRDs'
schemas, and a container's command and environment resolved as the kubelet would (offline: no API server)."""

from __future__ import annotations

import base64
import copy
import functools
import gzip
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
CRDS = Path(__file__).resolve().parent / "fixtures" / "crds"
# Every kustomization of deploy/ (each is built and checked), and the plain samples a user applies with -f.
KUSTOMIZATIONS = sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))
SAMPLES = sorted(DEPLOY.glob("samples/**/*.yaml"))
SAMPLES = [path for path in SAMPLES if path.name != "kustomization.yaml"]

Obj = dict[str, Any]


def kubectls() -> list[str]:
    """The kubectl binaries to build with: RAY_HISTORY_KUBECTL (colon-separated paths) or `kubectl` on PATH.
    scripts/setup.sh installs Debian's kubernetes-client (kubectl 1.20, kustomize v2.0.3) where none is."""
    given = os.environ.get("RAY_HISTORY_KUBECTL")
    found = given.split(":") if given else [shutil.which("kubectl") or ""]
    if not all(found):
        raise FileNotFoundError("no kubectl: run scripts/setup.sh (it installs Debian's kubernetes-client)")
    return found


@functools.cache
def build(directory: Path, kubectl: str | None = None) -> tuple[Obj, ...]:
    """`kubectl kustomize DIR`, parsed: every object it would apply."""
    done = subprocess.run([kubectl or kubectls()[0], "kustomize", str(directory)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, f"kubectl kustomize {directory.relative_to(REPO)} failed:\n{done.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def load(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def every_object() -> Iterator[tuple[str, Obj]]:
    """Each object of deploy/ with where it comes from: every kustomization's build, then every sample file."""
    for directory in KUSTOMIZATIONS:
        for obj in build(directory):
            yield f"{directory.relative_to(REPO)} (built)", obj
    for path in SAMPLES:
        for obj in load(path):
            yield str(path.relative_to(REPO)), obj


def find(objects: tuple[Obj, ...] | list[Obj], kind: str, name: str | None = None) -> Obj:
    matches = [obj for obj in objects if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_specs(obj: Obj) -> Iterator[tuple[str, Obj, Obj]]:
    """(where, pod template metadata, pod spec) of every pod an object makes, built-in or KubeRay."""
    spec = obj.get("spec", {})
    kind = obj["kind"]
    templates: list[tuple[str, Obj]] = []
    if kind in ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"):
        templates.append(("template", spec["template"]))
    elif kind == "CronJob":
        templates.append(("jobTemplate", spec["jobTemplate"]["spec"]["template"]))
    elif kind in ("RayCluster", "RayJob", "RayService"):
        cluster = {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}
        ray = cluster[kind] or {}
        templates.append(("head", ray["headGroupSpec"]["template"]))
        templates += [(group["groupName"], group["template"]) for group in ray.get("workerGroupSpecs", [])]
    for where, template in templates:
        yield f"{kind}/{obj['metadata']['name']} {where}", template.get("metadata", {}), template["spec"]


def containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


# --- The Dockerfile -------------------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest of the line)


def dockerfile(path: Path = REPO / "Dockerfile") -> tuple[dict[str, str], list[Stage]]:
    """The global ARGs (with defaults) and the stages, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw.strip())
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages and instruction == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((instruction, rest.strip()))
    return global_args, stages


def exec_form(rest: str) -> list[str]:
    """ENTRYPOINT / CMD in exec form (a JSON array), as the kubelet would take them."""
    value = yaml.safe_load(rest)
    assert isinstance(value, list), f"not in exec form: {rest}"
    return [str(item) for item in value]


def image_entrypoint() -> tuple[list[str], list[str]]:
    """The final stage's ENTRYPOINT and CMD."""
    _, stages = dockerfile()
    final = dict(stages[-1].instructions)
    return exec_form(final["ENTRYPOINT"]), exec_form(final.get("CMD", "[]"))


def image_uid() -> int:
    _, stages = dockerfile()
    user = dict(stages[-1].instructions)["USER"]
    return int(user.split(":")[0])


def shell_words(rest: str) -> list[str]:
    return shlex.split(rest)


# --- CRD schemas --------------------------------------------------------------------------------------------


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> a JSON schema made from the vendored CRD's openAPIV3Schema."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml.gz")):
        # libyaml's loader where PyYAML has it: the KubeRay CRDs are 3 MB of YAML.
        crd = yaml.load(gzip.decompress(path.read_bytes()), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                schemas[(f"{group}/{version['name']}", kind)] = to_json_schema(version["schema"]["openAPIV3Schema"])
    return schemas


def to_json_schema(openapi: Obj) -> Obj:
    """A CRD's structural OpenAPI v3 schema as plain JSON Schema, as strict as the API server's field validation:
    unknown fields are errors (unless x-kubernetes-preserve-unknown-fields), int-or-string takes either."""

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {key: convert(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
        if node.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if node.get("nullable"):
            out.pop("nullable")
            if "type" in out:
                out["type"] = [out["type"], "null"]
        if (
            out.get("type") == "object"
            and "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            out.setdefault("additionalProperties", False)
        return out

    schema = convert(copy.deepcopy(openapi))
    # apiVersion, kind and metadata are the API server's to check; the CRD leaves metadata open.
    schema.setdefault("properties", {}).update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                                 "metadata": {"type": "object"}})  # fmt: skip
    return schema  # type: ignore[no-any-return]


# --- A container as the kubelet would start it -------------------------------------------------------------


@dataclass
class FakePod:
    """What the downward API and the kubelet would give a pod here."""

    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    ip: str = "127.0.0.1"

    def field(self, path: str) -> str:
        match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
        if match:
            return (self.labels if match[1] == "labels" else self.annotations)[match[2]]
        values = {"metadata.name": self.name, "metadata.namespace": self.namespace, "status.podIP": self.ip,
                  "spec.nodeName": "local", "spec.serviceAccountName": "default"}  # fmt: skip
        return values[path]

    def downward_file(self, path: str) -> str:
        """A downward API volume file: one key="value" line per label or annotation, as the kubelet writes them."""
        items = self.labels if path == "metadata.labels" else self.annotations
        return "".join(f"{key}={_quote(value)}\n" for key, value in sorted(items.items()))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def config_data(objects: tuple[Obj, ...], kind: str, name: str) -> dict[str, str] | None:
    """A ConfigMap's data, or a Secret's decoded; None when the build holds no such object."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            if kind == "Secret":
                data = {key: base64.b64decode(value).decode() for key, value in obj.get("data", {}).items()}
                return {**data, **obj.get("stringData", {})}
            return dict(obj.get("data", {}))
    return None


def container_env(container: Obj, pod: FakePod, objects: tuple[Obj, ...]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom in order, then env (which wins), with
    $(VAR) references to earlier variables expanded. A missing ConfigMap or Secret fails unless optional."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref_kind, ref = ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else (
            "Secret", source["secretRef"])  # fmt: skip
        data = config_data(objects, ref_kind, ref["name"])
        assert data is not None or ref.get("optional"), f"{container['name']}: no {ref_kind} {ref['name']}"
        env.update({source.get("prefix", "") + key: value for key, value in (data or {}).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
        else:
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[item["name"]] = pod.field(source["fieldRef"]["fieldPath"])
            else:
                ref_kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
                ref = source.get("configMapKeyRef") or source["secretKeyRef"]
                data = config_data(objects, ref_kind, ref["name"])
                assert data is not None, f"{container['name']}: no {ref_kind} {ref['name']}"
                env[item["name"]] = data[ref["key"]]
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values; $$ escapes; unknown references stay."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m[0] == "$$" else env.get(m[1], m[0]), text)  # fmt: skip


def argv(container: Obj, env: dict[str, str]) -> list[str]:
    """command + args as the kubelet runs them: the image's ENTRYPOINT / CMD where the container sets none."""
    entrypoint, cmd = image_entrypoint() if str(container.get("image", "")).startswith("ray-history") else ([], [])
    command = container.get("command")
    args = container.get("args")
    words = (command if command is not None else entrypoint) + (
        args if args is not None else ([] if command is not None else cmd))  # fmt: skip
    return [expand(str(word), env) for word in words]
