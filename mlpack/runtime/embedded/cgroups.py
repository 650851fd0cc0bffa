"""Cgroups v1, v2 and hybrid: detection, limits, OOM and usage accounting, removal."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import devices as dev
from mlpack.runtime.embedded.cgroupfs import mount_types, self_path

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Literal

    Version = Literal["v1", "v2", "hybrid", "none"]
    Controller = Literal["memory", "cpu", "pids", "cpuset"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
HINT_ROOT = (
    "run as root, or drop the limit; rootless limits need a cgroup v2 host with a delegated "
    "scope (systemd-run --user --scope -p Delegate=yes)"
)
HINT_VALUE = "the kernel refused the value: raise the limit (e.g. --cpus 0.01 or more)"


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where each controller lives on this host."""

    version: Version
    unified: Path | None = None  # the cgroup2 mount (the root on v2, .../unified on hybrid)
    v1: tuple[tuple[str, Path], ...] = ()  # controller -> v1 mount
    v2_controllers: frozenset[str] = frozenset()

    def v1_mount(self, controller: str) -> Path | None:
        """The v1 hierarchy holding ``controller``, if any."""
        return next((p for c, p in self.v1 if c == controller), None)

    def backend(self, controller: Controller) -> Literal["v1", "v2"] | None:
        """Which hierarchy enforces ``controller``: v2 preferred, else v1, else none."""
        if controller in self.v2_controllers:
            return "v2"
        if self.v1_mount(controller) is not None:
            return "v1"
        return None


def detect(root: Path = CGROUP_ROOT) -> Layout:
    """Classify the host's layout by the filesystem types mounted under ``root`` (§6)."""
    types = mount_types()
    kind = types.get(str(root))
    if kind == "cgroup2":
        v2_ctrls = frozenset(_read(root / "cgroup.controllers").split())
        return Layout(version="v2", unified=root, v2_controllers=v2_ctrls)
    if kind != "tmpfs":
        return Layout(version="none")
    v1: list[tuple[str, Path]] = []
    unified = None
    with contextlib.suppress(OSError):
        for entry in sorted(root.iterdir()):
            t = types.get(str(entry))
            if t == "cgroup":
                v1.extend((c, entry) for c in entry.name.split(",") if c)
            elif t == "cgroup2":
                unified = entry
    if unified is None:
        return Layout(version="v1", v1=tuple(v1))
    # On hybrid hosts controllers bound to v1 cannot be used in the unified tree.
    ctrls = frozenset(_read(unified / "cgroup.controllers").split())
    return Layout(version="hybrid", unified=unified, v1=tuple(v1), v2_controllers=ctrls)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        msg = f"cannot write {value!r} to {path}: {exc.strerror}"
        # EINVAL is about the value (a CPU quota under 1 ms), not about who runs mlpack.
        hint = HINT_VALUE if exc.errno == errno.EINVAL else HINT_ROOT
        raise ContainerError(msg, hint=hint) from exc


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Requested limits; None means unlimited."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # OCI: memory + swap; None: no swap; -1: unlimited swap
    memory_reservation: int | None = None
    kernel_tcp: int | None = None  # v1 only; linux.resources.memory.kernel is ignored, as runc
    swappiness: int | None = None
    disable_oom_killer: bool = False
    cpus: float | None = None
    cpu_period: int = 100_000
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids: int | None = None
    # Device rules (devices.rules_of): applied whenever root runs a container, limits or not.
    devices: tuple[dev.Rule, ...] = ()

    def wanted(self) -> tuple[Controller, ...]:
        """Controllers these limits need."""
        out: list[Controller] = []
        if (
            self.memory is not None
            or self.memory_reservation is not None
            or self.kernel_tcp is not None
            or self.swappiness is not None
            or self.disable_oom_killer
        ):
            out.append("memory")
        if self.cpus is not None or self.cpu_shares is not None:
            out.append("cpu")
        if self.pids is not None:
            out.append("pids")
        if self.cpuset_cpus or self.cpuset_mems:
            out.append("cpuset")
        return tuple(out)


