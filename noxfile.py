"""The CI contract of the s3torch monorepo: every check is a nox session.

A bare ``nox`` runs what CI runs (lint, typecheck, tests, integration, docs, release check).
``nox -s bench`` prints the benchmark table; ``nox -s release -- X.Y.Z`` cuts a release.

Matrix: the torch versions in ``TORCH_VERSIONS`` and the Python versions in ``PYTHON_VERSIONS``
are declared; by default only the first of each runs (torch 2.13.0 has a quick local CPU build
here, any other pulls gigabytes of CUDA packages). Widen with environment variables:
``S3TORCH_TORCH_VERSIONS=all`` or ``=2.13.0,2.15.0``, ``S3TORCH_PYTHON_VERSIONS=all`` or ``=3.11,3.12``.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# Dependency order: each package only needs the ones before it.
PACKAGES = ["s3torch-client", "s3torch-readers", "s3torch-datasets", "s3torch-dcp", "s3torch-lightning"]
PYTHON_VERSIONS = ["3.11", "3.10", "3.12", "3.13"]
TORCH_VERSIONS = ["2.13.0", "2.15.0", "2.14.1", "2.12.1", "2.9.1", "2.3.1"]

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "typecheck", "tests", "integration", "docs", "release"]


def _selected(variable: str, declared: list[str]) -> list[str]:
    value = os.environ.get(variable, "").strip()
    if not value:
        return declared[:1]
    if value == "all":
        return declared
    return [item.strip() for item in value.split(",") if item.strip()]


PYTHONS = _selected("S3TORCH_PYTHON_VERSIONS", PYTHON_VERSIONS)
TORCHES = _selected("S3TORCH_TORCH_VERSIONS", TORCH_VERSIONS)


def _pip_setting(name: str) -> list[str]:
    """A pip setting (environment first, then pip's configuration files), as a list."""
    value = os.environ.get(f"PIP_{name.upper().replace('-', '_')}")
    if value is None:
        try:
            value = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", f"global.{name}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        except OSError:
            value = ""
    return value.split() if value else []


def _uv_follows_pip() -> None:
    # uv ignores pip's configuration; pass the machine's package sources through so torch comes
    # from the local CPU build where there is one, not as a multi-GB CUDA download.
    find_links = _pip_setting("find-links")
    if find_links and "UV_FIND_LINKS" not in os.environ:
        os.environ["UV_FIND_LINKS"] = ",".join(find_links)
    index_url = _pip_setting("index-url")
    if index_url and "UV_INDEX_URL" not in os.environ:
        os.environ["UV_INDEX_URL"] = index_url[0]


_uv_follows_pip()


def _local_torch_wheel(version: str) -> str | None:
    """A CPU build of torch ``version`` in a find-links directory, for this Python."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for location in _pip_setting("find-links"):
        directory = location.removeprefix("file://")
        for wheel in sorted(glob.glob(os.path.join(directory, f"torch-{version}+cpu-*.whl"))):
            if f"-{tag}-" in os.path.basename(wheel):
                return wheel
    return None


def install_torch(session: nox.Session, version: str) -> None:
    wheel = (
        _local_torch_wheel(version)
        if session.python in (None, f"{sys.version_info[0]}.{sys.version_info[1]}")
        else None
    )
    session.install(wheel or f"torch=={version}")


def install_packages(session: nox.Session, *groups: str) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    editable: list[str] = []
    for package in PACKAGES:
        editable += ["-e", str(ROOT / "packages" / package)]
    session.install(*editable, *requirements)


@nox.session(python=PYTHONS)
@nox.parametrize("torch", TORCHES)
def tests(session: nox.Session, torch: str) -> None:
    """Unit tests of every package (moto in process)."""
    install_torch(session, torch)
    install_packages(session, "test")
    session.run("pytest", *[f"packages/{package}/tests" for package in PACKAGES], *session.posargs)


@nox.session(python=PYTHONS[:1])
@nox.parametrize("torch", TORCHES[:1])
def integration(session: nox.Session, torch: str) -> None:
    """integration-tests/ over real HTTP: a moto server started by a fixture, or the real bucket
    named by S3TORCH_TEST_BUCKET / S3TORCH_TEST_REGION (/ S3TORCH_TEST_ENDPOINT)."""
    install_torch(session, torch)
    install_packages(session, "test")
    session.run("pytest", "integration-tests", *session.posargs)


@nox.session(python=PYTHONS[:1])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[:1])
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every package's src/."""
    install_torch(session, TORCHES[0])  # before the packages: they would pull a CUDA build
    install_packages(session, "typecheck")
    session.run("mypy")


@nox.session(python=PYTHONS[:1])
def docs(session: nox.Session) -> None:
    """Build the documentation site, warnings as errors."""
    install_torch(session, TORCHES[0])  # before the packages: they would pull a CUDA build
    install_packages(session, "docs")
    # mkdocs resolves a relative --site-dir against the config's folder: pass an absolute one.
    site = Path(session.create_tmp()).resolve() / "site"
    session.run("mkdocs", "build", "--strict", "-f", "docs/mkdocs.yml", "--site-dir", str(site))


@nox.session(python=PYTHONS[:1])
def demo(session: nox.Session) -> None:
    """examples/demo.py end to end against an embedded local moto server."""
    install_torch(session, TORCHES[0])  # before the packages: they would pull a CUDA build
    install_packages(session, "demo")
    session.run("python", "examples/demo.py")


@nox.session(python=PYTHONS[:1])
def bench(session: nox.Session) -> None:
    """Benchmarks against local servers; prints a table. See integration-tests/benchmarks/README.md."""
    install_torch(session, TORCHES[0])
    install_packages(session, "bench")
    session.run("python", "integration-tests/benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHONS[:1])
def release(session: nox.Session) -> None:
    """``nox -s release -- X.Y.Z``: write VERSION, build every wheel and sdist into dist/,
    twine check --strict, install the wheels into a clean venv outside the repo and import each
    package. Without a version it checks the current one (what CI runs)."""
    version_file = ROOT / "VERSION"
    if session.posargs:
        version = session.posargs[0]
        if not re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", version):
            session.error(f"not a release version: {version!r} (expected X.Y.Z)")
        version_file.write_text(version + "\n")
    version = version_file.read_text().strip()
    session.install(*nox.project.dependency_groups(PYPROJECT, "release"))
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in PACKAGES:
        # sdist first, then the wheel built from that sdist: a file missing from the sdist fails here.
        session.run("uv", "build", "--quiet", "--out-dir", str(dist), str(ROOT / "packages" / package), external=True)
    artifacts = sorted(str(path) for path in dist.iterdir() if path.suffix in (".whl", ".gz"))
    session.run("twine", "check", "--strict", *artifacts)
    wheels = [path for path in artifacts if path.endswith(".whl")]
    expected = {f"{package}-{version}" for package in PACKAGES}
    built = {"-".join(Path(wheel).name.split("-")[:2]).replace("_", "-") for wheel in wheels}
    if built != expected:
        session.error(f"built {sorted(built)}, expected {sorted(expected)}")
    # uv caches a wheel by its name and version (and a find-links directory by its path): without
    # this, a dist/ rebuilt at the same version installs a cached wheel of an earlier build.
    refresh = [f"--refresh-package={package}" for package in PACKAGES]
    with tempfile.TemporaryDirectory(prefix="s3torch-release-") as scratch:
        venv = Path(scratch) / "venv"
        session.run("uv", "venv", "--quiet", "--python", sys.executable, str(venv), external=True)
        python = str(venv / "bin" / "python")
        torch_wheel = _local_torch_wheel(TORCHES[0])
        constraints = [torch_wheel] if torch_wheel else []
        session.run(
            "uv", "pip", "install", "--quiet", "--python", python, *refresh, *constraints, *wheels, external=True
        )
        imports = "; ".join(f"import s3torch.{package.removeprefix('s3torch-')}" for package in PACKAGES)
        session.run(python, "-I", "-c", imports, external=True)
        # s3torch is a namespace: no distribution may ship s3torch/__init__.py.
        session.run(
            python, "-I", "-c", "import s3torch; assert s3torch.__file__ is None, s3torch.__file__", external=True
        )
    # A checkpoint-only user: the s3torch-dcp wheel alone brings client, readers and torch, never lightning.
    dcp_wheels = [wheel for wheel in wheels if Path(wheel).name.startswith("s3torch_dcp-")]
    with tempfile.TemporaryDirectory(prefix="s3torch-dcp-only-") as scratch:
        venv = Path(scratch) / "venv"
        session.run("uv", "venv", "--quiet", "--python", sys.executable, str(venv), external=True)
        python = str(venv / "bin" / "python")
        torch_wheel = _local_torch_wheel(TORCHES[0])
        # The siblings come from dist/ (they are not on an index yet); the dcp wheel pulls them by its pins.
        session.run(
            "uv",
            "pip",
            "install",
            "--quiet",
            "--python",
            python,
            *refresh,
            *([torch_wheel] if torch_wheel else []),
            "--find-links",
            str(dist),
            *dcp_wheels,
            external=True,
        )
        check = (
            "import importlib.util as u, s3torch.dcp, s3torch.readers, s3torch.client, torch; "
            "assert u.find_spec('lightning') is None and u.find_spec('pytorch_lightning') is None, 'lightning came'"
        )
        session.run(python, "-I", "-c", check, external=True)
