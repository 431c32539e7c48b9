"""s3torch.client: the S3 transport of s3torch, on boto3/botocore.

Upstream-compatible names: ``S3Client``, ``S3ClientConfig``, ``S3Writer``, ``S3Exception``,
``ObjectInfo``, ``HeadObjectResult``, ``RestoreStatus``, ``ListObjectResult``, ``UserAgent``.
``shared_executor(role)`` hands the other s3torch distributions the process's thread pools.
"""

from importlib import metadata as _metadata

from ._client import S3Client
from ._config import S3ClientConfig
from ._exceptions import ObjectChangedError, S3ClientConfigError, S3Exception, client_error, is_not_found
from ._get_stream import GetObjectStream
from ._list import ListObjectStream
from ._metrics import S3ClientMetrics
from ._put_stream import PutObjectStream
from ._resources import ExecutorRole, shared_executor
from ._types import HeadObjectResult, ListObjectResult, ObjectInfo, RestoreStatus
from ._uploads import MultipartUploadInfo
from ._uri import parse_s3_uri
from ._user_agent import UserAgent
from ._writer import S3Writer

try:
    __version__ = _metadata.version("s3torch-client")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "GetObjectStream",
    "HeadObjectResult",
    "ListObjectResult",
    "ExecutorRole",
    "ListObjectStream",
    "MultipartUploadInfo",
    "ObjectChangedError",
    "ObjectInfo",
    "PutObjectStream",
    "RestoreStatus",
    "S3Client",
    "S3ClientConfig",
    "S3ClientConfigError",
    "S3ClientMetrics",
    "S3Exception",
    "S3Writer",
    "UserAgent",
    "shared_executor",
    "__version__",
    "client_error",
    "is_not_found",
    "parse_s3_uri",
]
