"""The CI contract of the s3torch monorepo: every check is a nox session.

A bare ``nox`` runs what CI runs (lint, typecheck, the CI cells of the matrix, integration, docs,
release check). ``nox -s bench`` prints the benchmark table; ``nox -s soak`` runs the full fault
soak; ``nox -s release -- X.Y.Z`` cuts a release.

Matrix (docs/pages/development.md): by default ``tests`` runs the diagonal ``CI_CELLS``: the
oldest supported torch and Lightning on Python 3.10, the development torch on 3.11, the newest
released torch and Lightning on 3.13; ``core`` runs the torch-free client and readers on the
Pythons no such cell covers. Any other cell on demand, by environment variables:
``S3TORCH_TORCH_VERSIONS=all`` or ``=2.13.0,2.15.0``, ``S3TORCH_PYTHON_VERSIONS=all`` or
``=3.11,3.12`` (the cross product of the two; an unset one means its first declared version).
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
# Dependency order: each package only needs the ones before it.
PACKAGES = ["s3torch-client", "s3torch-readers", "s3torch-datasets", "s3torch-dcp", "s3torch-lightning"]
PYTHON_VERSIONS = ["3.11", "3.10", "3.12", "3.13"]
#: The torch releases we support, development version first. The oldest and the newest bound the
#: ``torch>=`` of the distributions and the releases CI tests: the newest is the newest on PyPI
#: (a machine whose pip is capped lower installs it all the same: nox installs with uv).
TORCH_VERSIONS = ["2.13.0", "2.15.0", "2.14.1", "2.12.1", "2.10.0", "2.9.1"]
OLDEST_TORCH = "2.9.1"
NEWEST_TORCH = "2.15.0"
#: The oldest Lightning runs with the oldest torch, the newest with every other torch.
OLDEST_LIGHTNING = "2.4.0"
NEWEST_LIGHTNING = "2.6.6"
#: What CI runs (a bare ``nox``): one cell per end of the supported range, and the development one.
CI_CELLS = [("3.10", OLDEST_TORCH), (PYTHON_VERSIONS[0], TORCH_VERSIONS[0]), ("3.13", NEWEST_TORCH)]
#: The integration tests of code that depends on the torch and Lightning versions (DCP saves and
#: loads, two ranks included; Lightning fit and resume): run by every ``tests`` cell but the
#: development one, where ``integration`` runs them with all the others.
VERSION_SENSITIVE_INTEGRATION = [
    "integration-tests/test_dcp_save_load.py",
    "integration-tests/test_dcp_distributed.py",
    "integration-tests/test_dcp_checkpoint.py",
    "integration-tests/test_dcp_checkpoint_id.py",
    "integration-tests/test_lightning_trainer.py",
]
#: The distributions that do not depend on torch (the readers with their fsspec filesystem).
TORCH_FREE = ["s3torch-client", "s3torch-readers[fsspec]"]
#: The dev-only test support (the pytest plugin every package's tests load, the one moto server
#: starter of the tests, the demo and the benchmarks): installed wherever those run, never released.
TEST_SUPPORT = "s3torch-test-support"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True


def _selected(variable: str, declared: list[str]) -> list[str] | None:
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    if value == "all":
        return declared
    return [item.strip() for item in value.split(",") if item.strip()]


def _cells() -> list[tuple[str, str]]:
    """The ``(python, torch)`` cells of ``tests``: CI's diagonal, or the cross product asked for."""
    pythons = _selected("S3TORCH_PYTHON_VERSIONS", PYTHON_VERSIONS)
    torches = _selected("S3TORCH_TORCH_VERSIONS", TORCH_VERSIONS)
    if pythons is None and torches is None:
        return CI_CELLS
    return [(python, torch) for python in pythons or PYTHON_VERSIONS[:1] for torch in torches or TORCH_VERSIONS[:1]]


def _in_declared_order(values: set[str], declared: list[str]) -> list[str]:
    return sorted(values, key=lambda value: declared.index(value) if value in declared else len(declared))


CELLS = _cells()
# The other sessions run on the first of each (3.11 and 2.13.0 unless the variables say otherwise).
PYTHONS = _in_declared_order({python for python, _ in CELLS}, PYTHON_VERSIONS)
TORCHES = _in_declared_order({torch for _, torch in CELLS}, TORCH_VERSIONS)
#: ``core`` runs by default on the Pythons no ``tests`` cell runs on; ``nox -s core`` runs it on all.
nox.options.sessions = [
    "lint",
    "typecheck",
    "tests",
    *[f"core-{python}" for python in PYTHON_VERSIONS if python not in PYTHONS],
    "integration",
    "docs",
    "release",
]


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


