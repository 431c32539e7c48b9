"""s3torch.lightning: Lightning checkpoints straight to S3 (upstream: ``s3torchconnector.lightning``).

``S3LightningCheckpoint`` is a Lightning ``CheckpointIO`` plugin. Without s3fs installed,
importing this package also serves fsspec's ``s3://`` protocol (which Lightning uses for its own
listings, logs and ``load_from_checkpoint``) with the same client: see ``s3torch.readers._fsspec``.
"""

from s3torch.readers import _fsspec

from ._checkpoint import S3LightningCheckpoint

_fsspec.register()

__all__ = ["S3LightningCheckpoint"]
