"""s3torch.datasets: PyTorch datasets over S3 objects (upstream: ``S3MapDataset`` and
``S3IterableDataset`` of ``s3torchconnector``), with prefetching, deterministic shuffling and
resumable iteration."""

from importlib import metadata as _metadata

from s3torch.client import parse_s3_uri

from ._common import S3BucketKeyData
from ._iterable import S3IterableDataset
from ._map import S3MapDataset
from ._prefetch import DEFAULT_PREFETCH

try:
    __version__ = _metadata.version("s3torch-datasets")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_PREFETCH",
    "S3BucketKeyData",
    "S3IterableDataset",
    "S3MapDataset",
    "__version__",
    "parse_s3_uri",
]
