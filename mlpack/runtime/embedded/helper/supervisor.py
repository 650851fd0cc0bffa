"""S, the supervisor: user and pid namespaces, fork pid 1, relay signals, report the exit.

S stays in the host's mount namespace (SECURITY §1: no host process inside the container).
"""

from __future__ import annotations

import os
import resource  # noqa: F401 - os.wait4's struct_rusage: loaded here, not once pid 1 has exited
import sys

from mlpack.oslib import jsoncodec, linux
from mlpack.oslib.fs import atomic_write
from mlpack.runtime.embedded.helper import pid1
from mlpack.runtime.embedded.helper.channel import Channel, Failure, describe
from mlpack.runtime.embedded.helper.namespaces import Namespaces
from mlpack.runtime.embedded.helper.rootfs import Rootfs
from mlpack.runtime.embedded.helper.sig import signal

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
    signal.SIGALRM,
)


def main() -> int:
    """``CTL_FD STATUS_FD [KEEP_FD ...]``: close every other fd, then supervise.

    The helper was spawned without closing the caller's other inheritable fds: only stdio, the
    two pipes and the KEEP fds are meant for it.
    """
    ctl, status = int(sys.argv[1]), int(sys.argv[2])
    keep = sorted({0, 1, 2, ctl, status, *(int(a) for a in sys.argv[3:])})
    for low, high in zip(keep, [*keep[1:], 1 << 30], strict=True):
        if high > low + 1:
            os.closerange(low + 1, high)
    return supervise(Channel(ctl, status))


def supervise(chan: Channel) -> int:
    """Read the request, enter the user and pid namespaces, fork pid 1 and follow it."""
    line = chan.read_line()
    if not line:  # started ahead of a request that never came: the caller failed first
        return 0
    req: dict[str, Any] = jsoncodec.loads(line)
    chan.detached = bool(req.get("detach"))
    if not chan.detached:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        fifo = open_fifo(req)
        spaces = Namespaces(req["config"])
        if spaces.new("user"):
            linux.unshare(linux.CLONE_NEWUSER)
            chan.ask({"userns": os.getpid()})  # the parent writes the id maps
        else:
            spaces.enter("user")  # joined by path, or none at all
        spaces.enter("pid")
        if req.get("probe"):
            probe(req, spaces)
            chan.send({"probe": True, "pid": os.getpid()})
            return 0
        joined, join_w = os.pipe() if req.get("cgroup_procs") else (-1, -1)
    except (Failure, OSError) as exc:
        chan.send({"error": describe(exc)})
        return 1
    pid = fork_pid1(req, chan, spaces, (fifo, joined, join_w))
    spaces.close()
    os.close(chan.ctl)
    for fd in (fifo, joined):
        if fd >= 0:
            os.close(fd)
    # Relaying starts before the parent learns the pid: it lets pid 1 run the program only
    # after that (its ack of "created"), so no signal finds S without its handlers.
    relay_to(pid)
    chan.send({"pid": pid})
    if join_w >= 0:
        join_cgroups(req, pid, join_w)
    result = follow(pid)
    state_dir = req.get("state_dir")
    if state_dir and chan.detached:  # the parent of a run gets the result below; `create`'s is gone
        atomic_write(os.path.join(state_dir, "exit.json"), jsoncodec.dumps(result), durable=False)
    chan.send(result)
    return 0


def fork_pid1(
    req: dict[str, Any], chan: Channel, spaces: Namespaces, fds: tuple[int, int, int]
) -> int:
    """Fork pid 1, which runs ``pid1.run`` and never returns here; its pid.

    ``fds``: the exec fifo (or -1), and the read and write ends of the pipe on which S says
    that pid 1 is in its cgroups (-1, -1 without cgroups to join).
    """
    fifo, joined, join_w = fds
    pid = os.fork()
    if pid == 0:
        try:
            if join_w >= 0:
                os.close(join_w)
            pid1.run(req, chan, spaces, fifo, joined)
        except BaseException as exc:  # noqa: BLE001 - report, never run a payload half-set-up
            chan.send({"error": describe(exc)})
        finally:
            os._exit(1)
    return pid


def join_cgroups(req: dict[str, Any], pid: int, done: int) -> None:
    """Move pid 1 into its cgroups while it sets up, then write "ok" (or why a move failed)
    to ``done`` and close it: pid 1 waits for that before anything can observe its cgroups
    (``pid1.wait_for_cgroups``). A move waits for an RCU grace period in the kernel (~10 ms
    on a cgroup v1 hierarchy), which now overlaps pid 1's namespaces and mounts.
    """
    try:
        for procs in req["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write(str(pid))
        said = b"ok"
    except OSError as exc:
        said = describe(exc).encode()
    try:
        os.write(done, said)
    except OSError:  # pid 1 is gone already: follow() reports how it ended
        pass
    os.close(done)


def open_fifo(req: dict[str, Any]) -> int:
    """An O_PATH fd of ``create``'s exec fifo, opened as the caller before any namespace or id
    changes (the state dir may not be searchable by the namespace's root; only the fifo is
    chowned to it, as runc does); pid 1 inherits it. -1 without a fifo (``run``).
    """
    path = req.get("exec_fifo")
    return os.open(str(path), os.O_PATH | os.O_CLOEXEC) if path else -1


def probe(req: dict[str, Any], spaces: Namespaces) -> None:
    """``mlpack doctor``: the namespaces as a container gets them, and an overlay mount."""
    spaces.enter("mount")
    overlay = req.get("overlay")
    if isinstance(overlay, dict):
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE, None)
        Rootfs(req, req["config"], userns="user" in spaces).overlay(overlay)


def relay_to(pid: int) -> None:
    """Relay the FORWARDED signals to ``pid`` from now on."""

    def relay(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, relay)


def follow(pid: int) -> dict[str, Any]:
    """Wait for pid 1 to exit: its exit code, signal and resource usage."""
    cpu_us = maxrss = None
    try:
        _, wstatus, usage = os.wait4(pid, 0)
        # Without a cgroup these are the figures: pid 1 and the children it reaped.
        cpu_us = int((usage.ru_utime + usage.ru_stime) * 1e6)
        maxrss = usage.ru_maxrss * 1024
    except ChildProcessError:
        wstatus = 0
    result: dict[str, Any]
    if os.WIFSIGNALED(wstatus):
        result = {"exit": 128 + os.WTERMSIG(wstatus), "signal": os.WTERMSIG(wstatus)}
    else:
        result = {"exit": os.waitstatus_to_exitcode(wstatus), "signal": None}
    result["cpu_us"] = cpu_us
    result["maxrss"] = maxrss
    return result
