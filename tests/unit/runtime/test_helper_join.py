"""S moves pid 1 into its cgroups while pid 1 sets up; pid 1 waits for the outcome.

The user program never runs outside its cgroups: pid 1 goes on only after S's "ok", a move that
failed reaches it as the reason, and S's death (EOF without "ok") is a failure too (the
container then fails before "created").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.runtime.embedded.helper.channel import Failure
from mlpack.runtime.embedded.helper.pid1 import wait_for_cgroups
from mlpack.runtime.embedded.helper.supervisor import join_cgroups


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
