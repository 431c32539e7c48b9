"""The data path of buckets our lean path cannot serve (S3 Express): through botocore's client.

S3 Express buckets sign with session credentials botocore's client fetches and caches; their GETs
and PUTs go through it, with the same answers (``RawResponse``, ETag) as the lean path's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from . import _botocore_compat as botocore_compat
from ._body import RawResponse
from ._checksum import FIELD
from ._exceptions import translate
from ._urllib3_compat import Urllib3Body

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["PutRequest", "get_range_via_client", "put_via_client"]


class PutRequest(NamedTuple):
    """One PutObject or UploadPart (``query`` has the part number and upload id) of ``put_bytes``."""

    bucket: str
    key: str
    body: memoryview
    query: dict[str, str] | None
    headers: dict[str, str] | None
    operation: str
    checksum: str | None


def get_range_via_client(transport: Transport, bucket: str, key: str, headers: dict[str, str]) -> RawResponse:
    """``Transport.get_range`` through botocore's ``get_object`` (a 416 is returned, not raised)."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": headers["Range"], **transport.request_payer}
    if "If-Match" in headers:
        params["IfMatch"] = headers["If-Match"]
    try:
        result = transport.client.get_object(**params)
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 416:
            return RawResponse(416, error.response["ResponseMetadata"].get("HTTPHeaders", {}), None, None)
        raise translate(error, "GetObject", bucket, key) from error
    except BotoCoreError as error:
        raise translate(error, "GetObject", bucket, key) from error
    metadata = result["ResponseMetadata"]
    return RawResponse(
        metadata["HTTPStatusCode"],
        metadata["HTTPHeaders"],
        Urllib3Body(botocore_compat.raw_stream(result["Body"])),
        metadata.get("RequestId"),
    )


def put_via_client(transport: Transport, request: PutRequest) -> str:
    """``Transport.put_bytes``'s PutObject or UploadPart through botocore's client; the ETag."""
    bucket, key, body, query, headers, operation, checksum = request
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": body.tobytes(), **transport.request_payer}
    if checksum is not None:
        params[FIELD] = checksum
    if query:
        params["PartNumber"] = int(query["partNumber"])
        params["UploadId"] = query["uploadId"]
        result = transport.call(operation, bucket, key, "upload_part", **params)
    else:
        if headers and "x-amz-storage-class" in headers:
            params["StorageClass"] = headers["x-amz-storage-class"]
        if headers and "If-None-Match" in headers:
            params["IfNoneMatch"] = headers["If-None-Match"]
        result = transport.call(operation, bucket, key, "put_object", **params)
    etag: str = result["ETag"]
    return etag
