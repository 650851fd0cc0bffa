"""Soft inferred names and the Python the lock chooses, against a scripted resolver."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlpack.errors import ImageError
from mlpack.lock.failure import ResolveFailure, read_failure
from mlpack.lock.indexes import Indexes
from mlpack.lock.inputs import LockInputs, is_inferred
from mlpack.lock.locker import lock
from mlpack.lock.lockfile import read_lock
from mlpack.lock.resolvers import Pin, ResolveRequest
from mlpack.progress import RecordingReporter, using
from mlpack.vocabulary import BaseImage, PackageSpec, Platform, ResolverName
from tests.unit.lock.fakes import FakeBase

DEAD = "http://127.0.0.1:9/simple"


def missing_text(name: str) -> str:
    return (
        "error: No solution found when resolving dependencies\n"
        f"  cause: Because {name} was not found in the package registry and you require "
        f"{name}, we can conclude that your requirements are unsatisfiable.\n"
    )


def no_wheels_text(name: str, version: str, python: str) -> str:
    tag = "cp" + python.replace(".", "")
    return (
        "error: No solution found when resolving dependencies\n"
        f"  cause: Because {name}=={version} has no wheels with a matching Python ABI tag "
        f"(e.g., `{tag}`) and you require {name}=={version}, we can conclude that your "
        "requirements are unsatisfiable.\n"
    )


@dataclass
class ScriptedResolver:
    """Fails like uv: names the index lacks, and packages without wheels for some Pythons."""

    missing: frozenset[str] = frozenset()
    no_wheels: dict[str, frozenset[str]] = field(default_factory=dict)  # python -> names
    name: ResolverName = "uv"
    requests: list[ResolveRequest] = field(default_factory=list)

    def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
        self.requests.append(request)
        names = [r.name for r in request.requirements]
        for n in names:
            if n in self.missing:
                raise read_failure(request, missing_text(n), tool="uv")
        for n in names:
            if n in self.no_wheels.get(request.python_minor, frozenset()):
                raise read_failure(
                    request, no_wheels_text(n, "2.0.1", request.python_minor), tool="uv"
                )
        return tuple(
            Pin(name=n, version="1.0", hashes=(f"{i:064x}",), via=("-r",))
            for i, n in enumerate(names)
        )


def inputs(
    *specs: tuple[str, str], python: str = "3.13", fallback: tuple[str, ...] = ()
) -> LockInputs:
    return LockInputs(
        requirements=tuple(PackageSpec(requirement=r, source=s) for r, s in specs),
        python=python,
        fallback_pythons=fallback,
        python_allowed_by="pyproject.toml:3 requires-python >=3.9" if fallback else "",
        platform="linux/amd64",
        indexes=Indexes(index_url=DEAD),
    )


def run(tmp_path: Path, inp: LockInputs, resolver: ScriptedResolver) -> RecordingReporter:
    rep = RecordingReporter()
    with using(rep):
        lock(
            inp,
            tmp_path / "mlpack.lock",
            root=tmp_path,
            home=tmp_path / "home",
            base_resolver=FakeBase(),
            resolver=resolver,
        )
    return rep


def test_sources_tell_inferred_from_declared() -> None:
    def spec(source: str) -> PackageSpec:
        return PackageSpec(requirement="x", source=source)

    assert is_inferred(spec("train.py:4"))
    assert is_inferred(spec("import: train.py:4"))
    assert is_inferred(spec("notebooks/eda.ipynb:3"))
    assert not is_inferred(spec("requirements.txt:3"))
    assert not is_inferred(spec("setup.py:12"))
    assert not is_inferred(spec("mlpack.toml"))


def test_an_inferred_name_the_index_lacks_is_dropped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "hpu.py").write_text("import os\nimport habana_frameworks.torch\n")
    resolver = ScriptedResolver(missing=frozenset({"habana-frameworks"}))
    rep = run(
        tmp_path,
        inputs(("numpy", "requirements.txt:1"), ("habana-frameworks", "examples/hpu.py:2")),
        resolver,
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert [p.name for p in written.packages] == ["numpy"]
    assert [(d.name, d.source) for d in written.dropped] == [
        ("habana-frameworks", "examples/hpu.py:2")
    ]
    assert "no project" in written.dropped[0].reason
    warnings = [n for n in rep.notices if "habana-frameworks" in n]
    assert len(warnings) == 1
    assert "`import habana_frameworks.torch` at examples/hpu.py:2" in warnings[0]


def test_a_declared_name_the_index_lacks_fails_with_the_likely_distribution(
    tmp_path: Path,
) -> None:
    resolver = ScriptedResolver(missing=frozenset({"sklearn-x", "cv2"}))
    with pytest.raises(ResolveFailure) as caught:
        run(tmp_path, inputs(("cv2", "requirements.txt:1")), resolver)
    assert "requirements.txt:1" in caught.value.message
    assert "opencv-python" in caught.value.hint
    assert not (tmp_path / "mlpack.lock").exists()


def test_the_newest_python_with_wheels_is_chosen_and_said(tmp_path: Path) -> None:
    resolver = ScriptedResolver(
        no_wheels={"3.13": frozenset({"torch"}), "3.12": frozenset({"torch"})}
    )
    rep = run(
        tmp_path,
        inputs(("torch==2.0.1", "requirements.txt:1"), fallback=("3.12", "3.11", "3.10")),
        resolver,
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert written.target.python_minor == "3.11"
    # Probes for X.Y need no base image; the chosen one then resolves for the base's X.Y.Z.
    assert [r.python for r in resolver.requests] == ["3.13", "3.12", "3.11", "3.11.2"]
    line = next(n for n in rep.notices if n.startswith("Python 3.11"))
    assert "3.13: no wheels for torch 2.0.1" in line
    assert "resolve with wheels for; pyproject.toml:3 requires-python >=3.9" in line
    assert written.notes == (line,)
    assert written.dropped == ()


def test_an_unpinned_lock_that_resolves_at_once_says_which_python(tmp_path: Path) -> None:
    rep = run(
        tmp_path, inputs(("numpy", "requirements.txt:1"), fallback=("3.12",)), ScriptedResolver()
    )
    assert read_lock(tmp_path / "mlpack.lock").target.python_minor == "3.13"
    assert any(n.startswith("Python 3.13: the newest") for n in rep.notices)


def test_a_pinned_python_names_the_packages_and_the_python_that_works(tmp_path: Path) -> None:
    resolver = ScriptedResolver(no_wheels={"3.13": frozenset({"torch"})})
    with pytest.raises(ResolveFailure) as caught:
        run(tmp_path, inputs(("torch==2.0.1", "requirements.txt:1")), resolver)
    hint = caught.value.hint
    assert "torch 2.0.1" in hint
    assert 'python = "3.12"' in hint
    assert "relax" not in hint


def test_a_python_pinned_by_a_file_is_changed_there(tmp_path: Path) -> None:
    """Without mlpack.toml, .python-version decides: the hint sends the user there."""
    from dataclasses import replace

    resolver = ScriptedResolver(no_wheels={"3.13": frozenset({"torch"})})
    pinned = replace(
        inputs(("torch==2.0.1", "requirements.txt:1")), python_pinned_in=".python-version:1"
    )
    with pytest.raises(ResolveFailure) as caught:
        run(tmp_path, pinned, resolver)
    assert caught.value.hint.endswith("Python 3.12 resolves: pin 3.12 in .python-version:1")


def test_an_inferred_name_without_wheels_anywhere_is_dropped(tmp_path: Path) -> None:
    everywhere = frozenset({"functorch"})
    resolver = ScriptedResolver(no_wheels={"3.13": everywhere, "3.12": everywhere})
    run(
        tmp_path,
        inputs(("torch", "train.py:1"), ("functorch", "train.py:2"), fallback=("3.12",)),
        resolver,
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert [p.name for p in written.packages] == ["torch"]
    assert [d.name for d in written.dropped] == ["functorch"]
    assert written.target.python_minor == "3.13"


def test_a_relock_with_unchanged_inputs_keeps_the_dropped_table(tmp_path: Path) -> None:
    resolver = ScriptedResolver(missing=frozenset({"deeplearning"}))
    inp = inputs(("numpy", "train.py:1"), ("deeplearning", "train.py:2"))
    run(tmp_path, inp, resolver)
    calls = len(resolver.requests)
    run(tmp_path, inp, resolver)
    assert len(resolver.requests) == calls
    assert [d.name for d in read_lock(tmp_path / "mlpack.lock").dropped] == ["deeplearning"]


def test_an_unpinned_python_without_a_base_image_takes_the_next(tmp_path: Path) -> None:
    class NoNewest(FakeBase):
        def resolve(
            self, python: str, *, explicit: str | None, platform: Platform = "linux/amd64"
        ) -> BaseImage:
            if python == "3.13":
                raise ImageError("no base image provides Python 3.13", hint="")
            return super().resolve(python, explicit=explicit)

    rep = RecordingReporter()
    with using(rep):
        lock(
            inputs(("numpy", "requirements.txt:1"), fallback=("3.12",)),
            tmp_path / "mlpack.lock",
            root=tmp_path,
            home=tmp_path / "home",
            base_resolver=NoNewest(),
            resolver=ScriptedResolver(),
        )
    assert read_lock(tmp_path / "mlpack.lock").target.python_minor == "3.12"
    assert any("3.13: no base image" in n for n in rep.notices)


def test_an_inferred_package_whose_build_fails_is_dropped(tmp_path: Path) -> None:
    class BuildFails(ScriptedResolver):
        def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
            if any(r.name == "pycuda" for r in request.requirements):
                text = "error: Failed to build `pycuda==2024.1`\n  cause: the build failed\n"
                raise read_failure(request, text, tool="uv")
            return super().resolve(request)

    run(tmp_path, inputs(("numpy", "train.py:1"), ("pycuda", "train.py:2")), BuildFails())
    written = read_lock(tmp_path / "mlpack.lock")
    assert [d.name for d in written.dropped] == ["pycuda"]
    assert "build from source failed" in written.dropped[0].reason


def test_dropping_one_name_of_an_import_line_keeps_the_other(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import numpy, deeplearning\n")
    resolver = ScriptedResolver(missing=frozenset({"deeplearning"}))
    run(tmp_path, inputs(("numpy", "train.py:1"), ("deeplearning", "train.py:1")), resolver)
    written = read_lock(tmp_path / "mlpack.lock")
    assert [p.name for p in written.packages] == ["numpy"]
    assert [d.name for d in written.dropped] == ["deeplearning"]


def test_an_inferred_package_whose_dependency_fails_to_build_is_dropped(tmp_path: Path) -> None:
    class DependencyFails(ScriptedResolver):
        def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
            if any(r.name == "apex" for r in request.requirements):
                text = (
                    "error: Failed to build `cryptacular==1.6.2`\n  cause: the build failed\n"
                    "hint: `cryptacular` (v1.6.2) was included because `apex` (v0.9.10.dev0) "
                    "depends on `cryptacular`\n"
                )
                raise read_failure(request, text, tool="uv")
            return super().resolve(request)

    run(tmp_path, inputs(("numpy", "train.py:1"), ("apex", "train.py:2")), DependencyFails())
    written = read_lock(tmp_path / "mlpack.lock")
    assert [p.name for p in written.packages] == ["numpy"]
    assert [d.name for d in written.dropped] == ["apex"]
    assert "needs cryptacular" in written.dropped[0].reason


def test_one_missing_name_has_the_others_looked_up_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlpack.lock import soft
    from mlpack.lock.indexes import IndexFile

    on_index = {"numpy"}

    def fake_list(url: str, project: str, **_kw: object) -> tuple[IndexFile, ...]:
        return (IndexFile(filename="x", url="u", sha256=None),) if project in on_index else ()

    monkeypatch.setattr(soft, "list_files", fake_list)
    resolver = ScriptedResolver(missing=frozenset({"deeplearning", "transformers-old"}))
    run(
        tmp_path,
        inputs(
            ("numpy", "train.py:1"),
            ("deeplearning", "train.py:2"),
            ("transformers-old", "convert.py:3"),
            ("cv2", "requirements.txt:4"),  # declared: never dropped, whatever the index says
        ),
        resolver,
    )
    written = read_lock(tmp_path / "mlpack.lock")
    assert sorted(d.name for d in written.dropped) == ["deeplearning", "transformers-old"]
    assert len(resolver.requests) == 2  # one failed resolve, one good one
