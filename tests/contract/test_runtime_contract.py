"""The same run contract over every backend: a flag means the same thing on embedded and docker.

Each case runs a busybox-static image (tests/busybox.py) in the backend's own image store and
reads what the container printed through pytest's ``capfd`` (both backends write to fds 1/2).
Both backends need root here (namespaces and cgroups; the Docker socket); docker also needs a
running engine. In CI they are required, elsewhere skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlpack.runtime.protocol import Mount, RunConfig, RunResult, Runtime
from tests import busybox
from tests.conftest import require

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.root]

# runc's default capabilities: AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10).
CAP_EFF = f"{(1 << 29) | (1 << 5) | (1 << 10):016x}"
MiB = 1 << 20


class Backend:
    """A runtime plus the image references it knows the test images by."""

    def __init__(
        self, runtime: Runtime, image: str, ep_image: str, store_root: Path | None = None
    ) -> None:
        self.runtime = runtime
        self.image = image
        self.ep_image = ep_image  # with an Entrypoint and a Cmd
        self.store_root = store_root  # the embedded runtime's store; None for docker

    def run(self, *command: str, image: str | None = None, **options: object) -> RunResult:
        config = RunConfig(image=image or self.image, command=command, **options)  # type: ignore[arg-type]
        return self.runtime.run(config)


def _docker() -> Backend:
    from mlpack.runtime.docker import DockerRuntime
    from mlpack.runtime.dockersock import probe_socket

    require(os.geteuid() == 0, "root")
    require(probe_socket().ok, "a running Docker engine (dockerd)")
    require(shutil.which("docker") is not None, "the docker CLI (docker import)")
    require(busybox.available(), "busybox-static")
    return Backend(DockerRuntime(), busybox.docker_image(), busybox.docker_image(entrypoint=True))


def _embedded(store_root: Path) -> Backend:
    require(os.geteuid() == 0, "root")
    require(busybox.available(), "busybox-static")
    require(
        importlib.util.find_spec("mlpack.runtime.embedded") is not None
        and hasattr(importlib.import_module("mlpack.runtime.embedded"), "EmbeddedRuntime"),
        "the embedded runtime (mlpack.runtime.embedded.EmbeddedRuntime)",
    )
    from mlpack.oci.store import Store
    from mlpack.runtime.embedded import EmbeddedRuntime

    # The embedded runtime opens Store.default(), i.e. $MLPACK_HOME (set by the fixture).
    store = Store(store_root)
    image = busybox.store_image(store)
    return Backend(
        EmbeddedRuntime(), image, busybox.store_image(store, entrypoint=True), store_root
    )


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("docker", marks=pytest.mark.docker)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    if request.param == "docker":
        docker_backend = _docker()
        yield docker_backend
        docker_backend.runtime.close()  # type: ignore[attr-defined]
        return
    store_root = tmp_path_factory.mktemp("store")
    saved = os.environ.get("MLPACK_HOME")
    os.environ["MLPACK_HOME"] = str(store_root)
    try:
        yield _embedded(store_root)
    finally:
        if saved is None:
            os.environ.pop("MLPACK_HOME", None)
        else:
            os.environ["MLPACK_HOME"] = saved


def test_exit_code(backend: Backend) -> None:
    assert backend.run("sh", "-c", "exit 3").exit_code == 3
    assert backend.run("true").exit_code == 0


def test_command_replaces_cmd_and_keeps_the_entrypoint(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    backend.run(image=backend.ep_image)  # no command: Entrypoint + Cmd
    assert capfd.readouterr().out.splitlines()[-1] == "ep default"
    backend.run("given", "args", image=backend.ep_image)
    assert capfd.readouterr().out.splitlines()[-1] == "ep given args"


def test_killed_by_a_signal(backend: Backend) -> None:
    # The payload is pid 1, which ignores signals it has no handler for, so the signal is
    # delivered to a child (a nested shell, or the payload under --init) and reported as 128+N.
    nested = backend.run("sh", "-c", "sh -c 'kill -KILL $$'; exit $?")
    assert nested.exit_code == 128 + 9
    under_init = backend.run("sh", "-c", "kill -TERM $$; sleep 5", init=True)
    assert under_init.exit_code == 128 + 15
    assert under_init.signal in {None, 15}
    assert not under_init.oom_killed


def test_stdout_and_stderr_stream(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    backend.run("sh", "-c", "echo to-out; echo to-err >&2")
    out, err = capfd.readouterr()
    assert "to-out" in out
    assert "to-err" in err
    assert "to-err" not in out


def test_env_is_added_after_the_image_env(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    backend.run("sh", "-c", 'echo "A=$A B=$B PATH=$PATH"', env=(("A", "1"), ("B", "two words")))
    out = capfd.readouterr().out
    assert "A=1 B=two words PATH=" in out
    assert "/bin" in out.split("PATH=")[1]  # the image's PATH survived


def test_mounts_read_only_and_read_write(
    backend: Backend, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("weights\n")
    outputs = tmp_path / "out"
    outputs.mkdir()
    mounts = (
        Mount(source=data, target="/data", read_only=True),
        Mount(source=outputs, target="/outputs"),
    )
    result = backend.run(
        "sh",
        "-c",
        "cat /data/in.txt; echo x > /data/new && echo RO-WRITABLE; echo model > /outputs/m.bin",
        mounts=mounts,
    )
    assert result.exit_code == 0
    assert "weights" in capfd.readouterr().out
    assert not (data / "new").exists()
    assert (outputs / "m.bin").read_text() == "model\n"
    assert "RO-WRITABLE" not in capfd.readouterr().out


def test_workdir_user_hostname(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    backend.run(
        "sh",
        "-c",
        'echo "$(pwd) $(id -u):$(id -g) $(hostname)"',
        workdir="/tmp",
        user="65534:65534",
        hostname="trainbox",
    )
    assert "/tmp 65534:65534 trainbox" in capfd.readouterr().out


def test_user_by_name_resolves_in_the_image(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    backend.run("id", "-u", user="nobody")
    assert capfd.readouterr().out.strip().endswith("65534")


def test_network_none_has_only_loopback(
    backend: Backend, capfd: pytest.CaptureFixture[str]
) -> None:
    backend.run("cat", "/proc/net/dev", network="none")
    lines = capfd.readouterr().out.splitlines()[2:]
    assert [ln.split(":")[0].strip() for ln in lines if ":" in ln] == ["lo"]


def test_read_only_rootfs(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    result = backend.run(
        "sh",
        "-c",
        "touch /etc/x && echo WROTE; touch /tmp/y 2>/dev/null; exit 0",
        read_only=True,
    )
    assert result.exit_code == 0
    assert "WROTE" not in capfd.readouterr().out
    assert backend.run("sh", "-c", "touch /etc/x").exit_code == 0  # writable by default


def test_memory_limit_oom_is_reported(backend: Backend) -> None:
    # A shell variable holding 200 MB in a 32 MiB container (no swap on either backend).
    result = backend.run(
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        memory=32 * MiB,
    )
    assert result.oom_killed
    assert result.exit_code == 137
    assert result.memory_limit == 32 * MiB


def test_pids_limit_holds(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    # A child shell tries to start 40 sleepers and records each one that started; the count
    # is read back with builtins only, since no fork is possible once the limit is reached.
    script = (
        "sh -c 'for i in $(seq 1 40); do sleep 5 & echo $! >> /tmp/started; done' 2>/dev/null; "
        "n=0; while read p; do n=$((n+1)); done < /tmp/started; echo started=$n"
    )
    backend.run("sh", "-c", script, pids_limit=12)
    started = int(capfd.readouterr().out.split("started=")[1].split()[0])
    assert 0 < started < 12


def test_capabilities_and_no_new_privs(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    backend.run("cat", "/proc/self/status")
    status = dict(line.split(":", 1) for line in capfd.readouterr().out.splitlines() if ":" in line)
    fields = {k: v.strip() for k, v in status.items()}
    assert fields["CapEff"] == CAP_EFF
    assert fields["CapBnd"] == CAP_EFF
    assert fields["CapInh"] == "0" * 16
    assert fields["CapAmb"] == "0" * 16
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_seccomp_refuses_namespace_creation(backend: Backend) -> None:
    # unshare(2) needs CAP_SYS_ADMIN under both default profiles.
    assert backend.run("unshare", "-n", "true").exit_code != 0


def test_labels_and_keep_are_accepted(backend: Backend) -> None:
    result = backend.run("true", labels=(("org.mlpack.test", "1"),))
    assert result.exit_code == 0
    assert result.container_id


@pytest.fixture(scope="module")
def debian(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> str:
    """THE Debian base (tests/oci_fixtures.py) in the backend's store; docker gets it via export."""
    from mlpack.oci.store import Store
    from tests.oci_fixtures import debian_base

    if backend.store_root is not None:
        store = Store(backend.store_root)
        debian_base(store)
        return _debian_ref()
    from mlpack.oci.archive import export_image

    store = Store(tmp_path_factory.mktemp("debian-store"))
    debian_base(store)
    tar = tmp_path_factory.mktemp("debian-export") / "base.tar"
    export_image(store, _debian_ref(), tar, tag=_debian_ref())
    loaded = subprocess.run(
        ["docker", "load", "-i", str(tar)], capture_output=True, text=True, check=True
    )
    return loaded.stdout.strip().rsplit("Loaded image: ", 1)[-1].strip()


def _debian_ref() -> str:
    from mlpack.base.debian import base_reference

    return base_reference("3.11")


@pytest.mark.slow
def test_python_runs_in_the_debian_base(
    backend: Backend, debian: str, capfd: pytest.CaptureFixture[str]
) -> None:
    result = backend.run(
        "python3",
        "-c",
        "import sys, ssl; print('py', sys.version_info[:2], ssl.OPENSSL_VERSION)",
        image=debian,
    )
    assert result.exit_code == 0
    out = capfd.readouterr().out
    assert "py (3, 11) OpenSSL" in out


@pytest.mark.slow
def test_ptrace_and_process_vm_are_refused(
    backend: Backend, debian: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from tests.e2e.test_embedded_ptrace import PROBE

    result = backend.run("python3", "-c", PROBE, image=debian)
    assert result.exit_code == 0
    assert capfd.readouterr().out.split("\n")[:2] == ["ptrace -1 1", "vm_readv -1 1"]
