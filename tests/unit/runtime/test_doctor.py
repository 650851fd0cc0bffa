"""``mlpack doctor``: real probes on this host, fixture CDI specs, and the exit-code rule."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from mlpack.cli.app import run_app
from mlpack.runtime import doctor as doc
from tests.conftest import require
from tests.unprivileged import run_as_nobody

REPO = Path(__file__).resolve().parents[3]
NAMES = (
    "user namespaces",
    "overlayfs",
    "cgroups",
    "seccomp",
    "subordinate ids",
    "docker",
    "gpu (CDI)",
)


def test_every_check_reports_one_line_with_a_status() -> None:
    report = doc.doctor()
    assert tuple(c.name for c in report.checks) == NAMES
    for check in report.checks:
        assert check.status in {"ok", "warn", "fail", "info"}
        assert check.summary
        assert "\n" not in check.summary
        if check.status in {"warn", "fail"}:
            assert check.fix, check
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.checks[0].status = "ok"  # type: ignore[misc]


def test_kernel_features_of_this_host_are_found() -> None:
    # Every supported CI host (Debian 12, kernel 6.1) has these.
    assert doc.check_seccomp().status == "ok"
    userns = doc.check_userns()
    assert userns.status == "ok", userns
    assert "unshare works" in userns.summary
    cgroups = doc.check_cgroups()
    assert cgroups.summary.split()[0] in {"v1", "v2", "hybrid"}


def test_cgroup_layout_matches_the_mount_table() -> None:
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    v2_root = any(" /sys/fs/cgroup cgroup2 " in m for m in mounts)
    v1 = any(" cgroup " in m for m in mounts)
    expected = (
        "v2" if v2_root else ("hybrid" if v1 and any(" cgroup2 " in m for m in mounts) else "v1")
    )
    assert doc.check_cgroups().summary.startswith(f"{expected} layout")


def test_as_root_overlay_and_cgroups_are_usable() -> None:
    require(os.geteuid() == 0, "root")
    overlay = doc.check_overlay()
    assert overlay.status == "ok", overlay
    cgroups = doc.check_cgroups()
    assert cgroups.status == "ok", cgroups
    assert "memory" in cgroups.summary


def test_an_unprivileged_user_sees_what_it_cannot_do() -> None:
    require(os.geteuid() == 0, "root (to drop to an unprivileged user)")
    code = (
        "import json; from mlpack.runtime.doctor import doctor; r = doctor(); "
        "print(json.dumps([[c.name, c.status, c.summary, c.fix, c.required] for c in r.checks]))"
    )
    proc = run_as_nobody(code)
    checks = {
        name: (status, summary, fix) for name, status, summary, fix, _ in json.loads(proc.stdout)
    }
    assert checks["user namespaces"][0] == "ok"
    # nobody cannot write the host's cgroups: limits are refused, and doctor says how to fix it.
    status, summary, fix = checks["cgroups"]
    assert status == "warn"
    assert "not usable" in summary
    assert "Delegate=yes" in fix
    assert checks["subordinate ids"][0] in {"ok", "warn"}


def test_docker_problems_are_warnings_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    check = doc.check_docker()
    assert check.status == "warn"
    assert f"no Docker socket at {tmp_path}/docker.sock" in check.summary
    assert "dockerd" in check.fix
    assert not check.required


def test_gpu_check_reads_cdi_specs_and_the_driver(tmp_path: Path) -> None:
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    version = tmp_path / "version"
    assert doc.check_gpu(spec_dirs=(spec_dir,), driver_file=version).status == "info"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar 5\n")
    missing = doc.check_gpu(spec_dirs=(spec_dir,), driver_file=version)
    assert missing.status == "warn"
    assert "nvidia-ctk cdi generate" in missing.fix
    spec = {
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "0", "containerEdits": {}}, {"name": "all", "containerEdits": {}}],
    }
    (spec_dir / "nvidia.json").write_text(json.dumps(spec))
    found = doc.check_gpu(spec_dirs=(spec_dir,), driver_file=version)
    assert found.status == "ok"
    assert "driver 550.54.15" in found.summary
    assert "devices 0, all" in found.summary
    (spec_dir / "nvidia.json").write_text("{broken")
    assert doc.check_gpu(spec_dirs=(spec_dir,), driver_file=version).status == "warn"


def test_only_a_required_failure_makes_the_report_fail() -> None:
    ok = doc.Check(name="a", status="ok", summary="fine")
    warn = doc.Check(name="b", status="warn", summary="meh", fix="x")
    optional_fail = doc.Check(name="c", status="fail", summary="no", fix="y")
    required_fail = doc.Check(name="d", status="fail", summary="no", fix="z", required=True)
    assert doc.DoctorReport(checks=(ok, warn, optional_fail)).ok
    assert not doc.DoctorReport(checks=(ok, required_fail)).ok


def test_cli_prints_one_line_per_check(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_app(["doctor"])
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == len(NAMES)
    for line, name in zip(lines, NAMES, strict=True):
        assert line.split()[0] in {"ok", "warn", "fail", "info"}
        assert f"{name}:" in line
    assert code == (0 if doc.doctor().ok else 1)


def test_the_namespace_probe_is_the_real_container_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor runs the helper that containers run: break the helper and doctor sees it."""
    from mlpack.runtime.embedded import spawn

    assert doc._probe("userns") == (True, "")
    monkeypatch.setattr(spawn, "HELPER", "/nonexistent/helper/__main__.py")
    ok, why = doc._probe("userns")
    assert not ok
    assert why
