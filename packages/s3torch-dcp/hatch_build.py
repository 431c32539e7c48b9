"""Metadata hook shared in shape by every s3torch distribution.

It reads the package's third-party requirements and the names of its sibling
distributions from ``[tool.hatch.metadata.hooks.custom]`` and pins each sibling
to exactly this release, so the five distributions always install in lockstep.

Every distribution carries its own identical copy: an sdist must contain its build hook, or
building the wheel from the sdist fails ("Build script does not exist").
"""

from __future__ import annotations

from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface


class SiblingPinHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        version = metadata["version"]
        dependencies = list(self.config.get("dependencies", []))
        dependencies += [f"{name}=={version}" for name in self.config.get("siblings", [])]
        metadata["dependencies"] = dependencies
        optional = self.config.get("optional-dependencies")
        if optional:
            metadata["optional-dependencies"] = dict(optional)