@dataclass(frozen=True, kw_only=True)
class Cgroup:
    """One container's cgroup directories (one per v1 hierarchy used, plus the v2 one)."""

    name: str
    layout: Layout
    v2: Path | None = None
    v1: tuple[tuple[str, Path], ...] = ()  # controller -> directory
    limits: Limits = field(default_factory=Limits)

    @property
    def dirs(self) -> tuple[Path, ...]:
        """Every directory this container owns, deepest hierarchy order irrelevant."""
        seen: list[Path] = [p for _, p in self.v1]
        if self.v2 is not None:
            seen.append(self.v2)
        return tuple(dict.fromkeys(seen))

    def procs_files(self) -> tuple[str, ...]:
        """The ``cgroup.procs`` files the supervisor moves pid 1 into (``join_cgroups``)."""
        return tuple(str(d / "cgroup.procs") for d in self.dirs)

    def _v1(self, controller: str) -> Path | None:
        return next((p for c, p in self.v1 if c == controller), None)

    def oom_kills(self) -> int:
        """How many processes the kernel OOM-killed in this cgroup."""
        if self.limits.memory is None:
            return 0
        if self.layout.backend("memory") == "v2" and self.v2 is not None:
            text = _read(self.v2 / "memory.events")
        else:
            mem = self._v1("memory")
            text = _read(mem / "memory.oom_control") if mem else ""
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def memory_peak(self) -> int | None:
        """Peak memory use in bytes (v2 ``memory.peak``, v1 ``max_usage_in_bytes``)."""
        if self.layout.backend("memory") == "v2" and self.v2 is not None:
            text = _read(self.v2 / "memory.peak")
        else:
            mem = self._v1("memory")
            text = _read(mem / "memory.max_usage_in_bytes") if mem else ""
        return int(text) if text.strip().isdigit() else None

    def cpu_time_us(self) -> int | None:
        """CPU time used, in microseconds (v2 ``cpu.stat`` usage_usec, v1 ``cpuacct.usage``)."""
        if self.v2 is not None:
            for line in _read(self.v2 / "cpu.stat").splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    return int(value)
        acct = self._v1("cpuacct")
        text = _read(acct / "cpuacct.usage") if acct else ""
        return int(text) // 1000 if text.strip().isdigit() else None

    def pids(self) -> tuple[int, ...]:
        """Every process still in the container's cgroups."""
        found: set[int] = set()
        for d in self.dirs:
            found.update(int(p) for p in _read(d / "cgroup.procs").split())
        return tuple(sorted(found))

    def kill(self) -> None:
        """SIGKILL everything inside (``cgroup.kill`` on v2, else each pid)."""
        if self.v2 is not None and (self.v2 / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.v2 / "cgroup.kill").write_text("1")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, *, attempts: int = 50) -> None:
        """Kill any straggler and rmdir every directory (retrying while the kernel drains)."""
        for _ in range(attempts):
            left = [d for d in self.dirs if d.exists()]
            if not left:
                return
            for d in left:
                with contextlib.suppress(FileNotFoundError, OSError):
                    d.rmdir()
            if any(d.exists() for d in left):
                self.kill()
                time.sleep(0.02)
        remaining = [str(d) for d in self.dirs if d.exists()]
        if remaining:
            msg = f"cgroup directories could not be removed: {', '.join(remaining)}"
            raise ContainerError(msg, hint="check for processes left in them (cat cgroup.procs)")


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create cgroup {path}: {exc.strerror}"
        raise ContainerError(msg, hint=HINT_ROOT) from exc


