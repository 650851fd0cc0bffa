"""One container's life on this host, as a context manager: the one launch path.

``mlpack run`` (``EmbeddedRuntime``), the OCI runtime operations (``lifecycle``) and the library
API all go through ``Container``: it makes the state directory, the cgroups, the state record,
spawns the helper, follows it to "created", records the pids, and undoes all of it in
``__exit__`` (unless the container was ``persist``-ed by ``create``), each cleanup step
independent of the others: one that fails does not stop the rest (issue 10, item 4).

    with Container(root, cid) as c:          # the state dir exists from here on
        ...                                  # write files into c.dir.path, build the config
        c.cgroups(limits, account=..., path=...)
        c.record(ContainerState(...))
        helper = c.spawn(Launch(...))        # the helper has the request
        c.created()                          # setup done, pid 1 waits or runs
        result = c.wait()                    # or c.persist() for a detached `create`
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import state
from mlpack.runtime.embedded.launcher import Helper, Launch, helper_process

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType
    from typing import Any, Self

    from mlpack.runtime.embedded.cgroups import Cgroup, Limits
    from mlpack.runtime.embedded.devices import DeviceCgroup, Rule
    from mlpack.runtime.embedded.launcher import StrPath
    from mlpack.runtime.embedded.spawn import HelperProcess


class Container:
    """A container being created, run, and (unless persisted) removed."""

    def __init__(self, root: StrPath, cid: str, *, keep_layer: bool = False) -> None:
        """``keep_layer``: at exit keep the directory (its writable layer), as ``run --keep``."""
        self.root = root
        self.id = state.check_id(cid)
        self.keep_layer = keep_layer
        self.dir: state.StateDir | None = None
        self.group: Cgroup | None = None
        self.device_group: DeviceCgroup | None = None  # root without limits: device rules alone
        self.helper: Helper | None = None
        self.prestarted: HelperProcess | None = None
        self.state: state.ContainerState | None = None
        self.fds: list[int] = []
        self.persisted = False

    @property
    def path(self) -> Path:
        """The container's state directory (exists inside the ``with`` block)."""
        return self._dir().path

    def __enter__(self) -> Self:
        self.dir = state.create_dir(self.root, self.id)
        return self

    def own_fd(self, fd: int) -> int:
        """Close ``fd`` at exit (a pty, /dev/null for stdin, a fifo)."""
        self.fds.append(fd)
        return fd

    def close_fd(self, fd: int | None) -> None:
        """Close an fd given to ``own_fd`` now (closing twice or None is harmless)."""
        if fd is not None and fd in self.fds:
            self.fds.remove(fd)
            os.close(fd)

    def cgroups(self, limits: Limits, *, account: bool, path: str | None = None) -> Cgroup | None:
        """The container's cgroups, when limits or accounting need them (else none at all)."""
        if not (account or limits.wanted()):
            return None
        from mlpack.runtime.embedded import cgroups

        self.group = cgroups.create(cgroups.detect(), self.id, limits, account=account, path=path)
        return self.group

    def device_cgroup(self, rules: tuple[Rule, ...]) -> None:
        """The one cgroup a container without limits needs as root, for its device rules (§6),
        made without the cgroups module (devices.create_cgroup; BENCHMARKS B1).
        """
        if rules and self.group is None:
            from mlpack.runtime.embedded import devices

            self.device_group = devices.create_cgroup(self.id, rules)

    def record(self, st: state.ContainerState) -> None:
        """Write state.json (with the cgroups made so far)."""
        made = self.group or self.device_group
        if made is not None:
            st = replace(st, cgroups=tuple(str(d) for d in made.dirs))
        self.state = st
        self._dir().write(st)

    def spawn(self, launch: Launch, process: HelperProcess | None = None) -> Helper:
        """Hand ``launch`` (completed with the cgroups) to a helper: ``process`` if given (a
        helper started ahead and not used is stopped now).
        """
        if self.prestarted is not None and self.prestarted is not process:
            self.prestarted.discard()
        self.prestarted = None
        group, devices = self.group, self.device_group
        if devices is not None:
            # The supervisor joins the device cgroup from here, before it has the request: the
            # kernel's wait in a move (an RCU grace period, ~10 ms on a cgroup v1 hierarchy)
            # overlaps the helper's start, and pid 1 is born in the cgroup (BENCHMARKS B1).
            process = process or helper_process(launch)
            self.prestarted = process  # stopped at exit until the Helper below has it
            devices.add(process.pid)
        version = 2 if group and group.layout.version == "v2" else 1
        launch = replace(
            launch,
            container_id=self.id,
            cgroup_procs=group.procs_files() if group else (),
            cgroup_version=devices.version if devices else version,
        )
        self.helper = Helper(launch, process)
        self.prestarted = None
        return self.helper

    def adopt(self, process: HelperProcess | None) -> None:
        """A helper started ahead (``spawn.prestart``): stopped at exit unless ``spawn`` uses it."""
        self.prestarted = process

    def created(self) -> state.ContainerState:
        """Follow the helper until pid 1 is set up (ContainerError with the helper's reason
        when a step fails), then record the pids; the record.
        """
        helper = self._helper()
        helper.start(until="created")
        st = replace(
            self.state or state.ContainerState(id=self.id, bundle=str(self.path)),
            pid=helper.pid,
            pid_start=state.proc_start_time(helper.pid),
            supervisor=helper.proc.pid,
            supervisor_start=state.proc_start_time(helper.proc.pid),
        )
        self.record(st)
        return st

    def wait(self) -> dict[str, Any]:
        """The supervisor's exit report: ``exit``, ``signal``, ``cpu_us``, ``maxrss``."""
        return self._helper().wait()

    def persist(self) -> None:
        """Leave the container to live on (``create``): nothing is undone at exit."""
        self.persisted = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        steps: list[Callable[[], None]] = [self._stop_helpers, self._close_fds]
        if not self.persisted:  # a cgroup is removed once empty: after the supervisor in it
            steps += [self._reap, self._remove_cgroups, self._remove_dir]
        first: BaseException | None = None
        for step in steps:
            try:
                step()
            except Exception as err:  # noqa: BLE001 - every step runs; the first error is raised
                first = first or err
        if first is not None and exc is None:
            raise first

    # -- cleanup steps, each independent of the others

    def _stop_helpers(self) -> None:
        if self.prestarted is not None:
            self.prestarted.discard()
        helper = self.helper
        if helper is None:
            return
        if self.persisted:
            helper.close()  # the supervisor records exit.json itself once we are gone
        elif not helper.exited and helper.proc.poll() is None:
            helper.kill()

    def _close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def _remove_cgroups(self) -> None:
        for made in (self.group, self.device_group):
            if made is not None:
                made.remove()

    def _remove_dir(self) -> None:
        if self.dir is None:
            return
        if self.keep_layer:
            with contextlib.suppress(FileNotFoundError):
                (self.dir.path / "rootfs").rmdir()
            return
        self.dir.remove()

    def _reap(self) -> None:
        if self.helper is not None and not self.persisted:
            self.helper.proc.wait()  # it exits right after reporting

    def _dir(self) -> state.StateDir:
        if self.dir is None:
            msg = "Container used outside its with block"
            raise RuntimeError(msg)
        return self.dir

    def _helper(self) -> Helper:
        if self.helper is None:
            msg = "no helper: call spawn() first"
            raise ContainerError(msg, hint="this is a bug in mlpack")
        return self.helper
