"""The botocore sessions of s3torch's transports: what they read from disk is read once per process.

Two costs of a botocore client are paid per process and per object, and are cut here:

* **Model data**: a client's service model, endpoint rules and partitions are JSON files that
  take about 0.1 s of CPU to load, each time a *session* builds its first client (the cache
  lives in the session's data loader). Every transport has its own session, and a DataLoader
  worker forked from a process that already loaded them started from nothing again, each epoch,
  before its first sample. Here every session of the process uses one data loader per data path
  (botocore's public ``register_component``); a forked child inherits its cache. The loaded data
  is read-only: botocore already shares it between the clients of one session.
  ``preload_model_data`` fills it ahead of a fork.
* **Timestamps**: botocore parses each timestamp of a response with ``dateutil``, about 0.3 ms
  of CPU apiece, which made a 1,000-key ListObjectsV2 page cost 0.3 s, as much CPU as reading the
  1,000 objects. S3's XML timestamps are ISO 8601 (``2026-12-07T05:41:13.000Z``), which
  ``datetime.fromisoformat`` parses in a microsecond; anything else (HTTP dates in headers,
  epoch numbers) still goes to botocore's parser (``set_parser_defaults`` is botocore's public
  way to choose it).
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import botocore
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError
from botocore.utils import parse_timestamp

__all__ = ["new_session", "parse_response_timestamp", "preload_model_data"]

logger = logging.getLogger(__name__)

# One data loader per AWS_DATA_PATH value (None: botocore's own data), for the whole process and
# the children it forks. Two threads racing on a first use may each build one; one wins, the
# other is used once: no lock, so a fork can never inherit one held.
_loaders: dict[Any, botocore.loaders.Loader] = {}
# The profiles whose model data this process (or the one it was forked from) preloaded.
_preloaded: set[str | None] = set()


def parse_response_timestamp(value: Any) -> datetime.datetime:
    """A timestamp of an S3 response, timezone-aware as botocore's parser makes it."""
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value.endswith("Z"):
        try:
            parsed = datetime.datetime.fromisoformat(value[:-1] + "+00:00")
        except ValueError:
            pass
        else:
            return parsed
    result: datetime.datetime = parse_timestamp(value)
    return result


def new_session(profile: str | None) -> botocore.session.Session:
    """A botocore session for ``profile`` using the process's data loader and the fast timestamp
    parser. Raises botocore's ``ProfileNotFound`` for a profile that does not exist."""
    session = botocore.session.Session(profile=profile)
    data_path = session.get_config_variable("data_path")
    loader = _loaders.get(data_path)
    if loader is None:
        loader = _loaders.setdefault(data_path, botocore.loaders.create_loader(data_path))
    session.register_component("data_loader", loader)
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_response_timestamp)
    return session


def preload_model_data(profile: str | None, region: str) -> None:
    """Load what an S3 client of ``profile`` reads from disk into the process's data loader, now:
    no credentials are looked up and nothing is sent. Processes forked afterwards inherit it.

    Only an optimisation: when botocore cannot build the client (a profile that does not exist,
    say), nothing is loaded and the same error is raised where the transport is first used."""
    if profile in _preloaded:
        return
    try:
        session = new_session(profile)
        session.create_client("s3", region_name=region, config=Config(signature_version=botocore.UNSIGNED))
    except BotoCoreError as error:
        logger.debug("botocore's S3 model data not preloaded: %s", error)
        return
    _preloaded.add(profile)
