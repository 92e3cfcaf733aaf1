"""An archive in an S3-compatible object store (AWS S3, MinIO, SeaweedFS, Ceph...)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .base import ObjectInfo, ObjectNotFound, StorageError, StoreUnreachable, check_key, check_prefix

if TYPE_CHECKING:
    from .config import S3Options

_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}
_AUTH = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
    "Forbidden",
    "403",
}
_UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)
# Requests in flight at once per storage when a time budget is set (a thread each), and the connections kept:
# more threads than connections would open and drop a connection per request (and log a warning each time).
_BUDGETED_CALLS = 32
T = TypeVar("T")


class _Calls:
    """Threads that run calls whose caller waits a bounded time for them.

    Daemon threads, started as needed: a call hung on a frozen store must not hold the process at exit,
    as a ThreadPoolExecutor's threads would (they are joined).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._queue: SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, call: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._idle == 0 and self._threads < self._size:
                self._threads += 1
                self._idle += 1
                threading.Thread(target=self._work, name=f"s3-call-{self._threads}", daemon=True).start()
            self._idle -= 1
        self._queue.put((future, call))
        return future

    def _work(self) -> None:
        while True:
            future, call = self._queue.get()
            if future.set_running_or_notify_cancel():  # False: its caller gave up before it started
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to the caller, who maps it
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1


def _client_config(options: S3Options) -> Config:
    # A call abandoned at its budget runs on in its thread until these cut it: no attempt outlives the budget.
    timeout = min(options.timeout, options.budget) if options.budget else options.timeout
    kwargs: dict[str, Any] = {
        "signature_version": "s3v4",
        # A store that is down must fail in seconds, not hang a collector flush or a page load:
        # the callers have their own retry loops (the collector keeps its spool and tries later).
        "connect_timeout": min(5.0, timeout),
        "read_timeout": timeout,
        "retries": {"mode": "standard", "max_attempts": 3},
        "max_pool_connections": _BUDGETED_CALLS,
    }
    if options.region:
        kwargs["region_name"] = options.region
    if options.path_style:
        kwargs["s3"] = {"addressing_style": "path"}
    # boto3 >= 1.36 adds CRC checksums to every upload by default, which several S3-compatible
    # stores reject or mishandle; ask for them only where the API requires them. Older botocore
    # does not know these options (and does not send the checksums).
    if "request_checksum_calculation" in Config.OPTION_DEFAULTS:
        kwargs["request_checksum_calculation"] = "when_required"
        kwargs["response_checksum_validation"] = "when_required"
    return Config(**kwargs)


