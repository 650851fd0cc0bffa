"""Run records: what a run was made of and what it produced, so that it can be repeated.

Each run of a project gets ``.mlpack/runs/<id>/run.json`` and its ``log``. The record holds the
image digest, the lock hash, the git commit, the command, the environment (values only for the
config's non-secret defaults: a secret's value is never written), the mounts with a content
digest of each input, the digest of every output file, and how and when the run ended. Input
digests are cached per file by (device, inode, size, mtime) so that a large dataset is hashed
once, not on every run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import stat
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from mlpack.errors import RunError
from mlpack.oci.digest import file_digest
from mlpack.oslib.fs import atomic_write

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mlpack.oci.store import Store
    from mlpack.vocabulary import EntrypointSpec

RUNS_DIR: Final = Path(".mlpack", "runs")
DIGEST_CACHE: Final = Path(".mlpack", "digests.json")
RECORD_FILE: Final = "run.json"
LOG_FILE: Final = "log"

Status = Literal["running", "succeeded", "failed", "oom-killed", "interrupted"]
Comparison = Literal["identical", "changed", "missing", "new"]


@dataclass(frozen=True, kw_only=True)
class MountRecord:
    """One bind mount of a run; an input's content digest (outputs are listed file by file)."""

    source: str
    target: str
    read_only: bool
    digest: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskPlacement:
    """Where a run sat in a cluster job (one Slurm task of several): its rank and its peers'."""

    job_id: str
    rank: int
    local_rank: int
    world_size: int
    node: str
    master_addr: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """Everything needed to repeat a run and to tell whether the repeat matched."""

    id: str
    project: str  # the project folder ("" when an image was run directly)
    image: str  # the reference the user gave
    image_digest: str
    command: tuple[str, ...]
    env: tuple[tuple[str, str | None], ...]  # None: a value not recorded (given at run time)
    mounts: tuple[MountRecord, ...]
    backend: str
    host: str
    started: str  # ISO 8601, UTC
    lock_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    status: Status = "running"
    exit_code: int | None = None
    signal: int | None = None
    duration_s: float | None = None
    memory_peak: int | None = None
    cpu_time_us: int | None = None
    outputs: tuple[tuple[str, str], ...] = ()  # container path -> sha256 digest
    owner: int = field(default=0, compare=False)  # pid of the mlpack process while running
    rerun_of: str | None = None
    task: TaskPlacement | None = None  # set when the run is one task of a cluster job

    def to_json(self) -> str:
        """The record as run.json text (stable key order)."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """Parse run.json (ValueError or KeyError when it is not a run record)."""
        doc: dict[str, Any] = json.loads(text)
        doc["mounts"] = tuple(MountRecord(**m) for m in doc["mounts"])
        doc["command"] = tuple(doc["command"])
        doc["env"] = tuple((k, v) for k, v in doc["env"])
        doc["outputs"] = tuple((k, v) for k, v in doc["outputs"])
        if doc.get("task") is not None:
            doc["task"] = TaskPlacement(**doc["task"])
        return cls(**doc)


def ended(
    record: RunRecord,
    *,
    exit_code: int,
    signal: int | None,
    oom_killed: bool,
    duration_s: float,
    memory_peak: int | None,
    cpu_time_us: int | None,
) -> RunRecord:
    """The record of a run that has ended, with its status named (an OOM kill as such)."""
    status: Status = "oom-killed" if oom_killed else "succeeded" if exit_code == 0 else "failed"
    return replace(
        record,
        status=status,
        exit_code=exit_code,
        signal=signal,
        duration_s=round(duration_s, 3),
        memory_peak=memory_peak,
        cpu_time_us=cpu_time_us,
        owner=0,
    )


def now_iso() -> str:
    """The current time as the records write it."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def host_name() -> str:
    """The host name, for the record."""
    return socket.gethostname()


def task_placement(environ: dict[str, str] | None = None) -> TaskPlacement | None:
    """The run's place in a Slurm job, from the variables ``srun`` sets (None outside one).

    The master address is the one the job's script exported for torchrun (``MASTER_ADDR``).
    """
    env = os.environ if environ is None else environ
    ids = [env.get(k, "") for k in ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS")]
    if not env.get("SLURM_JOB_ID") or not all(i.isdigit() for i in ids):
        return None
    return TaskPlacement(
        job_id=env["SLURM_JOB_ID"],
        rank=int(ids[0]),
        local_rank=int(ids[1]),
        world_size=int(ids[2]),
        node=env.get("SLURMD_NODENAME") or host_name(),
        master_addr=env.get("MASTER_ADDR") or None,
    )


# -- digests


class DigestCache:
    """File digests remembered by (device, inode, size, mtime_ns): unchanged files are not re-read."""

    def __init__(self, path: Path) -> None:
        """:param path: the JSON file that keeps the cache between runs."""
        self.path = path
        self.entries: dict[str, str] = {}
        self.dirty = False
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = {str(k): str(v) for k, v in loaded.items()}

    def file(self, path: Path, st: os.stat_result) -> str:
        """The sha256 digest of the regular file ``path`` whose stat is ``st``."""
        key = f"{path.absolute()}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        known = self.entries.get(key)
        if known is None:
            known = self.entries[key] = file_digest(path)
            self.dirty = True
        return known

    def save(self) -> None:
        """Write the cache back when something was added (best effort: it only saves time)."""
        if self.dirty:
            with contextlib.suppress(OSError):
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self.path, json.dumps(self.entries, sort_keys=True), durable=False)
            self.dirty = False


