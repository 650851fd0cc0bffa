"""The Runtime seam: what every backend (embedded, docker) accepts and returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Literal, Protocol

    Network = Literal["none", "host"]
else:
    Protocol = object  # the seam is for type checkers: a run needs no typing import (B1)


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A bind mount from the host into the container (``-v HOST:CONTAINER[:ro]``)."""

    source: Path
    target: str  # absolute path inside the container
    read_only: bool = False


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a backend needs to run one container; the same meaning on every backend."""

    image: str  # a reference or digest in the backend's image store
    command: tuple[str, ...] = ()  # empty: the image's Entrypoint + Cmd
    env: tuple[tuple[str, str], ...] = ()  # added after the image's Env, in order
    mounts: tuple[Mount, ...] = ()
    workdir: str | None = None
    user: str | None = None  # "uid[:gid]" or a name resolved in the image's /etc/passwd
    hostname: str | None = None
    network: Network = "none"
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids_limit: int | None = None
    shm_size: int | None = None  # bytes; default derived from the memory limit
    tty: bool = False
    interactive: bool = False
    init: bool = False
    read_only: bool = False
    gpus: str | None = None  # "all", a count, or device ids
    keep: bool = False  # keep the container's writable layer after exit
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    # Open fds of the caller, handed to the container's process as fds 3, 4, ... (socket
    # activation: the listening socket of ``mlpack serve``, with LISTEN_FDS or ``uvicorn --fd``).
    fds: tuple[int, ...] = ()

    def shm_bytes(self) -> int:
        """The size of ``/dev/shm`` on every backend: ``shm_size``, else half the memory limit
        (at least 1 MiB), else 1 GiB (Docker's 64 MiB breaks PyTorch's DataLoader). A cap, not
        a cost: tmpfs pages are charged to the container's memory cgroup.
        """
        if self.shm_size is not None:
            return self.shm_size
        return max(self.memory // 2, 1 << 20) if self.memory is not None else 1 << 30


@dataclass(frozen=True, kw_only=True)
class RunResult:
    """How a container ended, with the resource peaks for the run record."""

    container_id: str
    exit_code: int  # 128 + signal when killed by a signal, as shells report it
    signal: int | None = None
    oom_killed: bool = False
    memory_limit: int | None = None
    memory_peak: int | None = None  # bytes, when the backend can measure it
    cpu_time_us: int | None = None


class Runtime(Protocol):
    """A container backend."""

    name: str

    def check_available(self) -> None:
        """Raise ContainerError naming the missing piece and the fix, before any work."""

    def run(self, config: RunConfig) -> RunResult:
        """Run to completion, streaming stdout/stderr live to the caller's terminal."""
