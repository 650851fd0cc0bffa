"""S moves pid 1 into its cgroups while pid 1 sets up; pid 1 waits for the outcome.

Before its request, S keeps cgroup moves fast (moving itself in place) when its parent asks.

The user program never runs outside its cgroups: pid 1 goes on only after S's "ok", a move that
failed reaches it as the reason, and S's death (EOF without "ok") is a failure too (the
container then fails before "created").
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mlpack.runtime.embedded.helper import WARM_CGROUP_MOVES, supervisor
from mlpack.runtime.embedded.helper.channel import Failure
from mlpack.runtime.embedded.helper.pid1 import wait_for_cgroups
from mlpack.runtime.embedded.helper.supervisor import join_cgroups
from mlpack.runtime.embedded.spawn import HelperProcess
from tests.conftest import require


def test_a_move_that_fails_reaches_pid_1_as_its_reason(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "cgroup.procs"
    joined, done = os.pipe()
    join_cgroups({"cgroup_procs": [str(missing)]}, os.getpid(), done)
    with pytest.raises(Failure, match="No such file or directory"):
        wait_for_cgroups(joined)


def test_every_procs_file_gets_pid_1_before_eof(tmp_path: Path) -> None:
    files = [tmp_path / "a", tmp_path / "b"]
    joined, done = os.pipe()
    join_cgroups({"cgroup_procs": [str(f) for f in files]}, 4242, done)
    wait_for_cgroups(joined)  # "ok": nothing raised
    assert [f.read_text() for f in files] == ["4242", "4242"]


def test_pid_1_waits_while_s_is_moving_it() -> None:
    joined, done = os.pipe()
    os.set_blocking(joined, False)
    with pytest.raises(BlockingIOError):  # S still holds the write end: no EOF, pid 1 waits
        wait_for_cgroups(joined)
    os.write(done, b"ok")
    os.close(done)
    wait_for_cgroups(joined)  # moved


def test_a_supervisor_that_dies_before_its_word_fails_pid_1() -> None:
    """EOF without "ok" (S killed mid-move) never lets pid 1 run outside its cgroups."""
    joined, done = os.pipe()
    os.close(done)
    with pytest.raises(Failure, match="supervisor went away"):
        wait_for_cgroups(joined)


def test_nothing_to_wait_for_without_cgroups() -> None:
    wait_for_cgroups(-1)


def test_s_moves_itself_in_place_until_the_request_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up writes S's own pid (a move that changes nothing) and leaves the request."""
    procs = tmp_path / "cgroup.procs"
    monkeypatch.setattr(
        supervisor, "_own_cgroup_procs", lambda: os.open(procs, os.O_WRONLY | os.O_CREAT)
    )
    ctl, request = os.pipe()
    threading.Timer(0.03, os.write, (request, b"{}\n")).start()
    supervisor.keep_cgroup_moves_fast(ctl)
    written = procs.read_text()
    pid = str(os.getpid())
    assert written.startswith(pid)
    assert written == pid * (len(written) // len(pid))
    assert os.read(ctl, 16) == b"{}\n"  # for supervise() to read


def test_the_warm_up_move_leaves_s_in_its_cgroup() -> None:
    procs = supervisor._own_cgroup_procs()
    require(procs >= 0, "a writable cgroup2 group of this process (root)")
    before = Path("/proc/self/cgroup").read_text()
    try:
        os.write(procs, str(os.getpid()).encode())
    finally:
        os.close(procs)
    assert Path("/proc/self/cgroup").read_text() == before


@pytest.mark.parametrize("warm", [True, False])
def test_only_a_parent_that_asks_gets_the_warm_up(warm: bool) -> None:
    helper = HelperProcess(warm_cgroup_moves=warm)
    environ = Path(f"/proc/{helper.pid}/environ")
    try:  # empty until exec has set up the new image (the vfork parent resumes before that)
        while not environ.read_bytes():
            time.sleep(0.001)
        names = environ.read_bytes().split(b"\0")
    finally:
        helper.discard()
    assert (WARM_CGROUP_MOVES.encode() + b"=1" in names) is warm
    assert helper.returncode == 0  # EOF instead of a request: it stopped warming and exited