def walk_files(root: Path) -> Iterator[tuple[str, Path, os.stat_result]]:
    """``(relative path, path, lstat)`` of every file and symlink under ``root``, sorted."""
    stack = [root]
    found: list[tuple[str, Path, os.stat_result]] = []
    while stack:
        top = stack.pop()
        with os.scandir(top) as entries:
            for entry in entries:
                path = Path(entry.path)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
                elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    found.append((path.relative_to(root).as_posix(), path, st))
    yield from sorted(found, key=lambda item: item[0])


def _entry_digest(path: Path, st: os.stat_result, cache: DigestCache | None) -> str:
    if stat.S_ISLNK(st.st_mode):
        return f"symlink:{path.readlink()}"
    return cache.file(path, st) if cache is not None else file_digest(path)


def tree_digest(path: Path, cache: DigestCache | None = None) -> str:
    """One digest of a file or a folder's names and contents (an input's identity)."""
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        return _entry_digest(path, st, cache)
    h = hashlib.sha256()
    for rel, entry, est in walk_files(path):
        h.update(f"{rel}\0{_entry_digest(entry, est, cache)}\n".encode())
    return f"sha256:{h.hexdigest()}"


def output_digests(mounts: tuple[MountRecord, ...]) -> tuple[tuple[str, str], ...]:
    """The digest of every file in the writable mounts, by its path in the container."""
    found: list[tuple[str, str]] = []
    for m in mounts:
        source = Path(m.source)
        if m.read_only:
            continue
        if source.is_file():  # an output file (model.pkl beside the code)
            found.append((m.target, _entry_digest(source, source.stat(), None)))
            continue
        if not source.is_dir():
            continue
        for rel, path, st in walk_files(source):
            found.append((f"{m.target.rstrip('/')}/{rel}", _entry_digest(path, st, None)))
    return tuple(found)


def input_mounts(mounts: tuple[MountRecord, ...], cache: DigestCache) -> tuple[MountRecord, ...]:
    """``mounts`` with the content digest of each read-only one (the run's inputs)."""
    done = tuple(
        replace(m, digest=tree_digest(Path(m.source), cache)) if m.read_only else m for m in mounts
    )
    cache.save()
    return done


# -- git


def git_state(root: Path) -> tuple[str | None, bool | None]:
    """The commit checked out at ``root`` and whether the tree has changes (None: no git)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


# -- the records of a project


class RunStore:
    """The run records of one project, under ``.mlpack/runs``."""

    def __init__(self, project: Path) -> None:
        """:param project: the project folder."""
        self.project = project
        self.root = project / RUNS_DIR

    def new_id(self) -> str:
        """A new run id: sortable by time, unique by its random tail."""
        return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)

    def folder(self, run_id: str) -> Path:
        """The folder of run ``run_id``."""
        return self.root / run_id

    def log_path(self, run_id: str) -> Path:
        """Where the run's output is saved."""
        return self.folder(run_id) / LOG_FILE

    def write(self, record: RunRecord) -> None:
        """Write (or replace) the record, atomically."""
        folder = self.folder(record.id)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / RECORD_FILE, record.to_json())

    def digest_cache(self) -> DigestCache:
        """The project's input digest cache."""
        return DigestCache(self.project / DIGEST_CACHE)

    def all(self) -> tuple[RunRecord, ...]:
        """Every readable record, oldest first; a running one whose owner died is interrupted."""
        if not self.root.is_dir():
            return ()
        records = []
        for folder in sorted(self.root.iterdir()):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                records.append(_settled(RunRecord.from_json((folder / RECORD_FILE).read_text())))
        return tuple(sorted(records, key=lambda r: (r.started, r.id)))

    def load(self, run_id: str) -> RunRecord:
        """The record ``run_id`` (a unique prefix is enough)."""
        matches = [r for r in self.all() if r.id.startswith(run_id)] if run_id else []
        if len(matches) != 1:
            why = "no run" if not matches else f"{len(matches)} runs"
            msg = f"{why} with id {run_id!r} in {self.root}"
            raise RunError(msg, hint="list the project's runs with `mlpack runs`")
        return matches[0]


