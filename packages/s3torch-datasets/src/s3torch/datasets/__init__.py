"""s3torch.datasets: PyTorch datasets over S3 objects (upstream: ``S3MapDataset`` and
``S3IterableDataset`` of ``s3torchconnector``), with prefetching, deterministic shuffling and
resumable iteration."""

# The five distributions are released together and pin each other exactly: one version.
from s3torch.client import __version__, parse_s3_uri

from ._common import S3BucketKeyData
from ._iterable import S3IterableDataset
from ._map import S3MapDataset
from ._prefetch import DEFAULT_PREFETCH

__all__ = [
    "DEFAULT_PREFETCH",
    "S3BucketKeyData",
    "S3IterableDataset",
    "S3MapDataset",
    "__version__",
    "parse_s3_uri",
]
