"""The CLI's one error path: MlpackError -> error/hint/exit code; anything else -> a bug report."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer

from mlpack import __version__
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
    assert cli_app.ISSUES_URL in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["no-such-command"]) == 2
    assert "No such command" in capsys.readouterr().err


def test_every_command_has_help() -> None:
    cli_app._register()
    for command in cli_app.app.registered_commands:
        assert command.callback is not None
        assert command.callback.__doc__, f"{command.callback.__name__} has no help text"
