"""The OCI runtime command-line operations: create, start, state, kill, delete, run.

Semantics follow opencontainers/runtime-spec ``runtime.md``: ``create`` sets the container up and
leaves pid 1 blocked on ``exec.fifo`` (as runc does) until ``start`` reads it; ``state`` derives
the status from that fifo and pid 1's liveness; ``delete`` removes cgroups and state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from mlpack.errors import ContainerError
from mlpack.home import mlpack_home
from mlpack.oslib import jsoncodec
from mlpack.oslib.fs import atomic_write
from mlpack.oslib.linux import DEFAULT_PATH, MAX_ID
from mlpack.runtime.embedded import cgroups, devices, state
from mlpack.runtime.embedded.container import Container
from mlpack.runtime.embedded.launcher import Helper, Launch, relaying

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

    from mlpack.runtime.embedded.spawn import HelperProcess

OCI_VERSION = "1.0.2"
SIGNALS = {s.name.removeprefix("SIG"): int(s) for s in signal.Signals}


def load_bundle(bundle: Path) -> tuple[dict[str, Any], Path]:
    """Read ``config.json`` and resolve the root filesystem path."""
    try:
        config = jsoncodec.loads((bundle / "config.json").read_bytes())
    except (OSError, ValueError) as exc:
        msg = f"cannot read {bundle / 'config.json'}: {exc}"
        raise ContainerError(msg, hint="--bundle must be a directory holding config.json") from exc
    if not isinstance(config, dict):
        msg = f"{bundle / 'config.json'} is not a JSON object"
        raise ContainerError(msg, hint="generate one with runc spec or mlpack's spec builder")
    # `process` is optional at create; a container without one fails at start (runtime-spec).
    config.setdefault("process", {})
    check_process_user(config["process"].get("user") or {})
    root = (config.get("root") or {}).get("path") or "rootfs"
    rootfs = Path(root) if Path(root).is_absolute() else bundle / root
    if not rootfs.is_dir():
        msg = f"root filesystem {rootfs} is not a directory"
        raise ContainerError(msg, hint="unpack the image into the bundle (umoci unpack)")
    return config, rootfs.resolve()


def check_process_user(user: dict[str, Any]) -> None:
    """process.user's ids must be integers in 0..2147483647 (runc's range; -1 means root)."""
    ids = [("uid", user.get("uid", 0)), ("gid", user.get("gid", 0))]
    ids += [("additionalGids", g) for g in user.get("additionalGids") or ()]
    for key, value in ids:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
            msg = f"config.json process.user.{key} {value!r} is outside 0..{MAX_ID}"
            raise ContainerError(msg, hint=f"use ids between 0 and {MAX_ID}, as runc requires")


def limits_of(config: dict[str, Any]) -> cgroups.Limits:
    """linux.resources as the limits mlpack enforces (memory, cpu, cpuset, pids)."""
    res = (config.get("linux") or {}).get("resources") or {}
    mem = res.get("memory") or {}
    cpu = res.get("cpu") or {}
    quota, period = cpu.get("quota"), cpu.get("period") or 100_000
    pids = (res.get("pids") or {}).get("limit")

    def positive(value: Any) -> int | None:
        return int(value) if isinstance(value, int) and value > 0 else None

    swap = mem.get("swap")
    return cgroups.Limits(
        memory=positive(mem.get("limit")),
        memory_swap=-1 if swap == -1 else positive(swap),
        memory_reservation=positive(mem.get("reservation")),
        kernel_tcp=positive(mem.get("kernelTCP")),
        swappiness=mem.get("swappiness") if isinstance(mem.get("swappiness"), int) else None,
        disable_oom_killer=bool(mem.get("disableOOMKiller")),
        cpus=quota / period if isinstance(quota, int) and quota > 0 else None,
        cpu_period=int(period),
        cpu_shares=positive(cpu.get("shares")),
        cpuset_cpus=str(cpu["cpus"]) if cpu.get("cpus") else None,
        cpuset_mems=str(cpu["mems"]) if cpu.get("mems") else None,
        pids=positive(pids),
        devices=devices.rules_of(config) if os.geteuid() == 0 else (),
    )


def run_hooks(
    config: dict[str, Any], kinds: tuple[str, ...], doc: dict[str, Any], *, fatal: bool
) -> None:
    """Run OCI hooks in the runtime's namespaces (this process's): the state on stdin, cwd /,
    only the hook's env. ``fatal``: a failing hook fails the operation; else it is a notice
    (poststart, poststop), as runtime-spec says.
    """
    import subprocess

    from mlpack.progress import reporter

    hooks = config.get("hooks") or {}
    for kind in kinds:
        for hook in hooks.get(kind) or ():
            path = str(hook["path"])
            env = {"PATH": DEFAULT_PATH}
            for entry in hook.get("env") or ():
                key, sep, value = str(entry).partition("=")
                if sep and key:
                    env[key] = value
            try:
                done = subprocess.run(
                    [str(a) for a in hook.get("args") or [path]],
                    executable=path,
                    input=jsoncodec.dumps(doc).encode(),
                    env=env,
                    cwd="/",
                    capture_output=True,
                    timeout=hook.get("timeout") or None,
                    check=False,
                )
                failed = f"exited with {done.returncode}" if done.returncode else ""
            except (OSError, subprocess.TimeoutExpired) as exc:
                failed = str(exc)
            if failed:
                msg = f"{kind} hook {path} {failed}"
                if fatal:
                    raise ContainerError(msg, hint="check the hook in the bundle's config.json")
                reporter().notice(msg)


def _state_doc(
    cid: str, bundle: Path, config: dict[str, Any], status: str, pid: int
) -> dict[str, Any]:
    return {
        "ociVersion": OCI_VERSION,
        "id": cid,
        "status": status,
        "pid": pid,
        "bundle": str(bundle),
        "annotations": config.get("annotations") or {},
    }


def _runtime_hooks(cid: str, bundle: Path, config: dict[str, Any], pid: int) -> None:
    """Prestart (state "created", as runtime-tools checks) then createRuntime ("creating")."""
    for kind, status in (("prestart", "created"), ("createRuntime", "creating")):
        run_hooks(config, (kind,), _state_doc(cid, bundle, config, status, pid), fatal=True)


def console_pty(config: dict[str, Any], socket_path: Path | None, *, detach: bool) -> int | None:
    """The pty's replica for a ``terminal: true`` container whose console goes to a socket.

    As runc: the pty's main side goes to ``socket_path`` (a Unix socket some console manager
    listens on, e.g. runc's recvtty) with SCM_RIGHTS, the replica becomes the container's stdio
    and controlling terminal. None without a socket (the container inherits our stdio).
    """
    terminal = bool((config.get("process") or {}).get("terminal"))
    if socket_path is None:
        if terminal and detach:
            msg = "a detached container with process.terminal needs --console-socket"
            raise ContainerError(
                msg, hint="pass --console-socket PATH, or set terminal: false in config.json"
            )
        return None
    if not terminal:
        msg = "--console-socket is only for containers with process.terminal: true"
        raise ContainerError(msg, hint="set terminal: true in config.json, or drop the flag")
    import socket

    main, replica = os.openpty()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(socket_path))
            socket.send_fds(sock, [os.ttyname(replica).encode()], [main])
    except OSError as exc:
        os.close(replica)
        msg = f"cannot send the console to {socket_path}: {exc.strerror or exc}"
        raise ContainerError(msg, hint="start the console receiver (listening) first") from exc
    finally:
        os.close(main)
    return replica


def _launch(
    box: Container,
    bundle: Path,
    *,
    detach: bool,
    preserve_fds: int,
    console_socket: Path | None,
    process: HelperProcess | None,
) -> tuple[Helper, dict[str, Any]]:
    """Create the container in ``box`` from ``bundle`` up to a helper that has the request (the
    one launch path; ``box.created()`` follows it to "created"): the helper and the config.

    ``process``: a helper started ahead (``spawn.prestart``) with the caller's stdio and the
    preserved fds; not for a console socket, whose pty becomes the helper's stdio.
    """
    box.adopt(process)
    config, rootfs = load_bundle(bundle)
    replica = console_pty(config, console_socket, detach=detach)
    console = None if replica is None else box.own_fd(replica)
    bundle = bundle.resolve()
    euid = os.geteuid()
    box.cgroups(
        limits_of(config),
        account=euid == 0,
        path=(config.get("linux") or {}).get("cgroupsPath") or None,
    )
    annotations = config.get("annotations") or {}
    box.record(
        state.ContainerState(
            id=box.id,
            bundle=str(bundle),
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            command=tuple(config["process"].get("args") or ()),
            annotations=tuple((str(k), str(v)) for k, v in annotations.items()),
            kind="oci",
        )
    )
    fifo = None
    if detach:
        fifo = box.path / "exec.fifo"
        os.mkfifo(fifo, 0o600)
        fifo.chmod(0o622)  # pid 1 opens it after setuid: writable by any uid, as runc's
        root_ids = _host_root(config)
        if root_ids is not None and euid == 0:
            os.chown(fifo, *root_ids)  # pid 1 opens it as the namespace's root (as runc)
    cid = box.id
    helper = box.spawn(
        Launch(
            config=config,
            rootfs=rootfs,
            state_dir=box.path,
            exec_fifo=fifo,
            detach=detach,
            seccomp_cache=mlpack_home() / "cache" / "seccomp",
            preserve_fds=preserve_fds,
            extra_fds=tuple(range(3, 3 + preserve_fds)),
            stdio=None if console is None else (console, console, console),
            bundle=bundle,
            runtime_hooks=lambda pid: _runtime_hooks(cid, bundle, config, pid),
        ),
        None if console is not None else process,
    )
    box.close_fd(console)  # the helper has its own copy
    return helper, config


def _host_root(config: dict[str, Any]) -> tuple[int, int] | None:
    """The host uid and gid that the container's root maps to, with a user namespace."""
    linux = config.get("linux") or {}
    if "user" not in {n.get("type") for n in linux.get("namespaces") or ()}:
        return None
    found = []
    for key in ("uidMappings", "gidMappings"):
        ids = [
            int(m["hostID"]) - int(m["containerID"])
            for m in linux.get(key) or ()
            if int(m["containerID"]) <= 0 < int(m["containerID"]) + int(m["size"])
        ]
        if not ids:
            return None
        found.append(ids[0])
    return found[0], found[1]


