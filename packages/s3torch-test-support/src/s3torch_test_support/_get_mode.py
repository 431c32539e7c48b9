"""Forcing one path of s3torch-client's adaptive GET, whatever the server's speed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the demo and the benchmarks import this package without pytest
    import pytest


def force_get_mode(monkeypatch: pytest.MonkeyPatch, mode: str) -> dict[str, Any]:
    """Make every ``GetObjectStream`` take one path, and return the ``S3ClientConfig`` settings
    that go with it.

    ``"serial"``: the first part, then one GET for the rest. ``"parallel"``: ``part_size`` GETs.
    """
    from s3torch.client import _get_stream

    if mode == "parallel":
        monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", 0.0)
        return {}
    if mode != "serial":
        raise ValueError(f"mode must be 'serial' or 'parallel', got {mode!r}")
    monkeypatch.setattr(_get_stream, "LATENCY_THRESHOLD_SECONDS", float("inf"))
    # The rate test then asks only 62.5 kB/s of the first part, which any local server beats.
    return {"throughput_target_gbps": 0.001}
