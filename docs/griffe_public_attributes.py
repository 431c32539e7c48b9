"""A griffe extension for the API reference: an instance attribute without a docstring is an
implementation detail (``self.fs``, ``self.path`` set in ``__init__``), so it is not rendered.
Documented attributes and properties (``S3Client.region``, ``S3ClientConfig.concurrency``) stay.
"""

from __future__ import annotations

from typing import Any

import griffe


class PublicAttributesOnly(griffe.Extension):
    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if "dataclass" in cls.labels or any("dataclass" in str(d.value) for d in cls.decorators):
            return  # a dataclass's fields make its signature, documented or not
        for name, member in list(cls.members.items()):
            # Only ``self.x = ...`` of methods: class-level fields (dataclasses, named tuples)
            # and properties are the class's interface, documented or not.
            if member.is_alias or not member.is_attribute or member.docstring:
                continue
            # A dataclass field carries both labels: it is a class-level field, so it stays.
            labels = member.labels
            if "instance-attribute" in labels and not labels & {"class-attribute", "property"}:
                del cls.members[name]
