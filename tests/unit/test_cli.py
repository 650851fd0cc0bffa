"""The CLI's one error path: MlpackError -> error/hint/exit code; anything else -> a bug report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from mlpack import __version__
from mlpack.cli import ISSUES_URL
from mlpack.cli import app as cli_app
from mlpack.errors import EXIT_BUG, LockError


@pytest.fixture
def extra_command() -> Iterator[typer.Typer]:
    cli_app._register()
    before = list(cli_app.app.registered_commands)
    yield cli_app.app
    cli_app.app.registered_commands[:] = before


def _boom_user() -> None:
    """Fail like a user error."""
    msg = "the lock is stale: requirements.txt changed"
    raise LockError(msg, hint="run `mlpack lock`")


def _boom_bug() -> None:
    """Fail like a bug."""
    raise ZeroDivisionError


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mlpack {__version__}"


def test_mlpack_error_prints_error_and_hint_and_exits_with_stage_code(
    extra_command: typer.Typer, capsys: pytest.CaptureFixture[str]
) -> None:
    extra_command.command("boom-user")(_boom_user)
    code = cli_app.run_app(["boom-user"])
    err = capsys.readouterr().err
    assert code == LockError.exit_code == 4
    assert "error: the lock is stale: requirements.txt changed" in err
    assert "hint: run `mlpack lock`" in err
    assert "Traceback" not in err


def test_debug_adds_the_traceback(
    extra_command: typer.Typer, capsys: pytest.CaptureFixture[str]
) -> None:
    extra_command.command("boom-user")(_boom_user)
    assert cli_app.run_app(["--debug", "boom-user"]) == 4
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_exception_is_reported_as_a_bug(
    extra_command: typer.Typer, capsys: pytest.CaptureFixture[str]
) -> None:
    extra_command.command("boom-bug")(_boom_bug)
    code = cli_app.run_app(["boom-bug"])
    err = capsys.readouterr().err
    assert code == EXIT_BUG
    assert "ZeroDivisionError" in err
    assert "this is a bug in mlpack" in err
    assert ISSUES_URL in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    cli_app._register()
    for command in cli_app.app.registered_commands:
        assert command.callback is not None
        assert command.callback.__doc__, f"{command.callback.__name__} has no help text"


def test_analyze_json_fast_path_skips_typer_and_rich(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import numpy\n")
    code = (
        "import sys; from mlpack.cli.fastanalyze import dispatch;"
        f"rc = dispatch(['analyze', {str(tmp_path)!r}, '--json']);"
        "assert not {'typer', 'rich', 'click'} & set(sys.modules), 'heavy import';"
        "sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert [p["name"] for p in json.loads(result.stdout)["packages"]] == ["numpy"]


def test_analyze_errors_the_same_on_both_paths(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    mlpack = Path(sys.executable).with_name("mlpack")
    for extra in (["--json"], []):
        result = subprocess.run(
            [str(mlpack), "analyze", str(not_a_dir), *extra],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith("error: "), result.stderr
        assert "hint: " in result.stderr
        assert result.stdout == ""


def _boom_tag() -> None:
    """Fail with a tag that looks like an emoji code."""
    msg = "manifest unknown: 127.0.0.1:5000/repo:100:smile:"
    raise LockError(msg, hint="check the tag :100:")


def test_error_text_is_printed_verbatim(
    extra_command: typer.Typer, capsys: pytest.CaptureFixture[str]
) -> None:
    extra_command.command("boom-tag")(_boom_tag)
    assert cli_app.run_app(["boom-tag"]) == 4
    err = capsys.readouterr().err
    assert "error: manifest unknown: 127.0.0.1:5000/repo:100:smile:" in err
    assert "hint: check the tag :100:" in err
