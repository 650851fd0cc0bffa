"""EmbeddedRuntime: ``mlpack run`` and the library API of the embedded runtime.

An image becomes an OCI config (``spec``) and a ``Container`` (the launch path that the OCI
runtime operations share): the library process never creates namespaces itself
(SECURITY-AND-ISOLATION.md §1), the helper does, under ``python -I -S``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpack.errors import ContainerError
from mlpack.home import mlpack_home
from mlpack.oslib import jsoncodec
from mlpack.oslib.fs import atomic_write
from mlpack.runtime.protocol import RunConfig, RunResult

if TYPE_CHECKING:
    from collections.abc import Callable
    from os import PathLike

    from mlpack.runtime.cdi import CdiEdits
    from mlpack.runtime.embedded.cgroups import Cgroup
    from mlpack.runtime.embedded.container import Container
    from mlpack.runtime.embedded.launcher import Launch
    from mlpack.runtime.embedded.spawn import HelperProcess
    from mlpack.runtime.embedded.spec import CapProfile, IdMap, ImageProcess

    StrPath = str | PathLike[str]


@dataclass(frozen=True, kw_only=True)
class ResolvedImage:
    """What a container is made from: layer dirs (bottom first) and the image's process."""

    layers: tuple[str, ...]
    process: ImageProcess
    merged: Callable[[], StrPath]  # one merged tree, for the copy fallback without overlayfs


def resolve_image(image: str) -> ResolvedImage:
    """A directory is used as a root filesystem; anything else is looked up in the store."""
    from mlpack.runtime.embedded.spec import ImageProcess

    if image.startswith(("/", "./", "../")) or Path(image).is_dir():
        if not Path(image).is_dir():
            msg = f"root filesystem {image} is not a directory"
            raise ContainerError(msg, hint="give an image reference or an unpacked rootfs dir")
        root = str(Path(image).resolve())
        return ResolvedImage(layers=(root,), process=ImageProcess(), merged=lambda: root)
    from mlpack.oci import memo

    home = str(mlpack_home())

    def merged() -> Path:
        from mlpack.oci.snapshots import rootfs
        from mlpack.oci.store import Store

        return rootfs(Store(mlpack_home()), image)

    hit = memo.lookup(home, image)
    if hit is not None:
        check_platform(image, hit[1])
        return ResolvedImage(layers=hit[0], process=ImageProcess.from_raw(hit[1]), merged=merged)
    from mlpack.oci.snapshots import unpack
    from mlpack.oci.store import Store

    identity = memo.index_identity(home)
    store = Store(mlpack_home())
    stored = store.image(image)
    check_platform(image, stored.config.raw)
    layers = tuple(map(str, unpack(store, image)))
    memo.record(home, image, identity=identity, layers=layers, config=stored.config.raw)
    return ResolvedImage(
        layers=layers, process=ImageProcess.from_raw(stored.config.raw), merged=merged
    )


