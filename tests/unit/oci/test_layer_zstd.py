"""zstd layers (opt-in): written deterministically, read with the same bomb budget as gzip."""

from __future__ import annotations

import builtins
import hashlib
import io
import random
import subprocess
import tarfile
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import zstandard

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.config import load_config
from mlpack.errors import BuildError, ConfigError, ImageError
from mlpack.oci import layer_compression, mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_compression import MEDIA_TYPES, identity
from mlpack.oci.layer_stream import ExpansionLimit, stored_layer
from mlpack.oci.layer_writer import write_layer
from mlpack.oci.registry import pull, push
from mlpack.oci.snapshots import rootfs
from mlpack.oci.store import Store
from mlpack.pipeline import make_builder
from tests.oci_fixtures import CREATED, plain_registry
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel
from tests.unit.oci._sandbox import load_corpus, make_sandbox, untouched

if TYPE_CHECKING:
    from pathlib import Path

corpus = load_corpus()
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def tree(root: Path) -> Path:
    """Text that compresses, noise that does not, more than one zstd job (8 MiB) in all."""
    rng = random.Random(11)
    (root / "pkg").mkdir(parents=True)
    words = [f"word{i}" for i in range(300)]
    (root / "pkg" / "text.py").write_text(" ".join(rng.choice(words) for _ in range(300_000)))
    (root / "pkg" / "noise.bin").write_bytes(rng.randbytes(9 << 20))
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    (root / "pkg" / "run.sh").chmod(0o755)
    return root


def write(root: Path, **kw: Any) -> tuple[bytes, layer_compression.LayerDigests]:
    out = io.BytesIO()
    digests = write_layer(root, out, source_date_epoch=1, compression="zstd", **kw)
    return out.getvalue(), digests


def test_zstd_layer_is_one_checksummed_frame_of_the_same_tar(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    data, digests = write(root)
    gz = io.BytesIO()
    plain = write_layer(root, gz, source_date_epoch=1)
    assert data[:4] == ZSTD_MAGIC
    assert digests.diff_id == plain.diff_id  # the identity of a layer is its tar
    assert digests.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert digests.size == len(data)
    params = zstandard.get_frame_parameters(data)
    assert params.has_checksum
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digests.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert sorted(tar.getnames()) == ["pkg", "pkg/noise.bin", "pkg/run.sh", "pkg/text.py"]
    # The zstd CLI agrees that the frame (and its checksum) is sound.
    (tmp_path / "l.zst").write_bytes(data)
    subprocess.run(["zstd", "-q", "-t", str(tmp_path / "l.zst")], check=True)


def test_zstd_bytes_do_not_depend_on_the_number_of_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "t")
    seen = set()
    for cores in (1, 2, 5):
        monkeypatch.setattr(layer_compression, "_workers", lambda cores=cores: cores)
        seen.add(write(root)[0])
    assert len(seen) == 1


def test_zstd_level_is_pinned(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="level 3"):
        write(tree(tmp_path / "t"), level=9)


def test_identities_differ_by_compressor() -> None:
    names = {identity("gzip", blocks=False), identity("gzip"), identity("zstd")}
    assert len(names) == 3
    assert "zstd" in identity("zstd")
    assert MEDIA_TYPES["zstd"] == mediatypes.OCI_LAYER_ZSTD


