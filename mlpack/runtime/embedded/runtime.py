# ruff: noqa: PTH102, PTH110, PTH112, PTH118, PTH123, SIM105
"""EmbeddedRuntime: prepare a container, hand it to the helper, follow it, clean up.

The library process never creates namespaces itself (SECURITY-AND-ISOLATION.md §1): it writes
an OCI config, spawns ``helper.py`` under ``python -I -S``, writes the user namespace's id maps,
and follows the helper to the exit status, then removes the cgroups and the writable layer.
"""

from __future__ import annotations

import os
import time

from mlpack.errors import ContainerError
from mlpack.home import mlpack_home
from mlpack.record import record
from mlpack.record import replace as record_replace
from mlpack.runtime.base import RunConfig, RunResult

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    import signal
    from collections.abc import Callable
    from os import PathLike
    from pathlib import Path
    from typing import Any, Self

    from mlpack.runtime.embedded.cgroups import Cgroup
    from mlpack.runtime.embedded.launcher import Helper
    from mlpack.runtime.embedded.spawn import HelperProcess
    from mlpack.runtime.embedded.spec import CapProfile, IdMap, ImageProcess

    StrPath = str | PathLike[str]
else:
    try:  # the C module: signal.py wraps it in enums (enum, functools: ~2 ms per start)
        import _signal as signal
    except ImportError:  # pragma: no cover - not CPython
        import signal

RELAYED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


@record
class ResolvedImage:
    """What a container is made from: layer dirs (bottom first) and the image's process."""

    layers: tuple[str, ...]
    process: ImageProcess
    merged: Callable[[], StrPath]  # one merged tree, for the copy fallback without overlayfs


def resolve_image(image: str) -> ResolvedImage:
    """A directory is used as a root filesystem; anything else is looked up in the store."""
    from mlpack.runtime.embedded.spec import ImageProcess

    if image.startswith(("/", "./", "../")) or os.path.isdir(image):
        if not os.path.isdir(image):
            msg = f"root filesystem {image} is not a directory"
            raise ContainerError(msg, hint="give an image reference or an unpacked rootfs dir")
        root = os.path.realpath(image)
        return ResolvedImage(layers=(root,), process=ImageProcess(), merged=lambda: root)
    from mlpack.home import mlpack_home
    from mlpack.oci import memo

    home = mlpack_home()

    def merged() -> Path:
        from pathlib import Path

        from mlpack.oci.snapshots import rootfs
        from mlpack.oci.store import Store

        return rootfs(Store(Path(home)), image)

    hit = memo.lookup(home, image)
    if hit is not None:
        return ResolvedImage(layers=hit[0], process=ImageProcess.from_raw(hit[1]), merged=merged)
    from pathlib import Path

    from mlpack.oci.snapshots import unpack
    from mlpack.oci.store import Store

    identity = memo.index_identity(home)
    store = Store(Path(home))
    stored = store.image(image)
    layers = tuple(map(str, unpack(store, image)))
    memo.record(home, image, identity=identity, layers=layers, config=stored.config.raw)
    return ResolvedImage(
        layers=layers, process=ImageProcess.from_raw(stored.config.raw), merged=merged
    )


