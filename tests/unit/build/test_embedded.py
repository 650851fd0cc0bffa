"""The embedded builder on real (tiny) inputs: layers, config, cache, determinism, failures."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.build.protocol import BuildResult
from mlpack.errors import BuildError, ImageError
from mlpack.oci.store import Store
from mlpack.progress import RecordingReporter, using
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel

TAG = "localhost/demo:test"


def build(tmp: Path, project: Path, *, store: Store | None = None) -> tuple[Store, BuildResult]:
    store = store or Store(tmp / "store")
    wheels_dir = tmp / "wheels"
    wheels_dir.mkdir(exist_ok=True)
    pin = make_wheel(wheels_dir)
    base = make_base(store, tmp)
    builder = EmbeddedBuilder(store, wheels={pin.sha256: wheels_dir / pin.filename})
    return store, builder.build(make_spec(base, (pin,)), context=project, tag=TAG)


def members(store: Store, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    raw = gzip.decompress(store.blob_path(digest).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {
            m.name: (m, tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def layer(result: BuildResult, step: str) -> str:
    return next(x.digest for x in result.layers if x.step == step)


def test_the_image_config_merges_the_base_and_the_spec(tmp_path: Path) -> None:
    store, result = build(tmp_path, make_project(tmp_path / "proj"))
    image = store.image(TAG)
    assert image.digest == result.digest
    conf = image.config.raw["config"]
    assert conf["Env"][0] == "PATH=/opt/venv/bin:/usr/bin:/bin"
    assert "LANG=C.UTF-8" in conf["Env"]
    assert "EPOCHS=3" in conf["Env"]
    assert not any(e.startswith("API_KEY") for e in conf["Env"])
    assert conf["User"] == "1000:1000"
    assert conf["WorkingDir"] == "/app"
    assert conf["Cmd"] == ["python", "train.py"]
    assert conf["ExposedPorts"] == {"8000/tcp": {}}
    assert conf["Volumes"] == {"/app/data": {}, "/app/outputs": {}}
    assert image.config.created == "2023-11-14T22:13:20Z"
    assert len(image.config.diff_ids) == len(image.manifest.layers) == 4
    assert len(image.config.raw["history"]) == 4
    assert [x.role for x in result.layers] == [None, "interpreter", "packages", "code"]


def test_the_venv_layer_links_the_base_interpreter(tmp_path: Path) -> None:
    store, result = build(tmp_path, make_project(tmp_path / "proj"))
    venv = members(store, layer(result, "venv"))
    assert venv["opt/venv/bin/python"][0].linkname == "/usr/bin/python3"
    assert venv["opt/venv/bin/python3"][0].linkname == "python"
    cfg = venv["opt/venv/pyvenv.cfg"][1].decode()
    assert cfg.startswith("home = /usr/bin\n")
    assert "version = 3.11.2" in cfg
    assert venv["opt/venv/lib/python3.11/site-packages"][0].isdir()


def test_wheels_are_installed_for_the_image_prefix_with_no_host_path(tmp_path: Path) -> None:
    store, result = build(tmp_path, make_project(tmp_path / "proj"))
    files = members(store, layer(result, "packages"))
    script = files["opt/venv/bin/hello"]
    assert script[1].startswith(b"#!/opt/venv/bin/python\n")
    assert script[0].mode == 0o755
    site = "opt/venv/lib/python3.11/site-packages"
    assert f"{site}/hello/__init__.py" in files
    assert files[f"{site}/hello-1.0.dist-info/INSTALLER"][1] == b"mlpack\n"
    assert not any(n.endswith("direct_url.json") for n in files)
    assert not any(n.endswith(".pyc") for n in files)
    for info, data in files.values():
        assert str(tmp_path).encode() not in data, info.name
        assert (info.mtime, info.uid, info.gid, info.uname) == (1, 0, 0, "")


def test_wheels_that_ship_the_same_files_install_as_with_pip(tmp_path: Path) -> None:
    """mlflow, mlflow-skinny and mlflow-tracing ship the same modules and the same script: the
    later wheel replaces the earlier's files (installer refused, and no mlflow image built).
    A file whose copies differ is the last one's, and the build says which.
    """
    store = Store(tmp_path / "store")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    same = make_wheel(wheels, "mlflow", "3.0", package="mlflow")
    skinny = make_wheel(wheels, "mlflow_skinny", "3.0", package="mlflow")
    other = make_wheel(wheels, "mlflow_tracing", "3.0", package="mlflow", init=b"TRACING = 1\n")
    base = make_base(store, tmp_path)
    files = {p.sha256: wheels / p.filename for p in (same, skinny, other)}
    recorded = RecordingReporter()
    with using(recorded):
        result = EmbeddedBuilder(store, wheels=files).build(
            make_spec(base, (same, skinny, other)), context=make_project(tmp_path / "p"), tag=TAG
        )
    layer_files = members(store, layer(result, "packages"))
    site = "opt/venv/lib/python3.11/site-packages"
    assert layer_files[f"{site}/mlflow/__init__.py"][1] == b"TRACING = 1\n"  # the last one's
    assert layer_files["opt/venv/bin/mlflow"][1].startswith(b"#!/opt/venv/bin/python\n")
    (notice,) = [n for n in recorded.notices if "differ between the distributions" in n]
    assert "mlflow/__init__.py: mlflow, mlflow-skinny, mlflow-tracing" in notice
    assert notice.startswith("1 file(s) of packages")  # the identical script is no clash


def test_the_code_layer_keeps_code_and_leaves_secrets_data_and_vcs_out(tmp_path: Path) -> None:
    store, result = build(tmp_path, make_project(tmp_path / "proj"))
    files = members(store, layer(result, "code"))
    assert {"app/train.py", "app/pkg/__init__.py", "app/run.sh"} <= set(files)
    assert files["app/run.sh"][0].mode == 0o755
    assert files["app/train.py"][0].mode == 0o644
    assert files["app/outputs"][0].isdir()
    assert files["app/outputs"][0].mode == 0o777
    for name in files:
        assert not name.startswith(
            ("app/.env", "app/.git", "app/data/", "app/outputs/", "app/.mlpack")
        ), name
    # The secret in .env is in no layer and not in the config.
    for x in result.layers:
        assert b"sk-live-SECRET" not in gzip.decompress(store.blob_path(x.digest).read_bytes())
    assert b"sk-live-SECRET" not in store.read_blob(result.config_digest)


def test_two_builds_from_different_folders_umasks_and_zones_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_project(tmp_path / "a" / "proj")
    _, one = build(tmp_path / "a", first)
    second = tmp_path / "b" / "deeper" / "path" / "proj"
    old = os.umask(0o077)
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        # Reversed creation order and different mtimes: neither is an input.
        second.mkdir(parents=True)
        for rel in sorted((p.relative_to(first) for p in first.rglob("*")), reverse=True):
            src, dst = first / rel, second / rel
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        _, two = build(tmp_path / "b", second)
    finally:
        os.umask(old)
        monkeypatch.delenv("TZ")
        time.tzset()
    assert [x.digest for x in one.layers] == [x.digest for x in two.layers]
    assert one.config_digest == two.config_digest
    assert one.digest == two.digest


def test_a_code_only_change_rebuilds_only_the_code_layer(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    store, before = build(tmp_path, project)
    (project / "train.py").write_text("print('changed')\n")
    _, after = build(tmp_path, project, store=store)
    changed = [
        x.step for x, y in zip(before.layers, after.layers, strict=True) if x.digest != y.digest
    ]
    assert changed == ["code"]
    assert [x.cached for x in after.layers] == [True, True, True, False]
    assert store.image(TAG).digest == after.digest


def test_an_unchanged_rebuild_is_served_from_the_cache(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    store, before = build(tmp_path, project)
    assert [x.cached for x in before.layers] == [True, False, False, False]
    _, again = build(tmp_path, project, store=store)
    assert all(x.cached for x in again.layers)
    assert again.digest == before.digest


def test_a_tampered_wheel_fails_the_build_and_tags_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (tmp_path / "wheels").mkdir()
    pin = make_wheel(tmp_path / "wheels")
    path = tmp_path / "wheels" / pin.filename
    path.write_bytes(path.read_bytes() + b"x")
    builder = EmbeddedBuilder(store, wheels={pin.sha256: path})
    spec = make_spec(make_base(store, tmp_path), (pin,))
    with pytest.raises(BuildError, match="sha256"):
        builder.build(spec, context=make_project(tmp_path / "proj"), tag=TAG)
    with pytest.raises(ImageError):
        store.resolve(TAG)
    assert not list((store.root / "tmp").iterdir())


def test_a_wheel_missing_from_the_wheelhouse_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (tmp_path / "wheels").mkdir()
    pin = make_wheel(tmp_path / "wheels")
    spec = make_spec(make_base(store, tmp_path), (pin,))
    with pytest.raises(BuildError, match=r"hello-1.0-py3-none-any.whl") as info:
        EmbeddedBuilder(store, wheels={}).build(spec, context=tmp_path, tag=TAG)
    assert "mlpack fetch" in info.value.hint


def test_a_base_for_another_platform_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    spec = dataclasses.replace(make_spec(make_base(store, tmp_path), ()), platform="linux/arm64")
    with pytest.raises(BuildError, match="linux/amd64"):
        EmbeddedBuilder(store, wheels={}).build(spec, context=tmp_path, tag=TAG)


def test_a_missing_base_says_how_to_get_it(tmp_path: Path) -> None:
    spec = make_spec("sha256:" + "1" * 64, ())
    with pytest.raises(BuildError, match="not in the store"):
        EmbeddedBuilder(Store(tmp_path / "s"), wheels={}).build(spec, context=tmp_path, tag=TAG)


def test_the_config_is_canonical_json(tmp_path: Path) -> None:
    store, result = build(tmp_path, make_project(tmp_path / "proj"))
    data = store.read_blob(result.config_digest)
    assert (
        data
        == json.dumps(
            json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )


def test_verify_names_the_layer_and_the_file_that_differ(tmp_path: Path) -> None:
    from mlpack.build.verify import compare

    project = make_project(tmp_path / "a" / "proj")
    first_store, first = build(tmp_path / "a", project)
    same_store, same = build(tmp_path / "b", make_project(tmp_path / "b" / "proj"))
    assert compare(first_store, first, same_store, same).identical
    other = make_project(tmp_path / "c" / "proj")
    (other / "train.py").write_text("print('nondeterministic')\n")
    other_store, changed = build(tmp_path / "c", other)
    result = compare(first_store, first, other_store, changed)
    assert not result.identical
    (layer,) = result.layers
    assert layer.step == "code"
    assert [(f.path, f.field) for f in layer.files] == [("app/train.py", "size")]
