"""``mlpack lock`` on unchanged inputs answers from the no-op memo, without reading the config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.config import load_config
from mlpack.lock import stamp
from mlpack.lock.inputs import inputs_from_config
from mlpack.lock.locker import lock
from mlpack.lock.resolvers import Pin
from tests.unit.lock.fakes import FakeBase, FakeResolver

DEAD = "http://127.0.0.1:9/simple"  # nothing listens: index listings fail fast
PINS = (Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),)
CONFIG = (
    'name = "proj"\npython = "3.11"\n[dependencies]\n'
    f'index-url = "{DEAD}"\n'
    'packages = [{ requirement = "numpy", source = "requirements.txt:1" }]\n'
    '[env]\nEPOCHS = { default = "3" }\n'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose mlpack.lock matches its inputs (made with fakes, no network)."""
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    proj = tmp_path / "work" / "proj"
    proj.mkdir(parents=True)
    (proj / "mlpack.toml").write_text(CONFIG)
    result = lock(
        inputs_from_config(load_config(proj)),
        proj / "mlpack.lock",
        root=proj,
        base_resolver=FakeBase(),
        resolver=FakeResolver(PINS),
        home=tmp_path / "home",
    )
    assert result.resolved
    return proj


# `mlpack`, with a marker on stderr each time the project's config is read (the full path).
MAIN = """
import sys
from mlpack import pipeline
read = pipeline.project_lock_inputs
def spy(*args, **kwargs):
    sys.stderr.write("READ-CONFIG\\n")
    return read(*args, **kwargs)
pipeline.project_lock_inputs = spy
from mlpack.cli import main
main()
"""


def cli(cwd: Path, *args: str) -> tuple[int, str, str, bool]:
    """Run ``mlpack ARGS``: (exit code, stdout, stderr, whether the config was read)."""
    done = subprocess.run(
        [sys.executable, "-c", MAIN, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    full = "READ-CONFIG\n" in done.stderr
    return done.returncode, done.stdout, done.stderr.replace("READ-CONFIG\n", ""), full


@pytest.mark.parametrize(
    ("cwd_rel", "args", "shown"),
    [
        (".", ("lock",), "mlpack.lock is up to date (inputs unchanged)"),
        (".", ("lock", "--check"), "mlpack.lock is up to date"),
        ("..", ("lock", "proj"), "proj/mlpack.lock is up to date (inputs unchanged)"),
        ("..", ("lock", "./proj/", "--check"), "proj/mlpack.lock is up to date"),
        ("..", ("lock", "--check", "proj//"), "proj/mlpack.lock is up to date"),
    ],
)
def test_an_unchanged_relock_answers_from_the_memo(
    project: Path, cwd_rel: str, args: tuple[str, ...], shown: str
) -> None:
    cwd = (project / cwd_rel).resolve()
    full = cli(cwd, *args)  # the first run reads everything, and records the memo
    assert full[3]
    memo = cli(cwd, *args)
    assert not memo[3], "the memo did not answer"
    assert memo[:3] == full[:3] == (0, shown + "\n", "")


def test_a_changed_input_falls_back_and_reports_stale(project: Path) -> None:
    assert cli(project, "lock", "--check")[0] == 0
    assert not cli(project, "lock", "--check")[3]
    (project / "mlpack.toml").write_text(CONFIG.replace('"3"', '"4"'))
    code, out, err, full = cli(project, "lock", "--check")
    assert full
    assert code == 4
    assert out == ""
    assert err.startswith("error: mlpack.lock is stale: the environment variables changed")
    (project / "mlpack.toml").write_text(CONFIG)  # back: the old stamp is good again
    assert cli(project, "lock", "--check")[:4] == (0, "mlpack.lock is up to date\n", "", False)


def test_a_changed_lock_or_index_setting_falls_back(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(project, "lock")[0] == 0
    assert not cli(project, "lock")[3]
    with (project / "mlpack.lock").open("a") as handle:
        handle.write("\n")
    assert cli(project, "lock")[3]  # the lock's bytes changed: re-checked in full
    assert not cli(project, "lock")[3]
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    assert cli(project, "lock")[3]  # pip's settings are an input (unused here, still checked)
    (project / "mlpack.lock").unlink()
    code, _, err, _ = cli(project, "lock", "--check")
    assert code == 4
    assert "mlpack.lock does not exist" in err


@pytest.mark.parametrize(
    "extra", [["--platform", "linux/amd64"], ["--resolver", "pip-tools"], ["--upgrade"]]
)
def test_options_the_memo_did_not_record_are_checked_in_full(
    project: Path, extra: list[str]
) -> None:
    stamp.record(project, "check", stamp.inputs_key(project), stamp.lock_key(project) or "")
    assert not cli(project, "lock", "--check")[3]
    assert cli(project, "lock", "--check", *extra)[3]
