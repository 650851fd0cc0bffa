"""Which repositories hold a blob: recorded on pull and push, used for cross-repository mounts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.oci.store import Store


def _path(store: Store, digest: str) -> Path:
    return store.root / "origins" / digest.removeprefix("sha256:")


def record_origin(store: Store, digest: str, repo_name: str) -> None:
    """Remember which repositories hold a blob, for cross-repository mounts on push."""
    path = _path(store, digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = set(path.read_text().split()) if path.exists() else set()
        if repo_name not in known:
            with path.open("a") as fh:
                fh.write(repo_name + "\n")
    except OSError:
        pass  # only an optimisation


def origins(store: Store, digest: str) -> tuple[str, ...]:
    """The repositories known to hold ``digest`` (none when unrecorded)."""
    try:
        return tuple(_path(store, digest).read_text().split())
    except OSError:
        return ()
