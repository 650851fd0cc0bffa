"""``mlpack run``'s values: every bad one is an error line, a hint line, exit 2, nothing made."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.cli.app import run_app

if TYPE_CHECKING:
    from pathlib import Path

BAD = [
    (["--cpus", "nan"], "range of CPUs is from 0.01"),
    (["--cpus", "inf"], "range of CPUs is from 0.01"),
    (["--cpus", "abc"], "range of CPUs is from 0.01"),
    (["--cpus", "1000000"], "range of CPUs is from 0.01"),
    (["--cpus", "0.0001"], "range of CPUs is from 0.01"),
    (["-m", "abc"], "invalid --memory 'abc'"),
    (["-m", "9" * 400], "invalid --memory"),
    (["-m", "-5m"], "invalid --memory '-5m'"),
    (["-m", "0"], "invalid --memory '0'"),
    (["--pids-limit", "abc"], "invalid --pids-limit 'abc'"),
    (["--pids-limit", "9" * 30], "invalid --pids-limit"),
    (["--shm-size", "xyz"], "invalid --shm-size 'xyz'"),
    (["--network", "bridge"], "invalid --network 'bridge'"),
    (["-w", "relative"], "not an absolute path"),
    (["-w", "/" + "a" * 300], "is too long"),
    (["--name", "a b"], "invalid container name 'a b'"),
    (["--name", ".hidden"], "invalid container name '.hidden'"),
    (["--name", "line\nbreak"], "invalid container name"),
    (["--name", "n" * 65], "invalid container name"),
    (["--hostname", "h" * 65], "invalid --hostname"),
    (["--label", "nolabel"], "invalid --label 'nolabel'"),
    (["-u", "4294967295"], "uid 4294967295 is outside 0..2147483647"),
    (["-u", "99999999999"], "uid 99999999999 is outside 0..2147483647"),
    (["-u", "0:4294967295"], "gid 4294967295 is outside 0..2147483647"),
    (["-u", "-1"], "invalid --user '-1'"),
    (["-v", "/tmp"], "invalid --volume '/tmp'"),
    (["-v", "/tmp:relative"], "invalid --volume"),
    (["-v", "/" + "a" * 300 + ":/x"], "is too long"),
    (["-e", "=x"], "invalid environment variable"),
    (["--env-file", "/nonexistent/env"], "cannot read --env-file /nonexistent/env"),
    (["--cap-profile", "all"], "'all' is not one of"),
]


@pytest.mark.parametrize(("flags", "message"), BAD)
def test_bad_values_are_refused_before_anything_is_made(
    flags: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLPACK_HOME", str(home))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    assert run_app(["run", *flags, str(rootfs), "true"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 2, captured.err
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert lines[1].startswith("hint: ")
    assert captured.out == ""
    assert not home.exists()


def test_the_name_hint_states_the_rule_the_check_applies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_app(["run", "--name", "-x", "img"]) == 2
    hint = capsys.readouterr().err.splitlines()[1]
    assert hint == (
        "hint: use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    )
