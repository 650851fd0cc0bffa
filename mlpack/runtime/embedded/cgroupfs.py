# ruff: noqa: PTH119, PTH120, PTH123 - os.path and open(): pathlib is what this module avoids
"""The cgroup filesystems as /proc shows them to this process: what is mounted where, and which
cgroup the process is in. ``os`` only: the device cgroup of a run without limits is made from
these without importing the cgroups module (pathlib and typing cost ~10 ms of a ~25 ms
container start, BENCHMARKS B1).
"""

from __future__ import annotations

import os

ROOT = "/sys/fs/cgroup"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
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


def v1_mount(types: dict[str, str], controller: str) -> str | None:
    """The v1 hierarchy under /sys/fs/cgroup that holds ``controller`` (``cpu,cpuacct``)."""
    for mount, kind in types.items():
        name = os.path.basename(mount)
        if kind == "cgroup" and os.path.dirname(mount) == ROOT and controller in name.split(","):
            return mount
    return None
