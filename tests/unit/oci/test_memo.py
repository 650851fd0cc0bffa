"""The run memo: a hit only while index.json and every layer dir are the ones recorded."""

from __future__ import annotations

from pathlib import Path

from mlpack.oci import memo


def _home(tmp_path: Path) -> tuple[str, tuple[str, ...]]:
    (tmp_path / "index.json").write_text('{"manifests": []}')
    layers = (tmp_path / "layers" / "a", tmp_path / "layers" / "b")
    for d in layers:
        d.mkdir(parents=True)
    return str(tmp_path), tuple(map(str, layers))


def _record(home: str, layers: tuple[str, ...], ref: str = "app:1") -> None:
    memo.record(home, ref, identity=memo.index_identity(home), layers=layers, config={"config": {}})


def test_a_recorded_name_is_found(tmp_path: Path) -> None:
    home, layers = _home(tmp_path)
    _record(home, layers)
    assert memo.lookup(home, "app:1") == (layers, {"config": {}})
    assert memo.lookup(home, "app:2") is None


def test_a_new_index_json_invalidates(tmp_path: Path) -> None:
    home, layers = _home(tmp_path)
    _record(home, layers)
    tmp = tmp_path / "index.json.new"
    tmp.write_text('{"manifests": [{}]}')
    tmp.replace(tmp_path / "index.json")  # how the store writes it: a new file
    assert memo.lookup(home, "app:1") is None


def test_a_removed_layer_dir_invalidates(tmp_path: Path) -> None:
    home, layers = _home(tmp_path)
    _record(home, layers)
    Path(layers[1]).rmdir()
    assert memo.lookup(home, "app:1") is None


def test_digests_are_never_memoized(tmp_path: Path) -> None:
    home, layers = _home(tmp_path)
    ref = "app@sha256:" + "0" * 64
    _record(home, layers, ref)
    assert memo.lookup(home, ref) is None
    assert not (tmp_path / "cache" / "run").exists()


def test_a_damaged_memo_is_a_miss(tmp_path: Path) -> None:
    home, layers = _home(tmp_path)
    _record(home, layers)
    (entry,) = (tmp_path / "cache" / "run").glob("*.json")
    entry.write_text("{not json")
    assert memo.lookup(home, "app:1") is None
    entry.write_text('{"version": 1, "ref": "other", "index": [], "layers": [], "config": {}}')
    assert memo.lookup(home, "app:1") is None