def copy_rootfs(source: StrPath, target: StrPath) -> None:
    """The fallback where overlayfs is not allowed: a private copy (``cp -a``, reflinks when
    the filesystem has them), so the shared image is never written.
    """
    import subprocess

    done = subprocess.run(
        ["cp", "-a", "--reflink=auto", f"{source}/.", f"{target}/"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        msg = f"copying the image into {target} failed: {done.stderr.strip()}"
        raise ContainerError(msg, hint="check free disk space under MLPACK_HOME")


def id_maps(userns: bool) -> tuple[tuple[IdMap, ...], tuple[IdMap, ...]]:
    """Rootless: the caller as 0, plus its /etc/subuid range from 1 when it has one (§2)."""
    from mlpack.runtime.embedded.launcher import subid_range
    from mlpack.runtime.embedded.spec import IdMap

    if not userns:
        return (), ()
    import pwd

    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    out: list[tuple[IdMap, ...]] = []
    for kind, own in (("uid", uid), ("gid", gid)):
        maps = [IdMap(container_id=0, host_id=own, size=1)]
        rng = subid_range(kind, name, uid)
        if rng and uid != 0 and _which(f"new{kind}map"):
            maps.append(IdMap(container_id=1, host_id=rng[0], size=min(rng[1], 65535)))
        out.append(tuple(maps))
    return out[0], out[1]


def _which(tool: str) -> bool:
    return any(
        os.access(os.path.join(d, tool), os.X_OK)
        for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    )


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_etc_files(d: StrPath, hostname: str, network: str) -> tuple[tuple[str, str], ...]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container (host copies: no DNS
    config of the image is trusted over the host's).
    """
    etc = os.path.join(d, "etc")
    os.mkdir(etc)
    _write(os.path.join(etc, "hostname"), hostname + "\n")
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += f"127.0.1.1\t{hostname}\n"
    if network == "host":
        try:
            hosts = _read("/etc/hosts")
        except OSError:
            pass
    _write(os.path.join(etc, "hosts"), hosts)
    try:
        resolv = _read("/etc/resolv.conf")
    except OSError:
        resolv = ""
    _write(os.path.join(etc, "resolv.conf"), resolv)
    return tuple((f"/etc/{n}", os.path.join(etc, n)) for n in ("hostname", "hosts", "resolv.conf"))


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
        text = _read(f"/proc/{pid}/status")
    except OSError:
        return False
    bit = 1 << (sig - 1)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigCgt", "SigIgn") and int(value.strip(), 16) & bit:
            return True
    return False


class EmbeddedRuntime:
    """Runs containers on this machine without a daemon."""

    name = "embedded"

    def __init__(
        self,
        *,
        root: StrPath | None = None,
        cap_profile: CapProfile = "default",
        overlay: bool = True,
        cdi_spec_dirs: tuple[Path, ...] | None = None,
        account: bool = False,
    ) -> None:
        """``overlay=False`` copies the image instead of mounting overlayfs over its layers;
        ``cdi_spec_dirs`` replaces /etc/cdi and /var/run/cdi for ``--gpus``; ``account``
        measures every run in cgroups, even without limits (peaks of the whole container).
        """
        from mlpack.runtime.embedded.state import containers_root

        self.root = os.fspath(root) if root is not None else containers_root()
        self.cap_profile: CapProfile = cap_profile
        self.overlay = overlay
        self.cdi_spec_dirs = cdi_spec_dirs
        self.account = account

    def check_available(self) -> None:
        """Raise ContainerError when this kernel cannot run containers for this user."""
        if not os.path.exists("/proc/self/ns/user"):
            msg = "this kernel has no user namespaces"
            raise ContainerError(msg, hint="use --runtime docker, or a kernel with CONFIG_USER_NS")
        if os.geteuid() != 0:
            try:
                limit = int(_read("/proc/sys/user/max_user_namespaces"))
            except (OSError, ValueError):
                limit = 1
            if limit == 0:
                msg = "unprivileged user namespaces are disabled (user.max_user_namespaces=0)"
                raise ContainerError(msg, hint="sysctl -w user.max_user_namespaces=15000")

    def run(self, config: RunConfig) -> RunResult:
        """Run to completion, streaming stdout/stderr live; clean up whatever happens."""
        return self.run_with(config)

    def run_with(
        self,
        config: RunConfig,
        *,
        on_start: Callable[[str], None] | None = None,
        process: HelperProcess | None = None,
    ) -> RunResult:
        """``run``, calling ``on_start(container_id)`` once the container is running.

        ``process``: a helper started earlier by ``spawn.prestart`` for this config (not for a
        tty); it is used for the container, or stopped if the run fails before that.
        """
        from mlpack.runtime.embedded import spec, state
        from mlpack.runtime.embedded.launcher import Helper, Launch, Overlay

        try:
            self.check_available()
            state.cleanup_stale(self.root)
            image = resolve_image(config.image)
        except BaseException:
            if process is not None:
                process.discard()
            raise
        cid = state.check_id(config.name) if config.name else state.new_id()
        sd = state.create_dir(self.root, cid)
        group: Cgroup | None = None
        helper: Helper | None = None
        pty: tuple[int, int] | None = None
        devnull = -1
        try:
            rootless = os.geteuid() != 0
            uid_map, gid_map = id_maps(rootless)
            hostname = config.hostname or cid
            etc = write_etc_files(sd.path, hostname, config.network)
            rootfs = os.path.join(sd.path, "rootfs")
            os.mkdir(rootfs)
            # Even a --read-only root gets an upper dir: mount targets (/etc/hosts, -v targets)
            # are created there, never in the shared image layers; the root is remounted
            # read-only after pivot_root.
            os.mkdir(os.path.join(sd.path, "upper"))
            os.mkdir(os.path.join(sd.path, "work"))
            overlay: Overlay | None = Overlay(
                lower=image.layers,
                upper=os.path.join(sd.path, "upper"),
                work=os.path.join(sd.path, "work"),
                volatile=not config.keep,  # a kept upper dir is synced as usual
            )
            if not self.overlay:
                copy_rootfs(image.merged(), rootfs)
                overlay = None
            cdi = None
            if config.gpus:
                from mlpack.runtime.cdi import resolve_cdi

                cdi = (
                    resolve_cdi(config.gpus, spec_dirs=self.cdi_spec_dirs)
                    if self.cdi_spec_dirs is not None
                    else resolve_cdi(config.gpus)
                )
            init_path = None
            if config.init:
                from pathlib import Path

                from mlpack.runtime.embedded.init import init_binary

                init_path = str(init_binary(Path(mlpack_home(), "cache")))
            doc = spec.build_config(
                image.process,
                config,
                spec.SpecOptions(
                    rootfs=rootfs,
                    hostname=hostname,
                    userns=rootless,
                    uid_map=uid_map,
                    gid_map=gid_map,
                    cap_profile=self.cap_profile,
                    etc_files=etc,
                    cdi=cdi,
                    init_binary=init_path,
                ),
            )
            measured = self.account and not rootless
            wanted = (config.memory, config.cpus, config.pids_limit)
            if measured or any(v is not None for v in wanted):
                from mlpack.runtime.embedded import cgroups

                limits = cgroups.Limits(
                    memory=config.memory, cpus=config.cpus, pids=config.pids_limit
                )
                layout = cgroups.detect()  # one read of mountinfo; picks /sys/fs/cgroup's view
                # Limits put the container in cgroups, which also measure it as a whole;
                # without limits the supervisor's rusage of pid 1 is the measurement (and the
                # cgroups module is not even imported).
                group = cgroups.create(layout, cid, limits, account=measured)
            st = state.ContainerState(
                id=cid,
                bundle=sd.path,
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                image=config.image,
                command=tuple(doc["process"]["args"]),
                cgroups=tuple(str(d) for d in group.dirs) if group else (),
                name=config.name or "",
                memory_limit=config.memory,
                owner=os.getpid(),
                owner_start=state.proc_start_time(os.getpid()),
                extra={"keep": config.keep},
            )
            sd.write(st)
            stdio: tuple[int | None, int | None, int | None] | None = None
            if config.tty:
                pty = os.openpty()
                stdio = (pty[1], pty[1], pty[1])
            elif not config.interactive:  # as docker run without -i: stdin is /dev/null
                devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                stdio = (devnull, None, None)
            if "hooks" in doc:  # hooks find the rootfs through the bundle's config.json
                from mlpack.oslib import jsoncodec

                _write(os.path.join(sd.path, "config.json"), jsoncodec.dumps(doc))
            launch = Launch(
                container_id=cid,
                bundle=sd.path,
                config=doc,
                rootfs=rootfs,
                overlay=overlay,
                cgroup_procs=group.procs_files() if group else (),
                cgroup_version=2 if group and group.layout.version == "v2" else 1,
                seccomp_cache=os.path.join(mlpack_home(), "cache", "seccomp"),
                stdio=stdio,
            )
            # The handlers are in place before the container can run: a program that prints
            # and is signalled at once must find them (a signal before "created" aborts).
            relay: relaying | None = None
            try:
                helper = Helper(launch, process)
                process = None
                relay = relaying(helper).__enter__()
                try:
                    helper.start(until="created")
                except ContainerError as exc:
                    if overlay is None or "overlay" not in exc.message:
                        raise
                    relay.__exit__()
                    from mlpack.progress import reporter

                    reporter().notice("overlayfs is not allowed here; copying the image instead")
                    copy_rootfs(image.merged(), rootfs)
                    helper = Helper(record_replace(launch, overlay=None))
                    relay = relaying(helper).__enter__()
                    helper.start(until="created")
                if devnull >= 0:
                    os.close(devnull)
                    devnull = -1
                sd.write(
                    record_replace(
                        st,
                        pid=helper.pid,
                        pid_start=state.proc_start_time(helper.pid),
                        supervisor=helper.proc.pid,
                        supervisor_start=state.proc_start_time(helper.proc.pid),
                    )
                )
                if on_start is not None:
                    on_start(cid)
                if pty is not None:
                    os.close(pty[1])
                    pty = (pty[0], -1)
                    from mlpack.runtime.embedded.tty import relay as relay_tty

                    relay_tty(pty[0], helper)
                final = helper.wait()
            finally:
                if relay is not None:
                    relay.__exit__()
            oom = group is not None and group.oom_kills() > 0
            code = int(final["exit"])
            peak = group.memory_peak() if group and group.dirs else None
            cpu = group.cpu_time_us() if group and group.dirs else None
            return RunResult(
                container_id=cid,
                exit_code=code,
                signal=final.get("signal"),
                oom_killed=oom,
                memory_limit=config.memory,
                memory_peak=peak if peak is not None else final.get("maxrss"),
                cpu_time_us=cpu if cpu is not None else final.get("cpu_us"),
            )
        finally:
            if process is not None:
                process.discard()
            if helper is not None and not helper.exited and helper.proc.poll() is None:
                helper.kill()
            if devnull >= 0:
                os.close(devnull)
            if pty is not None:
                for fd in pty:
                    if fd >= 0:
                        os.close(fd)
            try:
                if group is not None:
                    group.remove()
            finally:
                try:
                    if config.keep:
                        if os.path.isdir(os.path.join(sd.path, "rootfs")):
                            os.rmdir(os.path.join(sd.path, "rootfs"))  # noqa: PTH106
                    else:
                        sd.remove()
                finally:
                    if helper is not None:  # it exits right after reporting: reap it last
                        helper.proc.wait()


@record
class ContainerInfo:
    """One row of ``mlpack ps``."""

    id: str
    name: str
    image: str
    command: tuple[str, ...]
    created: str
    status: str
    pid: int


def list_containers(root: StrPath | None = None) -> tuple[ContainerInfo, ...]:
    """Containers started by ``mlpack run``, after removing stale ones."""
    from mlpack.runtime.embedded import state

    base = root or state.containers_root()
    state.cleanup_stale(base)
    rows = []
    for d in state.list_dirs(base):
        try:
            st = d.read()
        except ContainerError:
            continue
        status = d.status(st)
        rows.append(
            ContainerInfo(
                id=st.id,
                name=st.name,
                image=st.image,
                command=st.command,
                created=st.created,
                status=status,
                pid=st.pid if status == "running" else 0,
            )
        )
    return tuple(rows)


def stop(container: str, *, timeout: float = 10.0, root: StrPath | None = None) -> None:
    """SIGTERM the container's pid 1, SIGKILL after ``timeout``; clean up if nobody will."""
    from mlpack.runtime.embedded import state

    base = root or state.containers_root()
    state.cleanup_stale(base)
    match = [d for d in state.list_dirs(base) if d.id == container or _name(d) == container]
    if not match:
        msg = f"no container {container!r}"
        raise ContainerError(msg, hint="list running containers with mlpack ps")
    d = match[0]
    st = d.read()
    if state.alive(st.pid, st.pid_start):
        try:
            os.kill(st.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while state.alive(st.pid, st.pid_start) and time.monotonic() < deadline:
            time.sleep(0.05)
        if state.alive(st.pid, st.pid_start):
            try:
                os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # The running `mlpack run` removes its own container; one whose owner died is ours.
    deadline = time.monotonic() + 5
    while os.path.exists(d.path) and time.monotonic() < deadline:
        if not state.alive(st.supervisor, st.supervisor_start):
            if not st.extra.get("keep"):
                d.remove()
            break
        time.sleep(0.05)


def _name(d: Any) -> str:
    try:
        return str(d.read().name)
    except ContainerError:
        pass
    return ""
