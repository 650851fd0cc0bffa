"""`mlpack pull` with captured output: the digest lines on stdout, error and hint on stderr."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.cli.app import run_app
from mlpack.oci import mediatypes
from tests.unit.oci.test_registry_errors import FakeRegistry, fake  # noqa: F401 - fixture

if TYPE_CHECKING:
    from pathlib import Path


def _pull(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    """(code, stdout, stderr) of ``mlpack ARGS`` into a fresh store."""
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    code = run_app(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_success_prints_the_digest(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg, addr = fake
    # ":100:" is also rich's emoji code for the hundred-points sign: it must print verbatim.
    reg.manifests["100"] = reg.manifests["1"]
    code, out, err = _pull(["pull", f"{addr}/lib/app:100"], tmp_path, monkeypatch, capsys)
    assert code == 0
    assert out.startswith(f"{addr}/lib/app:100: sha256:")
    assert out.endswith(f": sha256:{__import__('hashlib').sha256(reg.manifest).hexdigest()}\n")
    assert err == ""


def test_index_digest_line(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import hashlib
    import json

    reg, addr = fake
    manifest_digest = "sha256:" + hashlib.sha256(reg.manifest).hexdigest()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": len(reg.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    ).encode()
    reg.manifests["multi"] = (index, mediatypes.OCI_INDEX)
    code, out, _ = _pull(["pull", f"{addr}/lib/app:multi"], tmp_path, monkeypatch, capsys)
    assert code == 0
    assert out.startswith(f"{addr}/lib/app:multi: {manifest_digest}\nindex: sha256:")


@pytest.mark.parametrize("status", [404, 500])
def test_registry_errors(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    reg, addr = fake
    reg.status = status
    code, out, err = _pull(["pull", f"{addr}/lib/app:1"], tmp_path, monkeypatch, capsys)
    assert (code, out) == (5, "")
    lines = err.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["error", "hint"]


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (["--ca-cert", "/nonexistent/ca.pem"], 2),  # ConfigError
        (["--platform", "not a platform"], 5),  # ImageError
    ],
)
def test_option_errors(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    status: int,
) -> None:
    _, addr = fake
    code, out, err = _pull(["pull", f"{addr}/lib/app:1", *extra], tmp_path, monkeypatch, capsys)
    assert (code, out) == (status, "")
    assert [line.split(":", 1)[0] for line in err.splitlines()] == ["error", "hint"]


def test_unreachable_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _pull(["pull", "127.0.0.1:9/lib/app:1"], tmp_path, monkeypatch, capsys)
    assert (code, out) == (5, "")
    assert [line.split(":", 1)[0] for line in err.splitlines()] == ["error", "hint"]
