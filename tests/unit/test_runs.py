"""Run records: digests and their cache, records on disk, reruns' checks, layout and env."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from mlpack.errors import RunError
from mlpack.runs import (
    DigestCache,
    MountRecord,
    RunRecord,
    RunStore,
    check_inputs,
    compare_outputs,
    ended,
    input_mounts,
    layout_mounts,
    make_output_dir,
    output_digests,
    output_owner,
    run_env,
    tree_digest,
)


def record(**changes: object) -> RunRecord:
    base = RunRecord(
        id="20260101-000000-abcdef",
        project="/p",
        image="img",
        image_digest="sha256:" + "1" * 64,
        command=("python", "train.py"),
        env=(("SEED", "42"), ("WANDB_API_KEY", None)),
        mounts=(),
        backend="embedded",
        host="h",
        started="2026-01-01T00:00:00Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_tree_digest_changes_with_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("1,2\n")
    first = tree_digest(tmp_path / "d")
    (tmp_path / "d" / "a.csv").write_text("1,3\n")
    second = tree_digest(tmp_path / "d")
    (tmp_path / "d" / "a.csv").rename(tmp_path / "d" / "b.csv")
    assert len({first, second, tree_digest(tmp_path / "d")}) == 3


def test_the_cache_serves_an_unchanged_file_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * 1000)
    cache = DigestCache(tmp_path / "cache.json")
    digest = tree_digest(data, cache)
    cache.save()
    reads: list[Path] = []

    def counted(path: Path) -> str:
        reads.append(path)
        return "sha256:other"

    monkeypatch.setattr("mlpack.runs.file_digest", counted)
    again = DigestCache(tmp_path / "cache.json")
    assert tree_digest(data, again) == digest
    assert reads == []
    os.utime(data, ns=(1, 1))  # a new mtime: read again
    assert tree_digest(data, again) == "sha256:other"
    assert reads == [data]


def test_records_round_trip_and_a_dead_owner_means_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    done = ended(
        record(),
        exit_code=137,
        signal=9,
        oom_killed=True,
        duration_s=1.23456,
        memory_peak=10,
        cpu_time_us=5,
    )
    store.write(done)
    crashed = record(id="20260101-000001-ffffff", started="2026-01-01T00:00:01Z", owner=2**22 + 1)
    store.write(crashed)
    listed = store.all()
    assert [r.status for r in listed] == ["oom-killed", "interrupted"]
    assert listed[0] == done
    assert store.load("20260101-000000") == done
    assert '"WANDB_API_KEY",\n      null' in (store.folder(done.id) / "run.json").read_text()


def test_load_refuses_an_unknown_or_ambiguous_id(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.write(record())
    store.write(record(id="20260101-000000-abcd99"))
    with pytest.raises(RunError, match="no run"):
        store.load("nope")
    with pytest.raises(RunError, match="2 runs"):
        store.load("20260101")


def test_a_rerun_is_refused_when_an_input_changed_or_is_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("a\n")
    cache = DigestCache(tmp_path / "c.json")
    mounts = input_mounts(
        (MountRecord(source=str(data), target="/app/data", read_only=True),), cache
    )
    old = record(mounts=mounts)
    check_inputs(old, cache)  # unchanged: accepted
    (data / "x.csv").write_text("b\n")
    with pytest.raises(RunError, match="changed since run"):
        check_inputs(old, cache)
    (data / "x.csv").unlink()
    data.rmdir()
    with pytest.raises(RunError, match="is gone"):
        check_inputs(old, cache)


def test_outputs_are_listed_and_compared_file_by_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "model.json").write_text("{}")
    (out / "sub" / "m.txt").write_text("1")
    mounts = (MountRecord(source=str(out), target="/app/outputs", read_only=False),)
    before = output_digests(mounts)
    assert [p for p, _ in before] == ["/app/outputs/model.json", "/app/outputs/sub/m.txt"]
    (out / "sub" / "m.txt").write_text("2")
    (out / "model.json").unlink()
    (out / "new.txt").write_text("")
    assert dict(compare_outputs(before, output_digests(mounts))) == {
        "/app/outputs/model.json": "missing",
        "/app/outputs/new.txt": "new",
        "/app/outputs/sub/m.txt": "changed",
    }


def test_the_output_owner_is_the_invoking_user_never_root() -> None:
    assert output_owner({"SUDO_UID": "1234", "SUDO_GID": "99"}) == (1234, 99)
    if os.getuid() == 0:
        assert output_owner({}) == (1000, 1000)
        assert output_owner({"SUDO_UID": "0", "SUDO_GID": "0"}) == (1000, 1000)


def test_layout_mounts_inputs_read_only_and_creates_outputs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    owner = (os.getuid(), os.getgid())
    mounts = layout_mounts(
        tmp_path,
        workdir="/app",
        inputs=("configs", "data"),  # configs is missing: left out
        outputs=("outputs/run",),
        data=other,
        output=None,
        owner=owner,
    )
    assert [(m.source, m.target, m.read_only) for m in mounts] == [
        (str(other), "/app/data", True),
        (str(tmp_path / "outputs" / "run"), "/app/outputs/run", False),
    ]
    assert (tmp_path / "outputs" / "run").is_dir()


@pytest.mark.skipif(os.getuid() != 0, reason="chown needs root")
def test_output_folders_are_created_owned_by_the_owner(tmp_path: Path) -> None:
    layout_mounts(
        tmp_path,
        workdir="/app",
        inputs=(),
        outputs=("a/b",),
        data=None,
        output=None,
        owner=(1234, 4321),
    )
    for made in (tmp_path / "a", tmp_path / "a" / "b"):
        assert (made.stat().st_uid, made.stat().st_gid) == (1234, 4321)


def test_a_folder_another_task_creates_first_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks of one Slurm job create the same output folder at once: losing the race is fine."""
    target = tmp_path / "outs"
    real_mkdir = Path.mkdir

    def racing_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self)  # the other task got there between our check and our mkdir
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", racing_mkdir)
    make_output_dir(target, (os.getuid(), os.getgid()))
    assert target.is_dir()


