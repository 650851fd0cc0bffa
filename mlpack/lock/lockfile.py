"""Read and write ``mlpack.lock``: TOML in a fixed order, one value per line, easy to diff."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Final, cast

from mlpack.errors import LockError
from mlpack.lock.lockdata import (
    LOCK_FORMAT,
    DroppedPackage,
    Lock,
    LockedFile,
    LockedPackage,
    SystemPackagePin,
    Target,
    TorchDecision,
)
from mlpack.oslib.fs import atomic_write
from mlpack.paths import LOCK_FILE
from mlpack.vocabulary import BASE_PROVIDERS, BaseImage, EnvSpec, as_platform

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from pathlib import Path

_HEADER: Final = (
    "# mlpack.lock: written by `mlpack lock`. Do not edit: change mlpack.toml and re-run it.\n"
    "# `mlpack lock --check` fails when the inputs changed; `mlpack why PKG` explains a pin.\n"
)


def _s(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes), and json.dumps is deterministic;
    # TOML also forbids a raw DEL, which JSON leaves alone.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _list(values: tuple[str, ...]) -> str:
    if not values:
        return "[]"
    if len(values) == 1:
        return f"[{_s(values[0])}]"
    inner = "".join(f"    {_s(v)},\n" for v in values)
    return f"[\n{inner}]"


def dumps(lock: Lock) -> str:
    """Render ``lock`` as TOML; the same lock always gives the same bytes."""
    out: list[str] = [_HEADER]
    out.append(f"format = {lock.format}\n")
    out.append(f"input-hash = {_s(lock.input_hash)}\n")
    out.append(f"resolver = {_s(lock.resolver)}\n")
    if lock.notes:
        out.append(f"notes = {_list(lock.notes)}\n")
    out.append("\n[target]\n")
    out.append(f"python = {_s(lock.target.python)}\n")
    out.append(f"platform = {_s(lock.target.platform)}\n")
    out.append("\n[base]\n")
    out.append(f"reference = {_s(lock.base.reference)}\n")
    out.append(f"digest = {_s(lock.base.digest)}\n")
    out.append(f"provider = {_s(lock.base.provider)}\n")
    out.append("\n[indexes]\n")
    out.append(f"index-url = {_s(lock.index_url)}\n")
    out.append(f"extra-index-urls = {_list(lock.extra_index_urls)}\n")
    if lock.torch is not None:
        t = lock.torch
        out.append("\n[torch]\n")
        out.append(f"variant = {_s(t.variant)}\n")
        out.append(f"reason = {_s(t.reason)}\n")
        if t.cuda_runtime is not None:
            out.append(f"cuda-runtime = {_s(t.cuda_runtime)}\n")
        if t.min_driver is not None:
            out.append(f"min-driver = {_s(t.min_driver)}\n")
    for sp in sorted(lock.system_packages, key=lambda p: p.name):
        out.append(_system(sp))
    for env in sorted(lock.env, key=lambda e: e.name):
        out.append("\n[[env]]\n")
        out.append(f"name = {_s(env.name)}\n")
        if env.default is not None and not env.secret:
            out.append(f"default = {_s(env.default)}\n")
        out.append(f"secret = {'true' if env.secret else 'false'}\n")
    for pkg in sorted(lock.packages, key=lambda p: p.name):
        out.append(_package(pkg))
    for gone in sorted(lock.dropped, key=lambda d: d.name):
        out.append("\n[[dropped]]\n")
        out.append(f"name = {_s(gone.name)}\nrequirement = {_s(gone.requirement)}\n")
        out.append(f"source = {_s(gone.source)}\nreason = {_s(gone.reason)}\n")
    return "".join(out)


def _system(pin: SystemPackagePin) -> str:
    lines = [
        "\n[[system-packages]]\n",
        f"name = {_s(pin.name)}\n",
        f"version = {_s(pin.version)}\n",
    ]
    if pin.pinned:
        lines.append(f"architecture = {_s(pin.architecture)}\n")
        lines.append(f"requested = {'true' if pin.requested else 'false'}\n")
    if pin.url:  # none: the base image has it
        lines.append(f"url = {_s(pin.url)}\nsize = {pin.size}\nsha256 = {_s(pin.sha256)}\n")
    return "".join(lines)


def _package(pkg: LockedPackage) -> str:
    lines = ["\n[[packages]]\n", f"name = {_s(pkg.name)}\n", f"version = {_s(pkg.version)}\n"]
    if pkg.kind != "index":
        lines.append(f"kind = {_s(pkg.kind)}\n")
    if pkg.url is not None:
        lines.append(f"url = {_s(pkg.url)}\n")
    if pkg.commit is not None:
        lines.append(f"commit = {_s(pkg.commit)}\n")
    if pkg.build != "wheel":
        lines.append(f"build = {_s(pkg.build)}\n")
    lines.append(f"via = {_list(pkg.via)}\n")
    names = {f.sha256: f.name for f in pkg.files}
    entries = []
    for digest in sorted(set(pkg.hashes) | set(names)):
        name = names.get(digest)
        if name is None:
            entries.append(f"    {{ sha256 = {_s(digest)} }},\n")
        else:
            entries.append(f"    {{ name = {_s(name)}, sha256 = {_s(digest)} }},\n")
    # Sort by file name so a new wheel shows up as one added line in a diff.
    entries.sort(key=lambda line: (0 if "name =" in line else 1, line))
    lines.append(f"files = [\n{''.join(entries)}]\n" if entries else "files = []\n")
    return "".join(lines)


def write_lock(path: Path, lock: Lock) -> None:
    """Write ``lock`` atomically: readers never see a partial file."""
    try:
        atomic_write(path, dumps(lock))
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise LockError(msg, hint="check the folder's permissions and free space") from exc


def read_lock(path: Path) -> Lock:
    """Read and validate ``path``; LockError when missing or damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"no {path.name} in {path.parent}"
        raise LockError(msg, hint=f"run `mlpack lock {path.parent}` first") from exc
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise LockError(msg, hint="check the file's permissions") from exc
    return loads(text, where=str(path))


