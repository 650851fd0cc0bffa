"""The image commands' output: one `error:` line with a hint per failure, digests on success."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import pytest

from mlpack.cli.app import run_app
from mlpack.oci import auth
from mlpack.oci.store import Store
from tests.oci_fixtures import busybox_image
from tests.unit.oci.test_registry_errors import FakeRegistry, fake  # noqa: F401 - fixture

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    return Store(tmp_path / "home")


def _one_error(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert sum(line.startswith("error:") for line in lines) == 1, stderr
    assert any(line.startswith("hint:") for line in lines), stderr


@pytest.mark.parametrize("status", [401, 403, 404, 429, 500, 502])
def test_pull_status_errors(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    home: Store,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    reg, addr = fake
    reg.status = status
    assert run_app(["pull", f"{addr}/lib/app:1"]) == 5
    _one_error(capsys.readouterr().err)
    assert home.check().ok


def test_pull_prints_digest_and_store_commands(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    home: Store,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _, addr = fake
    assert run_app(["pull", f"{addr}/lib/app:1"]) == 0
    out = capsys.readouterr().out
    assert "sha256:" in out
    long_ref = f"{addr}/a-rather-long/organisation/and-project-name/for-this-image:2026-11-28"
    home.tag(long_ref, home.resolve(f"{addr}/lib/app:1"))
    assert run_app(["images"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split() == ["REFERENCE", "DIGEST", "SIZE", "CREATED"]
    assert {line.split()[0] for line in listed[1:]} == {f"{addr}/lib/app:1", long_ref}
    assert run_app(["rmi", long_ref]) == 0
    capsys.readouterr()
    assert run_app(["store", "check"]) == 0
    assert "ok: 3 blobs verified" in capsys.readouterr().out
    layer = next(p for p in (home.root / "blobs" / "sha256").iterdir() if p.stat().st_size > 1000)
    layer.write_bytes(b"garbage")
    assert run_app(["store", "check"]) == 5
    err = capsys.readouterr().err
    assert f"corrupt: sha256:{layer.name}" in err
    _one_error(err)
    assert run_app(["rmi", f"{addr}/lib/app:1"]) == 0
    assert run_app(["prune"]) == 0
    assert "freed" in capsys.readouterr().out
    assert home.check().ok
    assert run_app(["rmi", "nothing:here"]) == 5
    _one_error(capsys.readouterr().err)
    assert run_app(["export", "nothing:here", "-o", str(tmp_path / "x.tar")]) == 5
    _one_error(capsys.readouterr().err)
    assert not (tmp_path / "x.tar").exists()
    assert run_app(["import", str(tmp_path / "missing.tar")]) == 5
    _one_error(capsys.readouterr().err)


def test_export_import_cli(home: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    digest = busybox_image(home, tmp_path, "test/bb:1")
    tar = tmp_path / "bb.tar"
    assert run_app(["export", "test/bb:1", "-o", str(tar), "--format", "both"]) == 0
    assert digest in capsys.readouterr().out
    assert run_app(["export", "test/bb:1", "-o", str(tar), "--format", "zip"]) == 2
    _one_error(capsys.readouterr().err)
    assert run_app(["rmi", "test/bb:1"]) == 0
    assert run_app(["import", str(tar)]) == 0
    assert f"test/bb:1: {digest}" in capsys.readouterr().out


def test_credential_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "reg.example:5000" ]; then '
        'echo \'{"ServerURL":"reg.example:5000","Username":"u","Secret":"s3cret-xyz"}\'; '
        "else echo 'credentials not found' >&2; exit 1; fi\n"
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"reg.example:5000": "fake"}}))
    creds = auth.lookup("reg.example:5000", config=config)
    assert creds is not None
    assert (creds.username, creds.password) == ("u", "s3cret-xyz")
    assert "s3cret" not in repr(creds)
    config.write_text(json.dumps({"credsStore": "fake"}))
    assert auth.lookup("other.example", config=config) is None
    config.write_text(json.dumps({"credsStore": "missing"}))
    with pytest.raises(Exception, match="docker-credential-missing"):
        auth.lookup("other.example", config=config)
