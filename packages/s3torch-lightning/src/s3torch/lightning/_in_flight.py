"""Saves in progress, so that removing a checkpoint waits for the save of that same object.

Lightning's ``AsyncCheckpointIO`` runs ``save_checkpoint`` on a worker thread but
``remove_checkpoint`` on the caller's, so ``ModelCheckpoint(save_top_k=...)`` can delete a
checkpoint whose upload is still running; the upload then completes and publishes it again, an
orphan the callback no longer knows about. Waiting for the save of the same object closes that
race for the save running at the time. (A save still queued behind another in
``AsyncCheckpointIO``'s executor is invisible here; the wait keeps the queue short.)
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


class InFlightSaves:
    """Counts the saves running per object; ``wait_until_saved`` blocks while one runs."""

    def __init__(self) -> None:
        self._running: Counter[tuple[str, str]] = Counter()
        self._changed = threading.Condition()

    @contextmanager
    def saving(self, bucket: str, key: str) -> Iterator[None]:
        with self._changed:
            self._running[bucket, key] += 1
        try:
            yield
        finally:
            with self._changed:
                self._running[bucket, key] -= 1
                if not self._running[bucket, key]:
                    del self._running[bucket, key]
                self._changed.notify_all()

    def wait_until_saved(self, bucket: str, key: str) -> None:
        with self._changed:
            self._changed.wait_for(lambda: (bucket, key) not in self._running)
