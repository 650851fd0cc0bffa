"""The no-op memo: recorded only for unchanged inputs, invalidated by any input byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock import stamp
from mlpack.lock.stamp import Memo

CONFIG = 'name = "proj"\npython = "3.11"\n[env]\nEPOCHS = { default = "3" }\n'


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mlpack.toml").write_text(CONFIG)
    (proj / "mlpack.lock").write_text("# a lock\n")
    return proj


def test_the_memo_records_nothing_when_inputs_change_during_the_run(project: Path) -> None:
    memo = Memo(project)
    (project / "mlpack.toml").write_text(CONFIG.replace('"3"', '"5"'))
    memo.remember("check")
    (project / "mlpack.toml").write_text(CONFIG)
    assert not stamp.is_current(project, "check")
    memo = Memo(project)
    memo.remember("check")
    assert stamp.is_current(project, "check")
    assert not stamp.is_current(project, "lock")  # each mode is recorded on its own


def test_a_changed_lock_or_config_byte_is_not_current(project: Path) -> None:
    Memo(project).remember("lock")
    assert stamp.is_current(project, "lock")
    (project / "mlpack.lock").write_text("# another lock\n")
    assert not stamp.is_current(project, "lock")
    Memo(project).remember("lock")
    (project / "mlpack.toml").write_text(CONFIG + "\n")
    assert not stamp.is_current(project, "lock")


def test_the_memo_lives_under_mlpack_home(project: Path, tmp_path: Path) -> None:
    Memo(project).remember("lock")
    assert len(list((tmp_path / "home" / "cache" / "lock-ok").iterdir())) == 1


def test_the_fingerprint_covers_the_lock_package_and_no_cli_module() -> None:
    sources = stamp._sources()
    assert "lock/locker.py" in sources
    assert "lock/stamp.py" in sources
    assert "config.py" in sources
    assert not any(s.startswith("cli/") for s in sources)
