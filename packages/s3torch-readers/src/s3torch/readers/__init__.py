"""s3torch.readers: file-like readers of S3 objects (upstream: ``s3torchconnector.s3reader``)."""

from ._base import S3Reader
from ._constructor import DCPOptimizedConstructor, S3ReaderConstructor, check_reader_constructor
from ._dcp_optimized import DCPOptimizedS3Reader
from ._protocol import DCPS3ReaderConstructorProtocol, ItemStream, ItemStreamReader, S3ReaderConstructorProtocol
from ._ranged import DEFAULT_BUFFER_SIZE, RangedS3Reader
from ._ranges import DEFAULT_MAX_GAP_SIZE, ItemRange, RangeGroup, coalesce
from ._sequential import SequentialS3Reader
from ._stream import GetStreamCallable, ObjectInfoCallable, ObjectSize

__all__ = [
    "DCPOptimizedConstructor",
    "DCPOptimizedS3Reader",
    "DCPS3ReaderConstructorProtocol",
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_GAP_SIZE",
    "GetStreamCallable",
    "ObjectInfoCallable",
    "ObjectSize",
    "ItemRange",
    "ItemStream",
    "ItemStreamReader",
    "RangeGroup",
    "RangedS3Reader",
    "S3Reader",
    "S3ReaderConstructor",
    "S3ReaderConstructorProtocol",
    "SequentialS3Reader",
    "check_reader_constructor",
    "coalesce",
]
