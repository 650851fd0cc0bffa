"""The no-op fast path of ``mlpack lock``: same answers as the full CLI, without typer or rich."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.cli.fastlock import _pure_path, dispatch
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


MAIN = "from mlpack.cli import main; main()"
TYPER = "import sys; from mlpack.cli.app import run_app; sys.exit(run_app(sys.argv[1:]))"


def cli(cwd: Path, *args: str, code: str = MAIN) -> tuple[int, str, str, bool]:
    """Run ``mlpack ARGS``: (exit code, stdout, stderr without import lines, heavy imports).

    ``code=TYPER`` runs the typer application itself, skipping the fast paths.
    """
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import ")}
    rest = "".join(f"{line}\n" for line in lines if not line.startswith("import time:"))
    heavy = any(m.split(".")[0] in ("typer", "rich", "packaging", "tomlkit") for m in imported)
    return done.returncode, done.stdout, rest, heavy


@pytest.mark.parametrize(
    ("cwd_rel", "args"),
    [
        (".", ("lock",)),
        (".", ("lock", "--check")),
        ("..", ("lock", "proj")),
        ("..", ("lock", "./proj/", "--check")),
        ("..", ("lock", "--check", "proj//")),
    ],
)
def test_fast_and_full_paths_agree(project: Path, cwd_rel: str, args: tuple[str, ...]) -> None:
    cwd = (project / cwd_rel).resolve()
    full = cli(cwd, *args, code=TYPER)  # the typer command answers, and records the memo
    assert full[3]
    fast = cli(cwd, *args)
    assert not fast[3], "the fast path imported typer, rich, packaging or tomlkit"
    assert fast[:3] == full[:3]
    assert fast[0] == 0
    assert "is up to date" in fast[1]


def test_a_changed_input_falls_back_and_reports_stale(project: Path) -> None:
    assert cli(project, "lock", "--check")[0] == 0
    assert not cli(project, "lock", "--check")[3]
    (project / "mlpack.toml").write_text(CONFIG.replace('"3"', '"4"'))
    code, out, err, heavy = cli(project, "lock", "--check")
    assert heavy
    assert code == 4
    assert out == ""
    assert err.startswith("error: mlpack.lock is stale: the environment variables changed")
    assert cli(project, "lock", "--check", code=TYPER)[:3] == (code, out, err)
    (project / "mlpack.toml").write_text(CONFIG)  # back: the old stamp is good again
    assert cli(project, "lock", "--check")[:3] == (0, "mlpack.lock is up to date\n", "")


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


def test_options_and_odd_arguments_go_to_the_full_cli(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    here = Path()
    stamp.record(here, "lock", stamp.inputs_key(here), stamp.lock_key(here) or "")
    assert dispatch(["lock"]) == 0
    for args in (
        ["lock", "--upgrade"],
        ["lock", "--help"],
        ["lock", "--resolver", "pip"],
        ["lock", "--resolver"],
        ["lock", "--platform", "linux/arm64"],
        ["lock", "--ca-cert", "mlpack.toml"],
        ["lock", "--debug"],
        ["lock", "missing-folder"],
        ["lock", ".", "numpy"],
        ["lock", "--check", "--check"],
    ):
        assert dispatch(args) is None, args


@pytest.mark.parametrize(
    "arg", [".", "./", "a", "a/", "a//b", "./a/./b/", "/", "/x/../y", "../a", "a/.."]
)
def test_pure_path_matches_pathlib(arg: str) -> None:
    assert _pure_path(arg) == str(Path(arg))
