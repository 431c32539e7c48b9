"""The demo and the documentation's examples, run for real so that they cannot rot.

* Every example of ``examples/`` runs in a subprocess against the S3 server it embeds (the
  training examples with ``--quick``: a smaller data set through the same code) and must exit 0
  having passed every check of its summary.
* Every ```` ```python ```` block of ``README.md`` and ``docs/pages/*.md`` whose opening fence
  comes right after a line holding only ``<!-- test -->`` runs in a fresh interpreter, with
  dummy credentials and ``AWS_ENDPOINT_URL_S3`` pointing at a local moto server on which an
  empty bucket ``my-bucket`` exists. The examples are therefore written exactly as a user would
  write them against AWS (``S3Client("us-east-1")``, bucket ``my-bucket``). A failing block is
  reported with the document's own line numbers.
* README.md starts with the two commands (the demo, the tests), and the test command is the
  command ``.ci/run`` runs.

These tests always use the local moto server (the shared plugin's ``moto_server``), also when
the rest of the integration tests target a real bucket.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from s3torch_test_support import DUMMY_CREDENTIALS, MotoServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs" / "pages").glob("*.md"))]
RUNNABLE_MARKER = "<!-- test -->"
EXAMPLE_BUCKET = "my-bucket"
EXAMPLE_REGION = "us-east-1"
TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Snippet:
    """A runnable code block of a document; ``line`` is the line of its first line of code."""

    path: Path
    line: int
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_snippets(path: Path) -> list[Snippet]:
    """The blocks of ``path`` marked runnable; a marker not followed by a python block is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    snippets = []
    for index, line in enumerate(lines):
        if line.strip() != RUNNABLE_MARKER:
            continue
        where = f"{path.relative_to(ROOT)}:{index + 1}"
        if index + 1 >= len(lines) or lines[index + 1].strip() != "```python":
            raise ValueError(f"{where}: {RUNNABLE_MARKER} must be followed directly by a ```python fence")
        first = index + 2
        end = next((number for number in range(first, len(lines)) if lines[number].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{where}: the ```python block is never closed")
        snippets.append(Snippet(path, first + 1, textwrap.dedent("\n".join(lines[first:end])) + "\n"))
    return snippets


def fenced_block_under(markdown: str, heading: str) -> str:
    """The content of the first fenced block after the heading line ``heading``."""
    match = re.search(rf"^{re.escape(heading)}\s*$.*?^```[a-z]*\n(.*?)^```\s*$", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"no fenced code block under {heading!r}"
    return match.group(1).strip()


def isolated_environment(**extra: str) -> dict[str, str]:
    """This process's environment without AWS settings (a developer's profile, endpoint or
    credentials must not leak into the examples), plus ``extra``."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
        **extra,
    )
    return environment


def fresh_example_bucket(server: MotoServer) -> None:
    """Forget every bucket of ``server``, then create the empty ``my-bucket`` the examples write to."""
    server.reset()
    s3 = boto3.client(
        "s3",
        region_name=EXAMPLE_REGION,
        endpoint_url=server.endpoint,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    s3.create_bucket(Bucket=EXAMPLE_BUCKET)


SNIPPETS = [snippet for document in DOCUMENTS for snippet in runnable_snippets(document)]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet.name for snippet in SNIPPETS])
def test_documented_example_runs(snippet: Snippet, moto_server: MotoServer, tmp_path: Path) -> None:
    fresh_example_bucket(moto_server)
    # Padded so that a traceback's line numbers are the document's.
    script = tmp_path / f"{snippet.path.name}.py"
    script.write_text("\n" * (snippet.line - 1) + snippet.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=isolated_environment(AWS_ENDPOINT_URL_S3=moto_server.endpoint, **DUMMY_CREDENTIALS),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"the example at {snippet.name} failed:\n{result.stdout}\n{result.stderr}"


def test_readme_quick_example_is_run() -> None:
    readme = [snippet for snippet in SNIPPETS if snippet.path.name == "README.md"]
    assert readme, f"README.md's quick example must be marked {RUNNABLE_MARKER} so that it is run"


def run_example(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env=isolated_environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{output}\n{result.stderr}"
    return output


def assert_every_check_ok(output: str, minimum: int) -> None:
    summary = re.search(r"^(\d+) of (\d+) checks ok$", output, re.MULTILINE)
    assert summary, f"no summary line in:\n{output}"
    passed, total = int(summary.group(1)), int(summary.group(2))
    assert passed == total >= minimum, output
    assert output.count("  ok\n") == total and "FAILED" not in output, output


def assert_check_ok(output: str, check: str) -> None:
    assert re.search(rf"^{re.escape(check)}\s+ok$", output, re.MULTILINE), f"{check!r} not ok in:\n{output}"


def test_client_tour_runs_end_to_end() -> None:
    output = run_example(str(EXAMPLES / "client_tour.py"))
    for expected in (
        "ok  uploaded as a 3-part multipart upload",
        "ok  small object: one PutObject",
        "ok  get_object_stream, iterated",
        "ok  get_object_stream, readinto a preallocated buffer",
        "ok  ranged read of bytes",
        "ok  list_objects(prefix='data/')",
        "ok  head_object: size",
        "ok  copy_object: the copy reads back",
        "ok  delete_object: the copy is gone",
        "ok  GET of a missing key: S3Exception, code NoSuchKey",
        "Service error: The key does not exist",
        "ok  exception inside `with`: nothing published, no multipart upload left",
    ):
        assert expected in output, f"{expected!r} missing from the client tour's output:\n{output}"
    summary = re.search(r"^client tour passed: (\d+) checks$", output, re.MULTILINE)
    assert summary, output
    assert int(summary.group(1)) == output.count("\nok  ") + output.startswith("ok  ")


def test_training_demo_crashes_resumes_and_checks_everything() -> None:
    output = run_example(str(EXAMPLES / "train.py"), "--quick")
    for check in (
        "epoch 1: every sample seen exactly once",
        "the checkpoint loads the weights it saved",
        "epoch 2 across the crash: every sample seen exactly once",
        "final model reloaded from S3: weights equal",
    ):
        assert_check_ok(output, check)
    for measure in ("training samples/s", "read throughput", "checkpoint step"):
        assert measure in output, f"{measure!r} missing from the training demo's summary:\n{output}"
    assert re.search(r"^simulated crash at step \d+", output, re.MULTILINE), output
    assert_every_check_ok(output, minimum=10)


def test_lightning_example_keeps_the_two_best_checkpoints_and_resumes() -> None:
    output = run_example(str(EXAMPLES / "lightning_train.py"), "--quick")
    assert_check_ok(output, "save_top_k=2: the two best checkpoints are in S3, the others deleted")
    assert_every_check_ok(output, minimum=6)


def test_ddp_example_runs_on_two_ranks() -> None:
    output = run_example(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(EXAMPLES / "ddp_train.py"),
        "--quick",
    )
    for epoch in (1, 2):
        assert_check_ok(output, f"epoch {epoch}: every sample seen exactly once over 2 ranks x 2 workers")
    for rank in (0, 1):
        assert_check_ok(output, f"rank {rank}: the last checkpoint loads the trained weights")
    assert_every_check_ok(output, minimum=4)


def test_configuration_page_lists_every_config_field() -> None:
    import dataclasses

    from s3torch.client import S3ClientConfig

    page = (ROOT / "docs" / "pages" / "configuration.md").read_text(encoding="utf-8")
    missing = [field.name for field in dataclasses.fields(S3ClientConfig) if f"| `{field.name}`" not in page]
    assert not missing, f"docs/pages/configuration.md does not describe S3ClientConfig fields {missing}"


def shell_blocks(markdown: str) -> list[str]:
    return [block.strip() for block in re.findall(r"^```(?:sh|shell|bash)\n(.*?)^```\s*$", markdown, re.M | re.S)]


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    demo_command, test_command = shell_blocks(readme)[:2]
    assert demo_command == "python3 tools/dev.py demo"
    assert test_command == "python3 tools/dev.py test"
    before = readme[: readme.index("```")]
    assert before.count("\n\n") <= 3, "one paragraph (and the title) before the two commands"
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert ci_commands[-1] == test_command, "README's test command must be the command .ci/run runs"
