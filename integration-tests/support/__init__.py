"""Shared helpers of the integration tests: the S3 server or bucket they run against, and a
fault-injecting TCP proxy. The fixtures built on them live in ``integration-tests/conftest.py``."""

from .fault_proxy import FaultProxy, RecordedRequest, Rule, object_gets, part_uploads
from .s3env import (
    MIB,
    MOTO_REGION,
    PART,
    MotoServer,
    S3Location,
    S3TestEnv,
    force_get_mode,
    is_multipart_etag,
    md5_etag,
    payload,
)

__all__ = [
    "MIB",
    "MOTO_REGION",
    "PART",
    "FaultProxy",
    "MotoServer",
    "RecordedRequest",
    "Rule",
    "S3Location",
    "S3TestEnv",
    "force_get_mode",
    "is_multipart_etag",
    "md5_etag",
    "object_gets",
    "part_uploads",
    "payload",
]
