"""Create the archive's bucket: the one RAY_HISTORY_ARCHIVE names, in the store at AWS_ENDPOINT_URL, signed with the
ray-history-s3 Secret's keys. Waits (10 minutes at most) for the store to answer; a bucket that exists is fine."""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

WAIT_S = 600.0


def main() -> int:
    archive = urlparse(os.environ["RAY_HISTORY_ARCHIVE"])
    if archive.scheme != "s3" or not archive.netloc:
        print(f"RAY_HISTORY_ARCHIVE is not s3://bucket/prefix: {archive.geturl()!r}", file=sys.stderr)
        return 2
    bucket = archive.netloc
    # Path-style, as SeaweedFS and MinIO want; one attempt per call, since this loop does the waiting.
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
    )
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            s3.create_bucket(Bucket=bucket)
            print(f"created bucket {bucket}")
            return 0
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                print(f"bucket {bucket} exists")
                return 0
            error: Exception = exc
        except BotoCoreError as exc:  # not answering yet: the store is still starting
            error = exc
        if time.monotonic() > deadline:
            print(f"could not create bucket {bucket} in {WAIT_S:.0f} s: {error}", file=sys.stderr)
            return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
