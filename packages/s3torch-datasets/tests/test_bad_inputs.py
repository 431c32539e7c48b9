"""Bad inputs to the datasets, as one table: each raises a ValueError or TypeError naming the
argument when the dataset is built (not later, in a DataLoader worker)."""

# ruff: noqa: E501  (a table reads best one case per line)

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from s3torch.client import S3ClientConfig
from s3torch.datasets import S3IterableDataset, S3MapDataset
from s3torch.readers import S3ReaderConstructor

REGION = "us-east-1"
URI = "s3://bucket/prefix/"


def prefix(dataset: Any = S3MapDataset, uri: Any = URI, **options: Any) -> Any:
    options.setdefault("region", REGION)
    return dataset.from_prefix(uri, **options)


def objects(uris: Any, **options: Any) -> Any:
    return S3IterableDataset.from_objects(uris, region=REGION, **options)


# (id, call, exception type, a regex the message must match)
BAD_INPUTS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # ---- URIs --------------------------------------------------------------------------------
    ("uri-no-scheme", lambda: prefix(uri="bucket/prefix"), ValueError, r"^Only s3:// URIs are supported, got 'bucket/prefix'$"),
    ("uri-s3a", lambda: prefix(S3IterableDataset, "s3a://bucket/p"), ValueError, r"^Only s3:// URIs are supported"),
    ("uri-none", lambda: prefix(uri=None), ValueError, r"^Only s3:// URIs are supported, got None$"),
    ("uri-empty", lambda: prefix(uri=""), ValueError, r"^Only s3:// URIs are supported"),
    ("uri-no-bucket", lambda: prefix(uri="s3:///key"), ValueError, r"^Bucket name must be non-empty, got 's3:///key'$"),
    ("objects-bucket-only", lambda: objects("s3://bucket"), ValueError, r"^Key must be non-empty: 's3://bucket' names a bucket, not an object$"),
    ("objects-int", lambda: objects([5]), ValueError, r"^Only s3:// URIs are supported, got 5$"),
    ("objects-none", lambda: objects(None), TypeError, r"object_uris must be a str or an iterable of str"),
    # ---- client settings ---------------------------------------------------------------------
    ("region-missing", lambda: prefix(region=None), ValueError, r"region should be specified"),
    ("region-empty", lambda: prefix(S3IterableDataset, region=""), ValueError, r"region should be specified"),
    ("region-int", lambda: prefix(region=1), TypeError, r"region must be a str"),
    ("region-crlf", lambda: prefix(S3IterableDataset, region="us-east-1\r\n"), ValueError, r"region must be a region name"),
    ("endpoint-int", lambda: prefix(endpoint=9000), TypeError, r"endpoint must be a URL \(str\) or None, got int"),
    ("s3client_config-dict", lambda: prefix(S3IterableDataset, s3client_config={"part_size": 1}), TypeError,
     r"s3client_config must be an S3ClientConfig or None, got dict"),
    ("s3client_config-throughput", lambda: prefix(s3client_config=S3ClientConfig(throughput_target_gbps="10")),
     TypeError, r"throughput_target_gbps must be a number"),
    # ---- options -----------------------------------------------------------------------------
    ("reader_constructor-str", lambda: prefix(reader_constructor="sequential"), TypeError,
     r"reader_constructor must be a reader constructor, not the string 'sequential': use S3ReaderConstructor\.sequential\(\)"),
    ("reader_constructor-str-iterable", lambda: objects("s3://b/k", reader_constructor="range_based"), TypeError,
     r"use S3ReaderConstructor\.range_based\(\)"),
    ("reader_constructor-factory", lambda: prefix(reader_constructor=S3ReaderConstructor.sequential), TypeError,
     r"call the factory, S3ReaderConstructor\.sequential\(\)"),
    ("reader_constructor-int", lambda: prefix(S3IterableDataset, reader_constructor=1), TypeError,
     r"reader_constructor must be a reader constructor or None, got int"),
    ("transform-str", lambda: prefix(transform="decode"), TypeError, r"transform must be callable, got str"),
    ("prefetch-negative", lambda: prefix(prefetch=-1), ValueError, r"prefetch must be an int >= 0"),
    ("prefetch-str", lambda: prefix(S3IterableDataset, prefetch="16"), ValueError, r"prefetch must be an int >= 0"),
    ("seed-str", lambda: prefix(seed="42"), TypeError, r"seed must be an int, got str"),
    ("seed-float", lambda: prefix(S3IterableDataset, seed=1.5), TypeError, r"seed must be an int, got float"),
    ("shuffle_buffer_size-zero", lambda: prefix(S3IterableDataset, shuffle=True, shuffle_buffer_size=0), ValueError,
     r"shuffle_buffer_size must be None or an int >= 1, got 0"),
    ("shuffle_buffer_size-without-shuffle", lambda: prefix(S3IterableDataset, shuffle_buffer_size=10), ValueError,
     r"shuffle_buffer_size is set but shuffle is False"),
    ("set_epoch-negative", lambda: prefix().set_epoch(-1), ValueError, r"epoch must be an int >= 0, got -1"),
    ("set_epoch-str", lambda: prefix(S3IterableDataset).set_epoch("1"), ValueError, r"epoch must be an int >= 0"),
    ("load_state_dict-empty", lambda: prefix(S3IterableDataset).load_state_dict({}), ValueError,
     r"not a state of S3IterableDataset"),
    ("load_state_dict-position", lambda: prefix(S3IterableDataset).load_state_dict({"epoch": 0, "seed": 0, "position": -2}),
     ValueError, r"position must be an int >= 0, got -2"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_a_bad_input_raises_a_clear_error(call: Callable[[], Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_an_index_of_the_wrong_type_names_it(bucket: Any) -> None:
    bucket.put("prefix/a", b"a")
    dataset = S3MapDataset.from_prefix(f"s3://{bucket.bucket}/prefix/", region=REGION)
    with pytest.raises(TypeError, match=r"S3MapDataset indices must be integers, not str"):
        dataset["0"]
    with pytest.raises(IndexError, match=r"S3MapDataset index 5 out of range for 1 objects"):
        dataset[5]
