"""Opening an archive by URI, and the S3 settings that come from the usual AWS variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import Storage, StorageError, check_prefix
from .local import LocalStorage

SUPPORTED_URIS = "file:///absolute/path, a plain directory path, or s3://bucket/prefix"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store (AWS, MinIO, SeaweedFS...).

    `access_key`/`secret_key` left as None let boto3 find credentials its usual way
    (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity on EKS, instance role...),
    which is what a pod with IRSA or a mounted secret needs.
    """

    endpoint_url: str | None = None
    region: str | None = None
    # Path style (http://host/bucket/key) is what MinIO and SeaweedFS expect out of the box;
    # virtual-host style needs wildcard DNS that a dev or in-cluster store rarely has.
    path_style: bool = True
    access_key: str | None = None
    # Kept out of repr so that logging the options never leaks the secret.
    secret_key: str | None = field(default=None, repr=False)
    # Seconds one attempt may wait for an answer (boto3 tries 3 times); a store that hangs fails in time.
    timeout: float = 30.0
    # Seconds one request may take in all (connect, answer, body and retries together), or None for no bound
    # beyond the timeouts above (attempts x timeout). The history server sets one so that a store that accepts
    # connections and never answers costs a page seconds, not minutes.
    budget: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> S3Options:
        endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None
        raw = environ.get("RAY_HISTORY_S3_PATH_STYLE", "").strip().lower()
        if raw == "" or raw in _TRUE:
            path_style = True
        elif raw in _FALSE:
            path_style = False
        else:
            raise StorageError(
                f"RAY_HISTORY_S3_PATH_STYLE={environ['RAY_HISTORY_S3_PATH_STYLE']!r} is not a boolean: "
                "use 1/true or 0/false"
            )
        return cls(endpoint_url=endpoint, region=region, path_style=path_style)


def open_storage(uri: str, s3: S3Options | None = None) -> Storage:
    """The storage behind an archive URI; S3 settings default to the environment's."""
    if not uri or not uri.strip():
        raise StorageError(f"empty archive URI: use {SUPPORTED_URIS}")
    if "://" not in uri:
        # A bare "s3:bucket" or "file:/x" is a typo for a URI, not a directory someone wants created.
        if uri.lower().startswith(("s3:", "file:")):
            raise StorageError(f"malformed archive URI {uri!r}: use {SUPPORTED_URIS}")
        return LocalStorage(Path(uri).expanduser().absolute())

    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(
                f"file URI {uri!r} names host {parts.netloc!r}; a local archive is file:///absolute/path"
            )
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise StorageError(f"file URI {uri!r} needs an absolute path: file:///absolute/path")
        return LocalStorage(Path(path))
    if scheme == "s3":
        bucket = parts.netloc
        if not bucket:
            raise StorageError(f"S3 URI {uri!r} has no bucket: use s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise StorageError(f"S3 URI {uri!r} has a query or fragment; use s3://bucket/prefix")
        prefix = unquote(parts.path).strip("/")
        try:
            check_prefix(prefix)
        except StorageError as exc:
            raise StorageError(f"S3 URI {uri!r} has an invalid prefix: {exc}") from exc
        # Imported here: s3.py needs S3Options from this module, and boto3 is slow to import
        # for users of a local archive.
        from .s3 import S3Storage

        return S3Storage(bucket, prefix, s3 if s3 is not None else S3Options.from_env())
    raise StorageError(f"unsupported archive URI scheme {parts.scheme!r} in {uri!r}: use {SUPPORTED_URIS}")
