"""Helpers of the s3torch-lightning unit tests (the fixtures built on them are in ``conftest.py``)."""

from __future__ import annotations

from s3torch_test_support import MIB, MOCK_BUCKET, PART, REGION, MotoBucket

__all__ = ["BUCKET", "MIB", "PART", "REGION", "Bucket"]

BUCKET = MOCK_BUCKET
#: The shared bucket helper, under the name these tests know it by.
Bucket = MotoBucket
