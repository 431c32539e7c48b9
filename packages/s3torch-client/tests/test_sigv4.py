"""The lean SigV4 signer produces exactly botocore's ``S3SigV4Auth`` signature."""

from __future__ import annotations

import calendar
import datetime
from urllib.parse import quote

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials as BotocoreCredentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torch.client._sigv4 import UNSIGNED_PAYLOAD, Credentials, SigV4Signer, canonical_query

NOW = datetime.datetime(2024, 2, 29, 23, 59, 58)
NOW_EPOCH = calendar.timegm(NOW.timetuple())
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_authorization(
    method: str,
    host: str,
    path: str,
    query: str,
    headers: dict[str, str],
    region: str,
    token: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[str, dict[str, str]]:
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda *args, **kwargs: NOW)
    url = f"https://{host}{path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={"x-amz-content-sha256": UNSIGNED_PAYLOAD, **headers})
    # What botocore's client does for S3 over HTTPS without payload signing.
    request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    signer = botocore_auth.S3SigV4Auth(BotocoreCredentials(ACCESS_KEY, SECRET_KEY, token), "s3", region)
    signer.add_auth(request)
    return request.headers["Authorization"], dict(request.headers.items())


def ours(
    method: str, host: str, path: str, query: str, headers: dict[str, str], region: str, token: str | None
) -> dict[str, str]:
    signed = dict(headers)
    SigV4Signer(region, "s3").sign(
        method, host, path, query, signed, Credentials(ACCESS_KEY, SECRET_KEY, token), now=NOW_EPOCH
    )
    return signed


CASES = [
    pytest.param("GET", "/bucket/plain.bin", {}, {}, None, id="get"),
    pytest.param(
        "GET", "/bucket/" + quote("dir/a b+c=d&e~f(ü)'*!.bin", safe="/~"), {}, {}, None, id="special-characters"
    ),
    pytest.param(
        "PUT",
        "/bucket/" + quote("ckpt/shard 1.pt", safe="/~"),
        {"partNumber": "2", "uploadId": "VXBsb2FkIElEIGZvciBlbHZpbmc+/=="},
        {},
        None,
        id="upload-part",
    ),
    pytest.param("GET", "/bucket/key", {}, {"x-amz-request-payer": "requester"}, None, id="requester-pays"),
    pytest.param(
        "PUT", "/bucket/key", {}, {"x-amz-storage-class": "STANDARD_IA"}, "FwoGZXIvYXdzEJr//////////token=", id="token"
    ),
    pytest.param("GET", "/", {"list-type": "2", "prefix": "a/b c", "max-keys": "1000"}, {}, "session", id="query"),
    pytest.param("PUT", "/bucket/key", {}, {"If-None-Match": "*"}, None, id="create-only"),
]


@pytest.mark.parametrize(("method", "path", "params", "headers", "token"), CASES)
def test_signature_matches_botocore(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    token: str | None,
) -> None:
    host = "bucket-host.s3.eu-west-1.amazonaws.com"
    query = canonical_query(params) if params else ""
    expected, botocore_headers = botocore_authorization(
        method, host, path, query, headers, "eu-west-1", token, monkeypatch
    )
    signed = ours(method, host, path, query, headers, "eu-west-1", token)
    assert signed["Authorization"] == expected
    assert signed["x-amz-date"] == botocore_headers["X-Amz-Date"] == "20240229T235958Z"
    assert signed["x-amz-content-sha256"] == UNSIGNED_PAYLOAD
    if token:
        assert signed["x-amz-security-token"] == token == botocore_headers["X-Amz-Security-Token"]
    else:
        assert "x-amz-security-token" not in signed


def test_user_agent_is_not_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore never signs User-Agent; neither do we, so the two agree with it present.
    headers = {"User-Agent": "s3torch-client/1 ua/2.1"}
    expected, _ = botocore_authorization("GET", "h.example", "/b/k", "", headers, "us-east-1", None, monkeypatch)
    assert ours("GET", "h.example", "/b/k", "", headers, "us-east-1", None)["Authorization"] == expected
    assert "user-agent" not in expected


def test_a_write_condition_is_signed() -> None:
    signed = ours("PUT", "h.example", "/b/k", "", {"If-None-Match": "*"}, "us-east-1", None)
    assert "SignedHeaders=host;if-none-match;x-amz-content-sha256;x-amz-date," in signed["Authorization"]


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40),
    upload_id=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30),
)
def test_any_key_and_query_match_botocore(key: str, upload_id: str) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        path = "/bucket/" + quote(key, safe="/~")
        query = canonical_query({"partNumber": "7", "uploadId": upload_id})
        expected, _ = botocore_authorization("PUT", "127.0.0.1:9000", path, query, {}, "us-east-1", None, monkeypatch)
        assert ours("PUT", "127.0.0.1:9000", path, query, {}, "us-east-1", None)["Authorization"] == expected


def test_signing_key_is_cached_per_day_and_secret() -> None:
    signer = SigV4Signer("us-east-1")
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, None)
    for _ in range(3):
        signer.sign("GET", "h", "/b/k", "", {}, credentials, now=NOW_EPOCH)
    assert len(signer._keys) == 1
    signer.sign("GET", "h", "/b/k", "", {}, credentials, now=NOW_EPOCH + 86_400)
    signer.sign("GET", "h", "/b/k", "", {}, Credentials(ACCESS_KEY, "rotated", None), now=NOW_EPOCH)
    assert len(signer._keys) == 3
    for day in range(20):  # bounded: old days are dropped
        signer.sign("GET", "h", "/b/k", "", {}, credentials, now=NOW_EPOCH + day * 86_400)
    assert len(signer._keys) <= 9
