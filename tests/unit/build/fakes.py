"""Tiny real inputs for builder tests: a wheel with a console script, a base image, a project."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from typing import TYPE_CHECKING

from mlpack.oci import mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_writer import write_layer
from mlpack.spec import CodeStep, ImageSpec, VenvStep, WheelPin, WheelStep

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlpack.oci.store import Store

CREATED = "2023-11-14T22:13:20Z"


def make_wheel(
    dest: Path,
    name: str = "hello",
    version: str = "1.0",
    *,
    metadata: str = "",
    modules: tuple[str, ...] = (),
    package: str | None = None,
    init: bytes = b"def main():\n    print('hello')\n",
) -> WheelPin:
    """A pure-Python wheel with a package and a console script, both named ``package`` (default:
    ``name``); ``metadata`` adds lines to its METADATA (e.g. ``License-Expression: MIT``),
    ``modules`` more modules to the package, ``init`` is its ``__init__.py``.
    """
    package = package or name
    files = {
        f"{package}/__init__.py": init,
        **{f"{package}/{module}.py": f"NAME = {module!r}\n".encode() for module in modules},
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{metadata}".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{name}-{version}.dist-info/entry_points.txt": (
            f"[console_scripts]\n{package} = {package}:main\n".encode()
        ),
    }
    record = ""
    for member, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{member},sha256={digest},{len(data)}\n"
    record += f"{name}-{version}.dist-info/RECORD,,\n"
    files[f"{name}-{version}.dist-info/RECORD"] = record.encode()
    filename = f"{name}-{version}-py3-none-any.whl"
    path = dest / filename
    with zipfile.ZipFile(path, "w") as zf:
        # A fixed date: the same wheel bytes (and sha256) every time it is made.
        for member, data in files.items():
            zf.writestr(zipfile.ZipInfo(member, date_time=(2020, 1, 1, 0, 0, 0)), data)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return WheelPin(name=name, version=version, filename=filename, sha256=sha)


def make_base(
    store: Store,
    tmp: Path,
    *,
    env: tuple[str, ...] = (),
    files: Mapping[str, str] | None = None,
    architecture: str = "amd64",
    links: Mapping[str, str] | None = None,
) -> str:
    """A one-layer linux/amd64 base (a file under /usr/bin) in ``store``; its digest.

    ``env`` adds to the config's Env (``PYTHON_VERSION=...`` makes it a base ``lock`` accepts);
    ``files`` adds files (relative path: text) to its layer, ``links`` symlinks (path: target).
    """
    tree = tmp / "base-tree"
    (tree / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    (tree / "usr" / "bin" / "python3").write_text("#!/bin/sh\n")
    for rel, text in (files or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    for rel, target in (links or {}).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(target)
    store.prepare()
    blob = tmp / "base.tar.gz"
    with blob.open("wb") as fh:
        digests = write_layer(tree, fh, source_date_epoch=1)
    store.put_file(blob, digest=digests.digest)
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", *env], "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [digests.diff_id]},
        "history": [{"created": CREATED, "created_by": "base"}],
    }
    layer = Descriptor(
        media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
    )
    return store.add_image(config=config, layers=(layer,), ref="localhost/base:1")


def make_spec(base_digest: str, wheels: tuple[WheelPin, ...]) -> ImageSpec:
    """A spec with the venv, one wheel step and the code step, as plan() makes them."""
    return ImageSpec(
        name="demo",
        base_reference="localhost/base:1",
        base_digest=base_digest,
        platform="linux/amd64",
        python="3.11.2",
        prefix="/opt/venv",
        steps=(
            VenvStep(prefix="/opt/venv", python="3.11.2"),
            WheelStep(
                name="packages",
                role="packages",
                prefix="/opt/venv",
                python="3.11.2",
                wheels=wheels,
            ),
            CodeStep(
                workdir="/app",
                excludes=(".git", ".env", "/outputs", "/data"),
                writable_dirs=("outputs",),
            ),
        ),
        env=(("VIRTUAL_ENV", "/opt/venv"), ("EPOCHS", "3")),
        path_prepend=("/opt/venv/bin",),
        user="1000:1000",
        workdir="/app",
        entrypoints=(),
        cmd=("python", "train.py"),
        ports=(8000,),
        volumes=("/app/data", "/app/outputs"),
        labels=(("org.mlpack.lock", "sha256:" + "0" * 64),),
        secret_env=("API_KEY",),
        lock_hash="0" * 64,
        created=CREATED,
    )


def make_project(root: Path) -> Path:
    """A project with code, a secret .env, data, outputs, a .git folder and a render wheelhouse."""
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('train')\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "pkg" / "__init__.py").write_text("")
    (root / ".env").write_text("API_KEY=sk-live-SECRET\n")
    (root / "data").mkdir()
    (root / "data" / "big.csv").write_text("1,2\n")
    (root / "outputs").mkdir()
    (root / "outputs" / "old.bin").write_text("x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".mlpack" / "wheels").mkdir(parents=True)  # what `mlpack render` adds
    (root / ".mlpack" / "wheels" / "x.whl").write_text("wheel")
    return root
