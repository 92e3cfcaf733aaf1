"""Where every object of the archive lives. Kind comes first so a prefix rule can expire one kind.

sessions/{namespace}/{cluster}/{session}/manifest.json
sessions/{namespace}/{cluster}/{session}/nodes/{node}.json
sessions/{namespace}/{cluster}/{session}/closed.json
{kind}/{namespace}/{cluster}/{session}/{node}/part-{seq}.parquet     kind: events, logs, metrics
snapshots/{namespace}/{cluster}/{session}/{table}.parquet
snapshots/{namespace}/{cluster}/{session}/snapshot.json
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PartKind = Literal["events", "logs", "metrics"]
PART_KINDS: tuple[PartKind, ...] = ("events", "logs", "metrics")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_PART = re.compile(r"^part-(?P<seq>[0-9A-Za-z_-]+)\.parquet$")


class InvalidName(ValueError):
    """A namespace, cluster, session, node or table name that cannot be part of a key."""


def check_name(kind: str, value: str) -> str:
    """Names become key segments: refuse '/', '..', blanks and anything exotic."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise InvalidName(
            f"invalid {kind} name {value!r}: use letters, digits, '.', '_', ':' or '-' "
            "(at most 253, starting with a letter or digit)"
        )
    return value


@dataclass(frozen=True, order=True)
class SessionRef:
    """One Ray session of one cluster: the unit the history server shows."""

    namespace: str
    cluster: str
    session: str

    def __post_init__(self) -> None:
        check_name("namespace", self.namespace)
        check_name("cluster", self.cluster)
        check_name("session", self.session)

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.cluster}/{self.session}"


def session_prefix(ref: SessionRef) -> str:
    return f"sessions/{ref.path}/"


def manifest_key(ref: SessionRef) -> str:
    return f"sessions/{ref.path}/manifest.json"


def node_marker_key(ref: SessionRef, node: str) -> str:
    return f"sessions/{ref.path}/nodes/{check_name('node', node)}.json"


def closed_key(ref: SessionRef) -> str:
    return f"sessions/{ref.path}/closed.json"


def parts_prefix(kind: PartKind, ref: SessionRef, node: str | None = None) -> str:
    if node is None:
        return f"{kind}/{ref.path}/"
    return f"{kind}/{ref.path}/{check_name('node', node)}/"


def part_key(kind: PartKind, ref: SessionRef, node: str, seq: str) -> str:
    """Deterministic in (node, seq): a re-upload after a crash replaces the part, never duplicates it."""
    if kind not in PART_KINDS:
        raise InvalidName(f"unknown part kind {kind!r}")
    return f"{parts_prefix(kind, ref, node)}part-{check_name('part sequence', seq)}.parquet"


def parse_part_key(key: str) -> tuple[PartKind, SessionRef, str, str] | None:
    """(kind, session, node, seq) of a part key, or None if the key is not a part."""
    bits = key.split("/")
    if len(bits) != 6 or bits[0] not in PART_KINDS:
        return None
    match = _PART.match(bits[5])
    if not match:
        return None
    try:
        ref = SessionRef(bits[1], bits[2], bits[3])
    except InvalidName:
        return None
    return bits[0], ref, bits[4], match["seq"]  # type: ignore[return-value]


def snapshot_key(ref: SessionRef, table: str) -> str:
    return f"snapshots/{ref.path}/{check_name('table', table)}.parquet"


def snapshot_manifest_key(ref: SessionRef) -> str:
    """What a session's snapshot was built from; written after its tables, so it never names a missing one."""
    return f"snapshots/{ref.path}/snapshot.json"


def object_tags(kind: str, ref: SessionRef) -> dict[str, str]:
    """Tags on every object, so a store's lifecycle rules can also select by namespace or cluster."""
    return {"kind": kind, "namespace": ref.namespace, "cluster": ref.cluster}
