"""The two commands of README.md, on a machine with nothing but Python 3.10+ (standard library only).

    python3 tools/dev.py demo [ARGS]   virtualenv .venv-demo: torch (the CPU build where the
                                       machine's package sources have one), the s3torch packages
                                       and their test support (the embedded moto server) from
                                       this checkout, and the demo's requirements; then runs
                                       examples/train.py ARGS against an S3 server it embeds
    python3 tools/dev.py test [ARGS]   virtualenv .venv-tools: nox and uv; then runs nox ARGS,
                                       what CI runs (.ci/run calls exactly this)

Each virtualenv is made once and refreshed when the files that decide its contents change.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO_VENV = ROOT / ".venv-demo"
TOOLS_VENV = ROOT / ".venv-tools"
# Dependency order; the demo needs no Lightning. The test support (never released) starts the
# embedded moto server: the one moto starter of the examples, the tests and the benchmarks.
DEMO_PACKAGES = ["s3torch-client", "s3torch-readers", "s3torch-datasets", "s3torch-dcp", "s3torch-test-support"]
DEMO_REQUIREMENTS = ROOT / "examples" / "requirements.txt"
TOOLS = ["nox>=2025.2.9", "uv>=0.5"]
STAMP = "s3torch-dev.stamp"


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(part) for part in command), flush=True)
    subprocess.run([str(part) for part in command], check=True, env=env)


def make_venv(path: Path, contents: str, install: list[list[str]]) -> Path:
    """The virtualenv at ``path``, with ``install`` (pip argument lists) run in it unless it was
    already made for the same ``contents``. Returns its bin directory."""
    bin_dir = path / "bin"
    stamp = path / STAMP
    digest = hashlib.sha256(contents.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and (bin_dir / "python").exists():
        return bin_dir
    print(f"setting up {path.relative_to(ROOT)} (once)", flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"could not make a virtualenv with pip ({error}); on Debian or Ubuntu: apt-get install python3-venv"
        ) from error
    pip = [bin_dir / "python", "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    for arguments in install:
        run(*pip, *arguments)
    stamp.write_text(digest)
    return bin_dir


def pip_find_links() -> list[str]:
    """The find-links directories of pip's configuration (environment first, then its files)."""
    value = os.environ.get("PIP_FIND_LINKS")
    if value is None:
        value = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    return [location.removeprefix("file://") for location in value.split()]


def torch_requirement() -> str:
    """``torch==V`` for the newest CPU build of torch in a find-links directory for this Python
    (pip then installs it from there, not a CUDA build from an index), else plain ``torch``."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    versions = []
    for directory in pip_find_links():
        for wheel in glob.glob(os.path.join(directory, f"torch-*+cpu-{tag}-*.whl")):
            match = re.match(r"torch-([\d.]+)\+cpu-", os.path.basename(wheel))
            if match:
                versions.append(tuple(int(part) for part in match.group(1).split(".")))
    if not versions:
        return "torch"
    return "torch==" + ".".join(str(part) for part in max(versions))


def demo(arguments: list[str]) -> int:
    torch = torch_requirement()
    decided_by = [DEMO_REQUIREMENTS, *(ROOT / "packages" / package / "pyproject.toml" for package in DEMO_PACKAGES)]
    contents = torch + "".join(path.read_text() for path in decided_by)
    editable = [argument for package in DEMO_PACKAGES for argument in ("-e", str(ROOT / "packages" / package))]
    # torch first and alone: the packages' "torch>=" then finds it installed.
    bin_dir = make_venv(DEMO_VENV, contents, [[torch], [*editable, "-r", str(DEMO_REQUIREMENTS)]])
    return subprocess.run(
        [str(bin_dir / "python"), str(ROOT / "examples" / "train.py"), *arguments], check=False
    ).returncode


def test(arguments: list[str]) -> int:
    bin_dir = make_venv(TOOLS_VENV, "\n".join(TOOLS), [TOOLS])
    environment = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    # No S3TORCH_PYTHON_VERSIONS here: without it the noxfile runs CI's cells of the matrix, on
    # Pythons 3.10 to 3.13 (a missing one is skipped, or an error when CI is set).
    command = [str(bin_dir / "nox"), "--noxfile", str(ROOT / "noxfile.py"), *arguments]
    print("+", " ".join(command), flush=True)
    return subprocess.run(command, check=False, env=environment).returncode


def main() -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 (say it plainly to whoever runs an older one)
        raise SystemExit(f"s3torch needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    commands = {"demo": demo, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
