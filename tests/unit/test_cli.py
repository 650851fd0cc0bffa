"""The CLI's one error boundary, its routing and its usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from mlpack import __version__
from mlpack.cli import app as cli_app
from mlpack.cli.boundary import ISSUES_URL
from mlpack.errors import EXIT_BUG, EXIT_INTERRUPTED, LockError

MLPACK = str(Path(sys.executable).with_name("mlpack"))


def _app_with(name: str, callback: typer.models.CommandFunctionType) -> typer.Typer:
    app = cli_app.build([name])
    app.command(name)(callback)
    return app


def _boom_user() -> None:
    """Fail like a user error."""
    msg = "the lock is stale: requirements.txt changed"
    raise LockError(msg, hint="run `mlpack lock`")


def _boom_bug() -> None:
    """Fail like a bug."""
    raise ZeroDivisionError


def _boom_interrupt() -> None:
    """Be interrupted."""
    raise KeyboardInterrupt


def _boom_tag() -> None:
    """Fail with a tag that looks like an emoji code and like markup."""
    msg = "manifest unknown: 127.0.0.1:5000/repo:100:smile: [dim]x[/dim]"
    raise LockError(msg, hint="check the tag :100:")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mlpack {__version__}"


def test_mlpack_error_prints_error_and_hint_and_exits_with_stage_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli_app.run_app(["boom-user"], _app_with("boom-user", _boom_user))
    err = capsys.readouterr().err
    assert code == LockError.exit_code == 4
    assert err.splitlines() == [
        "error: the lock is stale: requirements.txt changed",
        "hint: run `mlpack lock`",
    ]


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["--debug", "boom-user"], _app_with("boom-user", _boom_user)) == 4
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.rstrip().endswith("hint: run `mlpack lock`")


def test_unexpected_exception_is_reported_as_a_bug(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_app.run_app(["boom-bug"], _app_with("boom-bug", _boom_bug))
    err = capsys.readouterr().err
    assert code == EXIT_BUG
    assert "ZeroDivisionError" in err
    assert "this is a bug in mlpack" in err
    assert ISSUES_URL in err


def test_ctrl_c_exits_130_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_app.run_app(["boom-int"], _app_with("boom-int", _boom_interrupt))
    assert code == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_error_text_is_printed_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_app.run_app(["boom-tag"], _app_with("boom-tag", _boom_tag)) == 4
    err = capsys.readouterr().err
    assert "error: manifest unknown: 127.0.0.1:5000/repo:100:smile: [dim]x[/dim]" in err
    assert "hint: check the tag :100:" in err


@pytest.mark.parametrize(
    ("argv", "message", "where"),
    [
        (["no-such-command"], "No such command 'no-such-command'", "mlpack"),
        ([], "Missing command", "mlpack"),
        (["ps", "--bogus"], "No such option: --bogus", "mlpack ps"),
        (["run", "--runtime", "podman", "img"], "'podman' is not one of", "mlpack run"),
        (["rerun"], "Missing argument", "mlpack rerun"),
        (["lock", "--resolver", "pip"], "'pip' is not one of", "mlpack lock"),
        (["store", "nope"], "No such command 'nope'", "mlpack store"),
        (["store"], "Missing command", "mlpack store"),
    ],
)
def test_usage_errors_are_an_error_and_a_hint_line(
    argv: list[str], message: str, where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_app.run_app(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2, captured.err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert lines[1] == f"hint: see `{where} --help`"
    assert captured.out == ""


def test_every_command_has_help() -> None:
    group = typer.main.get_command(cli_app.build(["--help"]))
    assert isinstance(group, typer.core.TyperGroup)
    assert set(group.commands) == set(cli_app.COMMANDS)
    for name, command in group.commands.items():
        assert command.help, f"{name} has no help text"


@pytest.mark.parametrize("command", ["run", "lock", "pull", "analyze", "ps"])
def test_run_help_looks_like_every_other_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_app.run_app([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Usage: mlpack {command} [OPTIONS]")
    assert "\nOptions:\n" in out


GROUPS = ("mlpack.cli.analyze", "mlpack.cli.containers", "mlpack.cli.images", "mlpack.cli.lock")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ps", "--help"], {"mlpack.cli.containers"}),
        (["--debug", "pull", "--help"], {"mlpack.cli.images"}),
        (["--version"], set()),
        (["--help"], set(GROUPS)),
    ],
)
def test_a_command_imports_only_its_own_module(argv: list[str], expected: set[str]) -> None:
    code = (
        "import sys; from mlpack.cli.app import run_app;"
        f"rc = run_app({argv!r});"
        f"print(sorted(m for m in sys.modules if m in {GROUPS!r}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.splitlines()[-1] == repr(sorted(expected)), done.stderr


def test_rich_is_not_imported_without_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import numpy\n")
    code = (
        "import sys; from mlpack.cli.app import run_app;"
        f"rc = run_app(['analyze', {str(tmp_path)!r}]);"
        f"rc += run_app(['analyze', {str(tmp_path)!r}, '--json']);"
        "assert 'rich' not in sys.modules, 'rich imported';"
        "sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "numpy" in done.stdout


def test_analyze_json_prints_one_object(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import numpy\n")
    done = subprocess.run(
        [MLPACK, "analyze", str(tmp_path), "--json"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [p["name"] for p in json.loads(done.stdout)["packages"]] == ["numpy"]


@pytest.mark.parametrize("extra", [["--json"], []])
def test_analyze_errors_are_an_error_and_a_hint(tmp_path: Path, extra: list[str]) -> None:
    not_a_dir = tmp_path / "file.txt"
    not_a_dir.write_text("x")
    done = subprocess.run(
        [MLPACK, "analyze", str(not_a_dir), *extra], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3, done.stderr
    assert [line.split(":")[0] for line in done.stderr.splitlines()] == ["error", "hint"]
    assert done.stdout == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "/tmp/" + "a" * 300],
        ["lock", "/tmp/" + "a" * 300],
        ["why", "numpy", "/tmp/" + "a" * 300],
        ["import", "/tmp/" + "a" * 300],
        ["export", "img", "-o", "/tmp/" + "a" * 300],
        ["pull", "--ca-cert", "/tmp/" + "a" * 300, "img"],
    ],
)
def test_a_too_long_path_is_an_error_not_a_bug(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_app.run_app(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: invalid path: the name {'a' * 40!r}... in it is too long",
        "hint: each part of a path can have at most 255 bytes",
    ]


def test_a_home_that_cannot_be_a_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLPACK_HOME", "/etc/passwd/sub")
    assert cli_app.run_app(["ps"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == "error: MLPACK_HOME /etc/passwd/sub cannot be used: /etc/passwd is not a directory"
    )
    assert err[1].startswith("hint: ")


def test_mlpack_runtime_is_forwarded(tmp_path: Path) -> None:
    for argv in (
        [MLPACK, "runtime", "--root", str(tmp_path), "state", "nope"],
        [str(Path(MLPACK).with_name("mlpack-runtime")), "--root", str(tmp_path), "state", "nope"],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 7, done.stderr
        assert done.stderr.startswith("error: container nope does not exist\nhint: ")


def test_debug_reaches_the_forwarded_runtime(tmp_path: Path) -> None:
    done = subprocess.run(
        [MLPACK, "--debug", "runtime", "--root", str(tmp_path), "state", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 7
    assert "Traceback" in done.stderr
    assert "error: container nope does not exist" in done.stderr


def test_runtime_usage_errors_are_an_error_and_a_hint(tmp_path: Path) -> None:
    done = subprocess.run(
        [MLPACK, "runtime", "--root", str(tmp_path), "bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: argument op: invalid choice: 'bogus'")
    assert lines[1] == "hint: see `mlpack runtime --help`"


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    """``mlpack analyze --json . | true``: exit 141 as SIGPIPE would, no traceback."""
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [MLPACK, "analyze", "--json", str(repo / "examples" / "training")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "MLPACK_HOME": "/nonexistent-mlpack-home", "COLUMNS": "80"},
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.close()  # the reader goes away before anything is written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == ""
