"""C, pid 1 of the container: cgroups, namespaces, rootfs, hooks, then the user process.

Every step that can fail (mounts, hooks, ids, capabilities, rlimits, the working directory, the
program's lookup) runs before "created" is reported: ``create``, ``start`` and ``mlpack run``
fail with its reason (runtime-spec; runc's finalizeNamespace). After "created", a failure (a
startContainer hook, seccomp, execve) is written to the exec fifo, where ``start`` reads it.
"""

from __future__ import annotations

import os

from mlpack.oslib import jsoncodec, linux
from mlpack.runtime.embedded.helper import process
from mlpack.runtime.embedded.helper.channel import Channel, Failure
from mlpack.runtime.embedded.helper.rootfs import Rootfs, fdpath
from mlpack.runtime.embedded.helper.sig import signal

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

    from mlpack.runtime.embedded.helper.namespaces import Namespaces


def run(req: dict[str, Any], chan: Channel, spaces: Namespaces, fifo: int, joined: int) -> None:
    """Everything up to execve; raises (Failure, OSError) on the first step that fails.

    ``fifo``: an O_PATH fd of ``create``'s exec fifo (``supervisor.open_fifo``), or -1.
    ``joined``: the pipe on which S says this process is in its cgroups, or -1 (none to join).
    """
    config: dict[str, Any] = req["config"]
    if not req.get("detach"):
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    host_pid = int(os.readlink("/proc/self"))  # /proc is the host's until pivot_root
    hooks: dict[str, Any] = config.get("hooks") or {}
    # In its cgroups before anything can see them: a cgroup namespace is rooted where this
    # process is when it is made, hooks may look. With a user namespace, before this process
    # takes its root's ids: on cgroup v1 a writer other than root moves only its own uid's.
    observed = ("prestart", "createRuntime", "createContainer")
    if "cgroup" in spaces or "user" in spaces or any(hooks.get(k) for k in observed):
        wait_for_cgroups(joined)
        joined = -1
    join(req, spaces)
    userns = "user" in spaces
    rootfs = Rootfs(req, config, userns) if "mount" in spaces else None
    if rootfs is not None:
        rootfs.build()
    if hooks.get("prestart") or hooks.get("createRuntime"):
        chan.ask({"hooks": "createRuntime", "pid": host_pid})  # run by the parent, its ns
    run_hooks(req, config, "createContainer", "creating", host_pid)
    spaces.close()
    kernel = process.Kernel(userns=userns)
    fds = -1
    if rootfs is not None:
        rootfs.pivot()
    else:  # no mount namespace (runc accepts it): the host's mount table is never touched
        if fifo >= 0:  # the chroot has no /proc: the fifo is reopened through this one
            fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        os.chroot(str(req["rootfs"]))
        os.chdir("/")
    creds = process.Credentials(config)
    process.drop_privileges(config, creds, kernel, seccomp_bpf=req.get("seccomp_bpf"))
    cwd = process.enter_cwd(config)
    program, args = process.command(config, creds, cwd)
    wait_for_cgroups(joined)  # the program never runs outside them
    # The parent acknowledges "created" once it knows pid 1's host pid: its signal handlers
    # forward from then on, so the program never runs before a signal can reach it.
    chan.ask({"created": True})
    chan.created = True
    if fifo >= 0:
        wait_for_start(chan, fifo, fds)
    run_hooks(req, config, "startContainer", "created", host_pid)
    process.execute(req, config, program, args, creds.env)


def wait_for_cgroups(joined: int) -> None:
    """Wait until S has moved this process into its cgroups (``supervisor.join_cgroups``):
    "ok" on ``joined``, else the reason it could not. Anything but "ok", EOF included (S
    died), is a failure: the program never runs outside its cgroups. -1: nothing to wait for.
    """
    if joined < 0:
        return
    said = b""
    while chunk := os.read(joined, 4096):
        said += chunk
    os.close(joined)
    if said != b"ok":
        raise Failure(said.decode(errors="replace") or "the supervisor went away")


def join(req: dict[str, Any], spaces: Namespaces) -> None:
    """Become the user namespace's root, then enter the other namespaces."""
    config: dict[str, Any] = req["config"]
    if "user" in spaces:
        with open("/proc/self/setgroups") as f:
            if f.read().strip() == "allow":
                os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    proc: dict[str, Any] = config.get("process") or {}
    if "oomScoreAdj" in proc:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(proc["oomScoreAdj"])))
    spaces.enter("mount", "uts", "ipc", "network", "cgroup")
    if "uts" in spaces and config.get("hostname"):
        linux.sethostname(str(config["hostname"]))
    if spaces.new("network"):
        linux.loopback_up()


def wait_for_start(chan: Channel, fifo: int, fds: int) -> None:
    """Block opening the exec fifo for writing until ``start`` opens it for reading.

    It is reopened through ``/proc/self/fd``: the container's /proc, or ``fds`` (that
    directory, opened before a chroot without /proc). The fifo is mode 0622 (as runc's):
    the user program's uid may write to it.
    """
    if fds >= 0:
        chan.fifo = os.open(str(fifo), os.O_WRONLY | os.O_CLOEXEC, dir_fd=fds)
        os.close(fds)
    else:
        chan.fifo = os.open(fdpath(fifo), os.O_WRONLY | os.O_CLOEXEC)
    os.write(chan.fifo, b"0")
    # Left open, close-on-exec: `start` sees EOF once the program runs, or reads why it did
    # not; it runs poststart hooks after the exec, as runtime-spec orders them.
    os.close(fifo)


def run_hooks(
    req: dict[str, Any], config: dict[str, Any], kind: str, status: str, pid: int
) -> None:
    """Run the hooks of ``kind`` from this process, i.e. in the container's namespaces:
    createContainer after the mounts and before pivot_root, startContainer just before exec.
    State JSON on stdin, cwd /, only the hook's own env (PATH fixed, no LD_*).
    """
    hooks = (config.get("hooks") or {}).get(kind) or ()
    if not hooks:
        return
    state = jsoncodec.dumps(
        {
            "ociVersion": config.get("ociVersion", "1.0.2"),
            "id": req.get("id", ""),
            "status": status,
            "pid": pid,
            "bundle": req.get("bundle", ""),
            "annotations": config.get("annotations") or {},
        }
    ).encode()
    for hook in hooks:
        _run_hook(kind, hook, state)


def _run_hook(kind: str, hook: dict[str, Any], state: bytes) -> None:
    import select

    path = str(hook["path"])
    args = [str(a) for a in hook.get("args") or [path]]
    env = {"PATH": linux.DEFAULT_PATH}
    for entry in hook.get("env") or ():
        key, sep, value = str(entry).partition("=")
        if sep and key and not key.startswith("LD_") and key != "PATH":
            env[key] = value
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            os.chdir("/")
            os.execve(path, args, env)
        finally:
            os._exit(127)
    os.close(r)
    try:
        os.write(w, state)
    except OSError:
        pass
    os.close(w)
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], float(hook.get("timeout") or 60))
    finally:
        os.close(pidfd)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, wstatus = os.waitpid(pid, 0)
    if not ready or os.waitstatus_to_exitcode(wstatus) != 0:
        why = "timed out" if not ready else f"exited with {os.waitstatus_to_exitcode(wstatus)}"
        raise Failure(f"{kind} hook {path} {' '.join(args[1:])} {why}")
