"""s3torch.dcp: PyTorch checkpoints on S3 (upstream: ``s3torchconnector.dcp`` and ``S3Checkpoint``).

* ``S3Checkpoint``: readers and writers of single objects for ``torch.load`` / ``torch.save``.
* ``S3StorageWriter``, ``S3StorageReader`` and ``S3FileSystem``: storage for
  ``torch.distributed.checkpoint`` (``save``, ``async_save``, ``load``).
* Prefix strategies: where each rank's files go under the checkpoint path.

Without s3fs installed, importing this package also serves fsspec's ``s3://`` protocol with
s3torch (``s3torch.readers.fsspec``), so that ``dcp.save(sd, checkpoint_id="s3://...")`` and
``dcp.load`` without a storage, which torch sends to its ``FsspecWriter``/``FsspecReader``, work.
"""

# The five distributions are released together and pin each other exactly: one version.
from s3torch.client import __version__
from s3torch.readers import fsspec as readers_fsspec

from ._checkpoint import S3Checkpoint
from ._file_system import S3FileSystem
from ._prefix_strategy import (
    BinaryPrefixStrategy,
    DefaultPrefixStrategy,
    HexPrefixStrategy,
    NumericPrefixStrategy,
    RoundRobinPrefixStrategy,
    S3PrefixStrategyBase,
)
from ._storage_reader import CheckpointNotFoundError, S3StorageReader
from ._storage_writer import IncompleteSaveError, S3StorageWriter

readers_fsspec.register()

__all__ = [
    "BinaryPrefixStrategy",
    "CheckpointNotFoundError",
    "DefaultPrefixStrategy",
    "HexPrefixStrategy",
    "IncompleteSaveError",
    "NumericPrefixStrategy",
    "RoundRobinPrefixStrategy",
    "S3Checkpoint",
    "S3FileSystem",
    "S3PrefixStrategyBase",
    "S3StorageReader",
    "S3StorageWriter",
    "__version__",
]