def create(
    root: Path,
    cid: str,
    bundle: Path,
    *,
    pid_file: Path | None = None,
    preserve_fds: int = 0,
    console_socket: Path | None = None,
    process: HelperProcess | None = None,
) -> state.ContainerState:
    """Set the container up; pid 1 waits on exec.fifo until ``start``."""
    with Container(str(root), cid) as box:
        _launch(
            box,
            bundle,
            detach=True,
            preserve_fds=preserve_fds,
            console_socket=console_socket,
            process=process,
        )
        st = box.created()
        box.persist()
    if pid_file is not None:
        atomic_write(pid_file, str(st.pid))
    return st


def start(root: Path, cid: str) -> None:
    """Release a created container's pid 1 into the user program."""
    sd = state.open_dir(root, cid)
    status = sd.status()
    if status != "created":
        msg = f"container {cid} is {status}, not created"
        raise ContainerError(msg, hint="only a created container can be started")
    try:
        fd = os.open(sd.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        msg = f"cannot open {sd.fifo}: {exc.strerror}"
        raise ContainerError(msg, hint="the container may have been started already") from exc
    try:
        data = _read_start_byte(fd)
        failure = _wait_for_exec(fd) if data else b""
    finally:
        os.close(fd)
    Path(sd.fifo).unlink(missing_ok=True)
    if not data:
        msg = f"container {cid} did not start"
        raise ContainerError(msg, hint="its pid 1 exited before start; see mlpack runtime state")
    if failure:
        text = failure.decode(errors="replace").strip()
        raise ContainerError(text, hint="the container is stopped; delete it and fix the config")
    _post(sd, "poststart", "running")


def _read_start_byte(fd: int, timeout: float = 5.0) -> bytes:
    """The byte pid 1 writes once our open() releases its own: wait for it with select (no
    polling sleep while it is on its way); EOF means no writer (pid 1 is gone), retried briefly.
    """
    import select

    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            data = os.read(fd, 1)
        except BlockingIOError:  # a writer is connected: its byte follows
            select.select([fd], [], [], left)
            continue
        if data:
            return data
        time.sleep(0.01)  # no writer (yet, or any more)
    return b""


def _wait_for_exec(fd: int, timeout: float = 300.0) -> bytes:
    """Wait for EOF on the exec fifo: pid 1 holds it open close-on-exec until it execs (after
    its startContainer hooks) or fails; what it wrote before EOF is why it failed.
    """
    import select

    said = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        select.select([fd], [], [], 1.0)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            break
        said += chunk
    return said


def _post(sd: state.StateDir, kind: str, status: str) -> None:
    """Poststart / poststop hooks, from the bundle's config.json; failures are notices."""
    st = sd.read()
    try:
        config = jsoncodec.loads((Path(st.bundle) / "config.json").read_bytes())
    except (OSError, ValueError):
        return
    _post_hooks(config, st, kind, status)


def _post_hooks(config: dict[str, Any], st: state.ContainerState, kind: str, status: str) -> None:
    """Poststart / poststop hooks of ``config``; failures are notices."""
    if (config.get("hooks") or {}).get(kind):
        doc = _state_doc(st.id, Path(st.bundle), config, status, st.pid)
        run_hooks(config, (kind,), doc, fatal=False)


def oci_state(root: Path, cid: str) -> dict[str, Any]:
    """The state document of runtime-spec ``runtime.md``."""
    sd = state.open_dir(root, cid)
    st = sd.read()
    status = sd.status(st)
    doc: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": st.id,
        "status": status,
        "pid": st.pid if status in ("created", "running") else 0,
        "bundle": st.bundle,
        "annotations": dict(st.annotations),
    }
    return doc


