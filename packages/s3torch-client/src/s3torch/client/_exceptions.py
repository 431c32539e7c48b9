"""The one public error family of s3torch, rooted in the upstream-compatible ``S3Exception``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from botocore.exceptions import ClientError, NoCredentialsError

if TYPE_CHECKING:
    from ._body import RawResponse

# The texts upstream users match on, keyed by S3 error code. They stay the start of our
# messages; what follows names the object and the request.
_UPSTREAM_TEXTS = {
    "NoSuchKey": "Service error: The key does not exist",
    "NoSuchBucket": "Service error: The bucket does not exist",
}
_NOT_FOUND_TEXT = "Service error: The object was not found"
# The only conditional writes s3torch sends are create-only ones (``if_none_match="*"``), so
# these codes on a write always mean that S3 refused to replace, or race with, another object.
_CREATE_ONLY_TEXTS = {
    "PreconditionFailed": "Service error: An object already exists at the key, and a create-only write"
    " (if_none_match='*') never replaces it",
    "ConditionalRequestConflict": "Service error: Another write to the key was in progress, and a create-only"
    " write (if_none_match='*') was not applied",
}
_CREATE_ONLY_OPERATIONS = frozenset({"PutObject", "CompleteMultipartUpload"})
# S3's error documents are a few hundred bytes: more than this is not buffered (its connection is
# closed), nor is a success body where none is expected.
ERROR_BODY_BYTES = 64 * 1024


class S3Exception(Exception):
    """An error from S3 or from the transport in front of it.

    ``str(e)`` starts with the upstream's text (for example
    ``"Service error: The key does not exist"``) and names the bucket and key. The attributes
    carry what a program needs to decide: ``bucket``, ``key``, ``code`` (the S3 error code, such
    as ``NoSuchKey`` or ``SlowDown``), ``request_id`` and ``status`` (the HTTP status), each
    ``None`` when unknown. Like any ``Exception``, it takes any positional arguments (kept in
    ``args``, as the upstream's does); instances pickle with them and with every attribute.
    """

    def __init__(
        self,
        *args: object,
        bucket: str | None = None,
        key: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(*args)
        self.bucket = bucket
        self.key = key
        self.code = code
        self.request_id = request_id
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.args, self.bucket, self.key, self.code, self.request_id, self.status),
        )


def _rebuild(
    cls: type[S3Exception],
    args: tuple[Any, ...],
    bucket: str | None,
    key: str | None,
    code: str | None,
    request_id: str | None,
    status: int | None,
) -> S3Exception:
    error = cls(*args, bucket=bucket, key=key, code=code, request_id=request_id, status=status)
    return error


class S3ClientConfigError(S3Exception, ValueError):
    """An invalid ``S3ClientConfig`` or client argument (also a ``ValueError``)."""


class ObjectChangedError(S3Exception):
    """The object was replaced while it was being read; the bytes already read are stale."""


#: Codes that say the object, or the bucket holding it, is not there. Not NoSuchUpload (also a 404):
#: a missing upload id is no missing file.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound"})


def is_not_found(error: BaseException) -> bool:
    """Whether ``error`` says the object does not exist: an ``S3Exception`` with the code
    ``NoSuchKey``, ``NotFound`` or ``NoSuchBucket``, or a 404 without a code (HEAD has no body).

    A missing bucket counts: for a file system it is a missing top directory, which a local disk
    reports as ``FileNotFoundError`` too (and s3fs does the same), so ``exists()`` is false and
    ``open()`` raises ``FileNotFoundError``; the error's ``code`` still tells the two apart.
    """
    if not isinstance(error, S3Exception):
        return False
    return error.code in _NOT_FOUND_CODES or (error.code is None and error.status == 404)


def describe(bucket: str | None, key: str | None) -> str:
    if bucket is None:
        return ""
    return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"


def service_error(
    *,
    operation: str,
    bucket: str | None,
    key: str | None,
    code: str | None,
    message: str | None,
    request_id: str | None,
    status: int | None,
) -> S3Exception:
    """Build the exception for an error response, keeping the upstream text where there is one."""
    if status == 404 and operation in ("HeadObject", "CopyObject"):
        # HEAD has no body to carry a code, and upstream reports both cases with this text.
        text = _NOT_FOUND_TEXT
    elif code in _UPSTREAM_TEXTS:
        text = _UPSTREAM_TEXTS[code]
    elif code in _CREATE_ONLY_TEXTS and operation in _CREATE_ONLY_OPERATIONS:
        text = _CREATE_ONLY_TEXTS[code]
    elif code == "PreconditionFailed":
        return ObjectChangedError(
            f"Service error: The object changed while it was being read ({operation} {describe(bucket, key)},"
            f" request id {request_id}): read it again",
            bucket=bucket,
            key=key,
            code=code,
            request_id=request_id,
            status=status,
        )
    else:
        detail = message or "no message"
        text = f"Service error: {code or f'HTTP {status}'}: {detail}"
    details = ", ".join(
        part
        for part in (
            f"{operation} {describe(bucket, key)}".strip(),
            f"code {code}" if code else "",
            f"status {status}" if status else "",
            f"request id {request_id}" if request_id else "",
        )
        if part
    )
    return S3Exception(
        f"{text} ({details})",
        bucket=bucket,
        key=key,
        code=code,
        request_id=request_id,
        status=status,
    )


def client_error(message: str, *, operation: str, bucket: str | None, key: str | None) -> S3Exception:
    """The ``S3Exception`` for an error on our side of the wire (network, credentials, endpoint, an
    answer shorter than asked): ``"Client error: <message> (<operation> s3://bucket/key)"``,
    naming the object in ``bucket`` and ``key``, as every s3torch distribution reports them."""
    where = f"{operation} {describe(bucket, key)}".strip()
    return S3Exception(f"Client error: {message} ({where})", bucket=bucket, key=key)


# ---- translation of what S3, botocore and the network say -------------------------------------


def _error_fields(payload: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError:
        return None, None, None
    return root.findtext("Code"), root.findtext("Message"), root.findtext("RequestId")


def _translate_client_error(error: ClientError, operation: str, bucket: str | None, key: str | None) -> S3Exception:
    response: Any = error.response
    details = response.get("Error", {})
    metadata = response.get("ResponseMetadata", {})
    status = metadata.get("HTTPStatusCode")
    code = details.get("Code")
    if code is not None and code.isdigit():  # HEAD errors carry only the status
        code = {"404": "NotFound", "403": "Forbidden", "412": "PreconditionFailed"}.get(code, code)
    return service_error(
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
        message=details.get("Message"),
        request_id=metadata.get("RequestId"),
        status=status,
    )


def error_of(operation: str, bucket: str, key: str, method: str, response: RawResponse) -> S3Exception:
    """The exception for an error ``response`` (its body read, bounded, and its connection released)."""
    body = response.body
    payload = b""
    if body is not None:
        payload = body.read_bounded(ERROR_BODY_BYTES) if method != "HEAD" else b""
        body.release_conn()
    code, message, body_request_id = _error_fields(payload)
    return service_error(
        operation=operation,
        bucket=bucket,
        key=key,
        code=code,
        message=message,
        request_id=response.request_id or body_request_id,
        status=response.status,
    )


def translate(error: Exception, operation: str, bucket: str | None, key: str | None) -> S3Exception:
    """Turn a botocore or connection error into the public exception."""
    if isinstance(error, S3Exception):
        return error
    if isinstance(error, ClientError):
        return _translate_client_error(error, operation, bucket, key)
    if isinstance(error, NoCredentialsError):
        return client_error("No signing credentials found", operation=operation, bucket=bucket, key=key)
    return client_error(f"{type(error).__name__}: {error}", operation=operation, bucket=bucket, key=key)
