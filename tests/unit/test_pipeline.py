"""mlpack.pipeline hands the locker its backends, and the no-op memo follows the lock."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mlpack import pipeline
from mlpack.errors import LockError
from mlpack.lock import stamp
from mlpack.lock.locker import LockResult
from mlpack.lock.locker import lock as real_lock
from mlpack.lock.resolvers import Pin
from mlpack.progress import RecordingReporter, using
from tests.unit.lock.fakes import FakeBase, FakeResolver

CONFIG = (
    'name = "proj"\npython = "3.11"\n[dependencies]\n'
    'index-url = "http://127.0.0.1:9/simple"\n'  # nothing listens: listings fail fast
    'packages = [{ requirement = "numpy", source = "requirements.txt:1" }]\n'
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "mlpack.toml").write_text(CONFIG)
    return proj


def test_the_locker_is_handed_the_store_resolver_and_the_embedded_runner(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_lock(*_args: object, **kw: Any) -> LockResult:
        seen.update(kw)
        raise LockError("stop here", hint="")

    monkeypatch.setattr(pipeline, "lock", fake_lock)
    with pytest.raises(LockError, match="stop here"):
        pipeline.lock_project(project)
    assert isinstance(seen["base_resolver"], pipeline.StoreBaseResolver)
    assert seen["image_runner"] is pipeline.embedded_image_runner
    assert seen["home"] == Path(os.environ["MLPACK_HOME"])


def test_lock_then_check_then_the_memo(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "StoreBaseResolver", FakeBase)
    pins = (Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),)
    monkeypatch.setattr(
        pipeline, "lock", lambda *a, **kw: real_lock(*a, **kw, resolver=FakeResolver(pins))
    )
    assert not stamp.is_current(project, "lock")
    assert pipeline.lock_project(project).resolved
    assert stamp.is_current(project, "lock")  # recorded after the write
    assert pipeline.check_lock(project) == project / "mlpack.lock"
    assert stamp.is_current(project, "check")
    (project / "mlpack.toml").write_text(CONFIG.replace("numpy", "pandas"))
    assert not stamp.is_current(project, "check")
    with pytest.raises(LockError, match=r"mlpack\.lock is stale: the requirements"):
        pipeline.check_lock(project)


def _fake_locking(monkeypatch: pytest.MonkeyPatch, resolver: FakeResolver) -> None:
    monkeypatch.setattr(pipeline, "StoreBaseResolver", FakeBase)
    monkeypatch.setattr(pipeline, "lock", lambda *a, **kw: real_lock(*a, **kw, resolver=resolver))


def test_without_a_config_the_lock_uses_the_analysis_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    proj = tmp_path / "repo"
    (proj / "tests").mkdir(parents=True)
    (proj / "train.py").write_text("import numpy\n\nprint(numpy.zeros(2))\n")
    (proj / "tests" / "test_train.py").write_text("import pytest\nimport hypothesis\n")
    resolver = FakeResolver((Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),))
    _fake_locking(monkeypatch, resolver)
    rep = RecordingReporter()
    with using(rep):
        result = pipeline.lock_project(proj)
    assert result.resolved
    assert not (proj / "mlpack.toml").exists()
    asked = {r.name: r.source for r in resolver.requests[0].requirements}
    assert asked == {"numpy": "train.py:1"}  # test-only imports never reach the lock
    assert any("no mlpack.toml" in n and "in memory" in n for n in rep.notices)
    # No config: the memo (which reads only config bytes) never answers for the code.
    assert not stamp.is_current(proj, "lock")
    assert pipeline.check_lock(proj) == proj / "mlpack.lock"


@pytest.mark.parametrize(
    ("files", "config_python", "source", "expected"),
    [
        ({}, "3.11", "rule: default", ("3.13", ("3.12", "3.11", "3.10", "3.9"))),
        ({"pyproject.toml": '[project]\nrequires-python = ">=3.10"\n'}, "3.13",
         "pyproject.toml:2", ("3.13", ("3.12", "3.11", "3.10"))),
        ({".python-version": "3.10\n"}, "3.10", ".python-version:1", ("3.10", ())),
        ({}, "3.12", "rule: default", ("3.12", ())),  # edited by hand
        ({}, "3.11", "mlpack.toml", ("3.11", ())),
    ],
)  # fmt: skip
def test_python_is_the_locks_to_choose_only_when_nothing_pins_it(
    tmp_path: Path,
    files: dict[str, str],
    config_python: str,
    source: str,
    expected: tuple[str, tuple[str, ...]],
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "mlpack.toml").write_text(
        f'name = "p"\npython = "{config_python}"\npython-source = "{source}"\n'
    )
    config = pipeline.project_config(tmp_path, note=lambda _: None)
    assert pipeline.python_choice(tmp_path, config) == expected
    # The lock's note names the file that allowed the choice.
    allowed_by = pipeline.config_lock_inputs(tmp_path, config).python_allowed_by
    if expected[1] and files:
        assert allowed_by == "pyproject.toml:2 requires-python >=3.10"
    elif expected[1]:
        assert allowed_by == "no file pins a Python version"
    else:
        assert allowed_by == ""


def test_a_config_python_whose_file_changed_since_is_said(tmp_path: Path) -> None:
    """mlpack.toml's python was taken from .python-version, which now pins another version:
    the config still wins (analyze --write changes no value), and the user is told.
    """
    (tmp_path / ".python-version").write_text("3.11\n")
    (tmp_path / "mlpack.toml").write_text(
        'name = "p"\npython = "3.13"\npython-source = ".python-version:1"\n'
    )
    notes: list[str] = []
    config = pipeline.project_config(tmp_path, note=notes.append)
    assert config.python == "3.13"
    said = (
        "mlpack.toml sets Python 3.13, taken from .python-version:1; the project's files now "
        "say 3.11 (.python-version:1): mlpack.toml wins, so edit its python line to follow them"
    )
    assert notes == [said]
    (tmp_path / ".python-version").write_text("3.13\n")
    notes.clear()
    pipeline.project_config(tmp_path, note=notes.append)
    assert notes == []
    # Set in mlpack.toml itself, or by the default rule: nothing to compare with.
    (tmp_path / "mlpack.toml").write_text('name = "p"\npython = "3.12"\n')
    pipeline.project_config(tmp_path, note=notes.append)
    assert notes == []


def test_machine_local_pip_indexes_resolve_but_stay_out_of_the_lock(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nextra-index-url = file:///opt/pypi/simple https://mirror.example/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    (project / "mlpack.toml").write_text(
        CONFIG.replace('index-url = "http://127.0.0.1:9/simple"\n', "")
    )
    resolver = FakeResolver((Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),))
    _fake_locking(monkeypatch, resolver)
    pipeline.lock_project(project)
    assert "file:///opt/pypi/simple" in resolver.requests[0].indexes.extra_index_urls
    text = (project / "mlpack.lock").read_text()
    assert "file://" not in text
    assert "https://mirror.example/simple" in text


def test_build_finds_the_lock_of_an_unpinned_python_current(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "mlpack.toml").write_text(
        CONFIG.replace('python = "3.11"', 'python = "3.11"\npython-source = "rule: default"')
    )
    resolver = FakeResolver((Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r",)),))
    _fake_locking(monkeypatch, resolver)
    assert pipeline.project_lock_inputs(project).fallback_pythons  # the lock chooses
    pipeline.lock_project(project)
    config = pipeline.project_config(project, note=lambda _: None)
    # --frozen fails on a stale lock: lock and build must compute the same inputs.
    frozen = pipeline.project_lock(project, config, frozen=True, note=lambda _: None)
    assert frozen.target.python_minor == "3.13"
