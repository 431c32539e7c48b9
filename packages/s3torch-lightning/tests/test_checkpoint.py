"""``S3LightningCheckpoint``: the upstream contract (feature-map §2.7) on moto's in-process S3."""

from __future__ import annotations

import io
import pickle
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any
from unittest.mock import patch

import lightning
import pytest
import torch
from lightning.fabric.plugins import CheckpointIO as FabricCheckpointIO
from lightning.pytorch.plugins.io import AsyncCheckpointIO, CheckpointIO
from lightning_unit_support import MIB, PART, REGION, Bucket

from s3torch.client import S3ClientConfig, S3Exception, S3Writer
from s3torch.lightning import S3LightningCheckpoint
from s3torch.lightning._lightning_compat import ASYNC_SAVE_SNAPSHOTS_FROM, lightning_version
from s3torch.readers import fsspec as readers_fsspec

TYPE_ERROR = "is not a supported type for 'path'. Must be a string formatted as an S3 uri."


class NotAllowedByWeightsOnly:
    """A class torch.load(weights_only=True) refuses to rebuild."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotAllowedByWeightsOnly) and other.value == self.value

    __hash__ = None  # type: ignore[assignment]


def serialised(data: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


def deserialised(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), weights_only=False)


def assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected)
    elif isinstance(expected, torch.UntypedStorage):
        assert list(actual) == list(expected)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            assert_same(actual[key], value)
    else:
        assert actual == expected


VALUES = {
    "primitives": {"epoch": 3, "loss": 0.25, "name": "run", "flags": [True, None], "pair": (1, 2), "raw": b"\x00"},
    "tensor": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
    "untyped storage": torch.UntypedStorage([1, 2, 3]),  # type: ignore[no-untyped-call]
    "state dict": OrderedDict(weight=torch.ones(3, 2), bias=torch.zeros(3)),
    "nested": {"state_dict": {"layer.weight": torch.rand(4, 4)}, "optimizer_states": [{"lr": 0.1}], "step": 7},
}


# ---- the plugin -------------------------------------------------------------------------------


def test_is_a_lightning_checkpoint_io(checkpoint_io: S3LightningCheckpoint) -> None:
    assert isinstance(checkpoint_io, CheckpointIO)
    assert isinstance(checkpoint_io, FabricCheckpointIO)
    assert CheckpointIO is FabricCheckpointIO  # the one class the Trainer accepts


def test_constructor_arguments() -> None:
    config = S3ClientConfig(part_size=PART, force_path_style=True)
    checkpoint_io = S3LightningCheckpoint("eu-west-1", config, "http://127.0.0.1:9")
    assert checkpoint_io.region == "eu-west-1"
    assert checkpoint_io.endpoint == "http://127.0.0.1:9"
    assert checkpoint_io.s3client_config == config
    default = S3LightningCheckpoint(REGION, endpoint="https://s3.us-east-1.amazonaws.com")
    assert default.s3client_config == S3ClientConfig()


def test_user_agent_names_lightning() -> None:
    prefix = S3LightningCheckpoint(REGION)._client.user_agent_prefix
    assert prefix.startswith("s3torch-client/")
    assert prefix.endswith(f"(lightning; {lightning.__version__})")


def test_trainer_takes_it_as_its_checkpoint_io(checkpoint_io: S3LightningCheckpoint) -> None:
    trainer = lightning.Trainer(
        plugins=[checkpoint_io], accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    assert trainer.strategy.checkpoint_io is checkpoint_io


def test_teardown_does_nothing(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    checkpoint_io.teardown()
    checkpoint_io.teardown()
    checkpoint_io.save_checkpoint({"after": "teardown"}, bucket.uri("after.ckpt"))
    assert checkpoint_io.load_checkpoint(bucket.uri("after.ckpt")) == {"after": "teardown"}


def test_pickles_its_settings(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    copy = pickle.loads(pickle.dumps(checkpoint_io))
    assert (copy.region, copy.endpoint, copy.s3client_config) == (REGION, None, checkpoint_io.s3client_config)
    assert readers_fsspec.current_client() is copy._client  # the unpickled plugin serves fsspec's s3:// now
    copy.save_checkpoint({"copied": True}, bucket.uri("copy.ckpt"))
    assert checkpoint_io.load_checkpoint(bucket.uri("copy.ckpt")) == {"copied": True}


# ---- save and load ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_save_writes_what_torch_load_reads(checkpoint_io: S3LightningCheckpoint, bucket: Bucket, value: Any) -> None:
    checkpoint_io.save_checkpoint(value, bucket.uri("saved.ckpt"))
    assert_same(deserialised(bucket.read("saved.ckpt")), value)


@pytest.mark.parametrize("value", list(VALUES.values()), ids=list(VALUES))
def test_load_reads_what_torch_save_wrote(checkpoint_io: S3LightningCheckpoint, bucket: Bucket, value: Any) -> None:
    bucket.put("plain.pt", serialised(value))
    assert_same(checkpoint_io.load_checkpoint(bucket.uri("plain.pt")), value)


def test_large_checkpoint_is_a_multipart_upload(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    state = {"weights": torch.rand(3 * PART // 4), "step": 12}  # 15 MiB of float32
    checkpoint_io.save_checkpoint(state, bucket.uri("big.ckpt"))
    assert "-" in bucket.etag("big.ckpt")  # "<md5>-<parts>": a multipart upload
    assert bucket.uploads() == []
    assert_same(checkpoint_io.load_checkpoint(bucket.uri("big.ckpt")), state)


def test_load_passes_map_location(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    bucket.put("mapped.pt", serialised({"w": torch.ones(2)}))
    seen: list[str] = []

    def location(storage: Any, where: str) -> Any:
        seen.append(where)
        return storage

    assert_same(checkpoint_io.load_checkpoint(bucket.uri("mapped.pt"), map_location=location), {"w": torch.ones(2)})
    assert seen == ["cpu"]
    loaded = checkpoint_io.load_checkpoint(bucket.uri("mapped.pt"), map_location=torch.device("cpu"))
    assert loaded["w"].device == torch.device("cpu")


def test_overwrite_replaces_the_checkpoint(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    checkpoint_io.save_checkpoint({"step": 1}, bucket.uri("same.ckpt"))
    checkpoint_io.save_checkpoint({"step": 2}, bucket.uri("same.ckpt"))
    assert checkpoint_io.load_checkpoint(bucket.uri("same.ckpt")) == {"step": 2}


def test_storage_options_are_ignored(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    checkpoint_io.save_checkpoint({"a": 1}, bucket.uri("options.ckpt"), storage_options={"anything": 1})
    assert checkpoint_io.load_checkpoint(bucket.uri("options.ckpt")) == {"a": 1}


def test_load_of_a_missing_checkpoint_raises_the_upstream_error(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket
) -> None:
    with pytest.raises(S3Exception, match=r"^Service error: The key does not exist") as caught:
        checkpoint_io.load_checkpoint(bucket.uri("missing.ckpt"))
    assert (caught.value.code, caught.value.key) == ("NoSuchKey", "missing.ckpt")


# ---- a failed save publishes nothing ----------------------------------------------------------


@pytest.mark.parametrize("unpicklable", [threading.Lock(), lambda: None], ids=["lock", "lambda"])
def test_failed_torch_save_keeps_the_previous_checkpoint(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, unpicklable: Any
) -> None:
    good = {"weights": torch.rand(3 * PART // 4), "step": 1}  # multipart
    checkpoint_io.save_checkpoint(good, bucket.uri("model.ckpt"))
    before = bucket.read("model.ckpt")
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        checkpoint_io.save_checkpoint({"weights": torch.rand(10), "bad": unpicklable}, bucket.uri("model.ckpt"))
    assert bucket.read("model.ckpt") == before
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        checkpoint_io.save_checkpoint({"bad": unpicklable}, bucket.uri("never.ckpt"))
    assert bucket.list_keys() == ["model.ckpt"]
    assert bucket.uploads() == []


def test_failure_in_the_middle_of_a_multipart_save_aborts_it(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint_io.save_checkpoint({"step": 1}, bucket.uri("model.ckpt"))
    before = bucket.read("model.ckpt")
    original_write = S3Writer.write

    def failing_write(self: S3Writer, data: Any) -> int:
        if self.tell() > 2 * PART:  # parts are uploading by now
            raise ConnectionResetError("the network went away")
        return original_write(self, data)

    monkeypatch.setattr(S3Writer, "write", failing_write)
    # torch.save's own clean-up may fail next and raise a RuntimeError whose context is ours.
    with pytest.raises((ConnectionResetError, RuntimeError)) as caught:
        checkpoint_io.save_checkpoint({"weights": torch.rand(PART)}, bucket.uri("model.ckpt"))  # 20 MiB
    assert isinstance(caught.value, ConnectionResetError) or isinstance(caught.value.__context__, ConnectionResetError)
    assert bucket.read("model.ckpt") == before
    assert bucket.uploads() == []


def test_interrupt_during_save_publishes_nothing(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        args[1].write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_io.save_checkpoint({"step": 1}, bucket.uri("interrupted.ckpt"))
    assert bucket.list_keys() == []


# ---- weights_only -----------------------------------------------------------------------------


@pytest.mark.parametrize(("lightning_version", "expected"), [("2.5.0", False), ("2.5.6", False), ("2.6.0", None)])
def test_weights_only_default_depends_on_the_lightning_version(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, lightning_version: str, expected: bool | None
) -> None:
    bucket.put("w.pt", serialised({"w": torch.ones(2)}))
    with patch.object(lightning, "__version__", lightning_version), patch("torch.load", wraps=torch.load) as load:
        assert_same(checkpoint_io.load_checkpoint(bucket.uri("w.pt")), {"w": torch.ones(2)})
    assert load.call_args.kwargs["weights_only"] is expected


@pytest.mark.parametrize("lightning_version", ["2.5.0", "2.6.0"])
@pytest.mark.parametrize("weights_only", [True, False])
def test_explicit_weights_only_is_passed_through(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, lightning_version: str, weights_only: bool
) -> None:
    bucket.put("w.pt", serialised({"w": torch.ones(2)}))
    with patch.object(lightning, "__version__", lightning_version), patch("torch.load", wraps=torch.load) as load:
        checkpoint_io.load_checkpoint(bucket.uri("w.pt"), weights_only=weights_only)
    assert load.call_args.kwargs["weights_only"] is weights_only


def test_weights_only_true_refuses_arbitrary_objects(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    bucket.put("object.pt", serialised({"custom": NotAllowedByWeightsOnly(5)}))
    with pytest.raises(pickle.UnpicklingError, match=r"[Ww]eights only load failed"):
        checkpoint_io.load_checkpoint(bucket.uri("object.pt"), weights_only=True)
    assert checkpoint_io.load_checkpoint(bucket.uri("object.pt"), weights_only=False) == {
        "custom": NotAllowedByWeightsOnly(5)
    }


def test_before_lightning_2_6_arbitrary_objects_load_by_default(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket
) -> None:
    bucket.put("object.pt", serialised({"custom": NotAllowedByWeightsOnly(6)}))
    with patch.object(lightning, "__version__", "2.5.2"):
        assert checkpoint_io.load_checkpoint(bucket.uri("object.pt")) == {"custom": NotAllowedByWeightsOnly(6)}


# ---- remove -----------------------------------------------------------------------------------


def test_remove_deletes_the_object(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    checkpoint_io.save_checkpoint({"a": 1}, bucket.uri("gone.ckpt"))
    checkpoint_io.remove_checkpoint(bucket.uri("gone.ckpt"))
    assert bucket.list_keys() == []
    with pytest.raises(S3Exception, match=r"^Service error: The key does not exist"):
        checkpoint_io.load_checkpoint(bucket.uri("gone.ckpt"))


def test_remove_of_a_missing_checkpoint_is_not_an_error(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    checkpoint_io.remove_checkpoint(bucket.uri("never-written.ckpt"))
    checkpoint_io.remove_checkpoint(bucket.uri("never-written.ckpt"))


# ---- paths ------------------------------------------------------------------------------------

METHODS = {
    "save_checkpoint": lambda io_, path: io_.save_checkpoint({"a": 1}, path),
    "load_checkpoint": lambda io_, path: io_.load_checkpoint(path),
    "remove_checkpoint": lambda io_, path: io_.remove_checkpoint(path),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize(
    ("path", "type_name"),
    [
        (Path("bucket", "key"), "PosixPath" if sys.platform != "win32" else "WindowsPath"),
        (Path("/", "bucket", "key"), "PosixPath" if sys.platform != "win32" else "WindowsPath"),
        (["not", "a", "string"], "list"),
        (None, "NoneType"),
        (b"s3://bucket/key", "bytes"),
    ],
)
def test_a_path_that_is_not_a_string_is_a_type_error(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, method: str, path: Any, type_name: str
) -> None:
    with pytest.raises(TypeError) as caught:
        METHODS[method](checkpoint_io, path)
    assert str(caught.value) == f"'{type_name}' {TYPE_ERROR}"
    assert bucket.list_keys() == []


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/tmp/checkpoints/epoch=0.ckpt", "is not an S3 URI"),
        ("checkpoints/last.ckpt", "is not an S3 URI"),
        ("S3://bucket/key", "is not an S3 URI"),
        ("gs://bucket/key", "is not an S3 URI"),
        ("s3:/bucket/key", "is not an S3 URI"),
        ("s3://", "Bucket name must be non-empty"),
        ("s3:///key", "Bucket name must be non-empty"),
        ("s3://bucket", "names no object"),
        ("s3://bucket/", "names no object"),
        ("s3://bucket/prefix/", "names no object"),
    ],
)
def test_a_string_that_is_not_an_object_uri_is_a_value_error(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, method: str, path: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        METHODS[method](checkpoint_io, path)
    assert repr(path) in str(caught.value)
    assert bucket.list_keys() == []


# ---- AsyncCheckpointIO ------------------------------------------------------------------------


def test_async_checkpoint_io_round_trip(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    async_io = AsyncCheckpointIO(checkpoint_io)
    weights = torch.rand(3 * PART // 4)
    expected = weights.clone()
    async_io.save_checkpoint({"weights": weights, "step": 9}, bucket.uri("async.ckpt"))
    if lightning_version() >= ASYNC_SAVE_SNAPSHOTS_FROM:
        weights.add_(1)  # AsyncCheckpointIO saves a snapshot taken on this thread
    async_io.teardown()  # waits for the save
    loaded = async_io.load_checkpoint(bucket.uri("async.ckpt"))
    assert torch.equal(loaded["weights"], expected)
    assert loaded["step"] == 9
    async_io.remove_checkpoint(bucket.uri("async.ckpt"))
    assert bucket.list_keys() == []


def test_async_checkpoint_io_reports_a_failed_save(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    async_io = AsyncCheckpointIO(checkpoint_io)
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        # The error comes from teardown, or from save_checkpoint if the thread was that quick.
        async_io.save_checkpoint({"bad": threading.Lock()}, bucket.uri("async.ckpt"))
        async_io.teardown()
    assert bucket.list_keys() == []
    assert bucket.uploads() == []


# ---- packaging --------------------------------------------------------------------------------


def test_public_names() -> None:
    import s3torch.lightning

    assert s3torch.lightning.__all__ == ["S3LightningCheckpoint"]


def test_import_without_lightning_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [
        name for name in sys.modules if name == "lightning" or name.startswith(("lightning.", "s3torch.lightning"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lightning", None)
    with pytest.raises(ModuleNotFoundError, match="lightning"):
        import s3torch.lightning  # noqa: F401


def test_checkpoint_of_megabytes_round_trips(checkpoint_io: S3LightningCheckpoint, bucket: Bucket) -> None:
    state = {f"layer{index}": torch.rand(MIB // 16) for index in range(6)}  # 6 x 256 KiB
    checkpoint_io.save_checkpoint(state, bucket.uri("layers.ckpt"))
    assert_same(checkpoint_io.load_checkpoint(bucket.uri("layers.ckpt")), state)


def test_remove_waits_for_a_running_save_of_the_same_object(
    checkpoint_io: S3LightningCheckpoint, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AsyncCheckpointIO saves on a worker thread and removes on the caller's: a removal must not
    run before the upload it removes completes, or that upload publishes the object again."""
    started, release = threading.Event(), threading.Event()
    real_save = torch.save

    def slow_save(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        started.set()
        assert release.wait(10)
        real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", slow_save)
    saver = threading.Thread(target=checkpoint_io.save_checkpoint, args=({"step": 2}, bucket.uri("step2.ckpt")))
    saver.start()
    assert started.wait(10)
    checkpoint_io.remove_checkpoint(bucket.uri("other.ckpt"))  # another object's removal does not wait
    remover = threading.Thread(target=checkpoint_io.remove_checkpoint, args=(bucket.uri("step2.ckpt"),))
    remover.start()
    remover.join(0.3)
    assert remover.is_alive()  # waiting for the save
    release.set()
    saver.join(10)
    remover.join(10)
    assert not remover.is_alive()
    assert bucket.list_keys() == []  # saved, then removed: not resurrected
