"""The no-op memo: an unchanged re-lock is answered from a fingerprint of the raw input bytes.

``mlpack lock`` on unchanged inputs must cost next to nothing (BENCHMARKS B4-noop), but the
input hash needs the validated config, which needs tomllib, packaging and the config module.
So after the full command finds (or makes) ``mlpack.lock`` up to date it records a fingerprint
of everything that decision read: the config file's bytes, the lock's bytes, pip's index
settings (environment and pip.conf files), the project's real path and mlpack's own sources.
``mlpack lock`` (``mlpack/cli/lock.py``) first recomputes the fingerprint with ``os`` alone and
answers only on an exact match; anything else runs the full command. Stdlib ``os`` and ``sys``
only: this module is imported before anything else on that path.
"""

# os.path only: pathlib costs ~2.5 ms of imports on the fast path.
# ruff: noqa: PTH100, PTH103, PTH105, PTH108, PTH111, PTH116, PTH118, PTH120, PTH123

from __future__ import annotations

import contextlib
import os

from mlpack.fasthash import sha256_hex
from mlpack.home import mlpack_home

TYPE_CHECKING = False  # not typing's: typing costs ~2 ms to import on the fast path
if TYPE_CHECKING:
    from typing import Final, Literal

    Mode = Literal["lock", "check"]


# Bump when the lock logic changes in a way that must re-resolve existing locks.
ALGORITHM: Final = "mlpack-lock/1"
LOCK_FILE: Final = "mlpack.lock"

# Sources whose edits can change what the full command decides (editable installs, dev work).
_SOURCES: Final = (
    "__init__.py",
    "config.py",
    "lock/locker.py",
    "lock/lockfile.py",
    "lock/model.py",
    "lock/indexes.py",
    "lock/torch.py",
    "lock/stamp.py",
    "cli/lock.py",
)
# What pip_indexes() reads from the environment.
_ENV: Final = ("HOME", "VIRTUAL_ENV", "XDG_CONFIG_DIRS", "XDG_CONFIG_HOME")


def pip_config_files() -> tuple[str, ...]:
    """Pip's configuration files in pip's order (global, user, site; later files win).

    ``PIP_CONFIG_FILE=os.devnull`` disables them all, as in pip.
    """
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return ()
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [os.path.join(d, "pip", "pip.conf") for d in xdg_dirs] + ["/etc/pip.conf"]
    home = os.path.expanduser("~")
    xdg_home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files += [os.path.join(home, ".pip", "pip.conf"), os.path.join(xdg_home, "pip", "pip.conf")]
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        files.append(os.path.join(venv, "pip.conf"))
    if env_file:
        files.append(env_file)
    return tuple(files)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _file_part(path: str) -> str:
    data = _read(path)
    return f"{path}\0-" if data is None else f"{path}\0{sha256_hex(data)}"


def inputs_key(root: str) -> str:
    """A digest of every input the up-to-date decision reads, except the lock itself."""
    real = os.path.realpath(root)
    parts = [ALGORITHM, real]
    parts += [f"{k}={os.environ.get(k)}" for k in _ENV]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PIP_"))
    parts += [_file_part(os.path.join(real, n)) for n in ("mlpack.toml", "pyproject.toml")]
    parts += [_file_part(p) for p in pip_config_files()]
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for rel in _SOURCES:
        try:
            st = os.stat(os.path.join(package, rel))
        except OSError:
            parts.append(f"{rel}\0-")
        else:
            parts.append(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}")
    return sha256_hex("\n".join(parts).encode("utf-8", "surrogateescape"))


def lock_key(root: str) -> str | None:
    """The digest of the lock's bytes; None when it cannot be read."""
    data = _read(os.path.join(root, LOCK_FILE))
    return None if data is None else sha256_hex(data)


def fingerprint(mode: Mode, inputs: str, lock: str) -> str:
    """What a stamp records: the mode and the digests of the inputs and the lock."""
    return f"{mode} {inputs} {lock}\n"


def _stamp_path(root: str, mode: Mode) -> str:
    name = sha256_hex(f"{os.path.realpath(root)}\0{mode}".encode("utf-8", "surrogateescape"))
    return os.path.join(mlpack_home(), "cache", "lock-ok", name[:32])


def is_current(root: str, mode: Mode) -> bool:
    """True when the full command already found these exact inputs and lock up to date."""
    recorded = _read(_stamp_path(root, mode))
    if recorded is None:
        return False
    lock = lock_key(root)
    if lock is None:
        return False
    return recorded.decode("utf-8", "replace") == fingerprint(mode, inputs_key(root), lock)


def record(root: str, mode: Mode, inputs: str, lock: str) -> None:
    """Remember that ``inputs`` and ``lock`` are up to date (best effort: never fails)."""
    path = _stamp_path(root, mode)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(fingerprint(mode, inputs, lock))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