def test_a_file_where_the_output_folder_goes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outs").write_text("not a folder")
    with pytest.raises(RunError, match="cannot create the output folder"):
        make_output_dir(tmp_path / "outs" / "run", (os.getuid(), os.getgid()))


def test_secret_values_are_never_recorded() -> None:
    passed, recorded = run_env(
        (("SEED", "42"), ("PATH", "/x")),
        (("WANDB_API_KEY", "s3cr3t"), ("EPOCHS", "3")),
        deterministic=True,
    )
    assert passed == (("PYTHONHASHSEED", "0"), ("WANDB_API_KEY", "s3cr3t"), ("EPOCHS", "3"))
    assert dict(recorded) == {
        "EPOCHS": "3",
        "PYTHONHASHSEED": "0",
        "SEED": "42",
        "WANDB_API_KEY": None,
    }
    assert "s3cr3t" not in record(env=recorded).to_json()
    assert run_env((), (), deterministic=False) == ((), ())


def test_a_file_the_code_writes_beside_itself_is_mounted_as_that_file(tmp_path: Path) -> None:
    """``model.pkl`` (the layout reports a bare file name as itself) becomes an empty file owned
    by the container's user and a file mount, not a folder the script cannot open; its digest is
    recorded; a folder output beside it stays a folder.
    """
    (tmp_path / "results.v2").mkdir()  # a folder, whatever its name says
    mounts = layout_mounts(
        tmp_path,
        workdir="/app",
        inputs=(),
        outputs=("model.pkl", "outputs", "results.v2"),
        data=None,
        output=None,
        owner=(os.getuid(), os.getgid()),
    )
    assert [(m.target, Path(m.source).is_file()) for m in mounts] == [
        ("/app/model.pkl", True),
        ("/app/outputs", False),
        ("/app/results.v2", False),
    ]
    assert (tmp_path / "model.pkl").read_bytes() == b""
    (tmp_path / "model.pkl").write_bytes(b"weights")
    (digest,) = [d for d in output_digests(mounts) if d[0] == "/app/model.pkl"]
    assert digest[1].startswith("sha256:")


def test_an_output_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    """A link would mount a file outside the project (say ~/.ssh/id_rsa) read-write."""
    secret = tmp_path / "secret"
    secret.write_text("key")
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.pkl").symlink_to(secret)
    with pytest.raises(RunError, match="is a symlink"):
        layout_mounts(
            project,
            workdir="/app",
            inputs=(),
            outputs=("model.pkl",),
            data=None,
            output=None,
            owner=(os.getuid(), os.getgid()),
        )
    assert secret.read_text() == "key"


def test_a_run_whose_container_setup_fails_is_recorded_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not left "running" (which `runs` shows as interrupted once mlpack has exited)."""
    from mlpack.cli import containers
    from mlpack.cli.runs import execute
    from mlpack.errors import ContainerError
    from mlpack.runtime.protocol import RunConfig

    def failing(*_: object, **__: object) -> None:
        raise ContainerError("container setup failed: mount x: Not a directory", hint="h")

    monkeypatch.setattr(containers, "launch", failing)
    with pytest.raises(ContainerError):
        execute(record(), RunConfig(image="img", command=("true",)), "embedded", tmp_path)
    (stored,) = RunStore(tmp_path).all()
    assert (stored.status, stored.exit_code, stored.owner) == ("failed", None, 0)
