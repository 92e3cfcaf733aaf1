"""The storage interface: a flat key space of immutable objects.

Storage knows nothing about Ray or about the archive layout; it moves bytes under keys.
Keys are relative, '/'-separated, and never start with '/' or contain '..' segments.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol


class StorageError(Exception):
    """The object store could not do what was asked (down, refused, misconfigured)."""


class StoreUnreachable(StorageError):
    """The store did not answer: connection refused or cut, or no answer within the time budget. The same call
    may well succeed later; callers keep what they have and try again."""


class ObjectNotFound(StorageError, KeyError):
    """No object under the key."""


class InvalidKey(StorageError, ValueError):
    """A key that would leave the archive root or is otherwise malformed."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    mtime_ns: int


class Storage(Protocol):
    """What the collector and the history server need from an object store."""

    uri: str
    supports_tags: bool

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        """Store `data` under `key` atomically: readers see the old object or the whole new one."""
        ...

    def get(self, key: str) -> bytes:
        """The object's bytes; ObjectNotFound if there is none."""
        ...

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with `prefix`, in key order; with `start_after`, only the keys after it
        (S3's StartAfter: a listing that begins there costs requests for what follows only)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def get_tags(self, key: str) -> dict[str, str]:
        """The object's tags ({} where the store has no tags)."""
        ...


def check_key(key: str) -> str:
    """Refuse keys that could escape the archive root; return the key unchanged."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise InvalidKey(f"invalid archive key {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidKey(f"invalid archive key {key!r}: empty, '.' or '..' segment")
    return key


def check_prefix(prefix: str) -> str:
    """Like check_key, but an empty prefix (the whole archive) and a trailing '/' are allowed."""
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/") or "x")
    return prefix
