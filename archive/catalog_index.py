"""The catalog index objects (`catalog/{namespace}.parquet`): every session document of a namespace, as it was read.

A history server that starts with no local catalog would otherwise read every document under `sessions/` (one
GET each: 8,834 for 2,000 sessions). An index object holds, per document, the listing's (size, mtime) and the
document's bytes as they were read, so a start reads a few index objects, lists `sessions/`, and GETs only the
documents whose (size, mtime) differ. The bytes, not decoded rows, are kept: the reader decodes them exactly as
if it had read them from `sessions/`, so the index can never disagree with the documents' own format, and a
change to the server's catalog tables needs no new index format. The listing stays the authority on what
exists: a document the index names but the listing does not is not used (deleted sessions stay deleted).

Listing `sessions/` is itself 440 requests at 100,000 sessions (two minutes on SeaweedFS here), so beside the
objects a publisher writes their state (`catalog/state.json`): per namespace, the digest of its object and the
point of the change journal (archive.changes) up to which the publisher's catalog had applied every change
when that object was current. A new replica whose objects match the state, and whose journal still reaches back
that far, takes the objects as the listing and lists only the sessions the journal names since.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import pyarrow as pa

from .parquet import read_checked, table_to_parquet

INDEX_TABLE = "catalog_index"
# Bump when the columns change: a reader ignores an object of another version (and the server rewrites it).
INDEX_VERSION = 1
INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("mtime_ns", pa.int64(), nullable=False),
        pa.field("data", pa.binary(), nullable=False),
    ],
    metadata={"ray_history.table": INDEX_TABLE, "ray_history.schema_version": str(INDEX_VERSION)},
)


class InvalidIndex(ValueError):
    """An index object that is not one this reader understands (corrupt, truncated, another version)."""


STATE_VERSION = 1


class IndexedNamespace(msgspec.Struct, frozen=True):
    count: int  # documents in the namespace's object
    digest: str  # their keys and listed versions hashed (decimal: the hash is an unsigned 64-bit number)
    journal_cursor_ms: int  # the object was current when the publisher had applied the journal up to here


class IndexState(msgspec.Struct, frozen=True):
    version: int
    namespaces: dict[str, IndexedNamespace]


def encode_state(state: IndexState) -> bytes:
    return msgspec.json.encode(state)


def decode_state(data: bytes) -> IndexState:
    """The state object; InvalidIndex if it is not one of this version."""
    try:
        state = msgspec.json.decode(data, type=IndexState)
    except msgspec.DecodeError as exc:
        raise InvalidIndex(f"not a catalog index state: {exc}") from exc
    if state.version != STATE_VERSION:
        raise InvalidIndex(f"catalog index state version {state.version}, this reader knows {STATE_VERSION}")
    return state


@dataclass(frozen=True)
class IndexedDocument:
    key: str
    size: int
    mtime_ns: int
    data: bytes


def encode_index(namespace: str, docs: Sequence[IndexedDocument]) -> bytes:
    """The object's bytes: rows sorted by key, so the same documents always give the same object."""
    prefix = f"sessions/{namespace}/"
    ordered = sorted(docs, key=lambda doc: doc.key)
    for doc in ordered:
        if not doc.key.startswith(prefix):
            raise ValueError(f"document {doc.key!r} is not of namespace {namespace!r}")
    table = pa.table(
        {
            "key": pa.array([doc.key for doc in ordered], pa.string()),
            "size": pa.array([doc.size for doc in ordered], pa.int64()),
            "mtime_ns": pa.array([doc.mtime_ns for doc in ordered], pa.int64()),
            "data": pa.array([doc.data for doc in ordered], pa.binary()),
        },
        schema=INDEX_SCHEMA,
    )
    return table_to_parquet(table)


def decode_index(namespace: str, data: bytes) -> dict[str, IndexedDocument]:
    """The documents of an index object by key; InvalidIndex if it is not a readable index of this version, or
    names a key outside its namespace (an object copied under another name must not speak for another one)."""
    metadata = {b"ray_history.table": INDEX_TABLE, b"ray_history.schema_version": str(INDEX_VERSION)}
    table = read_checked(data, INDEX_SCHEMA, metadata, InvalidIndex)
    prefix = f"sessions/{namespace}/"
    found_docs: dict[str, IndexedDocument] = {}
    columns = [table.column(name).to_pylist() for name in INDEX_SCHEMA.names]
    for key, size, mtime_ns, body in zip(*columns, strict=True):
        if not key.startswith(prefix):
            raise InvalidIndex(f"document {key!r} is not of namespace {namespace!r}")
        found_docs[key] = IndexedDocument(key, size, mtime_ns, body)
    return found_docs
