"""The parallel (pigz-style) layer writer: valid gzip, the same bytes for any thread count."""

from __future__ import annotations

import gzip
import io
import random
import subprocess
import tarfile
from typing import TYPE_CHECKING

from mlpack.oci import layer_compression
from mlpack.oci.layer_compression import PARALLEL_BLOCK
from mlpack.oci.layer_writer import write_layer

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


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
