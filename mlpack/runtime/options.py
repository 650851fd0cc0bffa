"""Check and convert the values of run options (sizes, CPUs, ids, names, paths) before any work.

Every bad value is refused here with one ConfigError that says what is wrong and, in its hint,
the rule a good value follows, so that a run never starts with a value the kernel or the
helper would reject halfway (issue 10, item 9). Pure functions: no printing, nothing written.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from mlpack.errors import ConfigError

if TYPE_CHECKING:
    from mlpack.runtime.protocol import Mount

NAME_MAX: Final = 255  # bytes in one path component (ENAMETOOLONG beyond)
MIN_CPUS: Final = 0.01  # the kernel's minimal CFS quota (1 ms) at the default 100 ms period
MAX_SIZE: Final = 2**63 - 1  # the kernel reads cgroup byte limits as signed 64-bit numbers
MAX_PIDS: Final = 4_194_304  # PID_MAX_LIMIT on 64-bit Linux: pids.max refuses more

# One rule for container names and host names: Docker's characters for names, at most 64 so
# that a name can also be the container's host name (HOST_NAME_MAX); the hint states it.
NAME_RULE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_HINT: Final = "use 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit"
_UNITS: Final = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([bkmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str, *, option: str) -> int:
    """``512m``, ``2g``, ``1048576`` as bytes (Docker's binary units); more than zero."""
    match = _SIZE.fullmatch(text.strip())
    size = float(match[1]) * _UNITS[match[2].lower()] if match else 0.0
    if not 1 <= size <= MAX_SIZE:  # also false for a number too long for a float (inf)
        msg = f"invalid {option} {text!r}: not a size from 1 byte to 8 EiB"
        raise ConfigError(msg, hint=f"write a size such as {option} 512m or {option} 2g")
    return int(size)


def human_size(size: int) -> str:
    """Bytes as MiB or GiB, for messages."""
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30} GiB"
    return f"{size / (1 << 20):g} MiB"


def host_cpus() -> int:
    """The CPUs this process may run on (as Docker's NumCPU)."""
    return len(os.sched_getaffinity(0))


def parse_cpus(text: str, *, available: int | None = None) -> float:
    """A CPU quota between 0.01 and the host's CPUs, refused as ``docker run --cpus`` does."""
    limit = host_cpus() if available is None else available
    try:
        cpus = float(text)
    except ValueError:
        cpus = math.nan
    if not MIN_CPUS <= cpus <= limit:  # also false for NaN
        msg = f"invalid --cpus {text!r}: range of CPUs is from {MIN_CPUS} to {limit:.2f}"
        raise ConfigError(msg, hint=f"give a number of CPUs, e.g. --cpus 0.5 (at most {limit})")
    return cpus


def parse_pids_limit(text: str) -> int:
    """A whole number of processes the kernel accepts as pids.max."""
    digits = text.strip()
    value = int(digits) if digits.isascii() and digits.isdigit() else 0
    if not 1 <= value <= MAX_PIDS:
        msg = f"invalid --pids-limit {text!r}: not a whole number from 1 to {MAX_PIDS}"
        raise ConfigError(msg, hint="give the most processes the container may have, e.g. 100")
    return value


def parse_network(text: str) -> Literal["none", "host"]:
    """``none`` (loopback only) or ``host``; a Docker network name is refused, not ignored."""
    if text == "none":
        return "none"
    if text == "host":
        return "host"
    msg = f"invalid --network {text!r}: the embedded runtime has no {text!r} network"
    raise ConfigError(msg, hint="use --network none (loopback only, the default) or host")


def _check_components(path: str, option: str) -> None:
    if "\0" in path or "\n" in path:
        msg = f"invalid {option} {path!r}: it contains a NUL byte or a newline"
        raise ConfigError(msg, hint=f"give {option} a path without control characters")
    long = [p for p in path.split("/") if len(os.fsencode(p)) > NAME_MAX]
    if long:
        msg = f"invalid {option}: the name {long[0][:40]!r}... in it is too long"
        raise ConfigError(msg, hint=f"each part of a path can have at most {NAME_MAX} bytes")


def parse_path(text: str | os.PathLike[str]) -> Path:
    """A host path from the command line that the kernel can look up (no ENAMETOOLONG)."""
    _check_components(os.fspath(text), "path")
    return Path(text)


