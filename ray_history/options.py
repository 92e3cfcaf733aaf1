"""The settings every subcommand shares (a flag that also reads its environment variable, the archive and
its S3 options, the cache folder), and the archive settings turned into the storage they name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from archive.storage import S3Options, Storage, open_storage


@dataclass(frozen=True)
class ArchiveOptions:
    archive: str
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = True
    s3_timeout: float = 30.0
    s3_budget: float | None = None

    def s3(self) -> S3Options:
        """Flags win over the AWS environment variables boto3 would read anyway."""
        base = S3Options.from_env()
        return S3Options(
            endpoint_url=self.s3_endpoint or base.endpoint_url,
            region=self.s3_region or base.region,
            path_style=self.s3_path_style,
            access_key=base.access_key,
            secret_key=base.secret_key,
            timeout=self.s3_timeout,
            budget=self.s3_budget,
        )

    def open(self) -> Storage:
        return open_storage(self.archive, self.s3())


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def setting(flag: str, env: str | list[str], text: str, **kwargs: Any) -> Decorator:
    """A flag that also reads its environment variable(s), and says so in --help."""
    return click.option(flag, envvar=env, show_envvar=True, help=text, **kwargs)


def archive_settings(func: Callable[..., Any]) -> Callable[..., Any]:
    """--archive and the S3 settings, shared by every subcommand that reads or writes the archive."""
    decorators = [
        setting("--archive", "RAY_HISTORY_ARCHIVE", "Where the archive lives: a directory, file:///path or "
                "s3://bucket/prefix.", default="./ray-history-archive"),
        setting("--s3-endpoint", ["RAY_HISTORY_S3_ENDPOINT", "AWS_ENDPOINT_URL"],
                "S3 endpoint URL (MinIO, SeaweedFS...); AWS when unset.", default=None),
        setting("--s3-region", ["RAY_HISTORY_S3_REGION", "AWS_REGION"], "S3 region.", default=None),
        setting("--s3-path-style/--s3-virtual-hosted", "RAY_HISTORY_S3_PATH_STYLE",
                "Path-style addressing (what MinIO and SeaweedFS want).", default=True),
        setting("--s3-timeout", "RAY_HISTORY_S3_TIMEOUT", "Seconds one S3 request may wait for an answer "
                "(3 attempts at most).", default=30.0, type=click.FloatRange(min=0.1)),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


cache_setting = setting(
    "--cache-dir", "RAY_HISTORY_CACHE_DIR", "Local cache of snapshots and fetched parts.",
    default="/tmp/ray-history-cache", type=click.Path(path_type=Path, file_okay=False),
)  # fmt: skip


def open_archive(archive: str, s3_endpoint: str | None, s3_region: str | None, s3_path_style: bool,
                 s3_timeout: float, s3_budget: float | None = None) -> Storage:  # fmt: skip
    return ArchiveOptions(archive, s3_endpoint, s3_region, s3_path_style, s3_timeout, s3_budget).open()
