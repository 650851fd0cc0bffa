"""Send the helper an OCI config, write its id maps, follow it to the exit status, and relay
the caller's signals to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from mlpack.errors import ContainerError
from mlpack.oslib import jsoncodec
from mlpack.oslib.lines import LineReader
from mlpack.runtime.embedded.spawn import HelperProcess

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike
    from typing import Any, Final, Self

    StrPath = str | PathLike[str]


def _str(path: StrPath | None) -> str | None:
    return None if path is None else os.fspath(path)


@dataclass(frozen=True, kw_only=True)
class Overlay:
    """Lower dirs (bottom first), and the upper and work dirs of the writable layer (if any)."""

    lower: tuple[StrPath, ...]
    upper: StrPath | None = None
    work: StrPath | None = None
    # A throwaway upper dir (removed after the run) is mounted `volatile`: no sync of the host
    # filesystem at unmount, which otherwise costs tens of ms at every container exit.
    volatile: bool = False


@dataclass(frozen=True, kw_only=True)
class Launch:
    """One container to start: its OCI config plus what only the runtime knows."""

    config: dict[str, Any]
    rootfs: StrPath  # the mount point (overlay) or the tree itself (bundle rootfs)
    overlay: Overlay | None = None
    cgroup_procs: tuple[str, ...] = ()
    cgroup_version: int = 1
    state_dir: StrPath | None = None
    exec_fifo: StrPath | None = None
    detach: bool = False
    seccomp_cache: StrPath | None = None
    stdio: tuple[int | None, int | None, int | None] | None = None  # the container's 0, 1, 2
    preserve_fds: int = 0
    container_id: str = ""
    bundle: StrPath | None = None  # holds config.json, for hooks
    # prestart/createRuntime hooks, run by the caller with pid 1's host pid while it waits.
    runtime_hooks: Callable[[int], None] | None = None
    extra_fds: tuple[int, ...] = ()
    pass_fds: tuple[int, ...] = ()  # the caller's fds that become 3, 4, ... in the container
    probe: bool = False  # stop after the namespaces (and the overlay mount): mlpack doctor


def subid_range(kind: str, user: str, uid: int) -> tuple[int, int] | None:
    """The first /etc/subuid or /etc/subgid range of ``user`` (by name or uid), if any."""
    try:
        lines = Path(f"/etc/sub{kind}").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[1].isdigit():
            return int(parts[1]), int(parts[2])
    return None


def _maps(config: dict[str, Any], key: str) -> list[tuple[int, int, int]]:
    return [
        (int(m["containerID"]), int(m["hostID"]), int(m["size"]))
        for m in (config.get("linux") or {}).get(key) or ()
    ]


def write_id_maps(pid: int, config: dict[str, Any]) -> None:
    """Write the user namespace's maps: directly as root or for the caller's own id, else newuidmap.

    ``setgroups`` is denied before ``gid_map`` for an unprivileged single mapping (runc nsexec.c).
    """
    uids, gids = _maps(config, "uidMappings"), _maps(config, "gidMappings")
    if not uids or not gids:
        msg = "a user namespace needs at least one uid and one gid mapping"
        raise ContainerError(msg, hint="add linux.uidMappings and linux.gidMappings to config.json")
    euid, egid = os.geteuid(), os.getegid()
    proc = Path(f"/proc/{pid}")

    def put(name: str, text: str) -> None:
        (proc / name).write_text(text, encoding="ascii")

    own_only = uids == [(uids[0][0], euid, 1)] and gids == [(gids[0][0], egid, 1)]
    try:
        if euid == 0 or own_only:
            if euid != 0:
                put("setgroups", "deny")
            put("uid_map", "".join(f"{a} {b} {c}\n" for a, b, c in uids))
            put("gid_map", "".join(f"{a} {b} {c}\n" for a, b, c in gids))
            return
    except OSError as exc:
        msg = f"cannot write the user namespace id maps: {exc.strerror}"
        raise ContainerError(msg, hint="check that user namespaces are enabled") from exc
    import shutil

    for tool, maps in (("newuidmap", uids), ("newgidmap", gids)):
        exe = shutil.which(tool)
        if exe is None:
            msg = f"{tool} is needed for a multi-id mapping but is not installed"
            raise ContainerError(msg, hint="install the uidmap package, or map only your own id")
        args = [exe, str(pid)] + [str(v) for m in maps for v in m]
        import subprocess

        done = subprocess.run(args, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            msg = f"{tool} failed: {done.stderr.strip() or done.returncode}"
            raise ContainerError(msg, hint="check your ranges in /etc/subuid and /etc/subgid")


def helper_process(launch: Launch) -> HelperProcess:
    """A new helper interpreter with ``launch``'s stdio and fds, waiting for its request."""
    stdio = launch.stdio or (None, None, None)
    return HelperProcess(stdio=stdio, keep_fds=launch.extra_fds, pass_fds=launch.pass_fds)