def _torch_requirement(session: nox.Session, version: str) -> str:
    """torch ``version``: the local CPU wheel where there is one for the session's Python."""
    wheel = (
        _local_torch_wheel(version)
        if session.python in (None, f"{sys.version_info[0]}.{sys.version_info[1]}")
        else None
    )
    return wheel or f"torch=={version}"


def install_torch(session: nox.Session, version: str) -> None:
    session.install(_torch_requirement(session, version))


def install_packages(
    session: nox.Session, *groups: str, packages: tuple[str, ...] = (*PACKAGES, TEST_SUPPORT), lightning: str = ""
) -> None:
    requirements: list[str] = []
    for group in groups:
        requirements += nox.project.dependency_groups(PYPROJECT, group)
    editable: list[str] = []
    for package in packages:
        name, extras = package.partition("[")[::2]  # "s3torch-readers[fsspec]": with that extra
        editable += ["-e", str(ROOT / "packages" / name) + (f"[{extras}" if extras else "")]
    pins = [f"lightning=={lightning}"] if lightning else []
    session.install(*editable, *requirements, *pins)


@nox.session
@nox.parametrize(("python", "torch"), CELLS)
def tests(session: nox.Session, torch: str) -> None:
    """Unit tests of every package, and the version-sensitive integration tests (not in the
    development cell: ``integration`` runs them there). The oldest torch gets the oldest Lightning."""
    install_torch(session, torch)  # before the packages: they would pull a CUDA build
    lightning = OLDEST_LIGHTNING if torch == OLDEST_TORCH else NEWEST_LIGHTNING
    install_packages(session, "test", lightning=lightning)
    session.run("pytest", *[f"packages/{package}/tests" for package in PACKAGES], *session.posargs)
    if (session.python, torch) != (PYTHON_VERSIONS[0], TORCH_VERSIONS[0]):
        session.run("pytest", *VERSION_SENSITIVE_INTEGRATION, *session.posargs)


@nox.session(python=PYTHON_VERSIONS)
def core(session: nox.Session) -> None:
    """Unit tests of the torch-free distributions (client, readers), without torch installed."""
    install_packages(session, "test-core", packages=(*TORCH_FREE, TEST_SUPPORT))
    session.run("python", "-c", "import importlib.util as u; assert u.find_spec('torch') is None, 'torch came'")
    session.run("pytest", "packages/s3torch-client/tests", "packages/s3torch-readers/tests", *session.posargs)


@nox.session(python=PYTHONS[:1])
@nox.parametrize("torch", TORCHES[:1])
def integration(session: nox.Session, torch: str) -> None:
    """integration-tests/ over real HTTP: a moto server started by a fixture, or the real bucket
    named by S3TORCH_TEST_BUCKET / S3TORCH_TEST_REGION (/ S3TORCH_TEST_ENDPOINT)."""
    install_torch(session, torch)
    install_packages(session, "test")
    session.run("pytest", "integration-tests", *session.posargs)


@nox.session(python=PYTHONS[:1])
def soak(session: nox.Session) -> None:
    """The full seeded fault soak (integration-tests/test_fault_soak.py): many rounds instead of
    CI's one. ``S3TORCH_SOAK_ROUNDS`` (default 8) and ``S3TORCH_SOAK_SEED`` choose the run."""
    install_torch(session, TORCHES[0])
    install_packages(session, "test")
    rounds = os.environ.get("S3TORCH_SOAK_ROUNDS", "8")
    session.run(
        "pytest",
        "integration-tests/test_fault_soak.py",
        "-s",
        "-p",
        "no:logging",
        *session.posargs,
        env={"S3TORCH_SOAK_ROUNDS": rounds},
    )


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
    """examples/train.py end to end against an embedded local moto server (arguments go to it)."""
    install_torch(session, TORCHES[0])  # before the packages: they would pull a CUDA build
    install_packages(session)
    session.install("-r", str(ROOT / "examples" / "requirements.txt"))  # what tools/dev.py demo installs
    session.run("python", "examples/train.py", *session.posargs)


