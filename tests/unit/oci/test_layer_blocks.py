"""The parallel (pigz-style) layer writer: valid gzip, the same bytes for any thread count."""

from __future__ import annotations

import gzip
import io
import os
import random
import subprocess
import sys
import tarfile
from typing import TYPE_CHECKING, Any

import pytest

from mlpack.errors import ImageError
from mlpack.oci import layer_compression, layer_writer
from mlpack.oci.layer_compression import PARALLEL_BLOCK
from mlpack.oci.layer_writer import write_layer

if TYPE_CHECKING:
    from pathlib import Path

# ``tree``'s layer from the parallel compressor, recorded with zlib-ng 2.3.3 (the pinned zlib-ng
# 1.1.0 package) on x86_64. With zlib 1.2.13 it was sha256:6ac20e24..., 720761 bytes.
ZLIB_NG = "2.3.3"
GOLDEN_DIGEST = "sha256:fdc3a3e696a5360c8625dbca2b4935b7415343e5fc5fec2340b2ece8f005ead1"
GOLDEN_SIZE = 720334


def tree(root: Path) -> Path:
    """Text that compresses (matches across block boundaries), noise that does not, empties."""
    rng = random.Random(7)
    (root / "pkg").mkdir(parents=True)
    words = [f"word{i}" for i in range(300)]
    text = " ".join(rng.choice(words) for _ in range(200_000)).encode()
    (root / "pkg" / "text.py").write_bytes(text)
    (root / "pkg" / "noise.bin").write_bytes(rng.randbytes(3 * PARALLEL_BLOCK + 17))
    (root / "pkg" / "empty").write_bytes(b"")
    return root


def write(root: Path, **kw: object) -> tuple[bytes, layer_compression.LayerDigests]:
    out = io.BytesIO()
    digests = write_layer(root, out, source_date_epoch=1, **kw)  # type: ignore[arg-type]
    return out.getvalue(), digests


def test_blocks_decompress_to_the_same_tar_as_the_single_stream(tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    single, one = write(root)
    blocks, many = write(root, blocks=True)
    assert blocks != single  # another compressor identity...
    assert gzip.decompress(blocks) == gzip.decompress(single)  # ...of the same tar
    assert many.diff_id == one.diff_id
    assert many.size == len(blocks)
    with tarfile.open(fileobj=io.BytesIO(blocks)) as tar:
        assert sorted(tar.getnames()) == ["pkg", "pkg/empty", "pkg/noise.bin", "pkg/text.py"]
    # The system's gzip agrees that the member (CRC32 and ISIZE included) is sound.
    (tmp_path / "l.gz").write_bytes(blocks)
    subprocess.run(["gzip", "-t", str(tmp_path / "l.gz")], check=True)
    # Priming each block with the previous 32 KiB keeps the ratio close to one stream's.
    assert len(blocks) < len(single) * 1.02


def test_the_bytes_do_not_depend_on_the_number_of_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tree(tmp_path / "t")
    seen = set()
    for cores in (1, 3, 16):
        monkeypatch.setattr(layer_compression, "_workers", lambda cores=cores: cores)
        seen.add(write(root, blocks=True)[0])
    assert len(seen) == 1


def test_an_empty_tree_is_a_valid_member(tmp_path: Path) -> None:
    (tmp_path / "e").mkdir()
    data, _ = write(tmp_path / "e", blocks=True)
    assert gzip.decompress(data) == b"\0" * 1024


def test_the_bytes_do_not_depend_on_the_task_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are batched into tasks for the threads; the batching never shows in the output,
    also when the stream ends on a block boundary (an empty final block, wherever it falls)."""
    root = tree(tmp_path / "t")
    exact = tmp_path / "exact"
    exact.mkdir()
    # 512 (header) + data + 1024 (end of archive) = exactly two blocks
    (exact / "f").write_bytes(random.Random(3).randbytes(2 * PARALLEL_BLOCK - 1536))
    for src in (root, exact):
        seen = set()
        for blocks_per_task in (1, 2, 3, 8):
            monkeypatch.setattr(layer_compression, "_TASK", blocks_per_task * PARALLEL_BLOCK)
            seen.add(write(src, blocks=True)[0])
        assert len(seen) == 1
        assert gzip.decompress(seen.pop()) == gzip.decompress(write(src)[0])


def test_golden_parallel_digest(tmp_path: Path) -> None:
    """The parallel compressor's identity is pinned: a change of its bytes must be deliberate
    (and change ``layer_compression.identity``, which keys the build cache)."""
    root = tree(tmp_path / "t")
    _, digests = write(root, blocks=True)
    version = layer_compression.zlib_ng().ZLIBNG_RUNTIME_VERSION
    assert layer_compression.identity("gzip") == f"gzip-6-blocks-131072-mem8-zlibng{version}"
    assert version == ZLIB_NG  # the version pyproject.toml pins
    assert (digests.digest, digests.size) == (GOLDEN_DIGEST, GOLDEN_SIZE)


def test_the_parallel_writer_without_zlib_ng_is_an_error_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zlib_ng", None)  # import zlib_ng now raises ImportError
    root = tree(tmp_path / "t")
    with pytest.raises(ImageError, match="'zlib-ng' package") as info:
        write(root, blocks=True)
    assert "pip install" in info.value.hint
    assert write(root)[1].size > 0  # the single stream (system zlib) does not need it


@pytest.mark.parametrize(
    "kw", [{}, {"blocks": True}, {"compression": "zstd"}], ids=["stream", "blocks", "zstd"]
)
@pytest.mark.parametrize("change", ["grow", "shrink", "unreadable"])
def test_a_file_that_changes_while_it_is_written_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kw: dict[str, object], change: str
) -> None:
    root = tree(tmp_path / "t")
    target = root / "pkg" / "noise.bin"
    collect = layer_writer._collect

    def then_change(*args: Any, **kwargs: Any) -> Any:
        entries = collect(*args, **kwargs)
        if change == "grow":
            with target.open("ab") as fh:
                fh.write(b"more")
        elif change == "shrink":
            os.truncate(target, 100)
        else:  # the file became a directory: opening works, reading fails
            target.unlink()
            target.mkdir()
        return entries

    monkeypatch.setattr(layer_writer, "_collect", then_change)
    match = "cannot read pkg/noise.bin" if change == "unreadable" else "changed size"
    with pytest.raises(ImageError, match=match):
        write(root, **kw)