class Helper:
    """A running helper: its process, the status pipe, and the container's host pid."""

    def __init__(self, launch: Launch, process: HelperProcess | None = None) -> None:
        """Send ``launch`` to ``process`` (started earlier for this launch's stdio and fds), or
        to a new helper.
        """
        from mlpack.runtime.embedded import seccomp

        self.launch = launch
        config = launch.config
        bpf = ""
        prof = (config.get("linux") or {}).get("seccomp")
        if prof:
            bpf = seccomp.compile_profile(prof, launch.seccomp_cache).hex()
        request: dict[str, Any] = {
            "config": config,
            "rootfs": os.fspath(launch.rootfs),
            "cgroup_procs": list(launch.cgroup_procs),
            "cgroup_version": launch.cgroup_version,
            "seccomp_bpf": bpf,
            "detach": launch.detach,
            "state_dir": _str(launch.state_dir),
            "exec_fifo": _str(launch.exec_fifo),
            "preserve_fds": launch.preserve_fds or len(launch.pass_fds),
            "id": launch.container_id,
            "bundle": _str(launch.bundle) or "",
            "probe": launch.probe,
        }
        if launch.overlay is not None:
            ov = launch.overlay
            request["overlay"] = {
                "lower": [os.fspath(p) for p in ov.lower],
                "upper": _str(ov.upper),
                "work": _str(ov.work),
                "volatile": ov.volatile,
            }
        if launch.stdio is not None and (config.get("process") or {}).get("terminal"):
            request["console_fd"] = 0
        if process is None:
            process = helper_process(launch)
        self.proc = process
        self.ctl_w = process.ctl_w
        self.status = process.status
        self._lines = LineReader(self.status.fileno())
        self.pid = 0
        self.started = False  # setup reached `until` (signals are relayed from then on)
        self.exited = False  # the supervisor reported the exit status
        try:
            self._send(jsoncodec.dumps(request).encode())
        finally:
            process.request_sent()  # sent, or the helper is gone: no more warming either way

    def _send(self, data: bytes) -> None:
        try:
            os.write(self.ctl_w, data + b"\n")
        except OSError as exc:
            msg = f"the container helper exited early ({exc.strerror})"
            raise ContainerError(msg, hint="rerun with --debug to see its output") from exc

    def message(self) -> dict[str, Any] | None:
        """The next status message, or None when the helper closed the pipe."""
        line = self._lines.read_line()
        doc = None if line is None else jsoncodec.loads(line)
        return doc if isinstance(doc, dict) else None

    def start(self, *, until: str = "pid") -> dict[str, Any]:
        """Follow setup until the helper reports ``until`` (the pid, or "created").

        Raises ContainerError with the helper's own message when setup fails.
        """
        reached: dict[str, Any] | None = None
        try:
            while reached is None or not self.pid:  # S's pid and C's news race on the pipe
                msg = self._setup_message()
                if "pid" in msg:
                    self.pid = int(msg["pid"])
                if until in msg:
                    reached = msg
            self.started = True
            if "created" in reached:
                self._send(b"ok")  # pid 1 may run the program: signals now forward
            return reached
        except BaseException:
            self.kill()
            raise
        finally:
            self._close_ctl()

    def _setup_message(self) -> dict[str, Any]:
        """The next progress message, after answering the helper's questions on the way (the
        id maps, the runtime's hooks); ContainerError for a failure.
        """
        while True:
            msg = self.message()
            if msg is None:
                self.proc.wait()
                msg = {"error": f"the container helper exited with {self.proc.returncode}"}
            if "error" in msg:
                self.close()
                text = str(msg["error"])
                raise ContainerError(f"container setup failed: {text}", hint=_hint(text))
            if "userns" in msg:
                write_id_maps(int(msg["userns"]), self.launch.config)
                self._send(b"ok")
            elif "hooks" in msg:
                self._send(self._runtime_hooks(int(msg["pid"])))
            else:
                return msg

    def _runtime_hooks(self, pid: int) -> bytes:
        """Run prestart/createRuntime hooks for pid 1 at ``pid``: b"ok", or why they failed."""
        try:
            if self.launch.runtime_hooks is not None:
                self.launch.runtime_hooks(pid)
        except ContainerError as exc:
            return exc.message.encode().replace(b"\n", b" ") or b"hook failed"
        return b"ok"

    def wait(self) -> dict[str, Any]:
        """Block until the container exits; its exit code and signal.

        Returns as soon as the supervisor reports the exit (its last message): the caller's
        cleanup then overlaps the supervisor's own exit, and the caller reaps it afterwards.
        """
        while True:
            msg = self.message()
            if msg is None:
                self.proc.wait()
                self.close()
                msg_ = f"the container supervisor died (exit {self.proc.returncode})"
                raise ContainerError(msg_, hint="the container was killed; see mlpack ps")
            if "error" in msg:
                self.close()
                text = str(msg["error"])
                raise ContainerError(f"container setup failed: {text}", hint=_hint(text))
            if "exit" in msg:
                self.exited = True  # pid 1 is gone and reaped: its pid may be reused from now
                self.close()
                return msg

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the supervisor, which relays it to the container."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, sig)

    def kill_container(self) -> None:
        """SIGKILL the container's pid 1 (safe in a signal handler or timer thread)."""
        if self.pid and not self.exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the supervisor and the container (pid 1's death ends its pid namespace)."""
        if self.exited:  # nothing left to kill; pid 1's number may belong to another process
            self.proc.wait()
            self.close()
            return
        for pid in (self.pid, self.proc.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.close()

    def close(self) -> None:
        """Close our pipe ends."""
        with contextlib.suppress(OSError):
            self.status.close()
        self._close_ctl()

    def _close_ctl(self) -> None:
        if self.ctl_w >= 0:
            with contextlib.suppress(OSError):
                os.close(self.ctl_w)
        self.ctl_w = self.proc.ctl_w = -1


RELAYED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


class relaying:
    """Forward the caller's signals to the supervisor while the container runs.

    Only the main thread can set handlers; from another thread nothing is relayed.
    """

    def __init__(self, helper: Helper) -> None:
        self.helper = helper
        self.previous: dict[int, Any] = {}
        self.interrupts = 0

    def forward(self, sig: int, _frame: object) -> None:
        """The handler: relay ``sig``; on Ctrl-C, stop the container."""
        helper = self.helper
        if not helper.started:  # still setting up: abort (the caller's cleanup runs)
            raise KeyboardInterrupt
        helper.signal(sig)
        if sig != signal.SIGINT:
            return
        # Ctrl-C stops the container. The kernel drops SIGINT at a pid 1 that has no handler
        # for it, so such a program is killed at once, as SIGINT would kill it elsewhere; one
        # that handles it gets to finish (say, save a checkpoint) until a second Ctrl-C.
        self.interrupts += 1
        if self.interrupts >= 2 or not _catches(helper.pid, signal.SIGINT):
            helper.kill_container()

    def __enter__(self) -> Self:
        for relayed in RELAYED:
            try:
                self.previous[relayed] = signal.signal(relayed, self.forward)
            except ValueError:  # not the main thread
                break
        return self

    def __exit__(self, *_: object) -> None:
        for num, handler in self.previous.items():
            signal.signal(num, handler)
        self.previous.clear()


def _catches(pid: int, sig: int) -> bool:
    """Whether ``pid`` has a handler for ``sig`` or ignores it (SigCgt/SigIgn in its status)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return False
    bit = 1 << (sig - 1)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigCgt", "SigIgn") and int(value.strip(), 16) & bit:
            return True
    return False


def probe(config: dict[str, Any], *, overlay: Overlay | None = None, mountpoint: str = "/") -> None:
    """Have a helper enter ``config``'s namespaces (id maps written as for a container) and
    mount ``overlay`` on ``mountpoint``, then exit: ContainerError with its reason if it cannot.
    """
    helper = Helper(Launch(config=config, rootfs=mountpoint, overlay=overlay, probe=True))
    try:
        helper.start(until="probe")
    finally:
        helper.close()
        helper.proc.wait()


HINTS: Final = (
    (
        ("not mapped in this rootless container",),
        (
            "run as root, or give a root filesystem that your user owns "
            "(images pulled with mlpack pull as this user are unpacked as yours)"
        ),
    ),
    (
        ("is outside 0..2147483647",),
        "use uids and gids between 0 and 2147483647 (runc and Docker refuse others)",
    ),
    (
        ("not found in the container's PATH",),
        "check the command name, or give an absolute path inside the image",
    ),
    (("overlay",), "overlayfs is not allowed here; rerun as root or on a kernel >= 5.11"),
    (
        ("user", "not found"),
        "use a numeric --user uid[:gid], or one listed in the image's /etc/passwd",
    ),
    (("working directory",), "check --workdir: it must exist inside the image"),
)


def _hint(text: str) -> str:
    """The hint for a helper's failure: the first of HINTS whose words are all in ``text``."""
    for words, hint in HINTS:
        if all(w in text for w in words):
            return hint
    return "rerun with --debug for details"
