"""The Docker backend: run a RunConfig in an existing Docker engine with the embedded defaults.

Every ``run`` flag means the same on both backends (SECURITY-AND-ISOLATION.md §5 "Docker backend
parity"): runc's three capabilities instead of Docker's fourteen, ``no-new-privileges``, Docker's
default seccomp profile, no swap, ``nofile`` 1024, network ``none`` unless asked.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import socket
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlpack.errors import ConfigError, ContainerError
from mlpack.runtime.dockersock import docker_host, require_docker
from mlpack.runtime.protocol import RunConfig, RunResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import docker
    from docker.models.containers import Container

# runc's default set (libcontainer/specconv/example.go); the embedded runtime uses the same.
DEFAULT_CAPS: Final = ("AUDIT_WRITE", "KILL", "NET_BIND_SERVICE")


def _seccomp_profile() -> str:
    """The embedded runtime's default profile as JSON (Docker accepts the OCI form)."""
    import json

    from mlpack.runtime.seccomp_profile import default_profile

    return json.dumps(default_profile([f"CAP_{c}" for c in DEFAULT_CAPS]), sort_keys=True)


NOFILE: Final = 1024


class DockerRuntime:
    """Runs containers through the docker SDK; output goes to the given file descriptors."""

    name = "docker"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        stdin_fd: int = 0,
        stdout_fd: int = 1,
        stderr_fd: int = 2,
        timeout: float = 3.0,
        stop_timeout: float = 10.0,
        sig_proxy: bool = False,
    ) -> None:
        """``stop_timeout``: seconds from SIGTERM to SIGKILL when Ctrl-C or SIGTERM stops a run.
        ``sig_proxy``: pass SIGINT and SIGTERM on to the container instead (``docker run``'s
        default), so the run streams the program's own shutdown and ends with its exit code.
        """
        self.base_url = base_url
        self.stop_timeout = stop_timeout
        self.sig_proxy = sig_proxy
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.timeout = timeout
        self._client: docker.DockerClient | None = None

    def check_available(self) -> None:
        """Raise ContainerError saying whether the socket is missing, forbidden, stale or hung."""
        require_docker(self.base_url or docker_host(), timeout=self.timeout)

    def client(self) -> docker.DockerClient:
        """Return a connected SDK client, checking the socket first for a clear error."""
        if self._client is None:
            self.check_available()
            import docker

            try:
                self._client = docker.DockerClient(
                    base_url=self.base_url or docker_host(), timeout=120
                )
            except docker.errors.DockerException as exc:
                msg = f"cannot connect to the Docker engine: {exc}"
                raise ContainerError(msg, hint="check DOCKER_HOST and that dockerd runs") from exc
        return self._client

    def close(self) -> None:
        """Close the SDK client's connections."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> DockerRuntime:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create_kwargs(self, config: RunConfig) -> dict[str, Any]:
        """Translate a RunConfig into ``containers.create`` arguments (pure; tested directly)."""
        from docker.types import DeviceRequest, Mount, Ulimit

        if config.network not in {"none", "host"}:
            msg = f"network {config.network!r} is not supported"
            raise ConfigError(msg, hint="use --network none (default) or --network host")
        kwargs: dict[str, Any] = {
            "image": config.image,
            "command": list(config.command) or None,
            "environment": [f"{k}={v}" for k, v in config.env],
            "mounts": [
                Mount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
                for m in config.mounts
            ],
            "network_mode": config.network,
            "cap_drop": ["ALL"],
            "cap_add": list(DEFAULT_CAPS),
            # The embedded runtime's seccomp profile, not Docker's default: the same calls are
            # refused on both backends (e.g. ptrace, which Docker's profile allows).
            "security_opt": ["no-new-privileges", f"seccomp={_seccomp_profile()}"],
            "ulimits": [Ulimit(name="nofile", soft=NOFILE, hard=NOFILE)],
            "shm_size": config.shm_bytes(),
            "tty": config.tty,
            "stdin_open": config.interactive,
            "init": config.init,
            "read_only": config.read_only,
            "labels": dict(config.labels),
            # Not detached: with stdin_open the SDK then sets StdinOnce, so closing our end of
            # the attach stream closes the container's stdin (EOF), as `docker run -i` does.
            "detach": False,
        }
        for key, value in (
            ("working_dir", config.workdir),
            ("user", config.user),
            ("hostname", config.hostname),
            ("name", config.name),
            ("pids_limit", config.pids_limit),
        ):
            if value is not None:
                kwargs[key] = value
        if config.memory is not None:
            kwargs["mem_limit"] = config.memory
            kwargs["memswap_limit"] = config.memory  # memory + swap = memory: no swap
        if config.cpus is not None:
            kwargs["nano_cpus"] = round(config.cpus * 1e9)
        if config.gpus:
            kwargs["device_requests"] = [_device_request(config.gpus, DeviceRequest)]
        return kwargs

    def run(self, config: RunConfig) -> RunResult:
        """Create, attach, start, stream, wait, measure and remove one container."""
        return self.run_with(config)

    def run_with(
        self, config: RunConfig, *, on_start: Callable[[str], None] | None = None
    ) -> RunResult:
        """``run``, calling ``on_start(container_id)`` once the container is running."""
        import docker

        client = self.client()
        container = self._create(client, config)
        container_id = str(container.id)
        done = threading.Event()
        sampler: _Sampler | None = None
        status: dict[str, Any] = {}
        exited = False
        previous = {} if self.sig_proxy else _term_as_interrupt()
        try:
            sock = client.api.attach_socket(
                container_id,
                params={
                    "stdin": int(config.interactive),
                    "stdout": 1,
                    "stderr": 1,
                    "stream": 1,
                },
            )
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise _api_error(config, exc, stage="start") from exc
            sampler = _Sampler(container, done)
            sampler.start()
            if self.sig_proxy:
                previous = _proxy_signals(client, container_id)
            if on_start is not None:
                on_start(container_id)
            if config.tty:
                self._resize(client, container_id)
            with self._raw_terminal(config):
                self._pump(
                    sock,
                    tty=config.tty,
                    interactive=config.interactive,
                    on_resize=lambda: self._resize(client, container_id),
                )
            status = dict(container.wait())
            exited = True
            done.set()
            sampler.join()
            container.reload()
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: stop the container (SIGTERM, then SIGKILL), remove it, and let
            # the CLI say so; the engine would otherwise keep it running after we are gone.
            with contextlib.suppress(docker.errors.DockerException):
                container.stop(timeout=round(self.stop_timeout))
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            done.set()
            if not config.keep or not exited:
                with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                    container.remove(force=True, v=True)
        state = container.attrs.get("State", {})
        code = int(status.get("StatusCode", state.get("ExitCode", -1)))
        sig = code - 128 if 128 < code < 128 + 65 else None
        return RunResult(
            container_id=container_id,
            exit_code=code,
            signal=sig,
            oom_killed=bool(state.get("OOMKilled")),
            memory_limit=config.memory,
            memory_peak=sampler.memory_peak,
            cpu_time_us=sampler.cpu_time_us,
        )

    def _create(self, client: docker.DockerClient, config: RunConfig) -> Container:
        import docker

        try:
            return client.containers.create(**self.create_kwargs(config))
        except docker.errors.ImageNotFound as exc:
            msg = f"image {config.image!r} is not in the Docker engine"
            raise ContainerError(
                msg,
                hint="load it: `mlpack export IMAGE -o image.tar && docker load -i image.tar`, "
                "or `docker pull` it",
            ) from exc
        except docker.errors.APIError as exc:
            raise _api_error(config, exc, stage="create") from exc

    def _resize(self, client: docker.DockerClient, container_id: str) -> None:
        if os.isatty(self.stdout_fd):
            size = os.get_terminal_size(self.stdout_fd)
            with contextlib.suppress(Exception):
                client.api.resize(container_id, height=size.lines, width=size.columns)

    @contextlib.contextmanager
    def _raw_terminal(self, config: RunConfig) -> Any:
        """Put a real terminal into raw mode for ``-it`` so keys (Ctrl-C too) reach the container."""
        if not (config.tty and config.interactive and os.isatty(self.stdin_fd)):
            yield
            return
        import termios
        import tty

        saved = termios.tcgetattr(self.stdin_fd)
        tty.setraw(self.stdin_fd)
        try:
            yield
        finally:
            termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, saved)

    def _pump(
        self,
        attached: Any,
        *,
        tty: bool,
        interactive: bool,
        on_resize: Callable[[], None] | None = None,
    ) -> None:
        """Copy the attach stream to our fds (demultiplexing when there is no tty) and stdin in.

        With a tty on a real terminal, window-size changes (SIGWINCH) are passed on through a
        self-pipe, so the handler itself never calls the engine.
        """
        sock: socket.socket = getattr(attached, "_sock", attached)
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ, "container")
        if interactive:
            sel.register(self.stdin_fd, selectors.EVENT_READ, "stdin")
        resize = on_resize if tty and os.isatty(self.stdout_fd) else None
        buf = b""
        try:
            with _winch_pipe(sel, resize):
                while True:
                    for key, _ in sel.select():
                        if key.data == "winch" and resize is not None:
                            os.read(key.fd, 512)
                            resize()
                        elif key.data == "stdin":
                            self._stdin_to(sock, sel)
                        elif (chunk := sock.recv(65536)) and tty:
                            _write_all(self.stdout_fd, chunk)
                        elif chunk:
                            buf = self._demux(buf + chunk)
                        else:
                            return
        finally:
            sel.close()
            # Close the HTTP response that owns the upgraded connection, then the socket.
            with contextlib.suppress(OSError, ValueError):
                response = getattr(attached, "_response", None)
                if response is not None:
                    response.close()
                attached.close()
            sock.close()

    def _stdin_to(self, sock: socket.socket, sel: selectors.BaseSelector) -> None:
        """Pass what our stdin has to the container; at EOF, close the container's stdin."""
        data = os.read(self.stdin_fd, 65536)
        if data:
            sock.sendall(data)
            return
        sel.unregister(self.stdin_fd)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    def _demux(self, buf: bytes) -> bytes:
        """Write the complete frames of ``buf`` to stdout or stderr; the incomplete rest.

        Docker's stream framing: [type, 0, 0, 0, size (big-endian u32)] + payload.
        """
        while len(buf) >= 8:
            kind, size = struct.unpack(">BxxxL", buf[:8])
            if len(buf) < 8 + size:
                break
            payload, buf = buf[8 : 8 + size], buf[8 + size :]
            _write_all(self.stderr_fd if kind == 2 else self.stdout_fd, payload)
        return buf


