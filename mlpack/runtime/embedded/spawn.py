"""Start the helper interpreter (``python -I -S helper/__main__.py``), ahead of its request.

``mlpack run`` and ``mlpack-runtime create``/``run`` start one first thing (``prestart``): its
start overlaps the caller's own work (imports, the bundle, the cgroups).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from mlpack.errors import ContainerError

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO

# The interpreter behind a virtual environment: the helper imports nothing from it (-I -S), and
# skipping the venv's pyvenv.cfg lookup is a little less start-up work.
PYTHON = getattr(sys, "_base_executable", "") or sys.executable
HELPER = str(Path(__file__).with_name("helper") / "__main__.py")


def helper_argv() -> list[str]:
    """``python -I -S helper/__main__.py`` with this interpreter's bytecode settings.

    ``-I`` ignores PYTHONDONTWRITEBYTECODE and PYTHONPYCACHEPREFIX, so they are passed on as
    ``-B`` and ``-X pycache_prefix``: the helper's modules are cached where this process's
    would be, or not at all.
    """
    argv = [PYTHON, "-I", "-S"]
    if sys.dont_write_bytecode:
        argv.append("-B")
    if sys.pycache_prefix:
        argv += ["-X", f"pycache_prefix={sys.pycache_prefix}"]
    return [*argv, HELPER]


class HelperProcess:
    """A helper interpreter, started before its request is ready.

    Its start (~10 ms of interpreter and imports) then overlaps the caller's own work: the
    CLI spawns one first thing (BENCHMARKS B1). It waits on the control pipe until ``Helper``
    sends the request; posix_spawn (no ``subprocess`` import on the run path) passes only
    the pipes and ``keep_fds`` (as themselves) and ``pass_fds`` (as 3, 4, ...), and the helper
    closes any other fd it finds.
    """

    def __init__(
        self,
        *,
        stdio: tuple[int | None, int | None, int | None] = (None, None, None),
        keep_fds: tuple[int, ...] = (),
        pass_fds: tuple[int, ...] = (),
        warm_cgroup_moves: bool = False,
    ) -> None:
        """``warm_cgroup_moves``: keep the kernel's cgroup moves fast until the request is sent
        (``keep_cgroup_moves_fast``).
        """
        self.stdio = stdio
        ctl_r, self.ctl_w = os.pipe()
        st_r, st_w = os.pipe()
        copies: tuple[int, ...] = ()
        if pass_fds:  # every fd handed on moves above 3..3+n, where no dup2 below lands
            ctl_r, st_w, *moved = _lift((ctl_r, st_w, *keep_fds, *pass_fds), 3 + len(pass_fds))
            copies = tuple(moved)
            keep_fds = (*copies[: len(keep_fds)], *range(3, 3 + len(pass_fds)))
        self.keep_fds = keep_fds
        passed = (ctl_r, st_w, *(fd for fd in keep_fds if fd >= 3 + len(pass_fds)))
        actions = [
            (os.POSIX_SPAWN_DUP2, src, dst) for dst, src in enumerate(stdio) if src is not None
        ]
        actions += [
            (os.POSIX_SPAWN_DUP2, src, 3 + i)
            for i, src in enumerate(copies[-len(pass_fds) :] if pass_fds else ())
        ]
        # dup2 of an fd onto itself clears its close-on-exec flag in the child only (glibc >= 2.29)
        actions += [(os.POSIX_SPAWN_DUP2, fd, fd) for fd in passed]
        argv = [*helper_argv(), str(ctl_r), str(st_w)]
        argv += [str(fd) for fd in keep_fds]
        env = {"LC_ALL": "C.UTF-8"}
        try:
            self.pid = os.posix_spawn(PYTHON, argv, env, file_actions=actions, setsid=True)
        except OSError as exc:
            os.close(self.ctl_w)
            os.close(st_r)
            msg = f"cannot start the container helper {PYTHON}: {exc.strerror}"
            raise ContainerError(
                msg, hint="check that the Python interpreter still exists"
            ) from exc
        finally:
            for fd in (ctl_r, st_w, *copies):
                os.close(fd)
        self.status: IO[bytes] = os.fdopen(st_r, "rb", buffering=0)
        self.returncode: int | None = None
        self._stop_warming = keep_cgroup_moves_fast() if warm_cgroup_moves else None

    def request_sent(self) -> None:
        """The helper has its request: cgroup moves need no more warming."""
        if self._stop_warming is not None:
            self._stop_warming()
            self._stop_warming = None

    def poll(self) -> int | None:
        """The exit code once the helper has exited (reaped here), else None."""
        if self.returncode is None:
            try:
                pid, wstatus = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
            else:
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(wstatus)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Reap the helper; with ``timeout``, give up (None) after that many seconds."""
        if timeout is None:
            while self.returncode is None:
                try:
                    _, wstatus = os.waitpid(self.pid, 0)
                except ChildProcessError:
                    self.returncode = -1
                except InterruptedError:
                    continue
                else:
                    self.returncode = os.waitstatus_to_exitcode(wstatus)
            return self.returncode
        import time

        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.returncode

    def discard(self) -> None:
        """Stop a helper that will get no request (the caller failed first)."""
        self.request_sent()
        if self.ctl_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self.ctl_w)  # EOF on the control pipe: the helper exits
            self.ctl_w = -1
        with contextlib.suppress(OSError):
            self.status.close()
        if self.wait(timeout=5) is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
            self.wait()


