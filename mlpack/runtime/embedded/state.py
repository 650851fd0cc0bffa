"""Container state directories: where they live, what they record, and stale cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mlpack.errors import ContainerError
from mlpack.home import mlpack_home
from mlpack.oslib import jsoncodec
from mlpack.oslib.fs import atomic_write, remove_tree

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any, Literal

    StrPath = str | PathLike[str]
    Status = Literal["creating", "created", "running", "stopped"]


def containers_root() -> Path:
    """Where ``mlpack run`` keeps per-container state and writable layers."""
    return mlpack_home() / "containers"


def oci_root() -> Path:
    """Default ``--root`` of ``mlpack runtime``: /run/mlpack as root, else the user's runtime dir."""
    if os.geteuid() == 0:
        return Path("/run/mlpack")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg, "mlpack") if xdg else Path(f"/tmp/mlpack-{os.geteuid()}")


def new_id() -> str:
    """A random 12-hex-digit container id, as Docker shortens its ids."""
    return os.urandom(6).hex()


def check_id(container_id: str) -> str:
    """Refuse ids that would escape the state directory."""
    if (
        not container_id
        or container_id in (".", "..")
        or "/" in container_id
        or "\0" in container_id
        or len(container_id) > 128
    ):
        msg = f"invalid container id {container_id!r}"
        raise ContainerError(msg, hint="use letters, digits, '-', '_' and '.'")
    return container_id


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])


def alive(pid: int | None, start_time: int | None) -> bool:
    """Whether ``pid`` is still the process recorded (same start time) and not a zombie."""
    if not pid:
        return False
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return False
    return start_time is None or int(fields[19]) == start_time


@dataclass(frozen=True, kw_only=True)
class ContainerState:
    """What state.json records for one container."""

    id: str
    bundle: str
    pid: int = 0  # the container's pid 1, as the host sees it
    pid_start: int | None = None
    supervisor: int = 0
    supervisor_start: int | None = None
    owner: int = 0  # the process that runs the container (`mlpack run`), for stale detection
    owner_start: int | None = None
    created: str = ""
    image: str = ""
    command: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    kind: Literal["run", "oci"] = "run"
    name: str = ""
    memory_limit: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored document."""
        doc: dict[str, Any] = asdict(self)
        doc["annotations"] = dict(self.annotations)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ContainerState:
        """Parse a stored document."""
        doc = dict(doc)
        doc["command"] = tuple(doc.get("command") or ())
        doc["cgroups"] = tuple(doc.get("cgroups") or ())
        doc["annotations"] = tuple((doc.get("annotations") or {}).items())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


class StateDir:
    """One container's directory: state.json, exit.json, exec.fifo, upper/work, etc files."""

    def __init__(self, path: StrPath) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        """The container id (the directory name)."""
        return self.path.name

    def write(self, state: ContainerState) -> None:
        """Atomically replace state.json (not durable: it describes live processes)."""
        atomic_write(self.path / "state.json", jsoncodec.dumps(state.to_json()), durable=False)

    def read(self) -> ContainerState:
        """Load state.json."""
        try:
            doc = jsoncodec.loads((self.path / "state.json").read_bytes())
        except (OSError, ValueError) as exc:
            msg = f"container {self.id} has no readable state ({exc})"
            raise ContainerError(msg, hint="it may have been deleted; see mlpack ps") from exc
        return ContainerState.from_json(doc)

    @property
    def fifo(self) -> Path:
        """The exec fifo ``create`` waits on until ``start`` reads it."""
        return self.path / "exec.fifo"

    def status(self, state: ContainerState | None = None) -> Status:
        """Created while the fifo waits, running while pid 1 lives, else stopped."""
        st = state or self.read()
        if not st.pid:
            return "creating" if alive(st.supervisor, st.supervisor_start) else "stopped"
        if not alive(st.pid, st.pid_start):
            return "stopped"
        return "created" if self.fifo.exists() else "running"

    def remove(self) -> None:
        """Remove the container's cgroups and its directory (writable layer included).

        Each step runs even when another failed (issue 10 item 4); the first error is raised.
        """
        try:
            cgroups = self.read().cgroups
        except ContainerError:
            cgroups = ()
        first: OSError | None = None
        for cg in cgroups:
            try:
                remove_cgroup_dir(cg)
            except OSError as err:
                first = first or err
        try:
            remove_tree(self.path)
        except OSError as err:
            first = first or err
        if first is not None:
            raise first


def remove_cgroup_dir(path: str) -> None:
    """Kill what is left in one cgroup directory and remove it."""
    cgroup = Path(path)
    for _ in range(50):
        try:
            cgroup.rmdir()
        except FileNotFoundError:
            return
        except OSError:
            pass
        else:
            return
        try:
            pids = (cgroup / "cgroup.procs").read_text().split()
        except OSError:
            pids = []
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)


def create_dir(root_dir: StrPath, container_id: str) -> StateDir:
    """Make a new, private state directory; an existing id is an error.

    A container's directory holds its writable layer, where the container may leave setuid
    files: it is the owner's alone (0700), and the directory of all containers is closed to
    others (0710, as Docker's storage), so no other host user reaches those files (§6).
    An existing root keeps its mode: it may be a ``--root`` the user chose (even /tmp).
    """
    root = Path(root_dir)
    root.mkdir(mode=0o710, parents=True, exist_ok=True)
    path = root / check_id(container_id)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError as exc:
        msg = f"container {container_id} already exists"
        raise ContainerError(
            msg, hint=f"delete it first, or pick another id (state in {root})"
        ) from exc
    return StateDir(path)


def open_dir(root: StrPath, container_id: str) -> StateDir:
    """An existing container's state directory."""
    path = Path(root, check_id(container_id))
    if not (path / "state.json").exists():
        msg = f"container {container_id} does not exist"
        raise ContainerError(msg, hint=f"list containers with mlpack ps (state in {root})")
    return StateDir(path)


def list_dirs(root_dir: StrPath) -> tuple[StateDir, ...]:
    """Every container directory under ``root_dir``."""
    try:
        paths = sorted(Path(root_dir).iterdir())
    except OSError:
        return ()
    return tuple(StateDir(p) for p in paths if (p / "state.json").exists())


def cleanup_stale(root_dir: StrPath) -> tuple[str, ...]:
    """Remove ``run`` containers whose supervisor died (e.g. the CLI was SIGKILLed).

    One container that cannot be removed does not keep the others (issue 10 item 4).
    """
    removed = []
    for d in list_dirs(root_dir):
        try:
            st = d.read()
        except ContainerError:
            continue
        if st.kind != "run" or st.extra.get("keep"):
            continue
        if not (
            alive(st.owner, st.owner_start)
            or alive(st.supervisor, st.supervisor_start)
            or alive(st.pid, st.pid_start)
        ):
            with contextlib.suppress(OSError):
                d.remove()
                removed.append(d.id)
    _remove_unrecorded(Path(root_dir))
    return tuple(removed)


def _remove_unrecorded(root: Path) -> None:
    """A directory without state.json is a run that died before recording any; young ones
    may belong to a run that is still starting.
    """
    try:
        entries = list(root.iterdir())
    except OSError:
        return
    for p in entries:
        try:
            young = time.time() - p.stat().st_mtime <= 300
            if p.is_dir() and not (p / "state.json").exists() and not young:
                remove_tree(p)
        except OSError:
            continue