@contextlib.contextmanager
def _winch_pipe(
    sel: selectors.BaseSelector, on_resize: Callable[[], None] | None
) -> Iterator[None]:
    """While inside, SIGWINCH writes to a pipe registered in ``sel`` as "winch" (only from the
    main thread, and only with ``on_resize``): the handler never calls the engine itself.
    """
    if on_resize is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    read, wake = os.pipe()
    os.set_blocking(wake, False)

    def _on_winch(_signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):
            os.write(wake, b"w")

    previous = signal.signal(signal.SIGWINCH, _on_winch)
    sel.register(read, selectors.EVENT_READ, "winch")
    try:
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(read)
        os.close(wake)


def _term_as_interrupt() -> dict[int, Any]:
    """Make SIGTERM raise KeyboardInterrupt (main thread only); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _raise(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    return {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise)}


def _proxy_signals(client: docker.DockerClient, container_id: str) -> dict[int, Any]:
    """Pass SIGINT and SIGTERM on to the container (main thread only); the previous handlers.

    The engine is called from a thread: a handler runs between two bytecodes of the main
    thread, which may be inside a call to the engine itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}

    def _quiet_kill(signum: int) -> None:
        with contextlib.suppress(Exception):
            client.api.kill(container_id, signal=signum)

    def _forward(signum: int, _frame: Any) -> None:
        threading.Thread(target=_quiet_kill, args=(signum,), daemon=True).start()

    return {sig: signal.signal(sig, _forward) for sig in (signal.SIGINT, signal.SIGTERM)}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def _device_request(gpus: str, device_request: Any) -> Any:
    """``--gpus`` as Docker understands it: all, a count, or ids (CDI names use the cdi driver)."""
    want = gpus.strip()
    if want.startswith("device="):
        want = want[len("device=") :].strip("\"'")
    elif want == "all":
        return device_request(count=-1, capabilities=[["gpu"]])
    elif want.isdigit():
        if int(want) < 1:
            msg = f"--gpus {gpus}: a GPU count must be at least 1"
            raise ConfigError(msg, hint="leave --gpus out to run without GPUs")
        return device_request(count=int(want), capabilities=[["gpu"]])
    ids = [part.strip() for part in want.split(",") if part.strip()]
    if ids and all("=" in i for i in ids):  # nvidia.com/gpu=0: CDI names (Docker >= 25)
        return device_request(driver="cdi", device_ids=ids)
    return device_request(device_ids=ids, capabilities=[["gpu"]])


