from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.lock.indexes import PYPI, Indexes, choose_indexes, pip_indexes, redact, strip_userinfo


def test_strip_userinfo_and_redact() -> None:
    assert (
        strip_userinfo("https://user:s3cret@pkgs.example.com/simple")
        == "https://pkgs.example.com/simple"
    )
    assert strip_userinfo("https://pypi.org/simple") == "https://pypi.org/simple"
    text = "error: GET https://__token__:s3cret@pkgs.example.com/simple/x/ failed"
    assert "s3cret" not in redact(text)
    assert "https://pkgs.example.com/simple/x/" in redact(text)
    both = Indexes(index_url="https://a:b@h1/simple", extra_index_urls=("https://c@h2/simple",))
    assert both.public().all == ("https://h1/simple", "https://h2/simple")


@pytest.fixture
def clean_pip_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    return tmp_path


def test_pip_config_file_is_read(clean_pip_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = clean_pip_env / "pip.conf"
    conf.write_text(
        "[global]\nindex-url = https://u:p@mirror.example/simple\nextra-index-url =\n  https://x.example/simple\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    found = pip_indexes()
    assert found is not None
    assert found.index_url == "https://u:p@mirror.example/simple"  # credentials used at lock time
    assert found.extra_index_urls == ("https://x.example/simple",)


def test_pip_environment_wins(clean_pip_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert pip_indexes() is None
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    found = pip_indexes()
    assert found is not None
    assert found.index_url == "https://env.example/simple"
    assert found.source == "PIP_INDEX_URL"


def test_mlpack_toml_wins_over_pip(clean_pip_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "https://env.example/simple")
    chosen = choose_indexes("https://toml.example/simple", ())
    assert chosen.index_url == "https://toml.example/simple"
    assert chosen.source == "mlpack.toml"
    monkeypatch.delenv("PIP_INDEX_URL")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    assert choose_indexes(None, ()).index_url == PYPI


def test_machine_local_indexes_resolve_best_match_but_are_not_public(tmp_path: Path) -> None:
    from mlpack.lock.resolvers import ResolveRequest
    from mlpack.lock.uv import uv_compile_args

    local = Indexes(
        extra_index_urls=("file:///opt/pypi/simple", "https://mirror.example/simple"),
        source="pip configuration",
    )
    assert local.machine_local == ("file:///opt/pypi/simple",)
    assert local.public().all == ("https://pypi.org/simple", "https://mirror.example/simple")
    declared = Indexes(extra_index_urls=("file:///srv/simple",), source="mlpack.toml")
    assert declared.machine_local == ()  # the project named it: it is the project's
    assert declared.public().extra_index_urls == ("file:///srv/simple",)

    def args(indexes: Indexes) -> list[str]:
        return uv_compile_args(
            ResolveRequest(
                requirements=(), python="3.11.2", platform="linux/amd64", indexes=indexes,
                workdir=tmp_path,
            )
        )  # fmt: skip

    assert "file:///opt/pypi/simple" in args(local)
    assert args(local)[args(local).index("--index-strategy") + 1] == "unsafe-best-match"
    assert "--index-strategy" not in args(declared)


def test_the_trust_store_is_loaded_once_per_bundle(tmp_path: Path) -> None:
    """Loading it costs about 30 ms of CPU, and a wheelhouse fetch opens a connection per file."""
    import shutil

    from mlpack.lock.indexes import ssl_context

    extra = tmp_path / "proxy-ca.pem"
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", extra)
    assert ssl_context() is ssl_context()
    assert ssl_context(extra) is ssl_context(extra)
    assert ssl_context(extra) is not ssl_context()
    assert ssl_context().check_hostname
