"""Cgroup layout decisions, limits and their errors; real cgroups as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import cgroups
from mlpack.runtime.embedded.cgroups import Layout, Limits
from tests.conftest import require

HYBRID = Layout(
    version="hybrid",
    unified=Path("/sys/fs/cgroup/unified"),
    v1=(("memory", Path("/m")), ("cpu", Path("/c")), ("cpuacct", Path("/c")), ("pids", Path("/p"))),
    v2_controllers=frozenset({"hugetlb"}),
)
V2 = Layout(
    version="v2",
    unified=Path("/sys/fs/cgroup"),
    v2_controllers=frozenset({"memory", "pids", "cpu"}),
)


def test_backend_prefers_v2_then_v1() -> None:
    assert V2.backend("memory") == "v2"
    assert HYBRID.backend("memory") == "v1"
    assert HYBRID.backend("pids") == "v1"
    assert Layout(version="none").backend("cpu") is None
    v2_partial = Layout(version="v2", unified=Path("/x"), v2_controllers=frozenset({"pids"}))
    assert v2_partial.backend("memory") is None


def test_limits_wanted() -> None:
    assert Limits().wanted() == ()
    assert Limits(memory=1, cpus=0.5, pids=3).wanted() == ("memory", "cpu", "pids")


@pytest.mark.parametrize("limits", [Limits(memory=64 << 20), Limits(cpus=1), Limits(pids=10)])
def test_unenforceable_limit_is_an_error(limits: Limits) -> None:
    with pytest.raises(ContainerError, match="cannot be enforced"):
        cgroups.create(Layout(version="none"), "x", limits)


def test_detect_matches_mounts() -> None:
    layout = cgroups.detect()
    mounts = Path("/proc/self/mounts").read_text()
    if " /sys/fs/cgroup cgroup2 " in mounts:
        assert layout.version == "v2"
    elif " /sys/fs/cgroup/unified cgroup2 " in mounts:
        assert layout.version == "hybrid"
        assert layout.unified == Path("/sys/fs/cgroup/unified")
    elif " /sys/fs/cgroup " in mounts:
        assert layout.version == "v1"


@pytest.mark.root
def test_real_cgroup_limits_accounting_and_removal() -> None:
    require(os.geteuid() == 0, "root")
    layout = cgroups.detect()
    require(layout.version != "none", "a cgroup hierarchy")
    limits = Limits(memory=64 << 20, cpus=0.5, pids=32)
    group = cgroups.create(layout, f"unit-{os.getpid()}", limits)
    try:
        assert group.dirs
        assert all(d.is_dir() for d in group.dirs)
        if layout.backend("memory") == "v1":
            mem = dict(group.v1)["memory"]
            assert int((mem / "memory.limit_in_bytes").read_text()) == 64 << 20
        if layout.backend("pids") == "v1":
            assert (dict(group.v1)["pids"] / "pids.max").read_text().strip() == "32"
        if layout.backend("cpu") == "v1":
            assert int((dict(group.v1)["cpu"] / "cpu.cfs_quota_us").read_text()) == 50_000
        assert group.oom_kills() == 0
        assert group.pids() == ()
    finally:
        group.remove()
    assert not any(d.exists() for d in group.dirs)


def test_rootless_without_limits_needs_no_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    group = cgroups.create(HYBRID, "x", Limits())
    assert group.dirs == ()
    with pytest.raises(ContainerError, match="rootless"):
        cgroups.create(HYBRID, "x", Limits(memory=64 << 20))


@pytest.mark.parametrize(
    ("errno_", "hint"), [(22, cgroups.HINT_VALUE), (13, cgroups.HINT_ROOT), (30, cgroups.HINT_ROOT)]
)
def test_a_refused_value_is_not_blamed_on_rootless_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, errno_: int, hint: str
) -> None:
    def refuse(self: Path, data: str) -> int:
        raise OSError(errno_, os.strerror(errno_))

    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(ContainerError) as err:
        cgroups._write(tmp_path / "cpu.max", "10 100000")
    assert err.value.hint == hint


@pytest.mark.parametrize(
    ("swap", "swap_max"), [(None, "0"), (96 << 20, str(32 << 20)), (-1, "max")]
)
def test_v2_files_take_runcs_conversions(tmp_path: Path, swap: int | None, swap_max: str) -> None:
    """§6 v2: memory.swap.max is OCI's memory+swap minus memory (-1: max), cpu.max is
    "<quota> <period>", cpu.weight is runc's 2..262144 -> 1..10000 mapping of the shares."""
    (tmp_path / "memory.swap.max").write_text("max")
    group = cgroups.Cgroup(name="x", layout=V2, v2=tmp_path)
    limits = Limits(memory=64 << 20, memory_swap=swap, cpus=0.5, cpu_shares=1024)
    cgroups._apply_memory(group, limits)
    cgroups._apply_cpu(group, limits)
    assert (tmp_path / "memory.max").read_text() == str(64 << 20)
    assert (tmp_path / "memory.swap.max").read_text() == swap_max
    assert (tmp_path / "cpu.max").read_text() == "50000 100000"
    assert (tmp_path / "cpu.weight").read_text() == "39"
