"""The scenario modules, imported in table order; each registers its scenarios on import.

Later rows (readers, datasets, checkpoints) are new modules added to ``MODULES``.
"""

from __future__ import annotations

import importlib

MODULES = ("reads", "ranges", "small_objects", "writes", "datasets", "scaling", "lightning", "checkpoints")


def load() -> dict[str, str]:
    """Import every module; returns the ones that could not be imported (a distribution they
    need is not installed), by name, with the reason: their rows are reported as skipped."""
    failed: dict[str, str] = {}
    for name in MODULES:
        try:
            importlib.import_module(f"scenarios.{name}")
        except ImportError as error:
            failed[name] = f"{type(error).__name__}: {error}"
    return failed
