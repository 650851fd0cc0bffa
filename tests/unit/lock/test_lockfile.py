from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpack.errors import LockError
from mlpack.lock.lockdata import (
    Lock,
    LockedFile,
    LockedPackage,
    SystemPackagePin,
    Target,
    TorchDecision,
)
from mlpack.lock.lockfile import dumps, loads, read_lock, write_lock
from mlpack.vocabulary import BaseImage, EnvSpec

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


def sample(reverse: bool = False) -> Lock:
    packages = [
        LockedPackage(
            name="numpy",
            version="2.1.0",
            hashes=("b" * 64, "a" * 64),
            files=(
                LockedFile(
                    name="numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl", sha256="a" * 64
                ),
            ),
            via=("requirements.txt:2", "pkg:scikit-learn"),
        ),
        LockedPackage(
            name="mylib",
            version="",
            kind="vcs",
            url="git+https://example.org/mylib@" + "c" * 40,
            commit="c" * 40,
            build="image",
            via=("mlpack.toml",),
        ),
        LockedPackage(
            name="joblib", version="1.4.2", hashes=("d" * 64,), via=("pkg:scikit-learn",)
        ),
    ]
    env = [
        EnvSpec(name="TOKEN", default=None, secret=True),
        EnvSpec(name="EPOCHS", default="3", secret=False),
    ]
    if reverse:
        packages.reverse()
        env.reverse()
    return Lock(
        input_hash="sha256:" + "e" * 64,
        resolver="uv",
        target=Target(python="3.11.2", platform="linux/amd64"),
        base=BaseImage(
            reference="python:3.11-slim",
            digest="sha256:" + "f" * 64,
            provider="debian",
            python_full="3.11.2",
        ),
        index_url="https://pypi.org/simple",
        extra_index_urls=("https://download.pytorch.org/whl/cpu",),
        packages=tuple(packages),
        system_packages=(SystemPackagePin(name="libgomp1", version="12.2.0-14"),),
        env=tuple(env),
        torch=TorchDecision(
            variant="cu124", reason="cuda", cuda_runtime="12.4", min_driver="550.54.14"
        ),
    )


def test_round_trip_is_lossless_and_byte_stable() -> None:
    text = dumps(sample())
    again = loads(text)
    assert dumps(again) == text
    assert again.package("numpy") is not None
    assert again.torch is not None
    assert again.torch.min_driver == "550.54.14"
    mylib = again.package("mylib")
    assert mylib is not None
    assert mylib.commit == "c" * 40
    assert mylib.build == "image"


def test_order_of_inputs_does_not_change_bytes() -> None:
    assert dumps(sample()) == dumps(sample(reverse=True))


def test_output_is_valid_sorted_toml() -> None:
    data = tomllib.loads(dumps(sample()))
    assert [p["name"] for p in data["packages"]] == ["joblib", "mylib", "numpy"]
    assert data["target"] == {"python": "3.11.2", "platform": "linux/amd64"}
    numpy = data["packages"][2]
    # every hash appears, with its file name when the index listed it
    assert {f["sha256"] for f in numpy["files"]} == {"a" * 64, "b" * 64}
    assert numpy["files"][0]["name"].startswith("numpy-2.1.0")


def test_secret_env_never_has_a_default() -> None:
    lock = sample()
    leaky = Lock(
        **{**lock.__dict__, "env": (EnvSpec(name="TOKEN", default="hunter2", secret=True),)}
    )
    assert "hunter2" not in dumps(leaky)


def test_write_is_atomic_and_read_validates(tmp_path: Path) -> None:
    path = tmp_path / "mlpack.lock"
    write_lock(path, sample())
    assert read_lock(path) == loads(path.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["mlpack.lock"]  # no temp files left
    path.write_text("format = 1\n[target\n")
    with pytest.raises(LockError, match="not a valid mlpack lock"):
        read_lock(path)
    with pytest.raises(LockError, match=r"no mlpack\.lock"):
        read_lock(tmp_path / "missing" / "mlpack.lock")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(LockError, match="format 99"):
        loads(dumps(sample()).replace("format = 1", "format = 99"))


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ('platform = "linux/amd64"', 'platform = "windows/amd64"', "platform 'windows/amd64'"),
        ('provider = "debian"', 'provider = "somewhere"', "base provider 'somewhere'"),
    ],
)
def test_values_outside_the_vocabulary_are_refused(old: str, new: str, why: str) -> None:
    text = dumps(sample())
    assert old in text
    with pytest.raises(LockError, match=why):
        loads(text.replace(old, new))


def test_the_base_carries_the_targets_python() -> None:
    lock = loads(dumps(sample()))
    assert lock.base.python_full == lock.target.python == "3.11.2"
    assert lock.base == sample().base


def test_control_characters_are_escaped() -> None:
    lock = sample()
    odd = Lock(**{**lock.__dict__, "notes": ("a\x7fb\u2028c\x00d\ttab",)})
    assert loads(dumps(odd)).notes == odd.notes


@settings(max_examples=60, deadline=None)
@given(text=st.text(), name=st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True))
def test_any_text_round_trips(text: str, name: str) -> None:
    lock = sample()
    odd = Lock(
        **{
            **lock.__dict__,
            "env": (EnvSpec(name=name, default=text, secret=False),),
            "notes": (text,),
        }
    )
    again = loads(dumps(odd))
    assert again.env[0].default == text
    assert again.notes == (text,)
