"""Test helpers for the layer applier: a root beside a sentinel, snapshots, rootless children."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import ApplyResult, apply_layer
from mlpack.oslib import inroot

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    import pytest

REPO = Path(__file__).resolve().parents[3]
EVIL_DIR = REPO / "tests" / "fixtures" / "evil"
NOBODY = 65534


def readlink_raw(path: Path) -> str:
    """The link target verbatim (``Path.readlink`` normalises ``/.`` to ``/``)."""
    return os.readlink(path)  # noqa: PTH115


def load_corpus() -> ModuleType:
    """Import ``tests/fixtures/evil/make_corpus.py`` (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_corpus", EVIL_DIR / "make_corpus.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Sandbox:
    base: Path  # the parent of root: must never change
    root: Path
    outside: Path  # a sentinel directory next to root

    def apply(self, data: bytes, **kwargs: Any) -> ApplyResult:
        kwargs.setdefault("media_type", mediatypes.OCI_LAYER)
        return apply_layer(io.BytesIO(data), self.root, **kwargs)


def make_sandbox(base: Path) -> Sandbox:
    outside = base / "outside"
    outside.mkdir(parents=True)
    (outside / "sentinel").write_text("keep me")
    (base / "beside-root").write_text("keep me too")
    root = base / "root"
    root.mkdir()
    return Sandbox(base=base, root=root, outside=outside)


def sandbox_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox under each in-root resolver path: the kernel's openat2, or the walk."""
    saved = inroot._openat2[0]
    inroot._openat2[0] = request.param == "openat2"
    try:
        yield make_sandbox(tmp_path / "base")
    finally:
        inroot._openat2[0] = saved


def snapshot(base: Path, exclude: Path) -> dict[str, tuple[object, ...]]:
    """Everything under ``base`` but ``exclude``: type, mode, owner, size, mtime, content."""
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != exclude]
        for name in (*dirnames, *filenames, "."):
            path = here / name
            st = path.lstat()
            if stat.S_ISREG(st.st_mode):
                extra: object = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = readlink_raw(path)
            else:
                extra = None
            key = str(path.relative_to(base))
            found[key] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, extra)
    return found


@contextmanager
def untouched(sb: Sandbox) -> Iterator[None]:
    """Prove that nothing outside the root (the sentinel, the root's parent) changed."""
    host_outside = Path("/outside").exists()
    before = snapshot(sb.base, sb.root)
    yield
    assert snapshot(sb.base, sb.root) == before
    assert Path("/outside").exists() == host_outside


def tree_listing(root: Path) -> dict[str, tuple[str, int, object]]:
    """A comparable view of a tree: kind, permission bits and content or link target."""
    listing: dict[str, tuple[str, int, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                listing[rel] = ("symlink", 0o777, readlink_raw(path))
            elif stat.S_ISDIR(st.st_mode):
                listing[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            elif stat.S_ISREG(st.st_mode):
                listing[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
            else:
                listing[rel] = ("other", stat.S_IMODE(st.st_mode), st.st_rdev)
    return listing


_CHILD = r"""
import io, json, os, sys
from pathlib import Path
from mlpack.errors import ImageError
from mlpack.oci.layer_applier import apply_layer
jobs = json.load(sys.stdin)
out = {"euid": os.geteuid(), "results": []}
for job in jobs:
    kwargs = job.get("kwargs", {})
    try:
        with open(job["blob"], "rb") as blob:
            res = apply_layer(blob, Path(job["root"]), media_type=job["media_type"], **kwargs)
        out["results"].append({"ok": True, "skipped": list(res.skipped), "entries": res.entries})
    except ImageError as exc:
        out["results"].append({"ok": False, "error": str(exc)})
json.dump(out, sys.stdout)
"""


def setpriv_available() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def userns_available() -> bool:
    """Whether an unprivileged child can create a user namespace here."""
    if not setpriv_available() or shutil.which("unshare") is None:
        return False
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    argv += ["unshare", "--user", "--map-root-user", "true"]
    proc = subprocess.run(argv, capture_output=True, check=False)
    return proc.returncode == 0


def run_rootless(jobs: list[dict[str, Any]], *, userns: bool = False) -> dict[str, Any]:
    """Run apply jobs in a child process with euid/egid 65534 (nobody); return its report.

    With ``userns`` the child also enters a new user namespace mapping it to root there, as a
    rootless runtime does (then mknod of overlay whiteouts works on Linux >= 5.8).
    """
    setpriv = shutil.which("setpriv")
    unshare = shutil.which("unshare")
    assert setpriv is not None
    assert unshare is not None
    cmd = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    if userns:
        cmd += [unshare, "--user", "--map-root-user"]
    cmd += [sys.executable, "-c", _CHILD]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        cmd, input=json.dumps(jobs), capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@contextmanager
def nobody_dir() -> Iterator[Path]:
    """A world-traversable temp dir (pytest's tmp dirs are 0700) for a rootless child."""
    base = Path(tempfile.mkdtemp(prefix="mlpack-rootless-"))
    try:
        base.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)
