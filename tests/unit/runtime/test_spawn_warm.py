"""The caller keeps the kernel's cgroup moves fast until the helper has its request.

``mlpack run`` and ``mlpack-runtime create``/``run`` move themselves into the cgroup2 group they
are in (a move that changes nothing) on a thread, so that the grace period the first move waits
for is over before the container's cgroups are made and joined (BENCHMARKS B1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import spawn
from mlpack.runtime.embedded.launcher import Helper, Launch
from mlpack.runtime.embedded.spawn import HelperProcess, keep_cgroup_moves_fast
from tests.conftest import require
from tests.unprivileged import run_as_nobody


@pytest.fixture
def procs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file standing in for this process's cgroup.procs."""
    path = tmp_path / "cgroup.procs"
    path.touch()
    monkeypatch.setattr(spawn, "_own_cgroup_procs", lambda: os.open(path, os.O_WRONLY))
    return path


def _moves(path: Path) -> int:
    """How many times this process's pid was written to ``path`` (nothing else may be)."""
    written, pid = path.read_text(), str(os.getpid())
    assert written == pid * (len(written) // len(pid))
    return len(written) // len(pid)


def test_this_process_moves_itself_in_place_until_told_to_stop(procs: Path) -> None:
    stop = keep_cgroup_moves_fast()
    time.sleep(0.05)
    stop()
    time.sleep(0.02)  # a move under way when told to stop ends the thread
    moved = _moves(procs)
    assert moved >= 2  # again and again, not once
    time.sleep(0.03)
    assert _moves(procs) == moved  # stopped


@pytest.mark.parametrize("warm", [True, False])
def test_only_a_caller_that_asks_gets_the_warm_up(procs: Path, warm: bool) -> None:
    helper = HelperProcess(warm_cgroup_moves=warm)
    time.sleep(0.03)
    helper.request_sent()  # as Helper does once the request is written
    time.sleep(0.02)
    moved = _moves(procs)
    time.sleep(0.03)
    try:
        assert _moves(procs) == moved  # the request stopped it
        assert (moved > 0) is warm
    finally:
        helper.discard()
    assert helper.returncode == 0  # EOF instead of a request: the helper exited


def test_a_discarded_helper_stops_the_warm_up(procs: Path) -> None:
    helper = HelperProcess(warm_cgroup_moves=True)
    helper.discard()
    time.sleep(0.02)
    moved = _moves(procs)
    time.sleep(0.03)
    assert _moves(procs) == moved


def test_a_request_that_cannot_be_sent_stops_the_warm_up(procs: Path, tmp_path: Path) -> None:
    process = HelperProcess(warm_cgroup_moves=True)
    os.close(process.ctl_w)  # the control pipe is gone: the request cannot be written
    process.ctl_w = -1
    try:
        with pytest.raises(ContainerError, match="exited early"):
            Helper(Launch(config={}, rootfs=tmp_path), process)
        time.sleep(0.02)
        moved = _moves(procs)
        time.sleep(0.03)
        assert _moves(procs) == moved
    finally:
        process.discard()


def test_the_warm_up_move_leaves_this_process_in_its_cgroup() -> None:
    fd = spawn._own_cgroup_procs()
    require(fd >= 0, "a writable cgroup2 group of this process (root)")
    before = Path("/proc/self/cgroup").read_text()
    try:
        os.write(fd, str(os.getpid()).encode())
    finally:
        os.close(fd)
    assert Path("/proc/self/cgroup").read_text() == before


def test_a_caller_that_may_not_move_itself_warms_nothing() -> None:
    """Rootless: its cgroup's procs file cannot be opened, so no thread starts."""
    require(os.geteuid() == 0, "root, to run a snippet as nobody")
    code = (
        "import _thread\n"
        "from mlpack.runtime.embedded import spawn\n"
        "before = _thread._count()\n"
        "stop = spawn.keep_cgroup_moves_fast()\n"
        "print(spawn._own_cgroup_procs(), _thread._count() - before)\n"
        "stop()\n"
    )
    assert run_as_nobody(code).stdout.split() == ["-1", "0"]
