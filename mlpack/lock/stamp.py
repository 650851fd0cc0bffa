"""The no-op memo: an unchanged re-lock is answered from a fingerprint of the raw input bytes.

``mlpack lock`` on unchanged inputs must cost next to nothing (BENCHMARKS B4-noop), but the
input hash needs the validated config, which needs tomllib, packaging and the config module.
So after a lock finds (or makes) ``mlpack.lock`` up to date, ``Memo`` records a fingerprint of
everything that decision read: the config file's bytes, the lock's bytes, pip's index settings
(environment and pip.conf files), the project's real path and the sources that decide (the
config, the shared vocabulary and the lock package). ``is_current`` recomputes it with ``os``
alone and answers only on an exact match; anything else takes the full path.
"""

# os.path for the string paths the no-op path passes around (BENCHMARKS B4-noop).
# ruff: noqa: PTH100, PTH111, PTH116, PTH118, PTH120, PTH123

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final, Literal

from mlpack.oslib.fs import atomic_write
from mlpack.paths import CONFIG_FILE, LOCK_FILE, PYPROJECT_FILE, cache_folder

Mode = Literal["lock", "check"]


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


# Bump when the lock logic changes in a way that must re-resolve existing locks.
ALGORITHM: Final = "mlpack-lock/1"

# Sources whose edits can change what a lock decides (editable installs, dev work): these
# modules, and every module of the lock package.
_PACKAGE: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SOURCES: Final = ("__init__.py", "config.py", "paths.py", "vocabulary.py")
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
    parts += [_file_part(os.path.join(real, n)) for n in (CONFIG_FILE, PYPROJECT_FILE)]
    parts += [_file_part(p) for p in pip_config_files()]
    parts += [_source_part(rel) for rel in _sources()]
    return sha256_hex("\n".join(parts).encode("utf-8", "surrogateescape"))


def _sources() -> list[str]:
    names = sorted(p.name for p in Path(__file__).parent.glob("*.py"))
    return [*_SOURCES, *(f"lock/{n}" for n in names)]


def _source_part(rel: str) -> str:
    try:
        st = os.stat(os.path.join(_PACKAGE, rel))
    except OSError:
        return f"{rel}\0-"
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"


def lock_key(root: str) -> str | None:
    """The digest of the lock's bytes; None when it cannot be read."""
    data = _read(os.path.join(root, LOCK_FILE))
    return None if data is None else sha256_hex(data)


def fingerprint(mode: Mode, inputs: str, lock: str) -> str:
    """What a stamp records: the mode and the digests of the inputs and the lock."""
    return f"{mode} {inputs} {lock}\n"


def _stamp_path(root: str, mode: Mode) -> str:
    name = sha256_hex(f"{os.path.realpath(root)}\0{mode}".encode("utf-8", "surrogateescape"))
    return os.path.join(cache_folder("lock-ok"), name[:32])


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
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, fingerprint(mode, inputs, lock))
    except OSError:
        pass


class Memo:
    """Records an up-to-date outcome for ``is_current``.

    The input bytes are fingerprinted before the config is read and again after the outcome;
    only an unchanged pair is recorded, so a concurrent edit never records a wrong answer.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.inputs = inputs_key(self.root)
        self.lock = lock_key(self.root)

    def remember(self, mode: Mode, *, written: str | None = None) -> None:
        """Record ``mode`` as up to date; ``written``: the text this run wrote to the lock."""
        lock_now = lock_key(self.root)
        expected = self.lock if written is None else sha256_hex(written.encode("utf-8"))
        if lock_now is None or lock_now != expected or inputs_key(self.root) != self.inputs:
            return
        record(self.root, mode, self.inputs, lock_now)
