"""Which sessions have ended, from their documents under sessions/: what the compactor may rewrite.

A session has ended when its head wrote closed.json, or when every node marker it has is final (each
collector said it will write nothing more). Anything else may still be written to and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from archive import documents, layout
from archive.storage import ObjectInfo, ObjectNotFound, Storage


@dataclass
class SessionDocuments:
    """A session's objects under sessions/{path}/, by name (manifest.json, nodes/{node}.json...)."""

    ref: layout.SessionRef
    objects: dict[str, ObjectInfo] = field(default_factory=dict)

    @property
    def markers(self) -> list[str]:
        return sorted(name for name in self.objects if name.startswith("nodes/") and name.endswith(".json"))


def find_sessions(storage: Storage, only: layout.SessionRef | None = None) -> list[SessionDocuments]:
    """Every session with a document under sessions/ (or only `only`), in key order."""
    prefix = layout.session_prefix(only) if only is not None else "sessions/"
    found: dict[str, SessionDocuments] = {}
    for info in storage.list(prefix):
        bits = info.key.split("/", 4)
        if len(bits) != 5:
            continue
        try:
            ref = layout.SessionRef(bits[1], bits[2], bits[3])
        except layout.InvalidName:
            continue  # not a key any writer of the archive makes: nothing to compact
        found.setdefault(ref.path, SessionDocuments(ref)).objects[bits[4]] = info
    return [found[path] for path in sorted(found)]


def why_not_ended(storage: Storage, docs: SessionDocuments) -> str | None:
    """None when the session has ended, else why it is taken as possibly running."""
    if "closed.json" in docs.objects:
        return None
    if not docs.markers:
        return "no closed.json and no node marker: not known to have ended"
    for name in docs.markers:
        try:
            marker = documents.decode(storage.get(layout.session_prefix(docs.ref) + name), documents.NodeMarker)
        except ObjectNotFound:
            continue  # deleted meanwhile: the session is going away, nothing was written by that node since
        except msgspec.DecodeError:
            return f"node marker {name} is unreadable: not known to have ended"
        if not marker.final:
            return f"running: node {marker.node} has not written its final marker and there is no closed.json"
    return None


def retention_of(storage: Storage, docs: SessionDocuments) -> documents.Retention | None:
    """What retention decided for the session, if anything (a session it deletes is not compacted)."""
    if "retention.json" not in docs.objects:
        return None
    try:
        return documents.decode(storage.get(layout.retention_key(docs.ref)), documents.Retention)
    except ObjectNotFound:
        return None
    except msgspec.DecodeError:
        # Unreadable: retention may be deleting the session, so it is safer to leave it alone.
        return documents.Retention(deleted=documents.ExpiredKind(0, 0, "retention.json is unreadable"))
