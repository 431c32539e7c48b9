"""A griffe extension for the API reference: a public class's private base (``_ObjectFacts``,
``_S3DatasetBase``: one implementation shared by two public classes) is an implementation detail,
so its members are rendered as the class's own and it is not listed among the bases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import griffe


def _classes(obj: griffe.Object) -> Iterator[griffe.Class]:
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Class):
            yield member
        if isinstance(member, (griffe.Module, griffe.Class)):
            yield from _classes(member)


def _private_bases(cls: griffe.Class) -> Iterator[griffe.Class]:
    """The private classes among ``cls``'s bases, and among theirs, nearest first."""
    for base in cls.resolved_bases:
        if base.name.startswith("_"):
            yield base
            yield from _private_bases(base)


class PrivateBasesInlined(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for cls in _classes(pkg):
            private = list(_private_bases(cls))
            if not private:
                continue
            # In dataclass field order: the farthest base's members first, the class's own last.
            own = dict(cls.members)
            cls.members.clear()
            for base in reversed(private):
                for name, member in base.members.items():
                    if name not in own:
                        cls.members[name] = griffe.Alias(name, member, parent=cls, inherited=True)
            cls.members.update(own)
            cls.bases = [base for base in cls.bases if not str(base).split(".")[-1].startswith("_")]
