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


def test_rmtree_handles_mode_000_and_never_follows_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    outside.chmod(0o755)
    (outside / "keep").write_text("x")
    tree = tmp_path / "tree"
    (tree / "work" / "work").mkdir(parents=True)
    (tree / "work" / "work").chmod(0)
    (tree / "link").symlink_to(outside)
    (tree / "file").write_text("y")
    state.rmtree(tree)
    assert not tree.exists()
    assert (outside / "keep").read_text() == "x"
    assert outside.stat().st_mode & 0o777 == 0o755  # the link target was not chmodded


def _usual_layout(d: Path) -> None:
    for sub in ("etc", "rootfs", "upper/etc", "work/work/incompat/volatile"):
        (d / sub).mkdir(parents=True)
    for name in ("hostname", "hosts", "resolv.conf"):
        (d / "etc" / name).write_text("x")
        (d / "upper" / "etc" / name).write_text("")
    (d / "work/work/incompat/volatile/dirty").write_text("")
    (d / "state.json").write_text("{}")


def test_the_usual_layout_is_removed_by_name(tmp_path: Path) -> None:
    d = tmp_path / "c"
    _usual_layout(d)
    assert state._remove_run_layout(str(d)) is True
    assert not d.exists()


def test_anything_else_falls_back_to_a_full_removal(tmp_path: Path) -> None:
    d = state.create_dir(tmp_path, "c")
    _usual_layout(Path(d.path))
    (Path(d.path) / "upper" / "etc" / "written-by-the-container").write_text("y")
    (Path(d.path) / "upper" / "data").mkdir()
    assert state._remove_run_layout(d.path) is False
    d.remove()
    assert not Path(d.path).exists()
