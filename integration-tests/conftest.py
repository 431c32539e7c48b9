"""Fixtures of the integration tests: real HTTP against the shared plugin's ``moto_server`` (or a
real bucket named by ``S3TORCH_TEST_BUCKET``/``S3TORCH_TEST_REGION``), and a fault-injecting proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from support import MOTO_REGION, FaultProxy, MotoServer, S3Location, S3TestEnv
from support.s3env import clean, new_env, real_location_from_env, unique_bucket_name

from s3torch_test_support import DUMMY_CREDENTIALS, boto3_client

# The benchmarks are run by `nox -s bench`, not collected as tests.
collect_ignore = ["benchmarks"]

REAL_LOCATION = real_location_from_env()


@pytest.fixture(scope="session", autouse=True)
def _aws_environment() -> Iterator[None]:
    """Dummy credentials for moto, unless a real bucket is configured (then its credentials stay)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        if REAL_LOCATION is None:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
                patch.delenv(name, raising=False)
            for name, value in DUMMY_CREDENTIALS.items():
                patch.setenv(name, value)
        yield


def _moto_env(server: MotoServer, client_endpoint: str, proxy: FaultProxy | None = None) -> Iterator[S3TestEnv]:
    location = S3Location(MOTO_REGION, client_endpoint, unique_bucket_name(), "")
    env = new_env(location)
    # Checks go straight to the server, never through the proxy.
    env.boto = boto3_client(MOTO_REGION, server.endpoint)
    env.proxy = proxy
    env.on_moto = True
    env.boto.create_bucket(Bucket=location.bucket)
    yield env
    clean(env, delete_bucket=True)


@pytest.fixture
def moto_s3(moto_server: MotoServer) -> Iterator[S3TestEnv]:
    """A fresh bucket on the local moto server, whatever the environment says."""
    yield from _moto_env(moto_server, moto_server.endpoint)


@pytest.fixture
def s3(request: pytest.FixtureRequest) -> Iterator[S3TestEnv]:
    """The S3 the tests run against: the real bucket of ``S3TORCH_TEST_*`` under a unique prefix,
    or a fresh bucket on the local moto server."""
    if REAL_LOCATION is None:
        yield request.getfixturevalue("moto_s3")
        return
    env = new_env(replace(REAL_LOCATION, prefix=f"s3torch-tests/{uuid.uuid4().hex}/"))
    yield env
    clean(env, delete_bucket=False)


@pytest.fixture(scope="session")
def fault_proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy((moto_server.host, moto_server.port)).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def faulty_s3(moto_server: MotoServer, fault_proxy: FaultProxy) -> Iterator[S3TestEnv]:
    """A fresh moto bucket whose clients (``client``, ``new_client``) talk through the fault
    proxy (``proxy``: no rules, nothing recorded yet); ``boto`` goes straight to moto."""
    fault_proxy.reset()
    yield from _moto_env(moto_server, fault_proxy.url, fault_proxy)
    fault_proxy.reset()