@nox.session(python=PYTHONS[:1])
def bench(session: nox.Session) -> None:
    """Benchmarks against local servers, s3torch side by side with the upstream s3torchconnector,
    boto3, s3fs and curl; prints a table (``-- --report``: writes docs/pages/performance.md, its
    plots and raw numbers). See integration-tests/benchmarks/README.md."""
    install_torch(session, TORCHES[0])
    install_packages(session, "bench")
    # The upstream only here, with torch pinned to the build just installed (its requirement
    # "torch>=2.0.1" must not pull another one); optional: without it its rows say so.
    upstream = nox.project.dependency_groups(PYPROJECT, "bench-upstream")
    try:
        session.install(*upstream, _torch_requirement(session, TORCHES[0]))
    except nox.command.CommandFailed:
        session.warn(f"could not install {', '.join(upstream)}: the upstream's rows are reported as not measured")
    session.run("python", "integration-tests/benchmarks/run.py", *session.posargs)


RELEASE_VERSION = re.compile(r"\d+\.\d+\.\d+((a|b|rc)\d+)?")


def _hatch_environment(session: nox.Session) -> dict[str, str | None]:
    """nox points uv at the session's venv: hatch's own build environments must not inherit that
    (uv would install hatchling there, not into them). They live in the session's tmp dir."""
    return {
        "UV_PYTHON": None,
        "UV_PROJECT_ENVIRONMENT": None,
        "HATCH_DATA_DIR": str(Path(session.create_tmp()) / "hatch"),
    }


def _changelog_has(version: str) -> bool:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.search(rf"^## {re.escape(version)}\s*$", changelog, re.MULTILINE) is not None