def _settled(record: RunRecord) -> RunRecord:
    if record.status == "running" and not _alive(record.owner):
        return replace(record, status="interrupted", owner=0)
    return record


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- reruns


def check_inputs(record: RunRecord, cache: DigestCache) -> None:
    """Refuse a rerun whose inputs are gone or changed since ``record``."""
    for m in record.mounts:
        if m.digest is None:
            continue
        source = Path(m.source)
        if not source.exists():
            msg = f"input {m.source} (mounted at {m.target}) of run {record.id} is gone"
            raise RunError(msg, hint="restore the input, or start a new run with `mlpack run`")
        now = tree_digest(source, cache)
        if now != m.digest:
            msg = (
                f"input {m.source} (mounted at {m.target}) changed since run {record.id}: "
                f"{m.digest[:19]} then, {now[:19]} now"
            )
            raise RunError(msg, hint="restore the input, or start a new run with `mlpack run`")
    cache.save()


def compare_outputs(
    before: tuple[tuple[str, str], ...], after: tuple[tuple[str, str], ...]
) -> tuple[tuple[str, Comparison], ...]:
    """File by file: whether the rerun's outputs are identical to the recorded ones."""
    old, new = dict(before), dict(after)
    rows: list[tuple[str, Comparison]] = []
    for path in sorted(old.keys() | new.keys()):
        if path not in new:
            rows.append((path, "missing"))
        elif path not in old:
            rows.append((path, "new"))
        else:
            rows.append((path, "identical" if old[path] == new[path] else "changed"))
    return tuple(rows)


# -- what a project run mounts and sets

DETERMINISTIC_ENV: Final = (("PYTHONHASHSEED", "0"),)


def output_owner(environ: dict[str, str] | None = None) -> tuple[int, int]:
    """Who owns the output folders and runs the container: the invoking user, never root.

    Under sudo that is SUDO_UID/SUDO_GID; a root shell without sudo gets the image's user.
    """
    from mlpack.spec import USER_ID

    env = os.environ if environ is None else environ
    sudo = env.get("SUDO_UID", ""), env.get("SUDO_GID", "")
    if sudo[0].isdigit() and sudo[1].isdigit() and int(sudo[0]) != 0:
        return int(sudo[0]), int(sudo[1])
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    return USER_ID, USER_ID


