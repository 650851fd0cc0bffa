"""Service records: what ``mlpack ps``, ``mlpack logs`` and ``mlpack stop`` know of a server.

Each ``mlpack serve`` writes ``$MLPACK_HOME/services/NAME.json`` and keeps it current (container,
restarts, status). Its supervisor, the process that owns the listening socket, the restarts and
the log, is recorded by pid and start time, so a record whose supervisor died is told apart
from a live one (pids are reused) and cleaned up by ``mlpack stop``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Final

from mlpack.errors import ServeError
from mlpack.home import mlpack_home
from mlpack.oslib.fs import atomic_write
from mlpack.runtime.embedded.state import alive, proc_start_time

if TYPE_CHECKING:
    from pathlib import Path

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass(frozen=True, kw_only=True)
class Service:
    """One server started by ``mlpack serve`` and its supervisor."""

    name: str
    image: str
    host: str
    port: int
    backend: str
    log: str
    supervisor: int
    supervisor_start: int | None
    started: str
    container: str = ""
    restarts: int = 0
    status: str = "starting"  # starting, running, restarting, exited

    def alive(self) -> bool:
        """Whether its supervisor still runs (the same process, not a reused pid)."""
        return alive(self.supervisor, self.supervisor_start)

    def shown_status(self) -> str:
        """The status, or ``exited`` when the supervisor is gone."""
        return self.status if self.alive() else "exited"


def check_name(name: str) -> str:
    """``name`` when it can name a service (it names a file), else ServeError."""
    if not _NAME.fullmatch(name):
        msg = f"invalid service name {name!r}"
        raise ServeError(msg, hint="use letters, digits, '_', '.' and '-' (at most 63)")
    return name


def new_service(*, name: str, image: str, host: str, port: int, backend: str, log: Path) -> Service:
    """The record of a service this process supervises, not started yet."""
    return Service(
        name=check_name(name),
        image=image,
        host=host,
        port=port,
        backend=backend,
        log=str(log),
        supervisor=os.getpid(),
        supervisor_start=proc_start_time(os.getpid()),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


class ServiceStore:
    """The records under ``$MLPACK_HOME/services``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or mlpack_home() / "services"

    def _path(self, name: str) -> Path:
        return self.root / f"{check_name(name)}.json"

    def claim(self, service: Service) -> None:
        """Write ``service``'s first record; ServeError when a live one has its name."""
        try:
            old = self.get(service.name)
        except ServeError:
            old = None
        if old is not None and old.alive():
            msg = f"a service named {service.name!r} is running (port {old.port})"
            raise ServeError(msg, hint=f"stop it (mlpack stop {old.name}) or pick another --name")
        self.write(service)

    def write(self, service: Service) -> None:
        """Save ``service`` (atomically: readers never see half a record)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(service.name), json.dumps(asdict(service), indent=1).encode())

    def update(self, name: str, **changes: object) -> Service:
        """The record named ``name`` with ``changes``, saved (one writer: its supervisor)."""
        changed = replace(self.get(name), **changes)  # type: ignore[arg-type]
        self.write(changed)
        return changed

    def get(self, name: str) -> Service:
        """The record named ``name``; ServeError when there is none."""
        try:
            return Service(**json.loads(self._path(name).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            msg = f"no service named {name!r}"
            raise ServeError(msg, hint="list services with mlpack ps") from exc

    def all(self) -> tuple[Service, ...]:
        """Every readable record, by name."""
        if not self.root.is_dir():
            return ()
        found = []
        for path in sorted(self.root.glob("*.json")):
            try:
                found.append(self.get(path.stem))
            except ServeError:
                continue
        return tuple(found)

    def remove(self, name: str) -> None:
        """Forget the record named ``name`` (gone already is fine)."""
        self._path(name).unlink(missing_ok=True)
