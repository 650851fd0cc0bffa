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

HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(req: dict[str, Any], chan: Channel, spaces: Namespaces) -> None:
    """Everything up to execve; raises (Failure, OSError) on the first step that fails."""
    config: dict[str, Any] = req["config"]
    if not req.get("detach"):
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    host_pid = int(os.readlink("/proc/self"))  # /proc is the host's until pivot_root
    for procs in req.get("cgroup_procs") or ():
        with open(procs, "w") as f:
            f.write("0")
    userns = "user" in spaces
    if userns:
        # Become the namespace's root, after joining the cgroups (which needs the host id we
        # started as): that id may be unmapped (a rootful range map), and files created by an
        # unmapped id fail with EOVERFLOW.
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
    fifo = _fifo(req)
    rootfs = Rootfs(req, config, userns) if "mount" in spaces else None
    if rootfs is not None:
        rootfs.build()
    hooks: dict[str, Any] = config.get("hooks") or {}
    if hooks.get("prestart") or hooks.get("createRuntime"):
        chan.ask({"hooks": "createRuntime", "pid": host_pid})  # run by the parent, its ns
    run_hooks(req, config, "createContainer", "creating", host_pid)
    spaces.close()
    kernel = process.Kernel(userns=userns)
    if rootfs is not None:
        rootfs.pivot()
    else:  # no mount namespace (runc accepts it): the host's mount table is never touched
        os.chroot(str(req["rootfs"]))
        os.chdir("/")
    creds = process.Credentials(config)
    process.drop_privileges(config, creds, kernel, seccomp_bpf=req.get("seccomp_bpf"))
    cwd = process.enter_cwd(config)
    program, args = process.command(config, creds, cwd)
    chan.send({"created": True})
    chan.created = True
    if fifo >= 0:
        # The fifo is mode 0622 (as runc's): the user program's uid may write to it.
        chan.fifo = os.open(fdpath(fifo), os.O_WRONLY | os.O_CLOEXEC)  # until `start` reads
        os.write(chan.fifo, b"0")
        # Left open, close-on-exec: `start` sees EOF once the program runs, or reads why it
        # did not; it runs poststart hooks after the exec, as runtime-spec orders them.
        os.close(fifo)
    run_hooks(req, config, "startContainer", "created", host_pid)
    process.execute(req, config, program, args, creds.env)


def _fifo(req: dict[str, Any]) -> int:
    """An O_PATH fd of ``create``'s exec fifo (opened by the parent: the state dir may not be
    searchable by the namespace's root; only the fifo is chowned to it, as runc does).
    """
    if isinstance(req.get("exec_fifo_fd"), int):
        return int(req["exec_fifo_fd"])
    if req.get("exec_fifo"):
        return os.open(str(req["exec_fifo"]), os.O_PATH | os.O_CLOEXEC)
    return -1


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
    env = {"PATH": HOOK_PATH}
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