def test_missing_zstandard_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = builtins.__import__

    def no_zstd(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "zstandard":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(ImageError, match="'zstandard' package") as info:
        write(tree(tmp_path / "t"))
    assert "pip install" in info.value.hint


def test_zstd_layer_applies_and_lists(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    data, digests = write(root)
    sb = make_sandbox(tmp_path / "sb")
    with untouched(sb):
        result = sb.apply(
            data,
            media_type=mediatypes.OCI_LAYER_ZSTD,
            expected_digest=digests.digest,
            expected_size=digests.size,
            expected_diff_id=digests.diff_id,
        )
    assert result.diff_id == digests.diff_id
    assert (sb.root / "pkg" / "noise.bin").read_bytes() == (root / "pkg" / "noise.bin").read_bytes()
    assert (sb.root / "pkg" / "run.sh").stat().st_mode & 0o777 == 0o755
    names = [m.name for m in stored_layer(io.BytesIO(data))]
    assert names == ["pkg/", "pkg/noise.bin", "pkg/run.sh", "pkg/text.py"]


def test_zstd_bomb_is_capped(tmp_path: Path) -> None:
    bomb = corpus.zstd_bomb(64 << 20)
    assert len(bomb) < 64 << 10
    sb = make_sandbox(tmp_path / "a")
    with untouched(sb), pytest.raises(ImageError, match="decompression bomb"):
        sb.apply(bomb, media_type=mediatypes.OCI_LAYER_ZSTD, max_bytes=8 << 20)


def test_zstd_bomb_is_stopped_by_the_expansion_ratio(tmp_path: Path) -> None:
    bomb = corpus.zstd_bomb(32 << 20)
    sb = make_sandbox(tmp_path / "a")
    tight = ExpansionLimit(ratio=10, floor=1 << 20)
    with untouched(sb), pytest.raises(ImageError, match="10x its"):
        sb.apply(bomb, media_type=mediatypes.OCI_LAYER_ZSTD, expansion=tight)
    loose = make_sandbox(tmp_path / "b")
    roomy = ExpansionLimit(ratio=100_000, floor=1 << 20)
    result = loose.apply(bomb, media_type=mediatypes.OCI_LAYER_ZSTD, expansion=roomy)
    assert (loose.root / "zeros").stat().st_size == 32 << 20
    assert result.bytes_written == 32 << 20


def test_zstd_with_a_huge_window_is_refused(tmp_path: Path) -> None:
    """A frame that asks for a 2 GiB window (as much memory) is refused, not allocated."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31, write_content_size=0)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
    blob = compressor.compress(b"\0" * 1024) + compressor.flush()
    assert zstandard.get_frame_parameters(blob).window_size == 1 << 31
    with pytest.raises(ImageError, match="not valid zstd"):
        make_sandbox(tmp_path / "a").apply(blob, media_type=mediatypes.OCI_LAYER_ZSTD)


def test_zstd_with_trailing_garbage_is_refused(tmp_path: Path) -> None:
    data, _ = write(tree(tmp_path / "t"))
    with pytest.raises(ImageError, match="not valid zstd"):
        make_sandbox(tmp_path / "a").apply(
            data + b"not a frame", media_type=mediatypes.OCI_LAYER_ZSTD
        )


def test_truncated_zstd_does_not_match_its_descriptor(tmp_path: Path) -> None:
    data, digests = write(tree(tmp_path / "t"))
    cut = data[: len(data) // 2]
    with pytest.raises(ImageError, match=r"truncated|descriptor|unexpected end|ends"):
        make_sandbox(tmp_path / "a").apply(
            cut,
            media_type=mediatypes.OCI_LAYER_ZSTD,
            expected_digest=digests.digest,
            expected_size=digests.size,
        )


def test_zstd_image_pushes_and_pulls_through_a_real_registry(tmp_path: Path) -> None:
    registry = plain_registry()
    root = tmp_path / "t"
    (root / "app").mkdir(parents=True)
    (root / "app" / "hello.txt").write_text("zstd over the wire\n")
    store = Store(tmp_path / "store")
    with store.staging("zstd") as stage:
        blob = stage / "layer.tar.zst"
        with blob.open("wb") as fh:
            digests = write_layer(root, fh, source_date_epoch=1, compression="zstd")
        store.put_file(blob, digest=digests.digest)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
    }
    layer = Descriptor(
        media_type=mediatypes.OCI_LAYER_ZSTD, digest=digests.digest, size=digests.size
    )
    store.add_image(config=config, layers=(layer,), ref="zstd:1")
    target = f"{registry}/mlpack-test/zstd-{uuid.uuid4().hex[:10]}:1"
    push(store, "zstd:1", target)
    fresh = Store(tmp_path / "fresh")
    pull(target, fresh)
    pulled = fresh.image(target)
    assert [d.media_type for d in pulled.manifest.layers] == [mediatypes.OCI_LAYER_ZSTD]
    assert pulled.manifest.layers[0].digest == digests.digest
    assert (rootfs(fresh, target) / "app" / "hello.txt").read_text() == "zstd over the wire\n"


def test_zstd_cut_between_blocks_is_truncated_not_a_short_layer(tmp_path: Path) -> None:
    """Without a descriptor to compare with, a frame cut short still fails: its headers say so."""
    data, _ = write(tree(tmp_path / "t"))
    frames = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
    assert frames.read(1)  # the whole blob is sound...
    for cut in (4, 5, len(data) - 4, len(data) - 1):  # ...each prefix is not
        with pytest.raises(ImageError, match="truncated"):
            make_sandbox(tmp_path / f"cut{cut}").apply(
                data[:cut], media_type=mediatypes.OCI_LAYER_ZSTD
            )


def test_skippable_frames_and_several_frames_are_one_stream(tmp_path: Path) -> None:
    data, digests = write(tree(tmp_path / "t"))
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    half = len(raw) // 2
    skippable = (0x184D2A5A).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    compressor = zstandard.ZstdCompressor(level=1)
    blob = skippable + compressor.compress(raw[:half]) + compressor.compress(raw[half:])
    result = make_sandbox(tmp_path / "a").apply(blob, media_type=mediatypes.OCI_LAYER_ZSTD)
    assert result.diff_id == digests.diff_id


def test_the_embedded_builder_writes_zstd_layers_on_request(tmp_path: Path) -> None:
    """`mlpack build --compression zstd`: the built layers are zstd, the base's stay as they
    were, the diff_ids (the image ID) match a gzip build's, and the cache keeps them apart."""
    store = Store(tmp_path / "store")
    (tmp_path / "wheels").mkdir()
    pin = make_wheel(tmp_path / "wheels")
    spec = make_spec(make_base(store, tmp_path), (pin,))
    project = make_project(tmp_path / "proj")
    wheels = {pin.sha256: tmp_path / "wheels" / pin.filename}
    results = {
        name: EmbeddedBuilder(store, wheels=wheels, compression=name).build(
            spec, context=project, tag=f"localhost/demo:{name}"
        )
        for name in ("gzip", "zstd", "gzip")
    }
    gz, zst = store.image("localhost/demo:gzip"), store.image("localhost/demo:zstd")
    base = len(gz.manifest.layers) - len(spec.steps)
    assert [d.media_type for d in zst.manifest.layers[base:]] == [mediatypes.OCI_LAYER_ZSTD] * 3
    assert zst.manifest.layers[:base] == gz.manifest.layers[:base]
    assert zst.config.diff_ids == gz.config.diff_ids
    for desc in zst.manifest.layers[base:]:
        assert store.blob_path(desc.digest).read_bytes()[:4] == ZSTD_MAGIC
    assert not any(x.cached for x in results["zstd"].layers[base:])  # not gzip's cache entries
    assert all(x.cached for x in results["gzip"].layers)  # the second gzip build: all hits


def test_compression_comes_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "mlpack.toml").write_text('name = "demo"\npython = "3.11"\ncompression = "zstd"\n')
    assert load_config(tmp_path).compression == "zstd"
    (tmp_path / "mlpack.toml").write_text('name = "demo"\npython = "3.11"\ncompression = "lz4"\n')
    with pytest.raises(ConfigError, match="not gzip or zstd"):
        load_config(tmp_path)


def test_the_docker_backend_refuses_zstd(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="docker backend writes gzip"):
        make_builder("docker", Store(tmp_path / "store"), {}, "zstd")
