"""What the pod says about itself: labels and annotations from the downward API, for the manifest.

KubeRay labels a cluster's pods with the RayCluster's name and the custom resource they come from
(`ray.io/originated-from-crd: RayJob`); Kueue adds its queue and priority class. With these in the
manifest, operators filter history by queue, owner or team.
"""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path

from archive.documents import Kubernetes

log = logging.getLogger(__name__)

QUEUE_KEY = "kueue.x-k8s.io/queue-name"
PRIORITY_KEY = "kueue.x-k8s.io/priority-class"
CLUSTER_KEY = "ray.io/cluster"
ORIGIN_KIND_KEY = "ray.io/originated-from-crd"
ORIGIN_NAME_KEY = "ray.io/originated-from-cr-name"
# Big and useless for history: the whole object as kubectl last applied it.
_DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def parse_downward_api(text: str) -> dict[str, str]:
    """The downward API's `key="value"` lines (values quoted as Go does), or a JSON object."""
    text = text.strip()
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
            return {str(key): str(value) for key, value in loaded.items()}
        except (ValueError, AttributeError):
            log.warning("pod metadata looks like JSON but is not; reading it as key=value lines")
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        try:
            unquoted = ast.literal_eval(value) if value[:1] == '"' else value
        except (ValueError, SyntaxError):
            unquoted = value.strip('"')
        found[key.strip()] = str(unquoted)
    return found


def read_pod_metadata(pod_info_dir: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) from `<dir>/labels` and `<dir>/annotations`, else POD_LABELS/POD_ANNOTATIONS."""
    found = []
    for name, variable in (("labels", "POD_LABELS"), ("annotations", "POD_ANNOTATIONS")):
        text = os.environ.get(variable, "")
        if pod_info_dir is not None and (pod_info_dir / name).is_file():
            text = (pod_info_dir / name).read_text(errors="replace")
        found.append(parse_downward_api(text) if text else {})
    labels, annotations = found
    return labels, {key: value for key, value in annotations.items() if key not in _DROPPED_ANNOTATIONS}


def kubernetes_facts(
    labels: dict[str, str], annotations: dict[str, str], pod: str | None, queue: str | None = None,
    priority_class: str | None = None,
) -> Kubernetes:  # fmt: skip
    """The names operators filter by, from explicit settings first, then the pod's labels and annotations."""

    def look_up(key: str) -> str | None:
        return labels.get(key) or annotations.get(key)

    origin_is_rayjob = look_up(ORIGIN_KIND_KEY) == "RayJob"
    return Kubernetes(
        pod=pod,
        raycluster=look_up(CLUSTER_KEY),
        rayjob=look_up(ORIGIN_NAME_KEY) if origin_is_rayjob else None,
        queue=queue or look_up(QUEUE_KEY),
        priority_class=priority_class or look_up(PRIORITY_KEY),
        pod_labels=labels,
        pod_annotations=annotations,
    )
