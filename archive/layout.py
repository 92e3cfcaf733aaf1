"""Where every object of the archive lives. Kind comes first so a prefix rule can expire one kind.

sessions/{namespace}/{cluster}/{session}/manifest.json
sessions/{namespace}/{cluster}/{session}/nodes/{node}.json
sessions/{namespace}/{cluster}/{session}/closed.json
sessions/{namespace}/{cluster}/{session}/retention.json         what retention decided (documents.Retention)
{kind}/{namespace}/{cluster}/{session}/{node}/part-{seq}.parquet     kind: events, logs, metrics
{kind}/{namespace}/{cluster}/{session}/{node}/compacted-{first}_{last}.parquet   parts first..last, as one
snapshots/{namespace}/{cluster}/{session}/{table}.parquet
snapshots/{namespace}/{cluster}/{session}/snapshot.json
logins/{digest}.json                                             a browser's login on the history server
catalog/{namespace}.parquet                                      the history server's index of a namespace's documents
jobindex/{namespace}.parquet                                     the history server's job index of a namespace
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

PartKind = Literal["events", "logs", "metrics"]
PART_KINDS: tuple[PartKind, ...] = ("events", "logs", "metrics")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_PART = re.compile(r"^part-(?P<seq>[0-9A-Za-z_-]+)\.parquet$")
# A part sequence has no "_" (the collector writes "{13-digit id}-{8-digit number}"): it splits a range.
_SEQ = re.compile(r"^[0-9A-Za-z-]{1,120}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
LOGINS_PREFIX = "logins/"
CATALOG_INDEX_PREFIX = "catalog/"
# Which index objects were current as of which point of the change journal (archive.catalog_index.IndexState).
CATALOG_INDEX_STATE_KEY = f"{CATALOG_INDEX_PREFIX}state.json"
JOB_INDEX_PREFIX = "jobindex/"
_COMPACTED = re.compile(r"^compacted-(?P<first>[0-9A-Za-z-]+)_(?P<last>[0-9A-Za-z-]+)\.parquet$")


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


def retention_key(ref: SessionRef) -> str:
    return f"sessions/{ref.path}/retention.json"


def compacted_key(kind: PartKind, ref: SessionRef, node: str, first: str, last: str) -> str:
    """One object holding the rows of the node's parts `first`..`last` (sequences in key order), in that order.

    The range is in the key, so a listing alone tells which parts it replaces (`archive.parts.live`):
    readers need no other document, and each compacted object appears in one atomic put."""
    if kind not in PART_KINDS:
        raise InvalidName(f"unknown part kind {kind!r}")
    for seq in (first, last):
        if not _SEQ.match(seq):
            raise InvalidName(f"invalid part sequence {seq!r} for a compacted range")
    if first > last:
        raise InvalidName(f"empty compacted range {first!r}..{last!r}")
    return f"{parts_prefix(kind, ref, node)}compacted-{first}_{last}.parquet"


@dataclass(frozen=True)
class PartName:
    """A part or compacted object's place: kind, session, node, and the sequences it holds (one for a part)."""

    kind: PartKind
    ref: SessionRef
    node: str
    first: str
    last: str
    compacted: bool


def parse_data_key(key: str) -> PartName | None:
    """The PartName of a part or compacted key, or None for any other key."""
    bits = key.split("/")
    if len(bits) != 6 or bits[0] not in PART_KINDS:
        return None
    part, compacted = _PART.match(bits[5]), _COMPACTED.match(bits[5])
    if not part and not compacted:
        return None
    try:
        ref = SessionRef(bits[1], bits[2], bits[3])
        check_name("node", bits[4])
    except InvalidName:
        return None
    if part:
        return PartName(bits[0], ref, bits[4], part["seq"], part["seq"], False)  # type: ignore[arg-type]
    assert compacted is not None
    return PartName(bits[0], ref, bits[4], compacted["first"], compacted["last"], True)  # type: ignore[arg-type]


def snapshot_key(ref: SessionRef, table: str) -> str:
    return f"snapshots/{ref.path}/{check_name('table', table)}.parquet"


def snapshot_manifest_key(ref: SessionRef) -> str:
    """What a session's snapshot was built from; written after its tables, so it never names a missing one."""
    return f"snapshots/{ref.path}/snapshot.json"


def object_tags(kind: str, ref: SessionRef) -> dict[str, str]:
    """Tags on every object, so a store's lifecycle rules can also select by namespace or cluster."""
    return {"kind": kind, "namespace": ref.namespace, "cluster": ref.cluster}


def login_key(digest: str) -> str:
    """A browser's login on the history server (historyserver.identity), named by the SHA-256 of the cookie's
    reference: the archive never holds the reference itself."""
    if not _DIGEST.match(digest):
        raise InvalidName(f"invalid login digest {digest!r}: 64 lowercase hex digits")
    return f"{LOGINS_PREFIX}{digest}.json"


def catalog_index_key(namespace: str) -> str:
    """The history server's index of one namespace's session documents (archive.catalog_index)."""
    return f"{CATALOG_INDEX_PREFIX}{check_name('namespace', namespace)}.parquet"


def parse_catalog_index_key(key: str) -> str | None:
    """The namespace of a catalog index key, or None for any other key."""
    return _namespace_of(key, CATALOG_INDEX_PREFIX)


def job_index_key(namespace: str) -> str:
    """The history server's job index of one namespace's ended sessions (archive.job_index). Its own prefix: no
    key under catalog/ (parse_catalog_index_key), nor anything a reader of another prefix lists."""
    return f"{JOB_INDEX_PREFIX}{check_name('namespace', namespace)}.parquet"


def parse_job_index_key(key: str) -> str | None:
    """The namespace of a job index key, or None for any other key."""
    return _namespace_of(key, JOB_INDEX_PREFIX)


def _namespace_of(key: str, prefix: str) -> str | None:
    """The namespace of a per-namespace object `{prefix}{namespace}.parquet`, or None for any other key."""
    if not key.startswith(prefix) or not key.endswith(".parquet"):
        return None
    try:
        return check_name("namespace", key[len(prefix) : -len(".parquet")])
    except InvalidName:
        return None
