from __future__ import annotations

import pytest

from mlpack.errors import LockError
from mlpack.lock.lockdata import Lock, LockedPackage, Target
from mlpack.lock.why import why
from mlpack.vocabulary import BaseImage


def lock_with(*packages: LockedPackage) -> Lock:
    return Lock(
        input_hash="sha256:x",
        resolver="uv",
        target=Target(python="3.11.2", platform="linux/amd64"),
        base=BaseImage(reference="r", digest="d", provider="registry", python_full="3.11.2"),
        index_url="https://pypi.org/simple",
        packages=packages,
    )


LOCK = lock_with(
    LockedPackage(name="fastapi", version="1", via=("pyproject.toml:8",)),
    LockedPackage(name="starlette", version="1", via=("pkg:fastapi",)),
    LockedPackage(name="anyio", version="1", via=("pkg:starlette", "pkg:httpx")),
    LockedPackage(name="httpx", version="1", via=("requirements-dev.txt:2",)),
    LockedPackage(name="idna", version="1", via=("pkg:anyio", "pkg:httpx")),
)


def test_chains_lead_from_inputs_shortest_first() -> None:
    chains = why(LOCK, "IDNA")
    assert chains[0] == ("requirements-dev.txt:2", "httpx", "idna")
    assert ("pyproject.toml:8", "fastapi", "starlette", "anyio", "idna") in chains
    assert ("requirements-dev.txt:2", "httpx", "anyio", "idna") in chains


def test_direct_input_is_its_own_chain() -> None:
    assert why(LOCK, "fastapi") == (("pyproject.toml:8", "fastapi"),)


def test_unknown_package_suggests_close_names() -> None:
    with pytest.raises(LockError, match=r"not in mlpack\.lock") as info:
        why(LOCK, "httpx2")
    assert "httpx" in info.value.hint


def test_cycles_terminate() -> None:
    cyclic = lock_with(
        LockedPackage(name="a", version="1", via=("req.txt:1", "pkg:b")),
        LockedPackage(name="b", version="1", via=("pkg:a",)),
    )
    assert why(cyclic, "b") == (("req.txt:1", "a", "b"),)


def test_a_dropped_package_says_why_the_lock_left_it_out() -> None:
    from dataclasses import replace

    from mlpack.lock.lockdata import DroppedPackage

    gone = DroppedPackage(
        name="habana-frameworks",
        requirement="habana-frameworks",
        source="examples/hpu.py:26",
        reason="the package index has no project of this name",
    )
    with pytest.raises(LockError) as caught:
        why(replace(LOCK, dropped=(gone,)), "habana_frameworks")
    assert "left it out (the package index has no project" in caught.value.message
    assert "examples/hpu.py:26" in caught.value.hint
