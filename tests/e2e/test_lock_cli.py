"""`mlpack lock`, `lock --check`, `why` and `fetch` through the CLI, on a local index (offline)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack import pipeline
from mlpack.cli.app import run_app
from mlpack.lock.resolvers import Pin, ResolveRequest
from tests.unit.lock.fakes import FakeBase, http_server, make_wheel, write_simple_index


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    built = tmp_path / "built"
    wheels = [
        make_wheel(built, "webby", "1.0", requires=("helpers>=2",)),
        make_wheel(built, "helpers", "2.1"),
        make_wheel(built, "helpers", "2.0"),
    ]
    write_simple_index(tmp_path / "srv" / "simple", wheels)
    monkeypatch.setattr(pipeline, "StoreBaseResolver", FakeBase)
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with http_server(tmp_path / "srv") as url:
        proj = tmp_path / "proj"
        proj.mkdir()
        index = url.replace("http://", "http://bob:pa55word@") + "/simple"
        (proj / "mlpack.toml").write_text(
            'name = "proj"\npython = "3.11"\n'
            "[dependencies]\n"
            f'index-url = "{index}"\n'
            'packages = [{ requirement = "webby", source = "requirements.txt:1" }]\n'
            '[env]\nTOKEN = { secret = true }\nEPOCHS = { default = "3" }\n'
        )
        yield proj


def test_lock_check_why_fetch(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["lock", str(project)]) == 0
    text = (project / "mlpack.lock").read_text()
    assert "pa55word" not in text
    assert "bob" not in text
    assert 'name = "helpers"\nversion = "2.1"\nvia = ["pkg:webby"]' in text
    assert 'name = "EPOCHS"\ndefault = "3"' in text
    before = (project / "mlpack.lock").stat().st_mtime_ns
    capsys.readouterr()

    assert run_app(["lock", str(project)]) == 0  # unchanged inputs: no resolve, no write
    assert "up to date" in capsys.readouterr().out
    assert (project / "mlpack.lock").stat().st_mtime_ns == before
    assert run_app(["lock", "--check", str(project)]) == 0

    assert run_app(["why", "helpers", str(project)]) == 0
    assert "webby -> helpers  (from requirements.txt:1)" in capsys.readouterr().out

    assert run_app(["fetch", str(project)]) == 0
    assert "2 files" in capsys.readouterr().out
    house = Path(os.environ["MLPACK_HOME"]) / "wheelhouse" / "sha256"
    assert sorted(p.name for p in house.glob("*/*")) == [
        "helpers-2.1-py3-none-any.whl",
        "webby-1.0-py3-none-any.whl",
    ]

    config = project / "mlpack.toml"
    config.write_text(config.read_text().replace('default = "3"', 'default = "4"'))
    assert run_app(["lock", "--check", str(project)]) == 4
    err = capsys.readouterr().err
    assert "mlpack.lock is stale: the environment variables changed since" in err
    assert (project / "mlpack.lock").stat().st_mtime_ns == before


def test_upgrade_keeps_pins_unless_asked(project: Path, tmp_path: Path) -> None:
    assert run_app(["lock", str(project)]) == 0
    lock_path = project / "mlpack.lock"
    lock_path.write_text(lock_path.read_text().replace('version = "2.1"', 'version = "2.0"'))
    config = project / "mlpack.toml"
    config.write_text(config.read_text() + 'OTHER = { default = "x" }\n')
    assert run_app(["lock", str(project)]) == 0  # re-resolves, preferring the locked 2.0
    assert 'name = "helpers"\nversion = "2.0"' in lock_path.read_text()
    assert run_app(["lock", "--upgrade", str(project), "helpers"]) == 0
    assert 'name = "helpers"\nversion = "2.1"' in lock_path.read_text()


def test_why_unknown_package(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(["lock", str(project)]) == 0
    assert run_app(["why", "nosuch", str(project)]) == 4
    assert "nosuch is not in mlpack.lock" in capsys.readouterr().err


def test_lock_resolves_and_a_failed_relock_keeps_the_lock(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock_path = project / "mlpack.lock"
    lock_path.unlink(missing_ok=True)
    capsys.readouterr()
    assert run_app(["lock", "--resolver", "uv", str(project)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {lock_path}: 2 packages for Python 3.11.2")
    written = lock_path.read_bytes()

    config = project / "mlpack.toml"
    config.write_text(config.read_text().replace('requirement = "webby"', 'requirement = "nosuch"'))
    assert run_app(["lock", str(project)]) == 4
    assert capsys.readouterr().err.startswith("error: ")
    assert lock_path.read_bytes() == written


def test_uv_starts_on_the_remembered_python_while_the_base_resolves(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpack.lock.uv import UvResolver

    original = UvResolver.resolve
    pythons: list[str] = []

    def recording(self: UvResolver, request: ResolveRequest) -> tuple[Pin, ...]:
        pythons.append(request.python)
        return original(self, request)

    monkeypatch.setattr(UvResolver, "resolve", recording)
    lock_path = project / "mlpack.lock"
    assert run_app(["lock", str(project)]) == 0  # no guess yet: base first, then uv
    reference = lock_path.read_bytes()
    (guess,) = (Path(os.environ["MLPACK_HOME"]) / "cache" / "lock-base-python").iterdir()
    assert guess.read_text() == "3.11.2\n"
    assert pythons == ["3.11.2"]

    for remembered, expected in (("3.11.2", ["3.11.2"]), ("3.11.1", ["3.11.1", "3.11.2"])):
        guess.write_text(f"{remembered}\n")
        lock_path.unlink()
        pythons.clear()
        assert run_app(["lock", str(project)]) == 0
        assert pythons == expected  # a wrong guess resolves again for the base's version
        assert lock_path.read_bytes() == reference
        assert guess.read_text() == "3.11.2\n"


def test_a_relock_that_moves_no_pin_reuses_the_file_names(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpack.lock import uv

    assert run_app(["lock", str(project)]) == 0
    lock_path = project / "mlpack.lock"
    before = lock_path.read_text()
    assert 'name = "helpers-2.1-py3-none-any.whl"' in before

    def no_second_run(*_args: object, **_kw: object) -> tuple[Pin, ...]:
        raise AssertionError("the file names should come from the previous lock")

    monkeypatch.setattr(uv, "with_target_files", no_second_run)
    config = project / "mlpack.toml"
    config.write_text(config.read_text().replace('default = "3"', 'default = "5"'))
    assert run_app(["lock", str(project)]) == 0
    after = lock_path.read_text()
    assert after != before
    assert after.split("[[packages]]", 1)[1] == before.split("[[packages]]", 1)[1]