def _check_artifacts(session: nox.Session, dist: Path, version: str) -> list[Path]:
    """Every distribution built once as a wheel and an sdist of ``version``, each carrying the
    repository's LICENSE; returns the artifacts."""
    license_text = (ROOT / "LICENSE").read_bytes()
    artifacts = sorted(path for path in dist.iterdir() if path.name.endswith((".whl", ".tar.gz")))
    names = [package.replace("-", "_") + f"-{version}" for package in PACKAGES]
    expected = {f"{name}-py3-none-any.whl" for name in names} | {f"{name}.tar.gz" for name in names}
    if {artifact.name for artifact in artifacts} != expected:
        session.error(f"built {sorted(a.name for a in artifacts)}, expected {sorted(expected)}")
    for artifact in artifacts:
        if artifact.suffix == ".whl":
            with zipfile.ZipFile(artifact) as wheel:
                found = [wheel.read(name) for name in wheel.namelist() if name.endswith(".dist-info/licenses/LICENSE")]
        else:
            with tarfile.open(artifact) as sdist:
                members = [member for member in sdist.getmembers() if member.name.count("/") == 1]
                found = [sdist.extractfile(m).read() for m in members if m.name.endswith("/LICENSE") and m.isfile()]  # type: ignore[union-attr]
        if found != [license_text]:
            session.error(f"{artifact.name} does not carry the repository's LICENSE")
    return artifacts


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_server(session: nox.Session, url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            session.error(f"the local package index exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)  # the server is starting; it has no event to wait on from here
    session.error(f"the local package index at {url} did not answer within 60 s")


def _rehearse_install(session: nox.Session, artifacts: list[Path], hatch_env: dict[str, str | None]) -> None:
    """Publish every artifact with ``hatch publish`` to a pypiserver on 127.0.0.1, then install
    from it by name in a clean virtualenv, as a user will from the public index."""
    with tempfile.TemporaryDirectory(prefix="s3torch-release-") as scratch:
        packages_dir = Path(scratch) / "index"
        packages_dir.mkdir()
        port = _free_port()
        index = f"http://127.0.0.1:{port}"
        command = ["pypi-server", "run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".", str(packages_dir)]
        server = subprocess.Popen([str(Path(session.bin) / command[0]), *command[1:]])
        try:
            _wait_for_server(session, f"{index}/simple/", server)
            session.run(
                "hatch",
                "publish",
                "--repo",
                f"{index}/",
                "--user",
                "rehearsal",
                "--auth",
                "rehearsal",
                *map(str, artifacts),
                env=hatch_env,
            )
            venv = Path(scratch) / "venv"
            session.run("uv", "venv", "--quiet", "--seed", "--python", sys.executable, str(venv), external=True)
            python = str(venv / "bin" / "python")
            # torch first, the local CPU build where there is one: the packages' "torch>=" is then satisfied.
            torch_wheel = _local_torch_wheel(TORCHES[0])
            session.run(
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                python,
                torch_wheel or f"torch=={TORCHES[0]}",
                external=True,
            )
            # Our packages from the local index by name; their other requirements from the
            # machine's package sources (pip's configuration) or through the index's fallback.
            pip = [python, "-m", "pip", "install", "--quiet", "--index-url", f"{index}/simple/"]
            session.run(*pip, "s3torch-dcp", external=True)
            only_dcp = (
                "import importlib.util as u, s3torch.dcp, s3torch.readers, s3torch.client, torch; "
                "assert u.find_spec('lightning') is None, 'lightning came'; "
                "assert u.find_spec('pytorch_lightning') is None, 'pytorch_lightning came'; "
                "assert u.find_spec('s3torch.datasets') is None, 's3torch-datasets came'"
            )
            session.run(python, "-I", "-c", only_dcp, external=True)
            session.run(*pip, "s3torch-lightning", "s3torch-datasets", external=True)
            imports = "; ".join(f"import s3torch.{package.removeprefix('s3torch-')}" for package in PACKAGES)
            session.run(python, "-I", "-c", f"{imports}; import lightning", external=True)
            # s3torch is a namespace: no distribution may ship s3torch/__init__.py.
            namespace = "import s3torch; assert s3torch.__file__ is None, s3torch.__file__"
            session.run(python, "-I", "-c", namespace, external=True)
            session.run(python, "-m", "pip", "list", "--format=freeze", external=True, silent=False)
        finally:
            server.terminate()
            server.wait(timeout=30)


@nox.session(python=PYTHONS[:1])
def release(session: nox.Session) -> None:
    """``nox -s release -- X.Y.Z``: check CHANGELOG.md has X.Y.Z, set it with ``hatch version``,
    ``hatch build`` every wheel and sdist into dist/, ``twine check --strict``, rehearse on a
    local package index (publish there, install by name in a clean venv), then ``hatch publish``
    to the index named by HATCH_INDEX_REPO (with HATCH_INDEX_USER / HATCH_INDEX_AUTH). Without a
    version it does all but the last step for the current version: what CI runs."""
    version = session.posargs[0] if session.posargs else (ROOT / "VERSION").read_text().strip()
    if not RELEASE_VERSION.fullmatch(version):
        session.error(f"not a release version: {version!r} (expected X.Y.Z, or X.Y.ZrcN)")
    if not _changelog_has(version):
        session.error(f"CHANGELOG.md has no '## {version}' entry: say what this release brings first")
    publish_to = os.environ.get("HATCH_INDEX_REPO")
    if session.posargs and not publish_to:
        session.error("set HATCH_INDEX_REPO (and HATCH_INDEX_USER, HATCH_INDEX_AUTH) to the index to publish to")
    for package in PACKAGES:
        if (ROOT / "packages" / package / "LICENSE").read_bytes() != (ROOT / "LICENSE").read_bytes():
            session.error(f"packages/{package}/LICENSE differs from the repository's LICENSE: copy it again")
    session.install(*nox.project.dependency_groups(PYPROJECT, "release"))
    hatch_env = _hatch_environment(session)
    if session.posargs:
        # One VERSION file for all five: setting it through one distribution sets it for all.
        with session.chdir(ROOT / "packages" / PACKAGES[0]):
            session.run("hatch", "version", version, env=hatch_env)
        if (ROOT / "VERSION").read_text().strip() != version:
            session.error(f"hatch version did not write {version} to VERSION")
    dist = ROOT / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for package in PACKAGES:
        with session.chdir(ROOT / "packages" / package):
            session.run("hatch", "build", str(dist), env=hatch_env)
    artifacts = _check_artifacts(session, dist, version)
    session.run("twine", "check", "--strict", *map(str, artifacts))
    # Each sdist must build its wheel by itself (a file missing from the sdist fails here).
    with tempfile.TemporaryDirectory(prefix="s3torch-sdist-") as scratch:
        for sdist in (artifact for artifact in artifacts if artifact.name.endswith(".tar.gz")):
            with tarfile.open(sdist) as archive:
                archive.extractall(scratch, filter="data")
            with session.chdir(Path(scratch) / sdist.name.removesuffix(".tar.gz")):
                session.run(
                    "hatch", "build", "--target", "wheel", str(Path(scratch) / "wheels"), silent=True, env=hatch_env
                )
    _rehearse_install(session, artifacts, hatch_env)
    if session.posargs:
        session.run("hatch", "publish", *map(str, artifacts), env=hatch_env)
        session.log(f"published {len(artifacts)} artifacts of {version} to {publish_to}")