def parse_signal(value: str) -> int:
    """``TERM``, ``SIGTERM`` or ``15``."""
    if value.isdigit():
        return int(value)
    name = value.upper().removeprefix("SIG")
    if name not in SIGNALS:
        msg = f"unknown signal {value!r}"
        raise ContainerError(msg, hint="use a name such as TERM or KILL, or a number")
    return SIGNALS[name]


def kill(root: Path, cid: str, sig: int = signal.SIGTERM, *, all_: bool = False) -> None:
    """Send ``sig`` to pid 1 (or every process of its cgroups with ``all_``)."""
    sd = state.open_dir(root, cid)
    st = sd.read()
    status = sd.status(st)
    if status not in ("created", "running"):
        msg = f"container {cid} is {status}"
        raise ContainerError(msg, hint="only a created or running container can be signalled")
    pids = {st.pid}
    if all_:
        for cg in st.cgroups:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(cg, "cgroup.procs").read_text().split())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def delete(root: Path, cid: str, *, force: bool = False) -> None:
    """Remove a stopped container (``force``: kill it first)."""
    sd = state.open_dir(root, cid)
    st = sd.read()
    status = sd.status(st)
    if status != "stopped":
        if not force:
            msg = f"container {cid} is {status}"
            raise ContainerError(msg, hint="stop it first, or use delete --force")
        # Kill pid 1 (its pid namespace goes with it); the supervisor reaps it and exits.
        if state.alive(st.pid, st.pid_start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGKILL)
        for _ in range(500):  # until the supervisor has reaped pid 1 and exited
            if not state.alive(st.pid, st.pid_start) and not state.alive(
                st.supervisor, st.supervisor_start
            ):
                break
            time.sleep(0.01)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.supervisor, signal.SIGKILL)
    _post(sd, "poststop", "stopped")
    sd.remove()


def run(
    root: Path,
    cid: str,
    bundle: Path,
    *,
    detach: bool = False,
    preserve_fds: int = 0,
    console_socket: Path | None = None,
    process: HelperProcess | None = None,
) -> int:
    """Create + start; without ``detach``, wait and delete, returning the exit status.

    ``process``: a helper started ahead (``spawn.prestart``), as for ``create``.
    """
    if detach:
        create(
            root,
            cid,
            bundle,
            preserve_fds=preserve_fds,
            console_socket=console_socket,
            process=process,
        )
        start(root, cid)
        return 0
    with Container(str(root), cid) as box:
        helper, config = _launch(
            box,
            bundle,
            detach=False,
            preserve_fds=preserve_fds,
            console_socket=console_socket,
            process=process,
        )
        # Signals are relayed before pid 1 may run the program (a signal before "created"
        # aborts the setup), as for ``mlpack run``.
        with relaying(helper):
            st = box.created()
            try:
                _post_hooks(config, st, "poststart", "running")
                final = box.wait()
            finally:
                _post_hooks(config, st, "poststop", "stopped")
        return int(final["exit"])
