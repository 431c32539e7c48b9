"""AWS Signature Version 4 for the data path, with the derived signing key cached.

botocore's signer re-derives the key (four HMACs) and rebuilds its canonical forms through
several layers on every request; for a 100 KiB GET that is most of the client's CPU. Here
the key is derived once per (secret, day, region, service) and the canonical request is a
single string. The control path keeps using botocore's own signer.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import NamedTuple
from urllib.parse import quote

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
#: Standard headers signed when present, besides ``host`` and every ``x-amz-*``: a write's
#: condition must not be strippable in transit (botocore signs it too).
SIGNED_STANDARD_HEADERS = frozenset({"if-none-match"})


class Credentials(NamedTuple):
    access_key: str
    secret_key: str
    token: str | None


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_query(params: dict[str, str]) -> str:
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in sorted(params.items()))


class SigV4Signer:
    """Signs requests for one region and service; thread-safe (its cache is a plain dict
    whose single-key writes are atomic under the GIL)."""

    def __init__(self, region: str, service: str = "s3") -> None:
        self._region = region
        self._service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret_key: str, datestamp: str) -> bytes:
        cache_key = (secret_key, datestamp)
        key = self._keys.get(cache_key)
        if key is None:
            key = _hmac(("AWS4" + secret_key).encode(), datestamp)
            key = _hmac(key, self._region)
            key = _hmac(key, self._service)
            key = _hmac(key, "aws4_request")
            if len(self._keys) > 8:  # old days and rotated secrets
                self._keys.clear()
            self._keys[cache_key] = key
        return key

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query: str,
        headers: dict[str, str],
        credentials: Credentials,
        payload_hash: str = UNSIGNED_PAYLOAD,
        now: float | None = None,
    ) -> None:
        """Add ``x-amz-date``, ``x-amz-content-sha256``, the session token and
        ``Authorization`` to ``headers``. ``path`` and ``query`` are as sent on the wire
        (already percent-encoded). Headers named ``x-amz-*``, ``host`` and those of
        ``SIGNED_STANDARD_HEADERS`` are signed."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        datestamp = amz_date[:8]
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_hash
        if credentials.token:
            headers["x-amz-security-token"] = credentials.token
        signed = {"host": host}
        for name, value in headers.items():
            lower = name.lower()
            if lower.startswith("x-amz-") or lower in SIGNED_STANDARD_HEADERS:
                signed[lower] = value.strip()
        names = sorted(signed)
        signed_headers = ";".join(names)
        canonical_headers = "".join(f"{name}:{signed[name]}\n" for name in names)
        canonical_request = f"{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        scope = f"{datestamp}/{self._region}/{self._service}/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(credentials.secret_key, datestamp), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope},"
            f" SignedHeaders={signed_headers}, Signature={signature}"
        )
