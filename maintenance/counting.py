"""A Storage that counts the calls made through it (the benchmark's and the tests' request counts).

On S3 a call is not always one request: a listing is a request per 1,000 keys. `http_requests`
counts what boto3 actually sends when the wrapped storage is an S3Storage.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from archive.storage import ObjectInfo, Storage


class CountingStorage:
    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.supports_tags = inner.supports_tags
        self.calls: Counter[str] = Counter()
        self.http: Counter[str] = Counter()
        self._lock = threading.Lock()
        client = getattr(inner, "_client", None)
        if client is not None:
            # One event per request boto3 sends, retries included: the store's own view of the load.
            client.meta.events.register("before-send.s3", self._sent)

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _sent(self, event_name: str = "before-send.s3.unknown", **_: Any) -> None:
        # Returning None lets the request go (a value would be taken as its response).
        with self._lock:
            self.http[event_name.rsplit(".", 1)[-1]] += 1

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.http.clear()

    @property
    def http_requests(self) -> int:
        return sum(self.http.values())

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        self._count("put")
        self.inner.put(key, data, tags)

    def get(self, key: str) -> bytes:
        self._count("get")
        return self.inner.get(key)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        self._count("list")
        return self.inner.list(prefix, start_after=start_after)

    def delete(self, key: str) -> None:
        self._count("delete")
        self.inner.delete(key)

    def get_tags(self, key: str) -> dict[str, str]:
        self._count("get_tags")
        return self.inner.get_tags(key)
