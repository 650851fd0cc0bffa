"""Build an OCI runtime-spec config.json from an image config and a RunConfig."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpack.errors import ConfigError
from mlpack.oslib.linux import DEFAULT_PATH, MAX_ID
from mlpack.runtime.seccomp_profile import default_profile

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

    from mlpack.runtime.cdi import CdiEdits
    from mlpack.runtime.protocol import RunConfig

    CapProfile = Literal["default", "docker"]

OCI_VERSION = "1.0.2"

# runc's default set (libcontainer/specconv/example.go); moby's 14 with --cap-profile docker.
CAPS_DEFAULT = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
CAPS_DOCKER = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
INIT_PATH = "/dev/init"


@dataclass(frozen=True, kw_only=True)
class ImageProcess:
    """The process parts of an OCI image config (``config.Env`` … ``config.User``)."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""

    @classmethod
    def from_raw(cls, raw: dict[str, Any]) -> ImageProcess:
        """Read the ``config`` object of a parsed image config document."""
        conf = raw.get("config") or {}
        return cls(
            env=tuple(str(e) for e in conf.get("Env") or ()),
            entrypoint=tuple(str(e) for e in conf.get("Entrypoint") or ()),
            cmd=tuple(str(e) for e in conf.get("Cmd") or ()),
            working_dir=str(conf.get("WorkingDir") or ""),
            user=str(conf.get("User") or ""),
        )


@dataclass(frozen=True, kw_only=True)
class IdMap:
    """One line of a uid_map/gid_map."""

    container_id: int
    host_id: int
    size: int


@dataclass(frozen=True, kw_only=True)
class SpecOptions:
    """Runtime choices that are not part of RunConfig."""

    rootfs: str = "rootfs"
    hostname: str
    userns: bool
    uid_map: tuple[IdMap, ...] = ()
    gid_map: tuple[IdMap, ...] = ()
    cap_profile: CapProfile = "default"
    etc_files: tuple[tuple[str, str], ...] = ()  # (container path, host file) bound read-write
    cgroups_path: str = ""
    cdi: CdiEdits | None = None
    init_binary: str | None = None  # host path of the --init reaper


def merge_env(*layers: tuple[str, ...] | tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """Merge KEY=VALUE lists (or pairs) in order; a later key replaces an earlier one in place."""
    merged: dict[str, str] = {}
    for layer in layers:
        for item in layer:
            if isinstance(item, tuple):
                key, value = item
            else:
                key, _, value = item.partition("=")
            merged[key] = value
    return tuple(f"{k}={v}" for k, v in merged.items())


def process_args(image: ImageProcess, command: tuple[str, ...]) -> tuple[str, ...]:
    """Docker's rule: Entrypoint + (command, else Cmd)."""
    return image.entrypoint + (command or image.cmd)


def _is_root(user: str) -> bool:
    return user.split(":", 1)[0] in ("", "0", "root")


def capabilities(profile: CapProfile, *, root: bool) -> dict[str, list[str]]:
    """The OCI capabilities object; inheritable and ambient always empty (§3)."""
    caps = list(CAPS_DOCKER if profile == "docker" else CAPS_DEFAULT)
    # As moby (#41234): a non-root user keeps the bounding set but starts with no effective caps.
    active = caps if root else []
    return {
        "bounding": caps,
        "effective": active,
        "permitted": active,
        "inheritable": [],
        "ambient": [],
    }


def _mount(destination: str, kind: str, source: str, options: Iterable[str]) -> dict[str, Any]:
    """One entry of the OCI config's ``mounts`` (a list of its own, whatever ``options`` is)."""
    return {"destination": destination, "type": kind, "source": source, "options": list(options)}


def default_mounts(run: RunConfig, opts: SpecOptions) -> list[dict[str, Any]]:
    """proc, a fresh /dev, devpts, shm, mqueue, read-only sysfs and cgroup, /etc files."""
    plain = ("nosuid", "noexec", "nodev")
    mounts = [
        _mount("/proc", "proc", "proc", plain),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts", "devpts", "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount("/dev/shm", "tmpfs", "shm", [*plain, "mode=1777", f"size={run.shm_bytes()}"]),
        _mount("/dev/mqueue", "mqueue", "mqueue", plain),
        _mount("/sys", "sysfs", "sysfs", [*plain, "ro"]),
        _mount("/sys/fs/cgroup", "cgroup", "cgroup", [*plain, "relatime", "ro"]),
    ]  # fmt: skip
    if opts.init_binary:
        mounts.append(
            _mount(INIT_PATH, "bind", opts.init_binary, ["bind", "ro", "nosuid", "nodev"])
        )
    if run.read_only:
        mounts.append(_mount("/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777"]))
    mounts += (
        _mount(dest, "bind", host, ["rbind", "nosuid", "nodev", "noexec"])
        for dest, host in opts.etc_files
    )
    return mounts


def user_mounts(run: RunConfig) -> list[dict[str, Any]]:
    """``-v HOST:CONTAINER[:ro]``: nosuid,nodev binds (§5)."""
    out = []
    for m in run.mounts:
        if not m.target.startswith("/") or ".." in m.target.split("/"):
            msg = f"mount target {m.target!r} must be an absolute path without '..'"
            raise ConfigError(msg, hint="write -v HOST:/abs/path/in/container[:ro]")
        if not m.source.exists():
            msg = f"mount source {m.source} does not exist"
            raise ConfigError(msg, hint="create it first, or fix the path before ':'")
        opts = ["rbind", "nosuid", "nodev"] + (["ro"] if m.read_only else [])
        out.append(_mount(m.target, "bind", str(m.source.resolve()), opts))
    return out


