from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlpack.errors import LockError
from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs, stale_reason
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.lock.resolvers import Pin
from mlpack.vocabulary import EnvSpec, PackageSpec
from tests.unit.lock.fakes import FakeAptImage, FakeBase, FakeResolver

# Nothing listens on port 9 of loopback: index listings fail fast and are skipped.
DEAD = "http://127.0.0.1:9/simple"

PINS = (
    Pin(name="scikit-learn", version="1.5.0", hashes=("a" * 64,), via=("-r",)),
    Pin(name="numpy", version="2.0.0", hashes=("b" * 64,), via=("-r", "scikit-learn")),
    Pin(name="joblib", version="1.4.2", hashes=("c" * 64,), via=("scikit-learn",)),
)


def inputs(**kw: object) -> LockInputs:
    base: dict[str, object] = {
        "requirements": (
            PackageSpec(requirement="scikit-learn>=1.3", source="requirements.txt:2"),
            PackageSpec(requirement="numpy", source="import: train.py:1"),
        ),
        "python": "3.11",
        "platform": "linux/amd64",
        "indexes": Indexes(index_url=DEAD),
        "env": (EnvSpec(name="API_TOKEN", default=None, secret=True),),
    }
    base.update(kw)
    return LockInputs(**base)  # type: ignore[arg-type]


def run(tmp_path: Path, resolver: FakeResolver, inp: LockInputs | None = None, **kw: object):  # type: ignore[no-untyped-def]
    return lock(
        inp or inputs(),
        tmp_path / "mlpack.lock",
        root=tmp_path,
        base_resolver=kw.pop("base", FakeBase()),  # type: ignore[arg-type]
        resolver=resolver,
        home=tmp_path / "home",
        **kw,  # type: ignore[arg-type]
    )


def test_lock_records_target_base_and_why(tmp_path: Path) -> None:
    resolver = FakeResolver(PINS)
    result = run(tmp_path, resolver)
    assert result.resolved
    lock_file = read_lock(tmp_path / "mlpack.lock")
    assert lock_file.target.python == "3.11.2"
    assert lock_file.target.platform == "linux/amd64"
    assert lock_file.base.reference == "python:3.11-slim"  # what the fake resolver said
    assert lock_file.base.digest.startswith("sha256:")
    numpy = lock_file.package("numpy")
    assert numpy is not None
    assert numpy.via == ("import: train.py:1", "pkg:scikit-learn")
    joblib = lock_file.package("joblib")
    assert joblib is not None
    assert joblib.via == ("pkg:scikit-learn",)
    assert resolver.requests[0].python == "3.11.2"  # resolved for the base's interpreter
    assert lock_file.env[0].name == "API_TOKEN"
    assert lock_file.env[0].secret


def test_unchanged_inputs_do_not_resolve_again(tmp_path: Path) -> None:
    resolver = FakeResolver(PINS)
    base = FakeBase()
    run(tmp_path, resolver, base=base)
    before = (tmp_path / "mlpack.lock").read_bytes()
    again = run(tmp_path, resolver, base=base)
    assert not again.resolved
    assert len(resolver.requests) == 1
    assert base.calls == 1
    assert (tmp_path / "mlpack.lock").read_bytes() == before
    assert stale_reason(inputs(), tmp_path / "mlpack.lock") is None


def test_changed_inputs_are_stale_and_upgrade_resolves(tmp_path: Path) -> None:
    resolver = FakeResolver(PINS)
    run(tmp_path, resolver)
    changed = inputs(python="3.12")
    reason = stale_reason(changed, tmp_path / "mlpack.lock")
    assert reason is not None
    assert "python changed to 3.12" in reason
    run(tmp_path, resolver, upgrade_packages=("NumPy",))
    assert len(resolver.requests) == 2
    request = resolver.requests[1]
    assert request.upgrade_packages == ("numpy",)
    assert ("numpy", "2.0.0") in request.previous  # earlier pins are preferences


def test_credentials_reach_the_resolver_but_never_the_lock(tmp_path: Path) -> None:
    resolver = FakeResolver(PINS)
    secret = Indexes(
        index_url="http://alice:s3cr3t-token@127.0.0.1:9/simple",
        extra_index_urls=("http://__token__:other-secret@127.0.0.1:9/extra",),
    )
    run(tmp_path, resolver, inputs(indexes=secret))
    assert "s3cr3t-token" in resolver.requests[0].indexes.index_url
    text = (tmp_path / "mlpack.lock").read_text()
    assert "s3cr3t-token" not in text
    assert "other-secret" not in text
    assert "alice" not in text
    assert 'index-url = "http://127.0.0.1:9/simple"' in text
    # the input hash ignores credentials: rotating a token does not make the lock stale
    rotated = Indexes(
        index_url="http://alice:new@127.0.0.1:9/simple",
        extra_index_urls=("http://__token__:x@127.0.0.1:9/extra",),
    )
    assert stale_reason(inputs(indexes=rotated), tmp_path / "mlpack.lock") is None


