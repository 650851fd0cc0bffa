"""``mlpack verify``: compare two builds of one spec, layer by layer and file by file.

A layer's diff_id is its identity, so two builds agree when every digest does; when one does
not, both tars are read and the first files whose name, type, mode, owner, mtime, link or
content differ are named (REPRODUCIBILITY.md §9).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlpack.oci.layer_stream import stored_layer

if TYPE_CHECKING:
    from mlpack.build.protocol import BuildResult
    from mlpack.oci.store import Store

MAX_FILES: Final = 20  # differing files named per layer
_FIELDS: Final = ("type", "mode", "uid", "gid", "mtime", "size", "link", "content")


@dataclass(frozen=True, kw_only=True)
class FileDifference:
    """One path that differs between the two layers, and the first field that does."""

    path: str
    field: str  # one of _FIELDS, or "only in first" / "only in second"


@dataclass(frozen=True, kw_only=True)
class LayerDifference:
    """A layer whose digests differ between the builds."""

    step: str
    first: str
    second: str
    files: tuple[FileDifference, ...]


@dataclass(frozen=True, kw_only=True)
class Verification:
    """The outcome: identical when the image digests (hence every layer and config) agree."""

    first: str
    second: str
    layers: tuple[LayerDifference, ...]

    @property
    def identical(self) -> bool:
        """Whether both builds gave the same image."""
        return self.first == self.second


def compare(
    first_store: Store, first: BuildResult, second_store: Store, second: BuildResult
) -> Verification:
    """Compare two builds of the same spec (each in its own store)."""
    layers = tuple(
        LayerDifference(
            step=a.step,
            first=a.digest,
            second=b.digest,
            files=_file_differences(first_store, a.digest, second_store, b.digest),
        )
        for a, b in zip(first.layers, second.layers, strict=True)
        if a.digest != b.digest
    )
    return Verification(first=first.digest, second=second.digest, layers=layers)


def layer_files(store: Store, digest: str) -> dict[str, tuple[object, ...]]:
    """Every entry of a stored gzip layer: path -> the fields of ``_FIELDS``, content hashed."""
    entries: dict[str, tuple[object, ...]] = {}
    with store.blob_path(digest).open("rb") as raw:
        reader = stored_layer(raw)
        for member in reader:
            content = b""
            if member.type == "file":
                digest_of = hashlib.sha256()
                for chunk in reader.read_data():
                    digest_of.update(chunk)
                content = digest_of.digest()
            name = member.name.rstrip("/") if member.type == "dir" else member.name
            entries[name] = (
                member.type,
                member.mode,
                member.uid,
                member.gid,
                member.mtime,
                member.size,
                member.linkname,
                content,
            )
    return entries


def _file_differences(
    first_store: Store, first: str, second_store: Store, second: str
) -> tuple[FileDifference, ...]:
    a, b = layer_files(first_store, first), layer_files(second_store, second)
    found: list[FileDifference] = []
    for path in sorted(set(a) | set(b)):
        if path not in b:
            found.append(FileDifference(path=path, field="only in first"))
        elif path not in a:
            found.append(FileDifference(path=path, field="only in second"))
        elif a[path] != b[path]:
            field = next(f for f, x, y in zip(_FIELDS, a[path], b[path], strict=True) if x != y)
            found.append(FileDifference(path=path, field=field))
        if len(found) == MAX_FILES:
            break
    return tuple(found)