def _api_error(config: RunConfig, exc: Any, *, stage: str) -> ContainerError:
    text = str(getattr(exc, "explanation", None) or exc)
    if "could not select device driver" in text:
        return ContainerError(
            f"the Docker engine has no GPU support for --gpus {config.gpus}: {text}",
            hint="install nvidia-container-toolkit and run `sudo nvidia-ctk runtime configure "
            "--runtime=docker`, then restart dockerd; or use the embedded runtime with CDI",
        )
    if getattr(exc, "status_code", None) == 409:
        return ContainerError(
            f"a container named {config.name!r} already exists: {text}",
            hint="choose another --name or remove the old container",
        )
    if re.search(r"no such file or directory|not found|executable file", text):
        return ContainerError(
            f"docker could not {stage} the container: {text}",
            hint="check the command, the working directory and the mount sources",
        )
    return ContainerError(
        f"docker could not {stage} the container: {text}", hint="see the dockerd log for details"
    )


class _Sampler(threading.Thread):
    """Track peak memory and CPU time while the container runs.

    The engine removes the container's cgroup at exit, so the figures are sampled while it
    runs: from the cgroup files when the engine is on this host (cheap, fine-grained), else from
    the stats API. Peaks shorter than one sample can be missed; None means not measured.
    """

    def __init__(self, container: Container, done: threading.Event) -> None:
        super().__init__(name="mlpack-docker-stats", daemon=True)
        self.container = container
        self.done = done
        self.memory_peak: int | None = None
        self.cpu_time_us: int | None = None

    def run(self) -> None:
        with contextlib.suppress(Exception):
            self._run()

    def _run(self) -> None:
        self.container.reload()
        pid = int(self.container.attrs.get("State", {}).get("Pid") or 0)
        files = _cgroup_files(pid) if pid else None
        if files is None:
            self._api_loop()
            return
        mem_file, cpu_file, cpu_is_v2 = files
        while True:
            with contextlib.suppress(OSError, ValueError):
                peak = int(mem_file.read_text())
                self.memory_peak = max(self.memory_peak or 0, peak)
            with contextlib.suppress(OSError, ValueError):
                if cpu_is_v2:
                    stat = dict(ln.split() for ln in cpu_file.read_text().splitlines())
                    self.cpu_time_us = int(stat["usage_usec"])
                else:
                    self.cpu_time_us = int(cpu_file.read_text()) // 1000
            if self.done.wait(0.05):
                return

    def _api_loop(self) -> None:
        while not self.done.is_set():
            stats: dict[str, Any] = self.container.stats(stream=False, one_shot=True)  # type: ignore[assignment]
            mem = stats.get("memory_stats", {})
            peak = mem.get("max_usage") or mem.get("usage")
            if peak:
                self.memory_peak = max(self.memory_peak or 0, int(peak))
            total = stats.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage")
            if total:
                self.cpu_time_us = int(total) // 1000
            self.done.wait(0.5)


def _cgroup_files(pid: int) -> tuple[Path, Path, bool] | None:
    """Find the container's peak-memory and CPU-usage files from /proc/<pid>/cgroup."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    by_ctrl: dict[str, str] = {}
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(",") if ctrls else ("",):
            by_ctrl[ctrl] = path
    base = Path("/sys/fs/cgroup")
    if "memory" in by_ctrl and "cpuacct" in by_ctrl:
        mem = base / "memory" / by_ctrl["memory"].lstrip("/") / "memory.max_usage_in_bytes"
        cpu = base / "cpuacct" / by_ctrl["cpuacct"].lstrip("/") / "cpuacct.usage"
        if mem.exists() and cpu.exists():
            return mem, cpu, False
    if "" in by_ctrl:
        root = base if (base / "cgroup.controllers").exists() else base / "unified"
        group = root / by_ctrl[""].lstrip("/")
        if (group / "memory.peak").exists() and (group / "cpu.stat").exists():
            return group / "memory.peak", group / "cpu.stat", True
    return None