def loads(text: str, *, where: str = LOCK_FILE) -> Lock:
    """Parse lock TOML; LockError naming the problem when it is not a valid lock."""
    try:
        data = tomllib.loads(text)
        return _from_data(data)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        msg = f"{where} is not a valid mlpack lock ({type(exc).__name__}: {exc})"
        raise LockError(msg, hint="delete it and run `mlpack lock` again") from exc


def _opt(table: dict[str, Any], key: str) -> str | None:
    value = table.get(key)
    return None if value is None else str(value)


def _from_data(data: dict[str, Any]) -> Lock:
    fmt = int(data["format"])
    if fmt != LOCK_FORMAT:
        msg = f"lock format {fmt} is not supported (this mlpack reads format {LOCK_FORMAT})"
        raise ValueError(msg)
    target = cast("dict[str, Any]", data["target"])
    base = cast("dict[str, Any]", data["base"])
    indexes = cast("dict[str, Any]", data["indexes"])
    torch_t = cast("dict[str, Any] | None", data.get("torch"))
    platform = as_platform(str(target["platform"]))
    if platform is None:
        msg = f"platform {target['platform']!r} is not one mlpack targets"
        raise ValueError(msg)
    provider = next((p for p in BASE_PROVIDERS if p == base["provider"]), None)
    if provider is None:
        msg = f"base provider {base['provider']!r} is unknown"
        raise ValueError(msg)
    packages = []
    for p in data.get("packages", []):
        files = tuple(
            LockedFile(name=str(f["name"]), sha256=str(f["sha256"]))
            for f in p.get("files", [])
            if "name" in f
        )
        packages.append(
            LockedPackage(
                name=str(p["name"]),
                version=str(p["version"]),
                kind=p.get("kind", "index"),
                hashes=tuple(str(f["sha256"]) for f in p.get("files", [])),
                files=files,
                via=tuple(str(v) for v in p.get("via", [])),
                url=_opt(p, "url"),
                commit=_opt(p, "commit"),
                build=p.get("build", "wheel"),
            )
        )
    return Lock(
        format=fmt,
        input_hash=str(data["input-hash"]),
        resolver=data["resolver"],
        notes=tuple(str(n) for n in data.get("notes", [])),
        target=Target(python=str(target["python"]), platform=platform),
        base=BaseImage(
            reference=str(base["reference"]),
            digest=str(base["digest"]),
            provider=provider,
            python_full=str(target["python"]),
        ),
        index_url=str(indexes["index-url"]),
        extra_index_urls=tuple(str(u) for u in indexes.get("extra-index-urls", [])),
        torch=None
        if torch_t is None
        else TorchDecision(
            variant=str(torch_t["variant"]),
            reason=str(torch_t["reason"]),
            cuda_runtime=_opt(torch_t, "cuda-runtime"),
            min_driver=_opt(torch_t, "min-driver"),
        ),
        system_packages=tuple(
            SystemPackagePin(
                name=str(s["name"]),
                version=str(s.get("version", "")),
                architecture=str(s.get("architecture", "")),
                url=str(s.get("url", "")),
                size=int(s.get("size", 0)),
                sha256=str(s.get("sha256", "")),
                requested=bool(s.get("requested", True)),
            )
            for s in data.get("system-packages", [])
        ),
        env=tuple(
            EnvSpec(name=str(e["name"]), default=_opt(e, "default"), secret=bool(e["secret"]))
            for e in data.get("env", [])
        ),
        packages=tuple(packages),
        dropped=tuple(
            DroppedPackage(
                name=str(d["name"]),
                requirement=str(d["requirement"]),
                source=str(d["source"]),
                reason=str(d["reason"]),
            )
            for d in data.get("dropped", [])
        ),
    )
