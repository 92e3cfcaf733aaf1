"""Object storage by URI: `file:///path` or `s3://bucket/prefix`."""

from __future__ import annotations

from .base import InvalidKey, ObjectInfo, ObjectNotFound, Storage, StorageError, StoreUnreachable, check_key
from .config import S3Options, open_storage

__all__ = [
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "S3Options",
    "Storage",
    "StorageError",
    "StoreUnreachable",
    "check_key",
    "open_storage",
]
