"""The cgroup filesystems as /proc shows them to this process: what is mounted where, and which
cgroup the process is in. Shared by the cgroups module and by ``devices.create_cgroup``, which
makes the device cgroup of a run without limits without importing the cgroups module.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def mount_types() -> dict[str, str]:
    """Mount point -> filesystem type, from one read of /proc/self/mountinfo."""
    types: dict[str, str] = {}
    for line in _read("/proc/self/mountinfo").splitlines():
        pre, _, post = line.partition(" - ")
        fields = pre.split()
        if len(fields) > 4 and post:
            types[fields[4]] = post.split()[0]
    return types


def self_path(hierarchy: str) -> str:
    """Return the caller's cgroup path in a hierarchy ("" for cgroup2, else a controller name)."""
    for line in _read("/proc/self/cgroup").splitlines():
        _, ctrls, path = line.split(":", 2)
        if (hierarchy == "" and ctrls == "") or hierarchy in ctrls.split(","):
            return path
    return "/"


def v1_mount(types: dict[str, str], controller: str) -> Path | None:
    """The v1 hierarchy under /sys/fs/cgroup that holds ``controller`` (``cpu,cpuacct``)."""
    for mount, kind in types.items():
        path = Path(mount)
        if kind == "cgroup" and path.parent == ROOT and controller in path.name.split(","):
            return path
    return None


def unified_mount(types: dict[str, str]) -> Path | None:
    """The cgroup2 mount: /sys/fs/cgroup on a cgroup2 host, /sys/fs/cgroup/unified on a hybrid
    one; None without cgroup2.
    """
    return next((m for m in (ROOT, ROOT / "unified") if types.get(str(m)) == "cgroup2"), None)