def cdi_edits(edits: CdiEdits) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """CDI device nodes become bind mounts (nosuid,noexec) and devices; libraries ro binds."""
    mounts: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    for node in edits.device_nodes:
        mounts.append(_mount(node.path, "bind", node.host_path, ["bind", "nosuid", "noexec"]))
        devices.append(
            {
                "type": node.type,
                "major": node.major,
                "minor": node.minor,
                "access": node.permissions,
                "allow": True,
            }
        )
    for m in edits.mounts:
        opts = list(m.options) or ["rbind", "nosuid", "nodev", "ro"]
        mounts.append(_mount(m.container_path, m.type or "bind", m.host_path, opts))
    return mounts, devices


def resources(run: RunConfig) -> dict[str, Any]:
    """linux.resources for memory, cpus and pids."""
    res: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if run.memory is not None:
        if run.memory < 6 * 1024 * 1024:
            msg = f"--memory {run.memory} bytes is below the 6 MiB minimum"
            raise ConfigError(msg, hint="give at least --memory 6m")
        res["memory"] = {"limit": run.memory, "swap": run.memory}
    if run.cpus is not None:
        if run.cpus <= 0:
            msg = f"--cpus {run.cpus} must be positive"
            raise ConfigError(msg, hint="for example --cpus 0.5 or --cpus 2")
        period = 100_000
        res["cpu"] = {"quota": int(run.cpus * period), "period": period}
    if run.pids_limit is not None:
        if run.pids_limit <= 0:
            msg = f"--pids-limit {run.pids_limit} must be positive"
            raise ConfigError(msg, hint="for example --pids-limit 256")
        res["pids"] = {"limit": run.pids_limit}
    return res


def check_user(user: str, *, origin: str) -> str:
    """Refuse a numeric uid or gid outside 0..2147483647 in ``user[:group]``.

    ``(uid_t)-1`` means "unchanged" to setresuid: uid 4294967295 would run as root (runc
    refuses the same range). Names are resolved, and checked, in the image by the helper.
    """
    for kind, part in zip(("uid", "gid"), user.split(":", 1), strict=False):
        if part.isdigit() and int(part) > MAX_ID:
            msg = f"{origin} {user!r}: {kind} {part} is outside 0..{MAX_ID}"
            raise ConfigError(msg, hint=f"use a {kind} between 0 and {MAX_ID}")
    return user


def build_config(image: ImageProcess, run: RunConfig, opts: SpecOptions) -> dict[str, Any]:
    """The whole OCI config.json document for one container."""
    args = process_args(image, run.command)
    if run.user is not None:
        user = check_user(run.user, origin="user")
    else:
        user = check_user(image.user, origin="the image's User")
    root_user = _is_root(user)
    cdi = opts.cdi
    env = merge_env(
        (f"PATH={DEFAULT_PATH}", f"HOSTNAME={opts.hostname}"),
        image.env,
        cdi.env if cdi else (),
        (("TERM", os.environ.get("TERM", "xterm")),) if run.tty else (),
        run.env,
    )
    caps = capabilities(opts.cap_profile, root=root_user)
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if run.network == "none":
        namespaces.append({"type": "network"})
    if opts.userns:
        namespaces.append({"type": "user"})
    mounts = default_mounts(run, opts) + user_mounts(run)
    devices: list[dict[str, Any]] = []
    if cdi:
        extra_mounts, devices = cdi_edits(cdi)
        mounts += extra_mounts
    res = resources(run)
    res["devices"] += devices
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": res,
        "maskedPaths": list(MASKED_PATHS),
        "readonlyPaths": list(READONLY_PATHS),
        "seccomp": default_profile(caps["bounding"]),
        "rootfsPropagation": "rslave",
    }
    if opts.cgroups_path:
        linux["cgroupsPath"] = opts.cgroups_path
    if opts.userns:
        linux["uidMappings"] = [_idmap(m) for m in opts.uid_map]
        linux["gidMappings"] = [_idmap(m) for m in opts.gid_map]
    annotations = dict(run.labels)
    if opts.init_binary:
        annotations["org.mlpack.init"] = INIT_PATH
    if user not in ("", "0", "root", "0:0"):
        annotations["org.mlpack.user"] = user  # resolved in the image's /etc/passwd (§2)
    doc: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": run.tty,
            "user": {"uid": 0, "gid": 0},
            "args": list(args),
            "env": list(env),
            "cwd": run.workdir or image.working_dir or "/",
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": opts.rootfs, "readonly": run.read_only},
        "hostname": opts.hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": linux,
    }
    if cdi and cdi.hooks:
        doc["hooks"] = cdi_hooks(cdi)
    return doc


def cdi_hooks(edits: CdiEdits) -> dict[str, list[dict[str, Any]]]:
    """CDI hooks as OCI createContainer hooks, with the scrubbed env of cdi.hook_env.

    They run in the container's mount namespace after its mounts and before pivot_root, where
    nvidia-cdi-hook finds the root filesystem through the bundle's config.json.
    """
    from mlpack.runtime.cdi import hook_env

    hooks: list[dict[str, Any]] = []
    for hook in edits.hooks:
        entry: dict[str, Any] = {
            "path": hook.path,
            "args": list(hook.args) or [hook.path],
            "env": [f"{k}={v}" for k, v in hook_env(hook).items()],
        }
        if hook.timeout:
            entry["timeout"] = hook.timeout
        hooks.append(entry)
    return {"createContainer": hooks}


def _idmap(m: IdMap) -> dict[str, int]:
    return {"containerID": m.container_id, "hostID": m.host_id, "size": m.size}
