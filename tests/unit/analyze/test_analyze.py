from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mlpack.analyze import analyze, factcache, pyfacts
from mlpack.analyze.analysis import ProjectAnalysis
from mlpack.errors import AnalyzeError
from tests.unit.analyze.repo_helpers import make_repo

REPO = Path(__file__).resolve().parents[3]


def run(root: Path, cache: Path | None = None) -> ProjectAnalysis:
    return analyze(root, cache_dir=cache or root.parent / "cache")


def test_not_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "train.py"
    file.write_text("")
    with pytest.raises(AnalyzeError, match="not a directory") as info:
        run(file)
    assert "folder" in info.value.hint
    assert info.value.exit_code == 3
    with pytest.raises(AnalyzeError, match="does not exist"):
        run(tmp_path / "missing")


def test_empty_repository_gives_defaults_and_a_warning(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    result = run(tmp_path / "repo")
    assert result.packages == ()
    assert result.entrypoints == ()
    assert result.env == ()
    assert result.accelerator.cuda is False
    assert result.python.version
    assert any("no files to analyse" in w for w in result.warnings)


def test_bad_files_never_stop_the_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyfacts, "MAX_SOURCE_BYTES", 4096)
    root = make_repo(
        tmp_path / "repo",
        {
            "py2.py": "print 'hello'\nimport old_module\n",
            "conflict.py": "<<<<<<< HEAD\nimport a\n=======\nimport b\n>>>>>>> branch\n",
            "binary.py": b"\x00\x01\x02\x03ELF",
            "latin.py": b"x = '\xe9t\xe9'\n",
            "huge.py": "x = 1\n" * 2000,
            "broken.ipynb": "{ not json",
            "good.py": "import numpy\n",
        },
    )
    result = run(root)
    assert [p.name for p in result.packages] == ["numpy"]
    skipped = {w.split(":", 1)[0] for w in result.warnings if "not parsed" in w}
    assert skipped == {"py2.py", "conflict.py", "binary.py", "latin.py", "huge.py", "broken.ipynb"}
    assert "py2.py: syntax error at line 1 (Python 2 code?), not parsed" in result.warnings


def test_unreadable_file_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_repo(tmp_path / "repo", {"secret.py": "import hidden\n", "ok.py": "import numpy\n"})
    real = factcache.read_source

    def read(path: Path, size: int = 0) -> bytes:
        if path.name == "secret.py":  # root can read anything: inject the failure
            raise PermissionError(13, "Permission denied")
        return real(path, size)

    monkeypatch.setattr(factcache, "read_source", read)
    result = run(root)
    assert [p.name for p in result.packages] == ["numpy"]
    assert "secret.py: unreadable, skipped (Permission denied)" in result.warnings
    # Read where it is parsed (cold) or by the cache lookup (a warm cache): the same warning.
    cache = tmp_path / "cache"
    (root / "secret.py").rename(root / "later.py")
    run(root, cache)
    (root / "later.py").rename(root / "secret.py")
    again = run(root, cache)
    assert "secret.py: unreadable, skipped (Permission denied)" in again.warnings
    assert [p.name for p in again.packages] == ["numpy"]


def test_warm_run_reads_no_source_and_gives_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"train.py": "import torch\nimport os\nx = os.getenv('A')\n", "bad.py": "print 'x'\n"},
    )
    cache = tmp_path / "cache"
    cold = run(root, cache)
    assert len(list(cache.iterdir())) == 1

    def forbidden(path: Path, size: int = 0) -> bytes:
        raise AssertionError(f"{path} ({size} bytes) was read on a warm run")

    with monkeypatch.context() as m:
        m.setattr(factcache, "read_source", forbidden)
        assert run(root, cache) == cold

    # A changed file is read again; its old facts are not reused.
    (root / "train.py").write_text("import jax\n")
    changed = run(root, cache)
    assert [p.name for p in changed.packages] == ["jax"]


def test_touched_file_is_rehashed_not_reparsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_repo(tmp_path / "repo", {"train.py": "import torch\n"})
    cache = tmp_path / "cache"
    cold = run(root, cache)
    (root / "train.py").write_text("import torch\n")  # same bytes, new mtime

    def no_parse(path: str, data: bytes) -> pyfacts.FileFacts:
        raise AssertionError("parsed again")

    monkeypatch.setattr(pyfacts, "facts_for", no_parse)
    assert run(root, cache) == cold


def test_corrupt_or_foreign_cache_is_ignored(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"train.py": "import torch\n"})
    cache = tmp_path / "cache"
    cold = run(root, cache)
    (index,) = cache.iterdir()
    for garbage in (b"{truncated", b"[]", json.dumps({"version": "x"}).encode()):
        index.write_bytes(garbage)
        assert run(root, cache) == cold
    data = json.loads(index.read_text())
    for digest in data["facts"]:
        data["facts"][digest] = ["wrong", "shape"]
    index.write_text(json.dumps(data))
    assert run(root, cache) == cold
    assert not list(cache.glob(".facts-*"))  # no temporary files left behind