def check_platform(image: str, config: dict[str, Any], *, binfmt: Path | None = None) -> None:
    """ContainerError, before anything starts, for an image of another architecture that this
    kernel cannot run (no qemu handler with the F flag): its first exec would only fail with
    "Exec format error". An image of an unknown platform is left to try.
    """
    from mlpack.oslib.binfmt import can_run, host_machine, install_hint
    from mlpack.vocabulary import MACHINES

    platform = f"{config.get('os', 'linux')}/{config.get('architecture', '')}"
    machine = MACHINES.get(platform)  # type: ignore[call-overload]
    if machine is None or can_run(machine, binfmt=binfmt):
        return
    msg = (
        f"image {image} is {platform} and this {host_machine()} host cannot run its programs: "
        f"no qemu-{machine} handler with the F (fix-binary) flag is registered with binfmt_misc"
    )
    raise ContainerError(msg, hint=f"{install_hint(machine)}, or run it on a {platform} host")


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
    import shutil

    return shutil.which(tool) is not None


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def write_etc_files(d: Path, hostname: str, network: str) -> tuple[tuple[str, str], ...]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf for the container (host copies: no DNS
    config of the image is trusted over the host's).
    """
    etc = d / "etc"
    etc.mkdir()
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    hosts += f"127.0.1.1\t{hostname}\n"
    if network == "host":
        with contextlib.suppress(OSError):
            hosts = _read("/etc/hosts")
    try:
        resolv = _read("/etc/resolv.conf")
    except OSError:
        resolv = ""
    files = {"hostname": hostname + "\n", "hosts": hosts, "resolv.conf": resolv}
    for name, text in files.items():
        (etc / name).write_text(text, encoding="utf-8")
    return tuple((f"/etc/{n}", str(etc / n)) for n in files)


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
        if not Path("/proc/self/ns/user").exists():
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
        tty); it is used for the container, or stopped if the run fails before that. Without
        one, and without a tty or fds to pass, one is started here first thing: its start
        overlaps the image lookup and the container's preparation (the library's p50, B1).
        """
        from mlpack.runtime.embedded import state
        from mlpack.runtime.embedded.container import Container
        from mlpack.runtime.embedded.launcher import relaying

        if process is None and not config.tty and not config.fds:
            from mlpack.runtime.embedded.spawn import prestart

            process = prestart(interactive=config.interactive)

        try:
            self.check_available()
            state.cleanup_stale(self.root)
            image = resolve_image(config.image)
            cid = state.check_id(config.name) if config.name else state.new_id()
        except BaseException:
            if process is not None:
                process.discard()
            raise
        with Container(self.root, cid, keep_layer=config.keep) as box:
            box.adopt(process)
            launch = self._prepare(box, image, config)
            stdio: tuple[int | None, int | None, int | None] | None = None
            pty: int | None = None
            if config.tty:
                pty, replica = (box.own_fd(fd) for fd in os.openpty())
                stdio = (replica, replica, replica)
            elif not config.interactive:  # as docker run without -i: stdin is /dev/null
                stdio = (box.own_fd(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)), None, None)
            launch = replace(launch, stdio=stdio, pass_fds=config.fds)
            # The handlers are in place before the container can run: a program that prints
            # and is signalled at once must find them (a signal before "created" aborts).
            with relaying(box.spawn(launch, process)) as relay:
                try:
                    box.created()
                except ContainerError as exc:
                    if launch.overlay is None or "overlay" not in exc.message:
                        raise
                    from mlpack.progress import reporter

                    reporter().notice("overlayfs is not allowed here; copying the image instead")
                    copy_rootfs(image.merged(), launch.rootfs)
                    relay.helper = box.spawn(replace(launch, overlay=None))
                    box.created()
                for fd in stdio or ():
                    box.close_fd(fd)  # the helper has its own copies (a pty must see EOF)
                if on_start is not None:
                    on_start(cid)
                if pty is not None:
                    from mlpack.runtime.embedded.tty import relay as relay_tty

                    relay_tty(pty, relay.helper)
                final = box.wait()
            return self._result(cid, config, box.group, final)

    def _prepare(self, box: Container, image: ResolvedImage, config: RunConfig) -> Launch:
        """The container's files, OCI config, cgroups and state record; its Launch."""
        from mlpack.runtime.embedded import spec, state
        from mlpack.runtime.embedded.launcher import Launch, Overlay

        rootless = os.geteuid() != 0
        uid_map, gid_map = id_maps(rootless)
        hostname = config.hostname or box.id
        etc = write_etc_files(box.path, hostname, config.network)
        rootfs = box.path / "rootfs"
        for sub in ("rootfs", "upper", "work"):
            # Even a --read-only root gets an upper dir: mount targets (/etc/hosts, -v targets)
            # are created there, never in the shared image layers; the root is remounted
            # read-only after pivot_root.
            # work/ is the owner's alone; upper/'s mode is the container's "/" (overlayfs).
            (box.path / sub).mkdir(mode=0o700 if sub == "work" else 0o777)
        overlay: Overlay | None = Overlay(
            lower=image.layers,
            upper=box.path / "upper",
            work=box.path / "work",
            volatile=not config.keep,  # a kept upper dir is synced as usual
        )
        if not self.overlay:
            copy_rootfs(image.merged(), rootfs)
            overlay = None
        doc = spec.build_config(
            image.process,
            config,
            spec.SpecOptions(
                rootfs=str(rootfs),
                hostname=hostname,
                userns=rootless,
                uid_map=uid_map,
                gid_map=gid_map,
                cap_profile=self.cap_profile,
                etc_files=etc,
                cdi=self._cdi(config),
                init_binary=_init_binary() if config.init else None,
            ),
        )
        # Limits put the container in cgroups, which also measure it as a whole; without
        # limits the supervisor's rusage of pid 1 is the measurement. As root, the device rules
        # need a cgroup either way (§6).
        from mlpack.runtime.embedded import devices

        account = self.account and not rootless
        rules = () if rootless else devices.rules_of(doc)
        if account or any(v is not None for v in (config.memory, config.cpus, config.pids_limit)):
            from mlpack.runtime.embedded import cgroups

            limits = cgroups.Limits(
                memory=config.memory, cpus=config.cpus, pids=config.pids_limit, devices=rules
            )
            box.cgroups(limits, account=account)
        else:
            box.device_cgroup(rules)
        box.record(
            state.ContainerState(
                id=box.id,
                bundle=str(box.path),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                image=config.image,
                command=tuple(doc["process"]["args"]),
                name=config.name or "",
                memory_limit=config.memory,
                owner=os.getpid(),
                owner_start=state.proc_start_time(os.getpid()),
                extra={"keep": config.keep},
            )
        )
        if "hooks" in doc:  # hooks find the rootfs through the bundle's config.json
            atomic_write(box.path / "config.json", jsoncodec.dumps(doc))
        return Launch(
            bundle=box.path,
            config=doc,
            rootfs=rootfs,
            overlay=overlay,
            seccomp_cache=mlpack_home() / "cache" / "seccomp",
        )

    def _cdi(self, config: RunConfig) -> CdiEdits | None:
        if not config.gpus:
            return None
        from mlpack.runtime.cdi import resolve_cdi

        if self.cdi_spec_dirs is not None:
            return resolve_cdi(config.gpus, spec_dirs=self.cdi_spec_dirs)
        return resolve_cdi(config.gpus)

    @staticmethod
    def _result(
        cid: str, config: RunConfig, group: Cgroup | None, final: dict[str, Any]
    ) -> RunResult:
        measured = group is not None and bool(group.dirs)
        peak = group.memory_peak() if group is not None and measured else None
        cpu = group.cpu_time_us() if group is not None and measured else None
        return RunResult(
            container_id=cid,
            exit_code=int(final["exit"]),
            signal=final.get("signal"),
            oom_killed=group is not None and group.oom_kills() > 0,
            memory_limit=config.memory,
            memory_peak=peak if peak is not None else final.get("maxrss"),
            cpu_time_us=cpu if cpu is not None else final.get("cpu_us"),
        )


def _init_binary() -> str:
    from mlpack.runtime.embedded.init import init_binary

    return str(init_binary(mlpack_home() / "cache"))


@dataclass(frozen=True, kw_only=True)
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
        terminate(st.pid, timeout, alive=lambda: state.alive(st.pid, st.pid_start))
    # The running `mlpack run` removes its own container; one whose owner died is ours.
    deadline = time.monotonic() + 5
    while Path(d.path).exists() and time.monotonic() < deadline:
        if not state.alive(st.supervisor, st.supervisor_start):
            if not st.extra.get("keep"):
                d.remove()
            break
        time.sleep(0.05)


def terminate(pid: int, timeout: float, *, alive: Callable[[], bool]) -> None:
    """SIGTERM ``pid``, then SIGKILL if ``alive()`` still after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _name(d: Any) -> str:
    try:
        return str(d.read().name)
    except ContainerError:
        pass
    return ""