_sessions: dict[frozenset[tuple[str, str]], boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def _new_client(service: str, **kwargs: Any) -> Any:
    """A client of its own for each storage, built from a session shared per AWS environment.

    Building a session costs ~0.2 s (it loads the service models), so sessions are reused; but a
    session caches the credentials and profile it resolved, so one is kept per set of AWS_*
    variables and a changed environment gets a fresh one. boto3 sessions are not thread-safe,
    hence the lock; the clients they make are, and each storage's client is shared by its threads.
    """
    env = frozenset((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))
    with _sessions_lock:
        session = _sessions.get(env)
        if session is None:
            session = _sessions[env] = boto3.session.Session()
        return session.client(service, **kwargs)


class S3Storage:
    """Objects live at `s3://{bucket}/{prefix}/{key}`."""

    supports_tags = True

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        if not bucket or "/" in bucket:
            raise StorageError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        try:
            self._client = _new_client(
                "s3",
                endpoint_url=options.endpoint_url,
                region_name=options.region,
                aws_access_key_id=options.access_key,
                aws_secret_access_key=options.secret_key,
                config=_client_config(options),
            )
        except (BotoCoreError, ValueError) as exc:
            raise StorageError(
                f"cannot configure the S3 client for {self.uri} (endpoint "
                f"{options.endpoint_url or 'AWS default'}): {exc}; check AWS_ENDPOINT_URL_S3, "
                "AWS_REGION and AWS_PROFILE"
            ) from exc
        self.endpoint_url: str = self._client.meta.endpoint_url
        # botocore bounds each attempt's connect and each read, not a call: the budget is kept by waiting for
        # the call in a thread of this pool for that long at most.
        self._budgeted = _Calls(_BUDGETED_CALLS) if options.budget else None

    def __repr__(self) -> str:
        return f"S3Storage({self.uri!r}, endpoint={self.endpoint_url!r})"

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, action: str, key: str, exc: Exception) -> StorageError:
        where = f"s3://{self.bucket}/{self._full(key)}" if key else self.uri
        at = f"{action} {where} at endpoint {self.endpoint_url}"
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message") or code or str(exc)
            if code == "NoSuchBucket":
                return StorageError(
                    f"{at} failed: bucket {self.bucket!r} does not exist; create it or fix the archive URI"
                )
            if code in _NOT_FOUND or (status == 404 and code in ("", "NoSuchKey")):
                return ObjectNotFound(f"no object {key!r} in {self.uri}")
            if code in _AUTH or status == 403:
                return StorageError(
                    f"{at} was refused ({code or status}: {message}); check the credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile) and that they may "
                    f"access bucket {self.bucket!r}"
                )
            if status == 400:
                # The request itself is wrong (a tag value S3 does not allow...): no hint would help.
                return StorageError(f"{at} was rejected ({code}: {message})")
            return StorageError(
                f"{at} failed ({code or status}: {message}); check the endpoint, the credentials "
                f"and that bucket {self.bucket!r} exists"
            )
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageError(
                f"{at} failed: no usable S3 credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or a pod identity"
            )
        if isinstance(exc, _UNREACHABLE):
            return StoreUnreachable(
                f"{at} failed: cannot reach the object store ({exc}); check the endpoint URL "
                "(AWS_ENDPOINT_URL_S3) and that the store is running and reachable from here"
            )
        return StorageError(
            f"{at} failed: {exc}; check the endpoint, the credentials and that bucket {self.bucket!r} exists"
        )

    def _within_budget(self, action: str, key: str, call: Callable[[], T]) -> T:
        """`call()`, waited for no longer than the budget (when there is one). Past it the caller gets
        StoreUnreachable; the call itself ends in its thread at its attempts' timeouts, its answer unused."""
        if self._budgeted is None or self.options.budget is None:
            return call()
        future = self._budgeted.submit(call)
        try:
            return future.result(timeout=self.options.budget)
        except FutureTimeout:
            future.cancel()  # still queued behind hung calls: it never starts
            where = f"s3://{self.bucket}/{self._full(key)}" if key else self.uri
            raise StoreUnreachable(
                f"{action} {where} at endpoint {self.endpoint_url} failed: cannot reach the object store: no "
                f"answer within {self.options.budget:g} s (connect, read and retries together: --s3-budget); "
                "check the endpoint URL and that the store is up and not overloaded"
            ) from None

    def put(self, key: str, data: bytes, tags: Mapping[str, str] | None = None) -> None:
        check_key(key)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._full(key), "Body": data}
        if tags:
            kwargs["Tagging"] = urlencode(dict(tags))
        try:
            # A single PUT is atomic in S3: readers see the old object or the whole new one.
            self._within_budget("writing", key, lambda: self._client.put_object(**kwargs))
        except (BotoCoreError, ClientError) as exc:
            raise self._error("writing", key, exc) from exc

    def get(self, key: str) -> bytes:
        check_key(key)

        def fetch() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            # Reading the body is part of the request: a connection cut mid-stream surfaces here.
            data: bytes = response["Body"].read()
            return data

        try:
            body = self._within_budget("reading", key, fetch)
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reading", key, exc) from exc
        return body

    def get_tags(self, key: str) -> dict[str, str]:
        check_key(key)
        try:
            full = self._full(key)
            response = self._within_budget(
                "reading the tags of", key, lambda: self._client.get_object_tagging(Bucket=self.bucket, Key=full)
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reading the tags of", key, exc) from exc
        return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            full = self._full(key)
            self._within_budget("deleting", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))
        except (BotoCoreError, ClientError) as exc:
            error = self._error("deleting", key, exc)
            if isinstance(error, ObjectNotFound):
                return
            raise error from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Objects under `prefix` in key order (after `start_after`: ListObjectsV2's StartAfter).

        S3 promises key order, but SeaweedFS lists a filer directory walk ("a/b" before "a-b/c"),
        so the listing is gathered and sorted before the first yield: list by the narrowest
        prefix that will do (a session, a kind) to keep that small.
        """
        check_prefix(prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        found: list[tuple[str, int, int]] = []
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": root + prefix}
        if start_after:
            request["StartAfter"] = root + start_after
        pages = iter(paginator.paginate(**request))
        try:
            # Each page is a request of its own, with its own budget: a long listing is not one call.
            while (page := self._within_budget("listing", prefix, lambda: next(pages, None))) is not None:
                for obj in page.get("Contents", []):
                    full: str = obj["Key"]
                    # Folder markers ("dir/") made by consoles or filer-backed stores are not objects.
                    if full.endswith("/") or not full.startswith(root):
                        continue
                    # A store walking its folders may not honour StartAfter by byte order: kept to it here.
                    if start_after and full[len(root) :] <= start_after:
                        continue
                    modified = obj["LastModified"]
                    mtime_ns = int(modified.timestamp()) * 1_000_000_000 + modified.microsecond * 1000
                    found.append((full[len(root) :], int(obj["Size"]), mtime_ns))
        except (BotoCoreError, ClientError) as exc:
            raise self._error("listing", prefix, exc) from exc
        # Python orders str by code point, which is the UTF-8 byte order S3 specifies.
        found.sort()
        for key, size, mtime_ns in found:
            yield ObjectInfo(key=key, size=size, mtime_ns=mtime_ns)
