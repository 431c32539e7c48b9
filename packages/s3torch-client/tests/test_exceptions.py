"""The ``S3Exception`` family: upstream texts, fields, pickling."""

from __future__ import annotations

import pickle

import pytest

from s3torch.client import ObjectChangedError, S3ClientConfigError, S3Exception
from s3torch.client._exceptions import client_error, service_error


@pytest.mark.parametrize("cls", [S3Exception, ObjectChangedError, S3ClientConfigError])
def test_pickle_keeps_type_message_and_fields(cls: type[S3Exception]) -> None:
    error = cls(
        "Service error: something (GetObject s3://b/k)", bucket="b", key="k", code="C", request_id="R", status=4
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert copy.args == error.args
    assert str(copy) == str(error)
    assert (copy.bucket, copy.key, copy.code, copy.request_id, copy.status) == ("b", "k", "C", "R", 4)


def test_plain_message_pickles_with_empty_fields() -> None:
    copy = pickle.loads(pickle.dumps(S3Exception("Cannot write to closed object")))
    assert str(copy) == "Cannot write to closed object"
    assert (copy.bucket, copy.key, copy.code, copy.request_id, copy.status) == (None,) * 5


def test_hierarchy() -> None:
    assert issubclass(S3Exception, Exception)
    assert issubclass(ObjectChangedError, S3Exception)
    assert issubclass(S3ClientConfigError, S3Exception)
    assert issubclass(S3ClientConfigError, ValueError)


@pytest.mark.parametrize(
    ("operation", "code", "status", "text"),
    [
        ("GetObject", "NoSuchKey", 404, "Service error: The key does not exist"),
        ("GetObject", "NoSuchBucket", 404, "Service error: The bucket does not exist"),
        ("ListObjectsV2", "NoSuchBucket", 404, "Service error: The bucket does not exist"),
        ("DeleteObject", "NoSuchBucket", 404, "Service error: The bucket does not exist"),
        ("HeadObject", "NotFound", 404, "Service error: The object was not found"),
        ("HeadObject", None, 404, "Service error: The object was not found"),
        ("CopyObject", "NoSuchKey", 404, "Service error: The object was not found"),
        ("CopyObject", "NoSuchBucket", 404, "Service error: The object was not found"),
        ("GetObject", "AccessDenied", 403, "Service error: AccessDenied: Access Denied"),
        ("GetObject", None, 500, "Service error: HTTP 500: no message"),
    ],
)
def test_service_error_texts(operation: str, code: str | None, status: int, text: str) -> None:
    message = "Access Denied" if code == "AccessDenied" else None
    error = service_error(
        operation=operation, bucket="bkt", key="a/b", code=code, message=message, request_id="RID", status=status
    )
    assert type(error) is S3Exception
    assert str(error).startswith(text + " (")
    assert f"{operation} s3://bkt/a/b" in str(error)
    assert "request id RID" in str(error)
    assert (error.bucket, error.key, error.code, error.request_id, error.status) == ("bkt", "a/b", code, "RID", status)


def test_precondition_failed_is_object_changed() -> None:
    error = service_error(
        operation="GetObject", bucket="b", key="k", code="PreconditionFailed", message=None, request_id="R", status=412
    )
    assert isinstance(error, ObjectChangedError)
    assert "s3://b/k" in str(error)
    assert error.code == "PreconditionFailed"


def test_client_error_names_the_object_and_never_leaks_fields() -> None:
    error = client_error("connection reset", operation="UploadPart", bucket="b", key="k")
    assert str(error) == "Client error: connection reset (UploadPart s3://b/k)"
    assert (error.bucket, error.key, error.code, error.status) == ("b", "k", None, None)


def test_s3exception_takes_any_positional_arguments_like_exception() -> None:
    import pickle

    from s3torch.client import S3Exception

    error = S3Exception("foo", 1)
    assert error.args == ("foo", 1)
    assert S3Exception().args == ()
    copy = pickle.loads(pickle.dumps(S3Exception("foo", 1, bucket="b", key="k", code="C", request_id="r", status=5)))
    assert copy.args == ("foo", 1)
    assert (copy.bucket, copy.key, copy.code, copy.request_id, copy.status) == ("b", "k", "C", "r", 5)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, True),
        ("NoSuchBucket", 404, True),  # a missing top directory: FileNotFoundError for a file system
        ("NoSuchBucket", None, True),
        ("NotFound", None, True),
        (None, 404, True),  # HEAD: no body, no code
        ("NoSuchUpload", 404, False),  # a missing upload id is no missing file
        ("AccessDenied", 403, False),
        (None, None, False),
    ],
)
def test_is_not_found(code: str | None, status: int | None, expected: bool) -> None:
    from s3torch.client import S3Exception, is_not_found

    assert is_not_found(S3Exception("x", code=code, status=status)) is expected
    assert is_not_found(FileNotFoundError()) is False


def test_parse_s3_uri() -> None:
    from pathlib import Path

    from s3torch.client import parse_s3_uri

    assert parse_s3_uri("s3://bucket/some/key") == ("bucket", "some/key")
    assert parse_s3_uri("s3://bucket") == ("bucket", "")
    assert parse_s3_uri("s3://bucket/") == ("bucket", "")
    assert parse_s3_uri(Path("s3://bucket/k")) == ("bucket", "k")  # pathlib's s3:/ undone
    assert parse_s3_uri("s3://bucket/k", require_key=True) == ("bucket", "k")
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported, got 'gs://b/k'$"):
        parse_s3_uri("gs://b/k")
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported"):
        parse_s3_uri("s3:/b/k")  # a string is taken as it is
    with pytest.raises(ValueError, match=r"^Only s3:// URIs are supported"):
        parse_s3_uri(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Bucket name must be non-empty, got 's3:///k'$"):
        parse_s3_uri("s3:///k")
    with pytest.raises(ValueError, match=r"^Key must be non-empty: 's3://b/' names a bucket, not an object$"):
        parse_s3_uri("s3://b/", require_key=True)