def test_malformed_requirement_names_file_and_line(tmp_path: Path) -> None:
    bad = inputs(requirements=(PackageSpec(requirement="numpy>=>1", source="requirements.txt:7"),))
    with pytest.raises(LockError, match=r"requirements.txt:7"):
        run(tmp_path, FakeResolver(PINS), bad)
    assert not (tmp_path / "mlpack.lock").exists()


def test_python_without_base_is_a_lock_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(LockError, match=r"no base image for Python 3\.7") as info:
        run(tmp_path, FakeResolver(PINS), inputs(python="3.7"))
    assert info.value.hint
    assert not (tmp_path / "mlpack.lock").exists()


class FailingResolver(FakeResolver):
    def resolve(self, request):  # type: ignore[no-untyped-def]
        raise LockError("the requirements conflict", hint="relax one")


def test_failed_resolve_keeps_the_old_lock(tmp_path: Path) -> None:
    run(tmp_path, FakeResolver(PINS))
    before = (tmp_path / "mlpack.lock").read_bytes()
    with pytest.raises(LockError, match="conflict"):
        run(tmp_path, FailingResolver(PINS), inputs(python="3.12"))
    assert (tmp_path / "mlpack.lock").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["mlpack.lock"]


def test_vcs_requirement_is_pinned_to_a_commit(tmp_path: Path) -> None:
    repo = tmp_path / "mylib"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    (repo / "README").write_text("x")
    subprocess.run([*git, "-C", str(repo), "add", "README"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-q", "-m", "one"], check=True)
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    req = PackageSpec(requirement=f"mylib @ git+file://{repo}@main", source="requirements.txt:1")
    pins = (Pin(name="mylib", version="", url=f"git+file://{repo}@{sha}", via=("-r",)),)
    resolver = FakeResolver(pins)
    run(tmp_path, resolver, inputs(requirements=(req,)))
    assert resolver.requests[0].requirements[0].requirement.endswith(f"@{sha}")
    pkg = read_lock(tmp_path / "mlpack.lock").package("mylib")
    assert pkg is not None
    assert pkg.kind == "vcs"
    assert pkg.commit == sha
    assert pkg.build == "image"
    bad = PackageSpec(requirement=f"mylib @ git+file://{repo}@nope", source="requirements.txt:1")
    with pytest.raises(LockError, match="no branch or tag 'nope'"):
        run(tmp_path, resolver, inputs(requirements=(bad,), python="3.12"))


def test_local_path_is_project_relative_and_built_in_image(tmp_path: Path) -> None:
    (tmp_path / "libs" / "helper").mkdir(parents=True)
    req = PackageSpec(requirement="helper @ file:libs/helper", source="requirements.txt:1")
    url = (tmp_path / "libs" / "helper").as_uri()
    resolver = FakeResolver((Pin(name="helper", version="", url=url, via=("-r",)),))
    run(tmp_path, resolver, inputs(requirements=(req,)))
    assert resolver.requests[0].requirements[0].requirement == f"helper @ {url}"
    pkg = read_lock(tmp_path / "mlpack.lock").package("helper")
    assert pkg is not None
    assert pkg.kind == "path"
    assert pkg.build == "image"
    assert pkg.url == "file:libs/helper"


def test_relock_keeps_the_base_until_upgrade(tmp_path: Path) -> None:
    resolver = FakeResolver(PINS)
    base = FakeBase()
    run(tmp_path, resolver, base=base)
    more = inputs(system_packages=("libgomp1",))
    run(tmp_path, resolver, more, base=base, image_runner=FakeAptImage())
    assert len(resolver.requests) == 2
    assert base.calls == 1  # same Python and base setting: the locked base is kept
    run(tmp_path, resolver, more, base=base, upgrade=True, image_runner=FakeAptImage())
    assert base.calls == 2
    run(tmp_path, resolver, inputs(python="3.12"), base=base)
    assert base.calls == 3
    assert read_lock(tmp_path / "mlpack.lock").target.python == "3.12.8"


def test_stale_reason_names_a_new_requirement(tmp_path: Path) -> None:
    run(tmp_path, FakeResolver(PINS))
    more = inputs(
        requirements=(
            *inputs().requirements,
            PackageSpec(requirement="pandas", source="import: eval.py:3"),
        )
    )
    reason = stale_reason(more, tmp_path / "mlpack.lock")
    assert (
        reason
        == "the requirements changed (pandas at import: eval.py:3) since mlpack.lock was written"
    )
