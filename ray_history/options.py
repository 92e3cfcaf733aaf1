"""The archive settings every subcommand shares, turned into the storage they name."""

from __future__ import annotations

from dataclasses import dataclass

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
