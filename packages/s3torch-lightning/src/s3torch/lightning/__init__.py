"""s3torch.lightning: Lightning checkpoints straight to S3 (upstream: ``s3torchconnector.lightning``).

``S3LightningCheckpoint`` is a Lightning ``CheckpointIO`` plugin. Without s3fs installed,
importing this package also serves fsspec's ``s3://`` protocol (which Lightning uses for its own
listings, logs and ``load_from_checkpoint``) with the same client: see ``s3torch.readers.fsspec``.
"""

from s3torch.readers import fsspec as readers_fsspec

from ._checkpoint import S3LightningCheckpoint

readers_fsspec.register()

__all__ = ["S3LightningCheckpoint"]
