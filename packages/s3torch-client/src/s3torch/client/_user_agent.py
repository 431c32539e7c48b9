"""The User-Agent prefix s3torch sends, in the upstream's layout."""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata

from ._arguments import check_header_value


@functools.cache
def package_version(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class UserAgent:
    """``s3torch-client/<version> ua/2.1 os/<os>#<release> lang/python#<ver> md/arch#<arch>
    [md/pytorch#<ver>] [(comment; comment)]``.

    Args:
        comments: What the calling component adds (for example ``["dcp", "2.13.0"]``); empty
            strings are dropped.

    Raises:
        ValueError: ``comments`` is not a list of strings, or a comment holds a CR or LF.
    """

    def __init__(self, comments: list[str] | None = None) -> None:
        if comments is not None and not (isinstance(comments, list) and all(isinstance(c, str) for c in comments)):
            raise ValueError("Argument comments must be a List[str]")
        for comment in comments or []:
            check_header_value("Argument comments", comment, " (the comments go into the User-Agent header)")
        self._comments = [c for c in comments or [] if c]

    @property
    def comments(self) -> list[str]:
        """The non-empty comments, in order."""
        return list(self._comments)

    @property
    def prefix(self) -> str:
        """The User-Agent text s3torch sends: the default prefix, then the comments."""
        prefix = self.get_default_prefix()
        if self._comments:
            prefix += f" ({'; '.join(self._comments)})"
        return prefix

    @classmethod
    def get_default_prefix(cls) -> str:
        """The prefix without comments: ``s3torch-client/<version> ua/2.1 os/<os>#<release>
        lang/python#<ver> md/arch#<arch> [md/pytorch#<ver>]`` (as the upstream's classmethod)."""
        system = sys.platform
        os_name = "macos" if system == "darwin" else system
        parts = [
            f"s3torch-client/{package_version('s3torch-client') or 'unknown'}",
            "ua/2.1",
            f"os/{os_name}#{platform.release()}",
            f"lang/python#{platform.python_version()}",
            f"md/arch#{platform.machine().lower()}",
        ]
        torch_version = package_version("torch")
        if torch_version:
            parts.append(f"md/pytorch#{torch_version}")
        return " ".join(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserAgent) and other._comments == self._comments

    def __hash__(self) -> int:
        return hash(tuple(self._comments))

    def __repr__(self) -> str:
        return f"UserAgent(comments={self._comments!r})"
