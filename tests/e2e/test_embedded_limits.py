"""Cgroup limits of the embedded runtime on this host's layout (v1, v2 or hybrid; root)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import EmbeddedRuntime, cgroups
from mlpack.runtime.protocol import RunConfig
from tests.e2e.embedded_support import make_rootfs, require_root, run_cli

pytestmark = [pytest.mark.root]

MIB = 1 << 20


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    return make_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture
def runtime(tmp_path: Path) -> EmbeddedRuntime:
    return EmbeddedRuntime(root=tmp_path / "containers")


def mlpack_dirs() -> set[Path]:
    """Every container cgroup mlpack created on this host, in every hierarchy."""
    layout = cgroups.detect()
    found: set[Path] = set()
    roots = [p for _, p in layout.v1] + ([layout.unified] if layout.unified else [])
    for root in roots:
        found.update(p for p in root.rglob("mlpack/*") if p.is_dir())
    return found


def test_memory_hog_is_oom_killed_and_reported(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    hog = "a=x; while true; do a=$a$a; done"
    result = runtime.run(RunConfig(image=str(rootfs), command=("sh", "-c", hog), memory=32 * MIB))
    assert result.exit_code == 137
    assert result.oom_killed
    assert result.memory_limit == 32 * MIB
    assert result.memory_peak is not None
    assert result.memory_peak <= 33 * MIB


def test_cli_prints_out_of_memory(rootfs: Path, tmp_path: Path) -> None:
    done = run_cli(
        ["run", "-m", "32m", str(rootfs), "sh", "-c", "a=x; while true; do a=$a$a; done"],
        tmp_path / "home",
    )
    assert done.returncode == 137
    assert "killed: out of memory (limit 32 MiB)" in done.stderr


def test_normal_run_reports_peak_and_cpu(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    result = runtime.run(RunConfig(image=str(rootfs), command=("true",), memory=64 * MIB))
    assert result.exit_code == 0
    assert not result.oom_killed
    assert result.memory_peak is not None
    assert result.memory_peak > 0
    assert result.cpu_time_us is not None


def test_fork_bomb_is_stopped_by_pids_limit(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    script = "n=0; while [ $n -lt 40 ]; do sleep 30 & n=$((n+1)); done; echo spawned"
    result = runtime.run(RunConfig(image=str(rootfs), command=("sh", "-c", script), pids_limit=16))
    assert result.exit_code != 0  # the shell's fork fails before 40 children exist


def test_cpu_quota_is_observed(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    # Loose bound: a busy loop for ~2 s under a 0.25-CPU quota may use at most ~0.5 s of CPU
    # (plus slack); unlimited it would use ~2 s.
    script = "(while :; do :; done) & sleep 2; kill $!"
    start = time.monotonic()
    result = runtime.run(RunConfig(image=str(rootfs), command=("sh", "-c", script), cpus=0.25))
    wall = time.monotonic() - start
    assert result.exit_code == 0
    assert result.cpu_time_us is not None
    assert result.cpu_time_us / 1e6 <= 0.25 * wall * 1.5 + 0.2


def test_unenforceable_limit_fails(
    rootfs: Path, runtime: EmbeddedRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = cgroups.Layout(version="v2", unified=Path("/nonexistent"))
    monkeypatch.setattr(cgroups, "detect", lambda *a: empty)
    with pytest.raises(ContainerError, match="memory limit cannot be enforced"):
        runtime.run(RunConfig(image=str(rootfs), command=("true",), memory=64 * MIB))


def test_limit_below_usage_floor_is_an_error(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    from mlpack.errors import ConfigError

    with pytest.raises(ConfigError):
        runtime.run(RunConfig(image=str(rootfs), command=("true",), memory=1024))


def test_cgroups_removed_after_exit(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    a = runtime.run(RunConfig(image=str(rootfs), command=("true",), memory=64 * MIB, pids_limit=50))
    b = runtime.run(RunConfig(image=str(rootfs), command=("sh", "-c", "exit 3"), cpus=0.5))
    # Other mlpack runs on this host may come and go meanwhile: look for ours only.
    assert not {p.name for p in mlpack_dirs()} & {a.container_id, b.container_id}


def test_copy_fallback_without_overlayfs(rootfs: Path, tmp_path: Path) -> None:
    runtime = EmbeddedRuntime(root=tmp_path / "containers", overlay=False)
    result = runtime.run(
        RunConfig(
            image=str(rootfs),
            command=(
                "sh",
                "-c",
                "grep ' / ' /proc/self/mountinfo | grep -q overlay && exit 3; echo x > /new",
            ),
        )
    )
    assert result.exit_code == 0
    assert not (rootfs / "new").exists()
    assert not any((tmp_path / "containers").iterdir())


def test_unlimited_run_measured_without_cgroups(rootfs: Path, runtime: EmbeddedRuntime) -> None:
    script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"
    seen: list[set[Path]] = []
    result = runtime.run_with(
        RunConfig(image=str(rootfs), command=("sh", "-c", script)),
        on_start=lambda cid: seen.append({p for p in mlpack_dirs() if p.name == cid}),
    )
    assert result.exit_code == 0
    assert result.cpu_time_us is not None
    assert result.cpu_time_us > 0
    assert result.memory_peak is not None
    assert result.memory_peak > 0
    # While it ran, its one cgroup was the one its device rules need (§6): none for limits.
    layout = cgroups.detect()
    (made,) = seen
    assert len(made) == 1
    assert made.pop().is_relative_to(layout.v1_mount("devices") or layout.unified or "/nowhere")


def test_account_measures_unlimited_runs_in_cgroups(rootfs: Path, tmp_path: Path) -> None:
    runtime = EmbeddedRuntime(root=tmp_path / "containers", account=True)
    result = runtime.run(RunConfig(image=str(rootfs), command=("true",)))
    assert result.exit_code == 0
    assert result.memory_peak is not None
    assert result.cpu_time_us is not None
