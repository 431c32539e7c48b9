"""Shared helpers of the integration tests: the S3 server or bucket they run against, and a
fault-injecting TCP proxy. The fixtures built on them live in ``integration-tests/conftest.py``;
what the unit tests share with them (the moto server, payloads, the AWS environment) comes from
the shared test support, ``s3torch_test_support``, re-exported here where the tests import it."""

from s3torch_test_support import MIB, PART, MotoServer, force_get_mode, payload

from .fault_proxy import FaultProxy, RecordedRequest, Rule, object_gets, part_uploads
from .s3env import MOTO_REGION, S3Location, S3TestEnv, is_multipart_etag, md5_etag

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