def keep_cgroup_moves_fast() -> Callable[[], None]:
    """Move this process into the cgroup2 group it is in (a move that changes nothing) now and
    every 5 ms, on a thread, until the returned function is called (or 10 s have passed).

    The first move into a cgroup after a quiet spell waits for an RCU grace period in the kernel
    (~10 ms: the one cgroup_threadgroup_rwsem of every hierarchy) and holds the cgroup mutex
    meanwhile, so a cgroup mkdir waits as long; a move within about one more grace period does
    not wait. Started when the helper is, the wait is over before the container's cgroups are
    made, and the moves into them (the parent's of S, S's of pid 1) find it warm (BENCHMARKS
    B1). Only where the caller asks: ``mlpack run`` and the OCI runtime, short-lived processes
    that nothing else moves (a long-lived library caller may be moved by its service manager,
    which this could undo). Any refusal (rootless, no cgroup2) ends it.
    """
    import _thread

    procs = _own_cgroup_procs()
    if procs < 0:
        return lambda: None
    stop = _thread.allocate_lock()
    stop.acquire()
    pid = str(os.getpid()).encode()

    def warm() -> None:
        try:
            for _ in range(2000):
                os.write(procs, pid)
                if stop.acquire(timeout=0.005):
                    break
        except OSError:
            pass
        finally:
            os.close(procs)

    _thread.start_new_thread(warm, ())
    return stop.release


def _own_cgroup_procs() -> int:
    """``cgroup.procs`` of this process's cgroup2 group, opened for writing; -1 where there is
    none (or it may not be written).
    """
    from mlpack.runtime.embedded.cgroupfs import mount_types, self_path, unified_mount

    unified = unified_mount(mount_types())
    if unified is None:
        return -1
    try:
        return os.open(
            unified / self_path("").strip("/") / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC
        )
    except OSError:
        return -1


def _lift(fds: tuple[int, ...], floor: int) -> list[int]:
    """Copies of ``fds`` numbered ``floor`` or above; the first two (the pipes) are moved."""
    from fcntl import F_DUPFD_CLOEXEC, fcntl

    copies = [fcntl(fd, F_DUPFD_CLOEXEC, floor) for fd in fds]
    for fd in fds[:2]:
        os.close(fd)
    return copies


def prestart(
    *, interactive: bool, keep_fds: tuple[int, ...] = (), warm_cgroup_moves: bool = False
) -> HelperProcess:
    """A helper for a container without a terminal, started before the container is prepared.

    Its stdin is /dev/null unless ``interactive`` (as ``docker run`` without ``-i``); it keeps
    ``keep_fds`` (``mlpack-runtime --preserve-fds``); ``warm_cgroup_moves`` as for
    ``HelperProcess``.
    """
    devnull = -1 if interactive else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stdio = (None if devnull < 0 else devnull, None, None)
        return HelperProcess(stdio=stdio, keep_fds=keep_fds, warm_cgroup_moves=warm_cgroup_moves)
    finally:
        if devnull >= 0:
            os.close(devnull)
