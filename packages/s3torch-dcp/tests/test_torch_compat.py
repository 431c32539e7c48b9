"""The torch names ``s3torch.dcp._torch_compat`` relies on are there, with the shape it relies on,
in the installed torch. Run by every cell of the CI matrix (the oldest supported torch, the one
of the development venv, the newest released): a torch that renames or reshapes one of them
fails here, naming it, rather than in a user's checkpoint."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import queue

import pytest
import torch
from torch.distributed.checkpoint import filesystem

from s3torch.dcp import _torch_compat


def test_storage_prefix_is_a_dataclass_of_the_file_name_prefix() -> None:
    assert dataclasses.is_dataclass(_torch_compat.StoragePrefix)
    assert [field.name for field in dataclasses.fields(_torch_compat.StoragePrefix)] == ["prefix"]
    assert _torch_compat.StoragePrefix("__3_").prefix == "__3_"


def test_current_dcp_version_is_the_one_filesystem_writer_writes() -> None:
    assert isinstance(_torch_compat.CURRENT_DCP_VERSION, str)
    assert _torch_compat.CURRENT_DCP_VERSION == filesystem.CURRENT_DCP_VERSION


def test_every_parameter_of_write_files_from_queue_is_known() -> None:
    parameters = inspect.signature(_torch_compat.write_files_from_queue()).parameters
    unknown = set(parameters) - _torch_compat.KNOWN_FILE_WRITER_PARAMETERS
    assert not unknown, f"torch {torch.__version__}: new parameters of _write_files_from_queue: {sorted(unknown)}"


def test_file_writer_arguments_fill_every_required_parameter() -> None:
    known = {name: object() for name in _torch_compat.KNOWN_FILE_WRITER_PARAMETERS}
    arguments = _torch_compat.file_writer_arguments(known)
    assert arguments is not None
    required = {
        name
        for name, parameter in inspect.signature(_torch_compat.write_files_from_queue()).parameters.items()
        if parameter.default is inspect.Parameter.empty
    }
    assert required <= set(arguments)


def test_an_unknown_parameter_falls_back_to_torch_and_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def new_writer(file_queue: queue.Queue[object], new_required: int) -> None: ...

    monkeypatch.setattr(filesystem, "_write_files_from_queue", new_writer)
    with caplog.at_level(logging.WARNING, logger=_torch_compat.__name__):
        assert _torch_compat.file_writer_arguments({"file_queue": queue.Queue()}) is None
    assert "(parameter 'new_required')" in caplog.text


def test_dtype_to_storage_type_map_names_the_legacy_storages() -> None:
    names = _torch_compat.dtype_to_storage_type_map()
    assert names[torch.float32] == "FloatStorage"
    assert names[torch.int64] == "LongStorage"
    assert names[torch.bfloat16] == "BFloat16Storage"
    assert all(hasattr(torch, name) for name in names.values())


def test_narrow_tensor_by_index_takes_the_planned_slice() -> None:
    tensor = torch.arange(12).reshape(3, 4)
    narrowed = _torch_compat.narrow_tensor_by_index(tensor, torch.Size([1, 2]), torch.Size([2, 2]))
    assert torch.equal(narrowed, tensor[1:3, 2:4])


def test_metadata_path_of_global_and_rank_local_metadata() -> None:
    reader = filesystem.FileSystemReader("/checkpoints/step-1")
    assert str(_torch_compat.metadata_path(reader, None)).endswith("step-1/.metadata")
    assert str(_torch_compat.metadata_path(reader, 3)).endswith("step-1/__3.metadata")
