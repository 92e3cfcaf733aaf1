"""Turning CLI options into the objects they configure."""

from __future__ import annotations

from collections.abc import Mapping

from archive.storage import S3Options, Storage, open_storage


def s3_options(options: Mapping[str, object]) -> S3Options:
    """Flags win over the AWS environment variables boto3 would read anyway."""
    base = S3Options.from_env()
    return S3Options(
        endpoint_url=str(options.get("s3_endpoint") or "") or base.endpoint_url,
        region=str(options.get("s3_region") or "") or base.region,
        path_style=bool(options.get("s3_path_style", base.path_style)),
        access_key=base.access_key,
        secret_key=base.secret_key,
    )


def storage_from_options(options: Mapping[str, object]) -> Storage:
    return open_storage(str(options["archive"]), s3_options(options))
