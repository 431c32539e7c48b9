"""s3torch's shared test support (dev-only, never released): the pytest plugin's helpers, and the
one moto server starter of the tests, the demo and the benchmarks."""

from ._aws import DUMMY_CREDENTIALS, REGION, boto3_client, isolate_aws_environment
from ._bucket import MOCK_BUCKET, MotoBucket, moto_backend
from ._data import MIB, PART, RANGES_AROUND_PARTS, THREE_PART_SIZE, payload
from ._get_mode import force_get_mode
from .moto_server import MotoServer, MotoServerError

__all__ = [
    "DUMMY_CREDENTIALS",
    "MIB",
    "MOCK_BUCKET",
    "PART",
    "RANGES_AROUND_PARTS",
    "REGION",
    "THREE_PART_SIZE",
    "MotoBucket",
    "MotoServer",
    "MotoServerError",
    "boto3_client",
    "force_get_mode",
    "isolate_aws_environment",
    "moto_backend",
    "payload",
]
