"""The Docker backend: option mapping (pure), then real runs against dockerd for what only it does."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
import uuid
from pathlib import Path

import pytest

from mlpack.errors import ConfigError, ContainerError
from mlpack.runtime.docker import DEFAULT_CAPS, DockerRuntime
from mlpack.runtime.dockersock import probe_socket
from mlpack.runtime.protocol import Mount, RunConfig
from tests import busybox
from tests.conftest import require

REPO = Path(__file__).resolve().parents[3]


def test_create_kwargs_carry_the_embedded_defaults() -> None:
    kw = DockerRuntime().create_kwargs(RunConfig(image="img", command=("python", "train.py")))
    assert kw["command"] == ["python", "train.py"]
    assert kw["cap_drop"] == ["ALL"]
    assert kw["cap_add"] == list(DEFAULT_CAPS) == ["AUDIT_WRITE", "KILL", "NET_BIND_SERVICE"]
    no_new_privs, seccomp = kw["security_opt"]
    assert no_new_privs == "no-new-privileges"
    assert seccomp.startswith("seccomp=")
    profile = json.loads(seccomp.removeprefix("seccomp="))
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule
        for name in rule["names"]
    }
    assert "ptrace" not in allowed
    assert "read" in allowed
    assert kw["network_mode"] == "none"
    assert kw["ulimits"][0]["Name"] == "nofile"
    assert kw["ulimits"][0]["Soft"] == kw["ulimits"][0]["Hard"] == 1024
    assert kw["shm_size"] == RunConfig(image="img").shm_bytes() == 1 << 30
    assert "mem_limit" not in kw
    assert "user" not in kw
    assert kw["read_only"] is False


def test_create_kwargs_map_every_flag(tmp_path: Path) -> None:
    cfg = RunConfig(
        image="img",
        env=(("A", "1"), ("B", "x=y")),
        mounts=(Mount(source=tmp_path, target="/data", read_only=True),),
        workdir="/w",
        user="1000:1000",
        hostname="h",
        network="host",
        memory=512 << 20,
        cpus=1.5,
        pids_limit=64,
        tty=True,
        interactive=True,
        init=True,
        read_only=True,
        name="n",
        labels=(("k", "v"),),
    )
    kw = DockerRuntime().create_kwargs(cfg)
    assert kw["command"] is None  # the image's Entrypoint + Cmd
    assert kw["environment"] == ["A=1", "B=x=y"]
    (mount,) = kw["mounts"]
    assert (mount["Source"], mount["Target"], mount["ReadOnly"]) == (str(tmp_path), "/data", True)
    assert (kw["working_dir"], kw["user"], kw["hostname"], kw["name"]) == (
        "/w",
        "1000:1000",
        "h",
        "n",
    )
    assert kw["network_mode"] == "host"
    assert kw["mem_limit"] == kw["memswap_limit"] == 512 << 20  # no swap
    assert kw["shm_size"] == 256 << 20
    assert kw["nano_cpus"] == 1_500_000_000
    assert kw["pids_limit"] == 64
    assert (kw["tty"], kw["stdin_open"], kw["init"], kw["read_only"]) == (True, True, True, True)
    assert kw["labels"] == {"k": "v"}


@pytest.mark.parametrize(
    ("gpus", "expect"),
    [
        ("all", {"Count": -1, "Capabilities": [["gpu"]]}),
        ("2", {"Count": 2, "Capabilities": [["gpu"]]}),
        ("device=0,2", {"DeviceIDs": ["0", "2"], "Capabilities": [["gpu"]]}),
        ("GPU-abc", {"DeviceIDs": ["GPU-abc"], "Capabilities": [["gpu"]]}),
        ("nvidia.com/gpu=all", {"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=all"]}),
    ],
)
def test_gpus_become_device_requests(gpus: str, expect: dict[str, object]) -> None:
    (req,) = DockerRuntime().create_kwargs(RunConfig(image="i", gpus=gpus))["device_requests"]
    for key, value in expect.items():
        assert req[key] == value


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        DockerRuntime().create_kwargs(RunConfig(image="i", gpus="0"))
    with pytest.raises(ConfigError, match="network 'bridge'"):
        DockerRuntime().create_kwargs(RunConfig(image="i", network="bridge"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def image() -> str:
    require(os.geteuid() == 0, "root")
    require(probe_socket().ok, "a running Docker engine (dockerd)")
    require(busybox.available(), "busybox-static")
    return busybox.docker_image()


def _containers(label: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


@pytest.mark.docker
def test_missing_image_is_a_clear_error(image: str) -> None:
    with (
        DockerRuntime() as rt,
        pytest.raises(ContainerError, match="not in the Docker engine") as info,
    ):
        rt.run(RunConfig(image="mlpack-test/absent:nope", command=("true",)))
    assert "docker load" in info.value.hint


@pytest.mark.docker
def test_stdin_is_forwarded_and_output_goes_to_the_given_fds(image: str, tmp_path: Path) -> None:
    r, w = os.pipe()
    os.write(w, b"from-stdin\n")
    os.close(w)
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        rt = DockerRuntime(stdin_fd=r, stdout_fd=out.fileno(), stderr_fd=err.fileno())
        with rt:
            result = rt.run(
                RunConfig(image=image, command=("sh", "-c", "cat; echo e >&2"), interactive=True)
            )
    os.close(r)
    assert result.exit_code == 0
    assert out_path.read_bytes() == b"from-stdin\n"
    assert err_path.read_bytes() == b"e\n"


@pytest.mark.docker
def test_container_is_removed_unless_keep(image: str) -> None:
    label = f"mlpack.test={uuid.uuid4().hex}"
    key, value = label.split("=")
    with DockerRuntime() as rt:
        rt.run(RunConfig(image=image, command=("true",), labels=((key, value),)))
        assert _containers(label) == []
        kept = rt.run(RunConfig(image=image, command=("true",), labels=((key, value),), keep=True))
    try:
        assert _containers(label) == [kept.container_id[:12]]
    finally:
        subprocess.run(["docker", "rm", "-f", kept.container_id], capture_output=True, check=False)


@pytest.mark.docker
def test_peak_memory_and_cpu_time_are_measured(image: str) -> None:
    with DockerRuntime() as rt:
        result = rt.run(
            RunConfig(
                image=image,
                command=("sh", "-c", "x=$(head -c 20000000 /dev/zero | tr '\\0' a); sleep 1"),
                memory=256 << 20,
            )
        )
    assert result.exit_code == 0
    assert result.memory_peak is not None
    assert result.memory_peak > 20_000_000
    assert result.cpu_time_us is not None
    assert result.cpu_time_us > 0


@pytest.mark.docker
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_and_removes_the_container(
    image: str, tmp_path: Path, signum: int
) -> None:
    label = f"mlpack.test={uuid.uuid4().hex}"
    key, value = label.split("=")
    script = tmp_path / "run.py"
    script.write_text(
        "from mlpack.runtime.docker import DockerRuntime\n"
        "from mlpack.runtime.protocol import RunConfig\n"
        "try:\n"
        f"    DockerRuntime().run(RunConfig(image={image!r}, command=('sleep', '300'),"
        f" labels=(({key!r}, {value!r}),)))\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        for _ in range(100):
            if _containers(label):
                break
            time.sleep(0.1)
        assert _containers(label), "the container never started"
        time.sleep(0.5)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "interrupted" in out
    assert _containers(label) == []


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@pytest.mark.docker
def test_tty_and_interactive_on_a_terminal(image: str) -> None:
    # The shell flushes typeahead when it sets up its line editor, so type only once the prompt
    # shows, as a person would; a thread plays the terminal on the pty's master side. It then
    # resizes the window (SIGWINCH) and asks `stty size` until the new size has reached the
    # container's tty.
    master, slave = os.openpty()
    _set_size(slave, 24, 80)
    seen = bytearray()

    def terminal() -> None:
        with contextlib.suppress(OSError):
            while b"# " not in seen:
                seen.extend(os.read(master, 65536))
            os.write(master, b"echo typed-$((6*7)); tty; stty size\n")
            while b"24 80" not in seen:
                seen.extend(os.read(master, 65536))
            _set_size(slave, 33, 101)
            os.kill(os.getpid(), signal.SIGWINCH)
            for _ in range(50):
                if b"33 101" in seen:
                    break
                os.write(master, b"stty size\n")
                time.sleep(0.2)
                os.set_blocking(master, False)
                with contextlib.suppress(BlockingIOError):
                    while chunk := os.read(master, 65536):
                        seen.extend(chunk)
                os.set_blocking(master, True)
            os.write(master, b"exit 4\n")
            while chunk := os.read(master, 65536):
                seen.extend(chunk)

    reader = threading.Thread(target=terminal, daemon=True)
    reader.start()
    # A safety net, not a timed assertion: never let a lost keystroke hang the suite.
    label = ("mlpack.test", uuid.uuid4().hex)
    watchdog = threading.Timer(
        120,
        lambda: [
            subprocess.run(["docker", "rm", "-f", c], capture_output=True, check=False)
            for c in _containers("=".join(label))
        ],
    )
    watchdog.start()
    try:
        with DockerRuntime(stdin_fd=slave, stdout_fd=slave, stderr_fd=slave) as rt:
            result = rt.run(
                RunConfig(image=image, command=("sh",), tty=True, interactive=True, labels=(label,))
            )
    finally:
        watchdog.cancel()
        os.close(slave)
        reader.join(timeout=10)
        os.close(master)
    assert result.exit_code == 4
    assert b"typed-42" in seen
    assert b"/dev/pts/" in seen
    assert b"33 101" in seen  # the resize reached the container


def test_shm_is_sized_as_the_embedded_runtime_sizes_it() -> None:
    """One rule (RunConfig.shm_bytes) for both backends: half the memory limit, else given."""
    from mlpack.runtime.embedded.spec import SpecOptions, default_mounts

    for config in (
        RunConfig(image="img", memory=1 << 30),
        RunConfig(image="img", shm_size=5 << 20),
    ):
        docker_size = DockerRuntime().create_kwargs(config)["shm_size"]
        embedded = default_mounts(config, SpecOptions(hostname="h", userns=True))
        shm = next(m for m in embedded if m["destination"] == "/dev/shm")
        assert f"size={docker_size}" in shm["options"]
    assert (
        DockerRuntime().create_kwargs(RunConfig(image="img", memory=1 << 30))["shm_size"] == 1 << 29
    )
