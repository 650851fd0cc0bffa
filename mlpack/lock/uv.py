"""The default resolver: ``uv pip compile`` for the target Python and platform, no target needed."""

from __future__ import annotations

import os
import sys
import urllib.parse
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from packaging.utils import canonicalize_name

from mlpack.errors import LockError
from mlpack.lock.failure import read_failure
from mlpack.lock.resolvers import (
    Pin,
    ResolveRequest,
    parse_output,
    reuse_files,
    write_inputs,
)
from mlpack.lock.runner import HostRunner, Runner
from mlpack.vocabulary import GLIBC_MINOR, MACHINES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from mlpack.vocabulary import Platform, ResolverName


# uv settings that do not change what is resolved (cache, TLS, timeouts, auth helpers) are
# honoured; every other UV_* variable (indexes, constraints, resolution mode) is dropped so the
# lock depends on mlpack.toml alone.
UV_KEEP: Final = frozenset(
    {"UV_CACHE_DIR", "UV_NO_CACHE", "UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_KEYRING_PROVIDER",
     "UV_CONCURRENT_DOWNLOADS", "UV_CONCURRENT_BUILDS", "UV_CONCURRENT_INSTALLS", "UV_OFFLINE",
     "UV_INSECURE_HOST"}
)  # fmt: skip


def uv_binary() -> str:
    """The uv executable shipped by the ``uv`` Python package (a dependency of mlpack)."""
    try:
        from uv import find_uv_bin
    except ImportError as exc:  # pragma: no cover - uv is a dependency
        msg = "the uv package is not installed"
        raise LockError(msg, hint="pip install uv, or use --resolver pip-tools") from exc
    try:
        return str(find_uv_bin())
    except FileNotFoundError as exc:  # pragma: no cover - broken install
        msg = f"the uv binary is missing: {exc}"
        raise LockError(msg, hint="reinstall mlpack-env (it brings uv)") from exc


def uv_platform(platform: Platform) -> str:
    """Uv's ``--python-platform`` for ``platform``: its machine and the base images' glibc."""
    return f"{MACHINES[platform]}-manylinux_2_{GLIBC_MINOR}"


def uv_compile_args(request: ResolveRequest, *, quiet: bool = True) -> list[str]:
    """The ``uv pip compile`` argument list for ``request`` (shared with bench/lock.py)."""
    args = [
        uv_binary(),
        "pip",
        "compile",
        "requirements.in",
        "--output-file",
        "requirements.txt",
        "--python-version",
        request.python,
        "--python-platform",
        uv_platform(request.platform),
        "--generate-hashes",
        "--annotation-style",
        "split",
        "--no-header",
        "--no-python-downloads",
        # An explicit interpreter (only used to build sdists' metadata) skips uv's interpreter
        # discovery, which costs about a second when version-manager shims are on PATH.
        "--python",
        sys.executable,
        "--no-config",
        *request.compile_args(),
    ]
    if quiet:
        args.append("--quiet")
    if request.indexes.machine_local:
        # uv takes a package only from the first index that has it; a partial local mirror
        # would hide the index's newer releases. pip, whose configuration named the mirror,
        # picks the best version across all indexes.
        args += ["--index-strategy", "unsafe-best-match"]
    return args


def uv_env(request: ResolveRequest) -> dict[str, str]:
    """The environment for uv: the host's, with a CA bundle for intercepting proxies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in UV_KEEP}
    if request.ca_cert is not None:
        env["SSL_CERT_FILE"] = str(request.ca_cert)
    elif "SSL_CERT_FILE" not in env:
        # Use the system trust store too (uv's --native-tls), as pip does with truststore.
        env["UV_NATIVE_TLS"] = "1"
    return env


class UvResolver:
    """Resolves with uv for the target version and platform, from any host."""

    name: ResolverName = "uv"

    def __init__(self, runner: Runner | None = None) -> None:
        self.runner = runner or HostRunner()

    def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
        """Run uv and parse its pins."""
        write_inputs(request)
        done = self.runner.run(uv_compile_args(request), cwd=request.workdir, env=uv_env(request))
        if done.returncode != 0:
            raise read_failure(request, done.stderr, tool="uv")
        pins = parse_output((request.workdir / "requirements.txt").read_text(encoding="utf-8"))
        pins = reuse_files(pins, request.known_files)
        if all(p.files or p.url is not None for p in pins):
            return pins  # a re-lock that moved no pin: the previous lock named every file
        return with_target_files(request, pins, self.runner, offline=True)


def pylock_args(request: ResolveRequest, *, offline: bool) -> list[str]:
    """``uv pip compile`` writing pylock.toml (PEP 751: the target's file names)."""
    args = uv_compile_args(request)
    args[args.index("--output-file") + 1] = "pylock.toml"
    if offline:
        args.append("--offline")
    return args


# (filename, sha256, upload time or "") of one file in uv's pylock.toml
PylockFile = tuple[str, str, str]


def pylock_files(request: ResolveRequest) -> dict[str, list[PylockFile]]:
    """The files per package from the workdir's pylock.toml; {} when unreadable."""
    try:
        data = tomllib.loads((request.workdir / "pylock.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    files: dict[str, list[PylockFile]] = {}
    for package in data.get("packages", []):
        name = canonicalize_name(str(package.get("name", "")))
        for entry in [*package.get("wheels", []), package.get("sdist") or {}]:
            url = entry.get("url") or entry.get("path")
            sha = entry.get("hashes", {}).get("sha256")
            if url and sha:
                filename = urllib.parse.unquote(str(url).rsplit("/", 1)[-1])
                uploaded = entry.get("upload-time")
                when = uploaded.isoformat() if hasattr(uploaded, "isoformat") else ""
                files.setdefault(name, []).append((filename, str(sha), when))
    return files


def attach_files(pins: tuple[Pin, ...], files: dict[str, list[PylockFile]]) -> tuple[Pin, ...]:
    """``pins`` with the files whose hash they pin (a file of another version never matches)."""
    out = []
    for pin in pins:
        if pin.url is None and not pin.files:
            mine = [f for f in files.get(pin.name, ()) if f[1] in pin.hashes]
            pin = replace(
                pin,
                files=tuple(sorted((n, h) for n, h, _ in mine)),
                uploaded=max((w for _, _, w in mine), default="") or None,
            )
        out.append(pin)
    return tuple(out)


def with_target_files(
    request: ResolveRequest, pins: tuple[Pin, ...], runner: Runner, *, offline: bool
) -> tuple[Pin, ...]:
    """Add the target's file names to ``pins`` from a ``uv pip compile`` pylock.toml run.

    uv's requirements.txt (and pip-compile's) has hashes and "via" but no file names; uv's
    pylock.toml (PEP 751) has the target's file names but no "via". After uv resolved, a second
    run reads only its fresh cache (``offline``, ~50 ms); otherwise uv is given the exact pins
    with ``--no-deps``. Either is much cheaper than listing every project on the index. Any
    failure: the pins keep no names (the locker lists the index instead).
    """
    args = pylock_args(request, offline=offline)
    if not offline:
        pinned = [f"{p.name}=={p.version}" for p in pins if p.url is None and p.version]
        (request.workdir / "pinned.in").write_text("".join(f"{x}\n" for x in pinned))
        args[args.index("requirements.in")] = "pinned.in"
        args.append("--no-deps")
    done = runner.run(args, cwd=request.workdir, env=uv_env(request))
    if done.returncode != 0:
        return pins
    return attach_files(pins, pylock_files(request))
