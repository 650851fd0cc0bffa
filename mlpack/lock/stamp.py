"""The no-op memo: an unchanged re-lock is answered from a fingerprint of the raw input bytes.

``mlpack lock`` on unchanged inputs must cost next to nothing (BENCHMARKS B4-noop), but the
input hash needs the validated config, which needs tomllib, packaging and the config module.
So after a lock finds (or makes) ``mlpack.lock`` up to date, ``Memo`` records a fingerprint of
everything that decision read: the config file's bytes, the lock's bytes, pip's index settings
(environment and pip.conf files), the project's real path and the sources that decide (the
config, the shared vocabulary and the lock package). ``is_current`` recomputes it without
parsing anything and answers only on an exact match; anything else takes the full path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final, Literal

from mlpack.oslib.fs import atomic_write
from mlpack.paths import CONFIG_FILE, LOCK_FILE, PYPROJECT_FILE, cache_folder

Mode = Literal["lock", "check"]

# Bump when the lock logic changes in a way that must re-resolve existing locks.
ALGORITHM: Final = "mlpack-lock/1"

# Sources whose edits can change what a lock decides (editable installs, dev work): these
# modules of the package, and every module of the lock package.
_PACKAGE: Final = Path(__file__).resolve().parents[1]
_SOURCES: Final = ("__init__.py", "config.py", "paths.py", "vocabulary.py")
# What pip_indexes() reads from the environment.
_ENV: Final = ("HOME", "VIRTUAL_ENV", "XDG_CONFIG_DIRS", "XDG_CONFIG_HOME")


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pip_config_files() -> tuple[Path, ...]:
    """Pip's configuration files in pip's order (global, user, site; later files win).

    ``PIP_CONFIG_FILE=os.devnull`` disables them all, as in pip.
    """
    env_file = os.environ.get("PIP_CONFIG_FILE")
    if env_file == os.devnull:
        return ()
    xdg_dirs = os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":")
    files = [Path(d, "pip", "pip.conf") for d in xdg_dirs] + [Path("/etc/pip.conf")]
    home = Path.home()
    xdg_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf"]
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        files.append(Path(venv, "pip.conf"))
    if env_file:
        files.append(Path(env_file))
    return tuple(files)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _file_part(path: Path) -> str:
    data = _read(path)
    return f"{path}\0-" if data is None else f"{path}\0{_sha256_hex(data)}"


def inputs_key(root: Path) -> str:
    """A digest of every input the up-to-date decision reads, except the lock itself."""
    real = root.resolve()
    parts = [ALGORITHM, str(real)]
    parts += [f"{k}={os.environ.get(k)}" for k in _ENV]
    parts += sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith("PIP_"))
    parts += [_file_part(real / n) for n in (CONFIG_FILE, PYPROJECT_FILE)]
    parts += [_file_part(p) for p in pip_config_files()]
    parts += [_source_part(rel) for rel in _sources()]
    return _sha256_hex("\n".join(parts).encode("utf-8", "surrogateescape"))


def _sources() -> list[str]:
    names = sorted(p.name for p in (_PACKAGE / "lock").glob("*.py"))
    return [*_SOURCES, *(f"lock/{n}" for n in names)]


def _source_part(rel: str) -> str:
    try:
        st = (_PACKAGE / rel).stat()
    except OSError:
        return f"{rel}\0-"
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"


def lock_key(root: Path) -> str | None:
    """The digest of the lock's bytes; None when it cannot be read."""
    data = _read(root / LOCK_FILE)
    return None if data is None else _sha256_hex(data)


def fingerprint(mode: Mode, inputs: str, lock: str) -> str:
    """What a stamp records: the mode and the digests of the inputs and the lock."""
    return f"{mode} {inputs} {lock}\n"


def _stamp_path(root: Path, mode: Mode) -> Path:
    name = _sha256_hex(f"{root.resolve()}\0{mode}".encode("utf-8", "surrogateescape"))
    return cache_folder("lock-ok") / name[:32]


def is_current(root: Path, mode: Mode) -> bool:
    """True when a lock already found these exact inputs and lock up to date."""
    recorded = _read(_stamp_path(root, mode))
    if recorded is None:
        return False
    lock = lock_key(root)
    if lock is None:
        return False
    return recorded.decode("utf-8", "replace") == fingerprint(mode, inputs_key(root), lock)


def record(root: Path, mode: Mode, inputs: str, lock: str) -> None:
    """Remember that ``inputs`` and ``lock`` are up to date (best effort: never fails)."""
    path = _stamp_path(root, mode)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, fingerprint(mode, inputs, lock))
    except OSError:
        pass


class Memo:
    """Records an up-to-date outcome for ``is_current``.

    The input bytes are fingerprinted before the config is read and again after the outcome;
    only an unchanged pair is recorded, so a concurrent edit never records a wrong answer.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = inputs_key(root)
        self.lock = lock_key(root)

    def remember(self, mode: Mode, *, written: str | None = None) -> None:
        """Record ``mode`` as up to date; ``written``: the text this run wrote to the lock."""
        lock_now = lock_key(self.root)
        expected = self.lock if written is None else _sha256_hex(written.encode("utf-8"))
        if lock_now is None or lock_now != expected or inputs_key(self.root) != self.inputs:
            return
        record(self.root, mode, self.inputs, lock_now)
