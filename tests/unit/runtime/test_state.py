"""Container state directories: ids, records, status and stale cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import state


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "x\0y", "x" * 200])
def test_ids_cannot_escape(bad: str) -> None:
    with pytest.raises(ContainerError):
        state.check_id(bad)


def test_round_trip_and_duplicate(tmp_path: Path) -> None:
    d = state.create_dir(tmp_path, "c1")
    st = state.ContainerState(
        id="c1",
        bundle="/b",
        command=("a", "b"),
        cgroups=("/cg",),
        annotations=(("k", "v"),),
        owner=os.getpid(),
    )
    d.write(st)
    assert d.read() == st
    with pytest.raises(ContainerError, match="already exists"):
        state.create_dir(tmp_path, "c1")
    assert state.open_dir(tmp_path, "c1").path == d.path
    with pytest.raises(ContainerError, match="does not exist"):
        state.open_dir(tmp_path, "nope")


def test_status_from_pids_and_fifo(tmp_path: Path) -> None:
    d = state.create_dir(tmp_path, "c")
    me = os.getpid()
    running = state.ContainerState(id="c", bundle="/b", pid=me, pid_start=state.proc_start_time(me))
    assert d.status(running) == "running"
    os.mkfifo(d.fifo)
    assert d.status(running) == "created"
    reused = state.ContainerState(id="c", bundle="/b", pid=me, pid_start=1)  # pid reused
    assert d.status(reused) == "stopped"


def test_cleanup_removes_only_dead_runs(tmp_path: Path) -> None:
    live = state.create_dir(tmp_path, "live")
    live.write(
        state.ContainerState(
            id="live",
            bundle="/b",
            owner=os.getpid(),
            owner_start=state.proc_start_time(os.getpid()),
        )
    )
    dead = state.create_dir(tmp_path, "dead")
    dead.write(state.ContainerState(id="dead", bundle="/b", owner=2**22 + 1))
    kept = state.create_dir(tmp_path, "kept")
    kept.write(state.ContainerState(id="kept", bundle="/b", extra={"keep": True}))
    assert state.cleanup_stale(tmp_path) == ("dead",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "live"]


def test_a_container_dir_with_a_deep_tree_and_links_out_is_removed(tmp_path: Path) -> None:
    """A container controls its writable layer's depth (issue 10 item 4): no RecursionError."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("x")
    d = state.create_dir(tmp_path / "root", "deep")
    d.write(state.ContainerState(id="deep", bundle="/b"))
    fd = os.open(d.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1200):
            os.mkdir("d", dir_fd=fd)
            sub = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.symlink(outside, "link", dir_fd=fd)
    finally:
        os.close(fd)
    d.remove()
    assert not Path(d.path).exists()
    assert (outside / "keep").read_text() == "x"