def _without(analysis: ProjectAnalysis) -> ProjectAnalysis:
    from dataclasses import replace

    return replace(analysis, root="")


def test_a_moved_or_fresh_copy_is_analysed_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The facts are found by content: a copy at another path is read and hashed, not parsed."""
    import shutil

    files: dict[str, str | bytes] = {
        "train.py": "import torch\nimport os\nos.environ['EPOCHS']\n",
        "lib/m.py": "import yaml\n",
    }
    first = make_repo(tmp_path / "a" / "repo", files)
    cache = tmp_path / "cache"
    cold = run(first, cache)
    parsed: list[str] = []
    real = pyfacts.facts_for

    def counting(path: str, data: bytes) -> pyfacts.FileFacts:
        parsed.append(path)
        return real(path, data)

    monkeypatch.setattr(pyfacts, "facts_for", counting)
    copy = tmp_path / "b" / "clone"
    shutil.copytree(first, copy)  # new inodes and mtimes: a fresh clone of the same tree
    assert _without(run(copy, cache)) == _without(cold)
    assert parsed == []
    moved = tmp_path / "c" / "moved"
    moved.parent.mkdir()
    first.rename(moved)
    assert _without(run(moved, cache)) == _without(cold)
    assert parsed == []
    # An edited file of the copy is parsed again, and only that one.
    (copy / "lib" / "m.py").write_text("import requests\n")
    assert "requests" in {p.name for p in run(copy, cache).packages}
    assert parsed == ["lib/m.py"]
    # One cache file per path, whatever its files became.
    (copy / "new.py").write_text("import numpy\n")
    run(copy, cache)
    names = [p.name for p in cache.glob("facts-*.json")]
    assert len(names) == 3, names  # a/repo's (not analysed since its move), b/clone, c/moved


def test_unwritable_cache_costs_only_a_warning(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"train.py": "import torch\n"})
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run(root, blocker / "cache")
    assert [p.name for p in result.packages] == ["torch"]
    assert any(w.startswith("facts cache") for w in result.warnings)


def test_default_cache_is_under_mlpack_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "mlhome"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # no longer consulted
    root = make_repo(tmp_path / "repo", {"a.py": "import numpy\n"})
    analyze(root)
    assert len(list((tmp_path / "mlhome" / "cache" / "analyze").glob("facts-*.json"))) == 1
    assert not (tmp_path / "xdg").exists()


def test_virtualenv_in_the_repo_is_evidence_not_code(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import yaml\nimport cv2\n",
            ".venv/pyvenv.cfg": "home = /usr/bin\n",
            ".venv/lib/python3.11/site-packages/venv_only.py": "import should_not_appear\n",
            ".venv/lib/python3.11/site-packages/opencv_python_headless-4.9.dist-info/RECORD": (
                "cv2/__init__.py,,\n"
            ),
        },
    )
    result = run(root)
    assert [p.name for p in result.packages] == ["opencv-python-headless", "pyyaml"]
    assert result.ambiguous == ()


def test_end_to_end_small_project(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "requirements.txt": "torch>=2.0\nuvicorn\n",
            "train.py": """
                import os
                import torch
                from sklearn.metrics import accuracy_score

                EPOCHS = int(os.getenv("EPOCHS", "3"))
                TOKEN = os.environ["HF_TOKEN"]

                def main():
                    model = torch.nn.Linear(2, 2).cuda()
                    torch.save(model.state_dict(), "checkpoints/model.pt")

                if __name__ == "__main__":
                    main()
            """,
            "data/train.csv": "a\n",
        },
    )
    result = run(root)
    assert [(p.name, p.declared, p.used) for p in result.packages] == [
        ("scikit-learn", False, True),
        ("torch", True, True),
        ("uvicorn", True, False),
    ]
    assert [(v.name, v.default, v.secret) for v in result.env] == [
        ("EPOCHS", "3", False),
        ("HF_TOKEN", None, True),
    ]
    assert [u.path for u in result.layout.inputs] == ["data"]
    assert [u.path for u in result.layout.outputs] == ["checkpoints"]
    assert result.entrypoints[0].command == ("python", "train.py")
    assert result.accelerator.cuda is True
    assert result.accelerator.source == "train.py:10"
    assert [s.name for s in result.system_packages] == ["libgomp1"]
    assert "undeclared: scikit-learn (imported as sklearn at train.py:4)" in result.warnings
    assert result.root == str(root.resolve())


@pytest.mark.parametrize("example", ["training", "inference"])
def test_examples(example: str, tmp_path: Path) -> None:
    root = REPO / "examples" / example
    assert root.is_dir(), "the examples ship with the repository"
    result = analyze(root, cache_dir=tmp_path / "cache")
    main = {p.name for p in result.packages if p.group is None}
    assert all(p.declared for p in result.packages)  # the examples declare what they import
    assert not [w for w in result.warnings if w.startswith(("undeclared", "guessed", "ambiguous"))]
    assert result.accelerator.cuda is False
    if example == "training":
        assert {"numpy", "scikit-learn"} <= main
        assert result.entrypoints[0].command == ("python", "train.py")
        assert "data" in {u.path for u in result.layout.inputs}
        assert "outputs" in {u.path for u in result.layout.outputs}
    else:
        assert {"fastapi", "uvicorn"} <= main
        first = result.entrypoints[0]
        assert first.kind == "inference"
        assert first.command[:2] == ("uvicorn", "app.main:app")
        assert "models" in {u.path for u in result.layout.inputs}


def test_worker_processes_give_the_same_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files: dict[str, str | bytes] = {
        f"pkg/mod{i}.py": f"import os\nimport numpy\nX = os.getenv('V{i}', '{i}')\n"
        for i in range(30)
    }
    files["bad.py"] = "print 'x'\n"
    files["nb.ipynb"] = "{broken"
    files["pkg/__init__.py"] = ""
    root = make_repo(tmp_path / "repo", files)
    serial = run(root, tmp_path / "serial-cache")
    monkeypatch.setattr(factcache, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(factcache, "_workers", lambda: 2)
    parent = os.getpid()
    real = pyfacts.facts_for
    pids = tmp_path / "pids"
    pids.mkdir()

    def recorded(path: str, data: bytes) -> pyfacts.FileFacts:
        (pids / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while os.getpid() == parent and time.monotonic() < deadline:
            # Leave the helper batches to take (however loaded the machine): the parent parses
            # only once a helper has started on its share.
            if any(p.name != str(parent) for p in pids.iterdir()):
                break
            time.sleep(0.01)
        return real(path, data)

    monkeypatch.setattr(pyfacts, "facts_for", recorded)
    parallel = run(root, tmp_path / "parallel-cache")
    assert parallel == serial
    assert len(serial.env) == 30
    # The parent and one helper process (2 cores) shared the parsing.
    assert str(parent) in {p.name for p in pids.iterdir()}
    assert len(list(pids.iterdir())) == 2


def test_cache_keeps_only_recent_repositories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(factcache, "MAX_REPOSITORIES", 3)
    cache = tmp_path / "cache"
    for i in range(5):
        run(make_repo(tmp_path / f"repo{i}", {"a.py": f"import mod{i}\n"}), cache)
    assert len(list(cache.glob("facts-*.json"))) == 3
    # the latest one survives and is used warm
    (latest,) = [p for p in cache.glob("facts-*.json") if str(tmp_path / "repo4") in p.read_text()]
    assert latest.is_file()


def test_read_source_reads_the_whole_file_whatever_the_walked_size(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_bytes(b"x" * (3 * 2**20 + 5))
    assert factcache.read_source(path, 3 * 2**20 + 5) == path.read_bytes()
    assert factcache.read_source(path, 10) == path.read_bytes()  # grew since the walk
    assert factcache.read_source(path, 2**30) == path.read_bytes()  # shrank since the walk
    link = tmp_path / "link.py"
    link.symlink_to(path)
    with pytest.raises(OSError):  # a symlink swapped in since the walk is not followed
        factcache.read_source(link, 10)


def test_system_packages_only_for_what_goes_into_the_image(tmp_path: Path) -> None:
    """bert and bark: scikit-learn imported only by a notebook or a test brought libgomp1 into
    the image's Debian packages, although the package itself stays out of the image."""
    from mlpack.config import load_config, write_config

    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import soundfile\nsoundfile.read('a.wav')\n",
            "tests/test_model.py": "import sklearn\n",
        },
    )
    result = run(root)
    assert {(p.name, p.usage) for p in result.packages} == {
        ("soundfile", "runtime"),
        ("scikit-learn", "test"),
    }
    assert [(s.name, s.required_by) for s in result.system_packages] == [
        ("libsndfile1", "soundfile")
    ]
    write_config(root, result)
    assert load_config(root).system_packages == ("libsndfile1",)
    # Asking for the test group puts scikit-learn, and so libgomp1, into the image.
    text = (root / "mlpack.toml").read_text()
    (root / "mlpack.toml").write_text(
        text.replace("[dependencies]\n", '[dependencies]\ngroups = ["runtime", "test"]\n')
    )
    write_config(root, result)
    assert sorted(load_config(root).system_packages) == ["libgomp1", "libsndfile1"]