def parse_workdir(text: str) -> str:
    """An absolute path inside the container (a relative one is refused, never re-rooted)."""
    _check_components(text, "-w/--workdir")
    if not text.startswith("/"):
        msg = f"invalid -w/--workdir {text!r}: not an absolute path"
        raise ConfigError(msg, hint="give the working directory from the image's root, e.g. /app")
    return text


def parse_name(text: str) -> str:
    """A container name, by the one rule that the hint states (``NAME_RULE``)."""
    if NAME_RULE.fullmatch(text) is None:
        msg = f"invalid container name {text!r}"
        raise ConfigError(msg, hint=NAME_HINT)
    return text


def parse_hostname(text: str) -> str:
    """A host name for the container, by the same rule as names (``NAME_RULE``)."""
    if NAME_RULE.fullmatch(text) is None:
        msg = f"invalid --hostname {text!r}"
        raise ConfigError(msg, hint=NAME_HINT)
    return text


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` with a non-empty key."""
    key, sep, value = text.partition("=")
    if not sep or not key or "\0" in text or "\n" in text:
        msg = f"invalid --label {text!r}"
        raise ConfigError(msg, hint="write --label KEY=VALUE")
    return key, value


def parse_env(text: str) -> tuple[str, str]:
    """``KEY=VALUE``, or ``KEY`` alone for the host's value (empty when unset)."""
    key, sep, value = text.partition("=")
    if not key or "\0" in text:
        msg = f"invalid environment variable {text!r}"
        raise ConfigError(msg, hint="write KEY=VALUE, or KEY to pass the host's value")
    return (key, value) if sep else (key, os.environ.get(key, ""))


def read_env_file(path: str) -> tuple[tuple[str, str], ...]:
    """The ``KEY=VALUE`` lines of an env file; blank lines and ``#`` comments skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read --env-file {path}: {getattr(exc, 'strerror', None) or exc}"
        raise ConfigError(msg, hint="give a readable UTF-8 file of KEY=VALUE lines") from exc
    stripped = (line.strip() for line in lines)
    return tuple(parse_env(line) for line in stripped if line and not line.startswith("#"))


def parse_volume(text: str) -> Mount:
    """``HOST:CONTAINER`` or ``HOST:CONTAINER:ro|rw``; the host path made absolute."""
    parts = text.split(":")
    mode_ok = len(parts) == 2 or (len(parts) == 3 and parts[2] in ("ro", "rw"))
    if not mode_ok or not parts[0] or not parts[1].startswith("/"):
        msg = f"invalid --volume {text!r}"
        raise ConfigError(
            msg, hint="write -v HOST:CONTAINER or -v HOST:CONTAINER:ro (CONTAINER absolute)"
        )
    _check_components(parts[0], "--volume")
    _check_components(parts[1], "--volume")
    read_only = len(parts) == 3 and parts[2] == "ro"
    # Imported here: every command checks MLPACK_HOME with this module, only run parses -v.
    from mlpack.runtime.protocol import Mount

    return Mount(source=Path(parts[0]).absolute(), target=parts[1], read_only=read_only)


def parse_user(text: str) -> str:
    """``USER[:GROUP]``: names (looked up in the image) or ids in 0..2147483647.

    The id range is the runtime's rule (``spec.check_user``), checked here before any work.
    """
    from mlpack.oslib.linux import MAX_ID
    from mlpack.runtime.embedded.spec import check_user

    parts = text.split(":")
    if len(parts) > 2 or any(not p or p.startswith("-") or not p.isprintable() for p in parts):
        msg = f"invalid --user {text!r}"
        raise ConfigError(msg, hint=f"write -u USER[:GROUP], by name or by id (0 to {MAX_ID})")
    return check_user(text, origin="--user")


def check_home(home: str) -> str:
    """Refuse an MLPACK_HOME that cannot be a directory, before any command uses it."""
    _check_components(home, "MLPACK_HOME")
    path = Path(home)
    for place in (path, *path.parents):
        if place.exists() and not place.is_dir():
            msg = f"MLPACK_HOME {home} cannot be used: {place} is not a directory"
            raise ConfigError(msg, hint="set MLPACK_HOME to a directory you can write")
    return home
