"""``mlpack doctor``: check what this host offers the runtimes, one finding per line with the fix.

Each probe is cheap and side-effect free: namespace and overlay probes run the container helper
itself in its probe mode (the calling process may have threads, and the kernel refuses
``unshare(CLONE_NEWUSER)`` in a threaded process; and a probe of anything else would not say
whether containers start), and nothing outside a temporary directory is touched.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from mlpack.runtime import cdi
from mlpack.runtime.dockersock import probe_socket

Status = Literal["ok", "warn", "fail", "info"]
PR_GET_SECCOMP: Final = 21


@dataclass(frozen=True, kw_only=True)
class Check:
    """One finding: how it stands, what was found, and what to do about it."""

    name: str
    status: Status
    summary: str
    fix: str = ""
    required: bool = False  # the default (embedded) runtime cannot work without it


@dataclass(frozen=True, kw_only=True)
class DoctorReport:
    """All findings, in the order they were checked."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """Return False when something the default runtime needs is missing."""
        return not any(c.status == "fail" and c.required for c in self.checks)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _probe(mode: str, base: str | None = None) -> tuple[bool, str]:
    """Run the real container helper up to its namespaces (and an overlay mount in ``base``).

    ``userns``: a user namespace mapping only the caller, as a rootless container gets it;
    ``overlay-userns``: plus a mount namespace and overlayfs with ``userxattr``;
    ``overlay-root``: a mount namespace and overlayfs, no user namespace.
    """
    from mlpack.errors import ContainerError
    from mlpack.runtime.embedded.launcher import Overlay, probe

    spaces = [{"type": "mount"}] if mode.startswith("overlay") else []
    linux: dict[str, object] = {"namespaces": spaces}
    if mode != "overlay-root":
        spaces.append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    overlay = None
    if base is not None:
        overlay = Overlay(lower=(f"{base}/l",), upper=f"{base}/u", work=f"{base}/w")
    try:
        probe({"linux": linux}, overlay=overlay, mountpoint=f"{base}/m" if base else "/")
    except ContainerError as exc:
        return False, exc.message.removeprefix("container setup failed: ")
    return True, ""


def check_userns() -> Check:
    """User namespaces: the sysctls, then a real ``unshare(CLONE_NEWUSER)`` in a child."""
    rootless = os.geteuid() != 0
    limit = _read("/proc/sys/user/max_user_namespaces")
    clone = _read("/proc/sys/kernel/unprivileged_userns_clone")  # Debian/Ubuntu only
    if not Path("/proc/self/ns/user").exists():
        return Check(
            name="user namespaces",
            status="fail",
            summary="this kernel has no user namespaces (CONFIG_USER_NS)",
            fix="use a kernel with CONFIG_USER_NS, or `--runtime docker`",
            required=True,
        )
    if limit == "0":
        return Check(
            name="user namespaces",
            status="fail" if rootless else "warn",
            summary="disabled: user.max_user_namespaces = 0",
            fix="sudo sysctl -w user.max_user_namespaces=15000 (persist in /etc/sysctl.d/)",
            required=rootless,
        )
    if clone == "0" and rootless:
        return Check(
            name="user namespaces",
            status="fail",
            summary="unprivileged user namespaces are off (kernel.unprivileged_userns_clone = 0)",
            fix="sudo sysctl -w kernel.unprivileged_userns_clone=1",
            required=True,
        )
    ok, why = _probe("userns")
    if not ok:
        return Check(
            name="user namespaces",
            status="fail" if rootless else "warn",
            summary=f"unshare(CLONE_NEWUSER) failed in a child: {why}",
            fix="check AppArmor's apparmor_restrict_unprivileged_userns and any seccomp policy "
            "on this session (containers in containers usually block it)",
            required=rootless,
        )
    return Check(
        name="user namespaces",
        status="ok",
        summary=f"unshare works (max_user_namespaces={limit or '?'})",
    )


def check_overlay() -> Check:
    """Overlayfs: known to the kernel, mountable here, and in a user namespace (rootless)."""
    filesystems = _read("/proc/filesystems") or ""
    if "overlay" not in filesystems.split():
        _probe_load = shutil.which("modprobe")
        return Check(
            name="overlayfs",
            status="warn",
            summary="overlay is not in /proc/filesystems: the runtime copies the rootfs instead "
            "(slower starts, more disk)",
            fix="sudo modprobe overlay" if _probe_load else "load the overlay kernel module",
        )
    results = []
    modes = ["overlay-userns"] + (["overlay-root"] if os.geteuid() == 0 else [])
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="mlpack-doctor-") as tmp:
            for d in ("l", "u", "w", "m"):
                Path(tmp, d).mkdir()
            results.append((mode, *_probe(mode, tmp)))
    userns_ok = results[0][1]
    if os.geteuid() == 0 and results[-1][1]:
        extra = (
            "and in a user namespace"
            if userns_ok
            else f"but not in a user namespace ({results[0][2]})"
        )
        return Check(name="overlayfs", status="ok", summary=f"mountable as root {extra}")
    if userns_ok:
        return Check(name="overlayfs", status="ok", summary="mountable in a user namespace")
    return Check(
        name="overlayfs",
        status="warn",
        summary=f"cannot mount overlay here ({results[-1][2]}): the runtime copies the rootfs",
        fix="rootless overlay needs Linux >= 5.11 (userxattr); check `uname -r`",
    )


def _cgroup_mounts() -> list[tuple[str, str, str]]:
    text = _read("/proc/self/mounts") or ""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] in {"cgroup", "cgroup2"}:
            out.append((parts[1], parts[2], parts[3]))
    return out


def check_cgroups() -> Check:
    """Cgroup layout (v1, v2, hybrid) and which limit controllers this user can write."""
    mounts = _cgroup_mounts()
    v2 = [m for m in mounts if m[1] == "cgroup2"]
    v1 = [m for m in mounts if m[1] == "cgroup"]
    if any(m[0] == "/sys/fs/cgroup" for m in v2):
        layout = "v2"
    elif v1 and v2:
        layout = "hybrid"
    elif v1:
        layout = "v1"
    else:
        return Check(
            name="cgroups",
            status="warn",
            summary="no cgroup filesystem mounted: --memory/--cpus/--pids-limit cannot be enforced",
            fix="mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)",
        )
    usable: dict[str, bool] = {}
    if layout == "v2":
        root = Path("/sys/fs/cgroup")
        self_path = next(
            (
                ln.split(":", 2)[2]
                for ln in (_read("/proc/self/cgroup") or "").splitlines()
                if ln.startswith("0::")
            ),
            "/",
        )
        own = root / self_path.lstrip("/")
        controllers = (_read(str(root / "cgroup.controllers")) or "").split()
        delegated = (_read(str(own / "cgroup.controllers")) or "").split()
        for ctrl in ("memory", "cpu", "pids"):
            usable[ctrl] = ctrl in controllers and (
                os.geteuid() == 0 or (ctrl in delegated and os.access(own, os.W_OK))
            )
    else:
        for ctrl in ("memory", "cpu", "pids"):
            mount = next((m for m in v1 if ctrl in m[2].split(",")), None)
            usable[ctrl] = mount is not None and os.access(mount[0], os.W_OK)
    have = [c for c, ok in usable.items() if ok]
    missing = [c for c, ok in usable.items() if not ok]
    summary = f"{layout} layout; writable controllers: {', '.join(have) or 'none'}"
    if not missing:
        return Check(name="cgroups", status="ok", summary=summary)
    fix = (
        "run as root, or start mlpack in a systemd scope with delegation: "
        "`systemd-run --user --scope -p Delegate=yes mlpack run ...`"
    )
    return Check(
        name="cgroups",
        status="warn",
        summary=f"{summary}; not usable: {', '.join(missing)} (limits on them are refused)",
        fix=fix,
    )


def check_seccomp() -> Check:
    """Seccomp filters: the kernel field in /proc/self/status and ``prctl(PR_GET_SECCOMP)``."""
    status = _read("/proc/self/status") or ""
    field = next(
        (ln.split(":", 1)[1].strip() for ln in status.splitlines() if ln.startswith("Seccomp:")),
        None,
    )
    libc = ctypes.CDLL(None, use_errno=True)
    mode = libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0)
    if field is None and mode < 0:
        return Check(
            name="seccomp",
            status="fail",
            summary="this kernel has no seccomp (CONFIG_SECCOMP_FILTER)",
            fix="use a kernel with CONFIG_SECCOMP_FILTER=y (every distribution kernel has it)",
            required=True,
        )
    already = " (this process is already filtered)" if field not in {None, "0"} else ""
    return Check(name="seccomp", status="ok", summary=f"filters supported{already}")


def check_idmap_tools() -> Check:
    """``newuidmap``/``newgidmap`` and a subordinate range, for rootless multi-user images."""
    tools = [t for t in ("newuidmap", "newgidmap") if shutil.which(t) is None]
    if os.geteuid() == 0:
        return Check(
            name="subordinate ids",
            status="info",
            summary="running as root: id ranges are mapped directly",
        )
    if tools:
        return Check(
            name="subordinate ids",
            status="warn",
            summary=f"{' and '.join(tools)} missing: rootless containers map only your own uid",
            fix="sudo apt-get install uidmap (Debian/Ubuntu) or shadow-utils",
        )
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    entries = (_read("/etc/subuid") or "").splitlines()
    if not any(e.split(":")[0] in {user, str(os.geteuid())} for e in entries):
        return Check(
            name="subordinate ids",
            status="warn",
            summary=f"no /etc/subuid entry for {user}: images with several users cannot run "
            "rootless",
            fix=f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}",
        )
    return Check(name="subordinate ids", status="ok", summary=f"newuidmap and a range for {user}")


def check_docker() -> Check:
    """The Docker engine socket (only the ``--runtime docker`` backend needs it)."""
    status = probe_socket()
    if status.state == "ok":
        api = f" (API {status.api_version})" if status.api_version else ""
        return Check(name="docker", status="ok", summary=f"{status.message}{api}")
    if status.state == "remote":
        return Check(name="docker", status="info", summary=status.message)
    return Check(
        name="docker",
        status="warn",
        summary=f"{status.message} (only --runtime docker needs it)",
        fix=status.hint,
    )


def check_gpu(
    *, spec_dirs: tuple[Path, ...] | None = None, driver_file: Path = cdi.DRIVER_VERSION_FILE
) -> Check:
    """NVIDIA driver version and the CDI specs/devices ``--gpus`` would use."""
    version = cdi.driver_version(driver_file)
    try:
        devices = cdi.devices_of_kind(cdi.GPU_KIND, spec_dirs=spec_dirs)
    except Exception as exc:  # noqa: BLE001 - a broken spec is a finding, not a crash
        return Check(name="gpu (CDI)", status="warn", summary=str(exc), fix=cdi.GENERATE_HINT)
    specs = sorted({str(d.spec_path) for d in devices})
    if version is None and not devices:
        return Check(name="gpu (CDI)", status="info", summary="no NVIDIA driver and no CDI spec")
    if not devices:
        return Check(
            name="gpu (CDI)",
            status="warn",
            summary=f"NVIDIA driver {version} but no CDI spec for {cdi.GPU_KIND}: --gpus fails",
            fix=cdi.GENERATE_HINT,
        )
    names = ", ".join(d.name for d in devices)
    driver = f"driver {version}" if version else "no driver loaded (the spec may be stale)"
    return Check(
        name="gpu (CDI)",
        status="ok" if version else "warn",
        summary=f"{driver}; devices {names} in {', '.join(specs)}",
        fix="" if version else "load the NVIDIA driver, then regenerate the spec",
    )


def doctor() -> DoctorReport:
    """Run every check; cheap enough to run before a first ``mlpack run``."""
    return DoctorReport(
        checks=(
            check_userns(),
            check_overlay(),
            check_cgroups(),
            check_seccomp(),
            check_idmap_tools(),
            check_docker(),
            check_gpu(),
        )
    )
