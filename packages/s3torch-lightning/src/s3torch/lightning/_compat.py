"""What depends on the installed Lightning: its version, the ``weights_only`` default, the User-Agent."""

from __future__ import annotations

import re

import lightning

from s3torch.client import UserAgent

#: From this release on, Lightning passes ``weights_only`` to ``CheckpointIO.load_checkpoint``
#: and its checkpoints load with torch's own default.
WEIGHTS_ONLY_PASSED_FROM = (2, 6)


def lightning_version() -> tuple[int, int]:
    """(major, minor) of the Lightning imported now (read at each call, never cached)."""
    match = re.match(r"(\d+)\.(\d+)", lightning.__version__)
    if match is None:  # an unversioned development build: assume a recent one
        return (999, 0)
    return int(match.group(1)), int(match.group(2))


def weights_only_default(weights_only: bool | None) -> bool | None:
    """The ``weights_only`` to give ``torch.load``: as passed, or, when ``None``, ``False`` for
    Lightning before 2.6 (whose checkpoints hold objects that torch >= 2.6 refuses by default;
    Lightning's own loader used ``False`` then) and ``None`` (torch's default) from 2.6 on."""
    if weights_only is None and lightning_version() < WEIGHTS_ONLY_PASSED_FROM:
        return False
    return weights_only


def lightning_user_agent() -> UserAgent:
    """``... (lightning; <lightning version>)``, as upstream."""
    return UserAgent(["lightning", lightning.__version__])
