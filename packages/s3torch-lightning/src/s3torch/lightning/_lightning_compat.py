"""Everything s3torch-lightning relies on that differs between Lightning releases, in one place.

Supported: Lightning 2.4 (the oldest whose ``import lightning`` works in a clean virtualenv:
2.3 and older need ``pkg_resources`` and 2.0-2.2 an old FastAPI) to the newest, each end tested
by the CI matrix. What differs:

* ``CheckpointIO.load_checkpoint`` takes ``weights_only`` from Lightning 2.6 on
  (``WEIGHTS_ONLY_PASSED_FROM``); before, Lightning loaded with ``weights_only=False``;
* ``AsyncCheckpointIO`` copies the checkpoint's tensors on the caller's thread from 2.5.4 on
  (``ASYNC_SAVE_SNAPSHOTS_FROM``); before, it saves them as they are when its thread runs.

``tests/test_lightning_compat.py`` checks the hooks we implement against the installed Lightning.
"""

from __future__ import annotations

import re

import lightning

from s3torch.client import UserAgent

#: From this release on, Lightning passes ``weights_only`` to ``CheckpointIO.load_checkpoint``
#: and its checkpoints load with torch's own default.
WEIGHTS_ONLY_PASSED_FROM = (2, 6)

#: From this release on, ``AsyncCheckpointIO.save_checkpoint`` clones the checkpoint's tensors
#: before handing them to its thread, so a training step that follows cannot change what is saved.
ASYNC_SAVE_SNAPSHOTS_FROM = (2, 5, 4)


def lightning_version() -> tuple[int, int, int]:
    """(major, minor, patch) of the Lightning imported now (read at each call, never cached)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", lightning.__version__)
    if match is None:  # an unversioned development build: assume a recent one
        return (999, 0, 0)
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


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
