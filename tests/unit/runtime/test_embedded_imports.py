"""Import discipline: the helper's import list and bytecode, no rich or docker on `mlpack run`."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.runtime.embedded import spawn
from tests.unit.source_scan import calls

# The helper imports the standard library, mlpack.oslib and its own modules, nothing else.
HELPER_OWN = ("mlpack.oslib", "mlpack.runtime.embedded.helper")
PARENTS = {"mlpack", "mlpack.runtime", "mlpack.runtime.embedded"}


def _helper_imports(argv: list[str]) -> set[str]:
    """Every module the helper imports (-X importtime), up to its request: none comes."""
    ctl_r, ctl_w = os.pipe()
    st_r, st_w = os.pipe()
    os.close(ctl_w)  # EOF instead of a request: the helper exits at once
    try:
        done = subprocess.run(
            [argv[0], "-X", "importtime", *argv[1:], str(ctl_r), str(st_w)],
            pass_fds=(ctl_r, st_w), capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        for fd in (ctl_r, st_r, st_w):
            os.close(fd)
    lines = done.stderr.splitlines()[1:]  # after the header line
    return {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time:")}


def test_the_helper_imports_only_the_standard_library_and_oslib() -> None:
    loaded = _helper_imports(spawn.helper_argv())
    assert "mlpack.runtime.embedded.helper.supervisor" in loaded
    ours = {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names}
    stray = {m for m in ours - PARENTS if not m.startswith(HELPER_OWN)}
    assert not stray, stray
    assert not {"json", "re", "pathlib", "typing"} & loaded


def test_helper_argv_passes_on_the_bytecode_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-I hides PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX from the helper: they are flags."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setattr(sys, "pycache_prefix", None)
    assert "-B" in spawn.helper_argv()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path))
    argv = spawn.helper_argv()
    assert "-B" not in argv
    assert argv[argv.index("-X") + 1] == f"pycache_prefix={tmp_path}"
    _helper_imports(argv)  # the interpreter honours it: the modules are cached under the prefix
    cached = {p.name.split(".")[0] for p in tmp_path.rglob("*.pyc")}
    assert {"supervisor", "pid1", "inroot", "jsoncodec"} <= cached


def test_an_embedded_run_imports_no_docker_sdk_or_rich(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mlpack.cli.app import run_app\n"
        "rc = run_app(['run', '-m', '64m', '-e', 'A=1', '/nonexistent-rootfs-dir', 'true'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'rich', 'docker', 'requests', 'jinja2'})\n"
        "print(rc, heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"MLPACK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.stdout.strip() == "7 []", done.stdout + done.stderr
    assert "error: root filesystem /nonexistent-rootfs-dir is not a directory" in done.stderr


def test_no_subprocess_uses_preexec_fn_or_keeps_fds() -> None:
    """§1: ``preexec_fn`` is unsafe in a threaded process, and a helper inherits only the fds
    it is given (``close_fds`` left at its default, ``pass_fds`` explicit)."""
    for at, call in calls():
        for keyword in call.keywords:
            assert keyword.arg != "preexec_fn", at
            if keyword.arg == "close_fds":
                assert isinstance(keyword.value, ast.Constant), at
                assert keyword.value.value is True, at


def test_the_oci_runtime_start_path_imports_no_typing() -> None:
    """`mlpack-runtime run`'s modules annotate without importing typing (~2.4 ms of CPU, B1),
    and its parser asks no terminal for a width (shutil, ~2 ms) until help is printed.
    """
    code = (
        "import sys\n"
        "from mlpack.cli import oci_runtime\n"
        "oci_runtime.parser().parse_args(['run', '--bundle', '/b', 'id'])\n"
        "from mlpack.runtime.embedded import lifecycle, seccomp, spawn\n"
        "print(sorted(m for m in sys.modules if m in ('typing', 'shutil') or m.startswith('mlpack.')))\n"
    )
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[3])  # fmt: skip
    loaded = done.stdout
    assert "mlpack.runtime.embedded.lifecycle" in loaded
    assert "'typing'" not in loaded
    assert "'shutil'" not in loaded


def test_the_oci_runtime_help_still_fits_the_terminal() -> None:
    def help_lines(columns: int) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", "from mlpack.cli.oci_runtime import main; main()", "run", "-h"],
            capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": str(columns)},
        )  # fmt: skip
        assert done.stdout.startswith("usage: mlpack-runtime run")
        return done.stdout.splitlines()

    narrow, wide = help_lines(50), help_lines(200)
    assert len(narrow) > len(wide)  # wrapped to the narrow terminal
    assert max(len(line) for line in wide) > 78  # not to a fixed width either
