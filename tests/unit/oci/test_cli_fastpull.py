"""`mlpack pull` with captured output skips typer and rich, and prints what the full CLI prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.cli import _fast_path
from mlpack.cli.app import run_app
from mlpack.cli.fastpull import dispatch, parse
from mlpack.oci import mediatypes
from tests.unit.oci.test_registry_errors import FakeRegistry, fake  # noqa: F401 - fixture

if TYPE_CHECKING:
    from pathlib import Path


def _both(
    args: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """(code, stdout, stderr) of the typer command and of the fast path, each into a fresh store."""
    results = []
    for name, run in (("typer", run_app), ("fast", dispatch)):
        monkeypatch.setenv("MLPACK_HOME", str(tmp_path / name))
        code = run(list(args))
        assert code is not None, f"{name} did not handle {args}"
        captured = capsys.readouterr()
        results.append((code, captured.out, captured.err))
    return results[0], results[1]


def test_pull_is_routed_to_the_fast_path() -> None:
    assert _fast_path(["pull", "x:1"]) is dispatch


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["pull", "a:1"], ("a:1", "linux/amd64", None, [])),
        (
            ["pull", "--platform", "linux/arm64", "a:1", "--insecure-registry=h:5", "--ca-cert=c"],
            ("a:1", "linux/arm64", "c", ["h:5"]),
        ),
        (["pull", "a:1", "--help"], None),
        (["pull"], None),
        (["pull", "a:1", "b:1"], None),
        (["pull", "a:1", "--platform"], None),
        (["pull", "a:1", "--quiet"], None),
    ],
)
def test_parse(args: list[str], expected: tuple[str, str, str | None, list[str]] | None) -> None:
    parsed = parse(args)
    if expected is None:
        assert parsed is None
        return
    assert parsed is not None
    assert (parsed[0], parsed[1], None if parsed[2] is None else str(parsed[2]), parsed[3]) == (
        expected
    )


def test_success_prints_the_same(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg, addr = fake
    # ":100:" is also rich's emoji code for the hundred-points sign: both must print it verbatim.
    reg.manifests["100"] = reg.manifests["1"]
    typer_result, fast_result = _both(
        ["pull", f"{addr}/lib/app:100"], tmp_path, monkeypatch, capsys
    )
    assert typer_result == fast_result
    code, out, err = fast_result
    assert code == 0
    assert out.endswith(f": sha256:{__import__('hashlib').sha256(reg.manifest).hexdigest()}\n")
    assert err == ""


def test_index_digest_line_is_the_same(
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
    typer_result, fast_result = _both(
        ["pull", f"{addr}/lib/app:multi"], tmp_path, monkeypatch, capsys
    )
    assert typer_result == fast_result
    assert "\nindex: sha256:" in fast_result[1]


@pytest.mark.parametrize("status", [404, 500])
def test_registry_errors_print_the_same(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    reg, addr = fake
    reg.status = status
    typer_result, fast_result = _both(["pull", f"{addr}/lib/app:1"], tmp_path, monkeypatch, capsys)
    assert typer_result == fast_result
    code, out, err = fast_result
    assert (code, out) == (5, "")
    lines = err.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == ["error", "hint"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--ca-cert", "/nonexistent/ca.pem"],  # ConfigError, exit 2
        ["--platform", "not a platform"],
    ],
)
def test_option_errors_print_the_same(
    fake: tuple[FakeRegistry, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
) -> None:
    _, addr = fake
    typer_result, fast_result = _both(
        ["pull", f"{addr}/lib/app:1", *extra], tmp_path, monkeypatch, capsys
    )
    assert typer_result == fast_result
    assert fast_result[0] != 0
    assert fast_result[2].startswith("error: ")


def test_unreachable_registry_prints_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    typer_result, fast_result = _both(
        ["pull", "127.0.0.1:9/lib/app:1"], tmp_path, monkeypatch, capsys
    )
    assert typer_result == fast_result
    assert fast_result[0] == 5


def test_terminal_env_defers_to_the_full_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert dispatch(["pull", "a:1"]) is None