def make_output_dir(path: Path, owner: tuple[int, int]) -> None:
    """Create ``path`` and any missing parents, owned by ``owner`` (an existing one is kept).

    Tasks of one job start together and create the same folder: one that another process made
    between the check and the mkdir is kept as it is, not an error.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:
                if not folder.is_dir():
                    raise
                continue
            if os.getuid() == 0:
                os.chown(folder, *owner)
    except OSError as exc:
        msg = f"cannot create the output folder {path}: {exc.strerror}"
        raise RunError(msg, hint="choose a writable folder with --output (or -v)") from exc


def is_output_file(rel: str, source: Path) -> bool:
    """Whether an output of the layout is a file the code writes beside itself (``model.pkl``:
    the analysis reports a bare file name as itself), mounted as that file, not as a folder.
    """
    if source.is_symlink() or source.is_file():
        return True  # a symlink is refused by make_output_file, whatever it points to
    if source.exists():
        return False
    from mlpack.analyze.layout import is_file_output  # project runs only: not `run IMAGE`'s start

    return is_file_output(rel)


def make_output_file(path: Path, owner: tuple[int, int]) -> None:
    """Create the empty file ``path`` owned by ``owner`` for the container to write (an existing
    file is kept); a symlink is refused, so that no file outside the project is mounted.
    """
    if path.is_symlink():
        msg = f"the output file {path} is a symlink"
        raise RunError(msg, hint="replace it with a regular file, or choose --output")
    make_output_dir(path.parent, owner)
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except FileExistsError:
        return  # made meanwhile by another task of the job, or there before
    except OSError as exc:
        msg = f"cannot create the output file {path}: {exc.strerror}"
        raise RunError(msg, hint="choose a writable folder with --output (or -v)") from exc
    os.close(fd)
    if os.getuid() == 0:
        os.chown(path, *owner)


def check_writable_outputs(mounts: tuple[MountRecord, ...]) -> None:
    """RunError, before anything runs, for an output folder on a read-only or full filesystem:
    a run that can only fail at its end is refused at its start.
    """
    for m in mounts:
        if m.read_only:
            continue
        fs = os.statvfs(m.source)
        if fs.f_flag & os.ST_RDONLY:
            msg = f"the output folder {m.source} ({m.target}) is on a read-only filesystem"
            raise RunError(msg, hint="choose a writable folder with --output (or -v)")
        if fs.f_bavail == 0:
            msg = f"the output folder {m.source} ({m.target}) is on a full filesystem"
            raise RunError(msg, hint="free space there, or choose another folder with --output")


def full_outputs(mounts: tuple[MountRecord, ...]) -> tuple[str, ...]:
    """The output folders whose filesystem has no space left (after a failed run: the why)."""
    return tuple(m.source for m in mounts if not m.read_only and os.statvfs(m.source).f_bavail == 0)


def layout_mounts(
    root: Path,
    *,
    workdir: str,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    data: Path | None,
    output: Path | None,
    owner: tuple[int, int],
) -> tuple[MountRecord, ...]:
    """Inputs read-only and outputs read-write, at the paths the code expects under ``workdir``.

    ``data`` replaces the first input (``data`` by name when there is one), ``output`` the
    first output. Inputs that do not exist are left out; outputs are created.
    """
    first_data = next((i for i in inputs if Path(i).name == "data"), inputs[0] if inputs else "")
    mounts: list[MountRecord] = []
    for rel in inputs:
        source = data if data is not None and rel == first_data else root / rel
        if source.exists():
            target = f"{workdir.rstrip('/')}/{rel}"
            mounts.append(MountRecord(source=str(source.resolve()), target=target, read_only=True))
    for i, rel in enumerate(outputs):
        source = output if output is not None and i == 0 else root / rel
        if source is not output and is_output_file(rel, source):
            make_output_file(source, owner)
        else:
            make_output_dir(source, owner)
        target = f"{workdir.rstrip('/')}/{rel}"
        mounts.append(MountRecord(source=str(source.resolve()), target=target, read_only=False))
    return tuple(mounts)


def run_env(
    image_env: tuple[tuple[str, str], ...],
    given: tuple[tuple[str, str], ...],
    *,
    deterministic: bool,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str | None], ...]]:
    """The variables to set, and as recorded: a secret-looking name given at run time is
    recorded by name only (its value is never written).
    """
    from mlpack.analyze.envvars import is_secret

    passed = (*(DETERMINISTIC_ENV if deterministic else ()), *given)
    recorded: dict[str, str | None] = {k: v for k, v in image_env if k != "PATH"}
    for key, value in passed:
        recorded[key] = None if is_secret(key) else value
    return passed, tuple(sorted(recorded.items()))


# -- what an image offers


@dataclass(frozen=True, kw_only=True)
class ImageFacts:
    """What a run needs to know of its image: digest, working directory, env, entrypoints."""

    digest: str
    workdir: str
    env: tuple[tuple[str, str], ...]
    entrypoints: tuple[EntrypointSpec, ...]
    lock_hash: str | None

    def entry(self, name: str | None, kind: str) -> EntrypointSpec | None:
        """The entrypoint ``name``, else the first of ``kind`` (None when there is none)."""
        if name is None:
            return next((e for e in self.entrypoints if e.kind == kind), None)
        found = next((e for e in self.entrypoints if e.name == name), None)
        if found is None:
            names = ", ".join(e.name for e in self.entrypoints) or "none"
            msg = f"the image has no entrypoint {name!r} (it has: {names})"
            raise RunError(msg, hint="pick one of those with --entry, or give a command")
        return found


def image_facts(reference: str, store: Store) -> ImageFacts:
    """The facts of ``reference`` in ``store``; RunError when it is not there."""
    from mlpack.errors import ImageError
    from mlpack.spec import ENTRYPOINT_LABEL, LOCK_LABEL
    from mlpack.vocabulary import EntrypointSpec

    try:
        stored = store.image(reference)
    except ImageError as exc:
        msg = f"image {reference} is not in the store ({exc.message})"
        raise RunError(msg, hint="build it again with `mlpack build`, or pull it") from exc
    conf = stored.config.raw.get("config") or {}
    labels = dict(stored.config.labels)
    entries = []
    for key, value in sorted(labels.items()):
        if key.startswith(ENTRYPOINT_LABEL):
            doc = json.loads(value)
            entries.append(
                EntrypointSpec(
                    name=key.removeprefix(ENTRYPOINT_LABEL),
                    kind=doc.get("kind", ""),
                    command=tuple(doc.get("command") or ()),
                    port=doc.get("port"),
                )
            )
    return ImageFacts(
        digest=stored.digest,
        workdir=str(conf.get("WorkingDir") or "/"),
        env=tuple((k, v) for k, _, v in (e.partition("=") for e in stored.config.env)),
        entrypoints=tuple(entries),
        lock_hash=labels.get(LOCK_LABEL),
    )