def _enable_v2(unified: Path, parent_rel: str, controllers: tuple[str, ...]) -> None:
    """Enable ``controllers`` in subtree_control from the v2 root down to the parent."""
    if not controllers:
        return
    cur = unified
    for part in parent_rel.strip("/").split("/"):
        enabled = set(_read(cur / "cgroup.subtree_control").split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            _write(cur / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
        if not part:
            break
        cur = cur / part


def _v1_dir(mount: Path, ctrl: str, name: str, path: str | None) -> Path:
    """The container's directory in one v1 hierarchy: OCI cgroupsPath (absolute: from the
    hierarchy's root; relative: under ours), else <ours>/mlpack/<id>.
    """
    own = self_path(ctrl).strip("/")
    if path:
        return mount / path.strip("/") if path.startswith("/") else mount / own / path
    return mount / own / "mlpack" / name


def _mkdir_cpuset(mount: Path, d: Path) -> None:
    """Create a v1 cpuset directory level by level; a new level inherits its parent's cpus and
    mems (empty ones would refuse every process).
    """
    cur = mount
    for part in d.relative_to(mount).parts:
        nxt = cur / part
        if not nxt.exists():
            _mkdir(nxt)
            for key in ("cpuset.cpus", "cpuset.mems"):
                if not _read(nxt / key).strip():
                    _write(nxt / key, _read(cur / key).strip())
        cur = nxt


def create(
    layout: Layout, name: str, limits: Limits, *, account: bool = True, path: str | None = None
) -> Cgroup:
    """Create the container's cgroups under the caller's own and apply ``limits``.

    An unenforceable requested limit is an error: a limit is never reported that is not
    enforced (§6). With ``account``, the memory and cpuacct hierarchies are joined even
    without a limit, so peak memory and CPU time can be reported for the whole container.
    Without limits or ``account`` no cgroup is made at all (joining one costs an RCU grace
    period, ~8 ms).
    """
    for ctrl in limits.wanted():
        if layout.backend(ctrl) is None:
            msg = f"the {ctrl} limit cannot be enforced: no {ctrl} cgroup controller is usable here"
            raise ContainerError(msg, hint=HINT_ROOT)
    if os.geteuid() != 0:
        if limits.wanted():
            msg = "resource limits need cgroups, which rootless mode cannot write on this host"
            raise ContainerError(msg, hint=HINT_ROOT)
        return Cgroup(name=name, layout=layout, limits=limits)
    if not limits.wanted() and not account and not limits.devices:
        return Cgroup(name=name, layout=layout, limits=limits)
    v1_dirs = _make_v1(layout, name, limits, account=account, path=path)
    v2_dir = _make_v2(layout, name, limits, account=account, path=path)
    group = Cgroup(name=name, layout=layout, v2=v2_dir, v1=v1_dirs, limits=limits)
    try:
        _apply(group, limits)
    except BaseException:
        with contextlib.suppress(ContainerError):
            group.remove()
        raise
    return group


def _make_v1(
    layout: Layout, name: str, limits: Limits, *, account: bool, path: str | None
) -> tuple[tuple[str, Path], ...]:
    """The v1 directories the limits, device rules and accounting need: (controller, dir)."""
    wanted_v1: list[str] = [c for c in limits.wanted() if layout.backend(c) == "v1"]
    if limits.devices and layout.v1_mount("devices") is not None:
        wanted_v1.append("devices")
    if account:
        # Each cgroup.procs write costs an RCU grace period, so join only what is read back:
        # v1 memory for the peak, and cpuacct only when there is no cgroup2 cpu.stat.
        acct = ("memory",) if layout.unified is not None else ("memory", "cpuacct")
        wanted_v1 += [c for c in acct if layout.v1_mount(c) is not None and c not in wanted_v1]
    v1_dirs: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for v1_ctrl in wanted_v1:
        mount = layout.v1_mount(v1_ctrl)
        if mount is None or mount in seen:
            continue
        seen.add(mount)
        d = _v1_dir(mount, v1_ctrl, name, path)
        if "cpuset" in mount.name.split(","):
            _mkdir_cpuset(mount, d)
        else:
            _mkdir(d)
        # Joint hierarchies (cpu,cpuacct) share one directory; list every controller in it.
        v1_dirs.extend((c, d) for c in mount.name.split(","))
    return tuple(v1_dirs)


def _make_v2(
    layout: Layout, name: str, limits: Limits, *, account: bool, path: str | None
) -> Path | None:
    """The cgroup2 directory, with its controllers enabled above it, where one is needed.

    Device rules alone need it only where no v1 devices hierarchy holds them.
    """
    if layout.unified is None or not (
        limits.wanted() or account or layout.v1_mount("devices") is None
    ):
        return None
    v2_ctrls = tuple(c for c in limits.wanted() if layout.backend(c) == "v2")
    if account and layout.backend("memory") == "v2" and "memory" not in v2_ctrls:
        v2_ctrls += ("memory",)
    # A dedicated subtree under the root: v2 forbids processes in inner cgroups.
    own = "" if layout.version == "v2" else self_path("").strip("/")
    rel = f"{own}/mlpack/{name}".lstrip("/")
    if path:
        rel = path.strip("/") if path.startswith("/") else f"{own}/{path}".lstrip("/")
    parent_rel = rel.rpartition("/")[0]
    _mkdir(layout.unified / parent_rel)
    if v2_ctrls:
        _enable_v2(layout.unified, parent_rel, v2_ctrls)
    v2_dir = layout.unified / rel
    _mkdir(v2_dir)
    return v2_dir


def _apply(group: Cgroup, limits: Limits) -> None:
    """Write the limits, each to the hierarchy that enforces it, reading back what matters."""
    if limits.devices:
        _apply_devices(group, limits.devices)
    if "memory" in limits.wanted():
        _apply_memory(group, limits)
    if "cpu" in limits.wanted():
        _apply_cpu(group, limits)
    if limits.pids is not None:
        if group.layout.backend("pids") == "v2":
            assert group.v2 is not None
            _write(group.v2 / "pids.max", str(limits.pids))
        else:
            pids = group._v1("pids")
            assert pids is not None
            _write(pids / "pids.max", str(limits.pids))
            _check(pids / "pids.max", limits.pids)
    if "cpuset" in limits.wanted():
        d = group.v2 if group.layout.backend("cpuset") == "v2" else group._v1("cpuset")
        assert d is not None
        if limits.cpuset_cpus:
            _write(d / "cpuset.cpus", limits.cpuset_cpus)
        if limits.cpuset_mems:
            _write(d / "cpuset.mems", limits.cpuset_mems)


def _apply_devices(group: Cgroup, rules: tuple[dev.Rule, ...]) -> None:
    """Deny all, then allow ``rules``: v1 devices files, else a BPF filter on the v2 directory."""
    v1 = group._v1("devices")
    if v1 is not None:
        dev.apply_v1(v1, rules)
    elif group.v2 is not None:
        dev.attach_v2(group.v2, rules)
    else:
        msg = "device rules cannot be enforced: no devices cgroup and no cgroup2 mount"
        raise ContainerError(
            msg, hint="mount cgroup2 at /sys/fs/cgroup, or the v1 devices controller"
        )


def _apply_memory(group: Cgroup, limits: Limits) -> None:
    if group.layout.backend("memory") == "v2":
        d = group.v2
        assert d is not None
        if limits.memory is not None:
            _write(d / "memory.max", str(limits.memory))
            _check(d / "memory.max", limits.memory)
            if (d / "memory.swap.max").exists():
                swap = limits.memory_swap
                value = (
                    "max" if swap == -1 else str(max((swap or limits.memory) - limits.memory, 0))
                )
                _write(d / "memory.swap.max", value)
        if limits.memory_reservation is not None:
            _write(d / "memory.low", str(limits.memory_reservation))
        return
    mem = group._v1("memory")
    assert mem is not None
    if limits.memory is not None:
        # memsw must stay >= limit at every step: in a fresh cgroup both are unlimited, so the
        # limit goes first, then memsw (= limit without swap).
        _write(mem / "memory.limit_in_bytes", str(limits.memory))
        if (mem / "memory.memsw.limit_in_bytes").exists():
            swap = limits.memory_swap
            _write(mem / "memory.memsw.limit_in_bytes", str(swap if swap else limits.memory))
        _check(mem / "memory.limit_in_bytes", limits.memory)
    if limits.memory_reservation is not None:
        _write(mem / "memory.soft_limit_in_bytes", str(limits.memory_reservation))
    if limits.kernel_tcp is not None:
        _write(mem / "memory.kmem.tcp.limit_in_bytes", str(limits.kernel_tcp))
        _check(mem / "memory.kmem.tcp.limit_in_bytes", limits.kernel_tcp)
    if limits.swappiness is not None:
        _write(mem / "memory.swappiness", str(limits.swappiness))
    if limits.disable_oom_killer:
        _write(mem / "memory.oom_control", "1")


def _apply_cpu(group: Cgroup, limits: Limits) -> None:
    quota = int(limits.cpus * limits.cpu_period) if limits.cpus is not None else None
    if group.layout.backend("cpu") == "v2":
        d = group.v2
        assert d is not None
        if quota is not None:
            _write(d / "cpu.max", f"{quota} {limits.cpu_period}")
        if limits.cpu_shares is not None:
            # runc's ConvertCPUSharesToCgroupV2Value: 2..262144 -> 1..10000.
            weight = 1 + ((limits.cpu_shares - 2) * 9999) // 262142
            _write(d / "cpu.weight", str(weight))
        return
    cpu = group._v1("cpu")
    assert cpu is not None
    if limits.cpu_shares is not None:
        _write(cpu / "cpu.shares", str(limits.cpu_shares))
    if quota is not None:
        _write(cpu / "cpu.cfs_period_us", str(limits.cpu_period))
        _write(cpu / "cpu.cfs_quota_us", str(quota))
        _check(cpu / "cpu.cfs_quota_us", quota)


def _check(path: Path, want: int) -> None:
    """Read the limit back: the kernel rounds memory to pages, anything else is a failure."""
    got = _read(path).strip()
    if not got.isdigit() or abs(int(got) - want) >= 4096 * 16:
        msg = f"{path} reads {got!r} after writing {want}: the limit is not enforced"
        raise ContainerError(msg, hint="a parent cgroup may cap it lower; check its limits")
