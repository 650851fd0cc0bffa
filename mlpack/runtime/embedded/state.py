# ruff: noqa: PTH102, PTH103, PTH106, PTH108, PTH110, PTH112, PTH116, PTH118, PTH119, PTH123, PTH208, SIM105
"""Container state directories: where they live, what they record, and stale cleanup.

On the container start path (BENCHMARKS B1): os.path and str, no pathlib, json or typing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from mlpack.errors import ContainerError
from mlpack.home import mlpack_home
from mlpack.oslib import jsoncodec
from mlpack.oslib.fs import atomic_write, remove_tree

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any, Literal

    StrPath = str | PathLike[str]

    Status = Literal["creating", "created", "running", "stopped"]

O_PATH = getattr(os, "O_PATH", 0o10000000)


def containers_root() -> str:
    """Where ``mlpack run`` keeps per-container state and writable layers."""
    return os.path.join(mlpack_home(), "containers")


def oci_root() -> str:
    """Default ``--root`` of ``mlpack runtime``: /run/mlpack as root, else the user's runtime dir."""
    if os.geteuid() == 0:
        return "/run/mlpack"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "mlpack") if xdg else f"/tmp/mlpack-{os.geteuid()}"


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


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: tells a live process from a reused pid."""
    try:
        text = _read_text(f"/proc/{pid}/stat")
    except OSError:
        return None
    return int(text.rpartition(")")[2].split()[19])


def alive(pid: int | None, start_time: int | None) -> bool:
    """Whether ``pid`` is still the process recorded (same start time) and not a zombie."""
    if not pid:
        return False
    try:
        text = _read_text(f"/proc/{pid}/stat")
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

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def id(self) -> str:
        """The container id (the directory name)."""
        return os.path.basename(self.path)

    def write(self, state: ContainerState) -> None:
        """Atomically replace state.json."""
        atomic_write(os.path.join(self.path, "state.json"), jsoncodec.dumps(state.to_json()))

    def read(self) -> ContainerState:
        """Load state.json."""
        try:
            doc = jsoncodec.loads(_read_text(os.path.join(self.path, "state.json")))
        except (OSError, ValueError) as exc:
            msg = f"container {self.id} has no readable state ({exc})"
            raise ContainerError(msg, hint="it may have been deleted; see mlpack ps") from exc
        return ContainerState.from_json(doc)

    def exit_status(self) -> dict[str, Any] | None:
        """What the supervisor recorded when the container exited, if it did."""
        try:
            doc = jsoncodec.loads(_read_text(os.path.join(self.path, "exit.json")))
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @property
    def fifo(self) -> str:
        """The exec fifo ``create`` waits on until ``start`` reads it."""
        return os.path.join(self.path, "exec.fifo")

    def status(self, state: ContainerState | None = None) -> Status:
        """Created while the fifo waits, running while pid 1 lives, else stopped."""
        st = state or self.read()
        if not st.pid:
            return "creating" if alive(st.supervisor, st.supervisor_start) else "stopped"
        if not alive(st.pid, st.pid_start):
            return "stopped"
        return "created" if os.path.exists(self.fifo) else "running"

    def remove(self) -> None:
        """Remove the container's cgroups and its directory (writable layer included)."""
        try:
            cgroups = self.read().cgroups
        except (ContainerError, FileNotFoundError):
            cgroups = ()
        for cg in cgroups:
            remove_cgroup_dir(cg)
        if not _remove_run_layout(self.path):
            remove_tree(self.path)


# What a container directory holds after a run that wrote nothing to its root filesystem (the
# upper dir has only the mount targets of /etc/host*, overlayfs' work dir its volatile marker):
# removed by name (~1 ms less than walking it twice); anything else falls back to remove_tree.
_ETC = ("etc/hostname", "etc/hosts", "etc/resolv.conf")
_VOLATILE = "work/work/incompat/volatile"
_RUN_FILES: tuple[str, ...] = (
    "state.json",
    "config.json",
    "exit.json",
    *_ETC,
    *(f"upper/{f}" for f in _ETC),
)
_RUN_FILES += (f"{_VOLATILE}/dirty",)
_RUN_DIRS: tuple[str, ...] = (
    "etc",
    "rootfs",
    "upper/etc",
    "upper",
    _VOLATILE,
    "work/work/incompat",
)
_RUN_DIRS += ("work/work", "work")


def _remove_run_layout(path: str) -> bool:
    """Remove a container directory of the usual layout; False when it holds anything else."""
    for name in _RUN_FILES:
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except OSError:
            return False
    for name in _RUN_DIRS:
        try:
            os.rmdir(os.path.join(path, name))
        except FileNotFoundError:
            pass
        except OSError:  # not empty (the container wrote files), a mount still there...
            return False
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


def remove_cgroup_dir(path: str) -> None:
    """Kill what is left in one cgroup directory and remove it."""
    import signal
    import time

    for _ in range(50):
        if not os.path.exists(path):
            return
        try:
            os.rmdir(path)
        except OSError:
            pass
        else:
            return
        try:
            pids = _read_text(os.path.join(path, "cgroup.procs")).split()
        except OSError:
            pids = []
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def create_dir(root_dir: StrPath, container_id: str) -> StateDir:
    """Make a new, private state directory; an existing id is an error."""
    root = os.fspath(root_dir)
    os.makedirs(root, mode=0o711, exist_ok=True)
    path = os.path.join(root, check_id(container_id))
    try:
        os.mkdir(path, mode=0o711)
    except FileExistsError as exc:
        msg = f"container {container_id} already exists"
        raise ContainerError(
            msg, hint=f"delete it first, or pick another id (state in {root})"
        ) from exc
    return StateDir(path)


def open_dir(root: StrPath, container_id: str) -> StateDir:
    """An existing container's state directory."""
    path = os.path.join(os.fspath(root), check_id(container_id))
    if not os.path.exists(os.path.join(path, "state.json")):
        msg = f"container {container_id} does not exist"
        raise ContainerError(msg, hint=f"list containers with mlpack ps (state in {root})")
    return StateDir(path)


def list_dirs(root_dir: StrPath) -> tuple[StateDir, ...]:
    """Every container directory under ``root_dir``."""
    root = os.fspath(root_dir)
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return ()
    paths = [os.path.join(root, n) for n in names]
    return tuple(StateDir(p) for p in paths if os.path.exists(os.path.join(p, "state.json")))


def cleanup_stale(root_dir: StrPath) -> tuple[str, ...]:
    """Remove ``run`` containers whose supervisor died (e.g. the CLI was SIGKILLed)."""
    root = os.fspath(root_dir)
    removed = []
    for d in list_dirs(root):
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
            d.remove()
            removed.append(d.id)
    # A directory without state.json is a run that died before recording any; skip young ones,
    # which may belong to a run that is still starting.
    import time

    try:
        names = os.listdir(root)
    except OSError:
        names = []
    for name in names:
        p = os.path.join(root, name)
        try:
            young = time.time() - os.stat(p).st_mtime <= 300
        except OSError:
            continue
        if os.path.isdir(p) and not os.path.exists(os.path.join(p, "state.json")) and not young:
            remove_tree(p)
    return tuple(removed)
