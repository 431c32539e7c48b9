"""``python -m s3torch.client``: the client's command line, for incomplete multipart uploads.

    python -m s3torch.client uploads s3://bucket/prefix                     # list them
    python -m s3torch.client uploads s3://bucket/prefix --abort --older-than 1d
    python -m s3torch.client uploads s3://bucket/key --abort --upload-id ID  # exactly one

``--region`` and ``--endpoint`` select the S3 service (the standard AWS environment applies
otherwise); ``--force-path-style`` for servers without virtual-hosted buckets. Exit status: 0
done, 1 an S3 error, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from collections.abc import Sequence

import botocore.session

from ._client import S3Client
from ._config import S3ClientConfig
from ._exceptions import S3Exception
from ._uploads import MultipartUploadInfo

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> datetime.timedelta:
    """``1d``, ``12h``, ``30m``, ``45s``, ``2w``, or sums of them such as ``1d12h``."""
    position, total = 0, datetime.timedelta(0)
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += datetime.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        position = match.end()
    if not text or position != len(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 1d, 12h, 30m, 45s or 1d12h")
    return total


def parse_location(text: str) -> tuple[str, str]:
    if not text.startswith("s3://") or not text[len("s3://") :].split("/", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not an S3 location such as s3://bucket/prefix")
    bucket, _, prefix = text[len("s3://") :].partition("/")
    return bucket, prefix


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m s3torch.client", description="s3torch client commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    uploads = commands.add_parser(
        "uploads",
        help="list (or abort) incomplete multipart uploads",
        description="List the incomplete multipart uploads under an S3 prefix, or abort them.",
    )
    uploads.add_argument("location", type=parse_location, help="s3://bucket/prefix (every key that starts with it)")
    uploads.add_argument("--abort", action="store_true", help="abort uploads (needs --older-than or --upload-id)")
    uploads.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="AGE",
        help="with --abort: only uploads initiated more than AGE ago (1d, 12h, 30m, 45s)",
    )
    uploads.add_argument("--upload-id", help="with --abort: only this upload (its key must be the location's key)")
    uploads.add_argument("--region", help="the buckets' region (default: the AWS environment's, else us-east-1)")
    uploads.add_argument("--endpoint", help="an S3-compatible endpoint URL")
    uploads.add_argument("--force-path-style", action="store_true", help="path-style bucket addressing")
    return parser


def _short(age: datetime.timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _describe(bucket: str, upload: MultipartUploadInfo) -> str:
    initiated = f"{upload.initiated:%Y-%m-%dT%H:%M:%SZ}"
    age = _short(datetime.datetime.now(datetime.timezone.utc) - upload.initiated)
    return f"s3://{bucket}/{upload.key}  {upload.upload_id}  initiated {initiated} ({age} ago)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    bucket, prefix = args.location
    if args.abort and args.older_than is None and args.upload_id is None:
        parser.error("--abort needs --older-than AGE (a guard for uploads still being written) or --upload-id ID")
    if not args.abort and (args.older_than is not None or args.upload_id is not None):
        parser.error("--older-than and --upload-id select uploads to abort: add --abort")
    if args.upload_id is not None and args.older_than is not None:
        parser.error("give either --older-than or --upload-id, not both")
    region = args.region or botocore.session.Session().get_config_variable("region") or "us-east-1"
    client = S3Client(
        region, endpoint=args.endpoint, s3client_config=S3ClientConfig(force_path_style=args.force_path_style)
    )
    where = f"s3://{bucket}/{prefix}"
    try:
        if args.upload_id is not None:
            if not prefix:
                parser.error("--upload-id needs the upload's key: s3://bucket/key")
            gone = client.abort_multipart_upload(bucket, prefix, args.upload_id)
            print(f"aborted {args.upload_id} {where}" if gone else f"no upload {args.upload_id} at {where}")
            return 0
        if args.abort:
            aborted = client.abort_multipart_uploads(bucket, prefix, older_than=args.older_than)
            for upload in aborted:
                print(f"aborted  {_describe(bucket, upload)}")
            print(f"{len(aborted)} incomplete upload(s) older than {_short(args.older_than)} aborted under {where}")
            return 0
        count = 0
        for upload in client.list_multipart_uploads(bucket, prefix):
            count += 1
            print(_describe(bucket, upload))
        print(f"{count} incomplete upload(s) under {where}")
        return 0
    except S3Exception as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
