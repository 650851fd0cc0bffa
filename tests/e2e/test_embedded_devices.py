"""Device access control and the store's privacy, as an attacker inside a container tries them
(issue 10, items 1 and 2; SECURITY-AND-ISOLATION §6 Devices, "The store is private").

Rootless containers get no device cgroup: their /dev holds only bind mounts of the host's
default nodes, and the kernel refuses a user namespace device nodes of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.embedded_support import make_rootfs, require_root, run_cli

pytestmark = [pytest.mark.root]

# Host devices a container must never open: (name, type, major, minor).
HOST_DEVICES = (
    ("loop0", "b", 7, 0),
    ("kvm", "c", 10, 232),
    ("fuse", "c", 10, 229),
    ("tty0", "c", 4, 0),
    ("mem", "c", 1, 1),
)


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    root = make_rootfs(tmp_path_factory.mktemp("image") / "rootfs")
    (root / "opt").mkdir()
    os.mknod(root / "opt" / "loop0", stat.S_IFBLK | 0o666, os.makedev(7, 0))  # shipped in the image
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def results(out: str) -> dict[str, str]:
    """``name verdict`` lines printed by the scripts below."""
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def test_cap_mknod_cannot_open_host_devices(rootfs: Path, home: Path) -> None:
    script = "".join(
        f"mknod /dev/x{name} {kind} {major} {minor} && echo made{name} ok; "
        f"head -c1 /dev/x{name} >/dev/null 2>/tmp/e || echo {name} $(cat /tmp/e); "
        for name, kind, major, minor in HOST_DEVICES
    )
    done = run_cli(
        [
            "run",
            "--cap-profile",
            "docker",
            str(rootfs),
            "sh",
            "-c",
            script + "echo null $(echo x > /dev/null && echo ok)",
        ],
        home,
    )
    assert done.returncode == 0, done.stderr
    got = results(done.stdout)
    assert got.pop("null") == "ok"  # the default devices stay usable
    for name, *_ in HOST_DEVICES:
        assert got[f"made{name}"] == "ok"  # mknod is allowed, as runc allows it
        assert "Operation not permitted" in got[name], done.stdout  # open is not


def test_a_device_node_in_the_image_is_unusable(rootfs: Path, home: Path) -> None:
    for profile in ("default", "docker"):
        done = run_cli(
            [
                "run",
                "--cap-profile",
                profile,
                str(rootfs),
                "sh",
                "-c",
                "head -c1 /opt/loop0 >/dev/null && echo opened",
            ],
            home,
        )
        assert "opened" not in done.stdout
        assert "loop0" in done.stderr  # EACCES (nodev layer) or EPERM (device cgroup)


def test_oci_bundle_device_rules_are_applied(tmp_path: Path) -> None:
    """``mlpack runtime`` reads linux.resources.devices: what it allows opens, nothing else."""
    require_root()
    bundle = tmp_path / "bundle"
    rootfs = make_rootfs(bundle / "rootfs")
    os.mknod(rootfs / "kvm", stat.S_IFCHR | 0o666, os.makedev(10, 232))  # a bind rootfs: no nodev
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "args": [
                "sh",
                "-c",
                "head -c0 /dev/fuse && echo fuse ok; head -c1 /kvm || echo kvm no",
            ],
            "cwd": "/",
            "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0},
        },
        "root": {"path": "rootfs"},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "resources": {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                ]
            },
        },
    }
    (bundle / "config.json").write_text(json.dumps(config))
    done = run_cli(
        ["runtime", "--root", str(tmp_path / "state"), "run", "--bundle", str(bundle), "dev1"],
        tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert "fuse ok" in done.stdout
    assert "kvm no" in done.stdout
    assert "Operation not permitted" in done.stderr


@pytest.fixture
def open_top() -> Iterator[Path]:
    """A directory every user can search, so only the store's own modes protect what is in it."""
    top = Path(tempfile.mkdtemp(prefix="mlpack-store-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def reachable_by(uid: int, path: Path) -> bool:
    """Whether host user ``uid`` can stat ``path`` (through every directory above it)."""
    done = subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "stat", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 or "Permission denied" in done.stderr, done.stderr
    return done.returncode == 0


def test_setuid_file_in_a_kept_layer_is_out_of_other_users_reach(
    rootfs: Path, open_top: Path
) -> None:
    home = open_top / "home"
    done = run_cli(
        ["run", "--keep", "--name", "suid", str(rootfs), "sh", "-c",
         "cp /bin/busybox /rootsh && chmod 4755 /rootsh && grep ' / / ' /proc/self/mountinfo"],
        home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    root_opts = done.stdout.split()[5].split(",")
    assert "nosuid" in root_opts  # the writable layer honours no setuid bit, even inside
    assert "nodev" in root_opts
    containers = home / "containers"
    planted = containers / "suid" / "upper" / "rootsh"
    assert planted.stat().st_mode & stat.S_ISUID  # the attack file is really there, setuid root
    assert stat.S_IMODE(containers.stat().st_mode) == 0o710
    assert stat.S_IMODE((containers / "suid").stat().st_mode) == 0o700
    assert stat.S_IMODE((containers / "suid" / "work").stat().st_mode) == 0o700
    assert reachable_by(65534, home)  # the store's parent is open: its own modes must hold
    assert not reachable_by(65534, containers / "suid")
    assert not reachable_by(65534, planted)


def test_rootless_container_gets_no_device_and_a_private_store(
    rootfs: Path, open_top: Path
) -> None:
    """Rootless: the kernel refuses mknod in a user namespace and the layer is nodev; the
    container's directory is its owner's alone.
    """
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    image = make_rootfs(open_top / "rootfs", owner=65534)
    (image / "opt").mkdir()
    os.mknod(image / "opt" / "loop0", stat.S_IFBLK | 0o666, os.makedev(7, 0))
    home = open_top / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    done = run_cli(
        ["run", "--keep", "--name", "rl", str(image), "sh", "-c",
         ("mknod /dev/x b 7 0 && echo made; head -c1 /opt/loop0 >/dev/null && echo opened; "
         "echo x > /dev/null && echo null ok")],
        home,
        user=65534,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "null ok\n"  # no node made, the image's node not opened
    assert stat.S_IMODE((home / "containers" / "rl").stat().st_mode) == 0o700
    assert not reachable_by(65533, home / "containers" / "rl")


def test_a_cdi_gpu_opens_and_other_devices_do_not(rootfs: Path, tmp_path: Path) -> None:
    """The device cgroup lets through exactly the nodes a CDI spec adds (``--gpus``)."""
    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import Mount, RunConfig

    host = tmp_path / "nodes"
    host.mkdir()
    os.mknod(host / "gpu0", stat.S_IFCHR | 0o666, os.makedev(10, 229))  # opens with no driver setup
    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "fake.json").write_text(json.dumps({
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "0", "containerEdits": {
            "deviceNodes": [{"path": "/dev/fakegpu0", "hostPath": str(host / "gpu0")}]}}],
    }))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    (out / "log").touch()
    script = (
        "head -c0 /dev/fakegpu0 && echo gpu0 ok >> /out/log; "
        "mknod /dev/disk b 7 0; head -c0 /dev/disk || echo disk refused >> /out/log"
    )
    result = EmbeddedRuntime(
        root=tmp_path / "containers", cap_profile="docker", cdi_spec_dirs=(specs,)
    ).run(RunConfig(
        image=str(rootfs), command=("sh", "-c", script), gpus="nvidia.com/gpu=0",
        mounts=(Mount(source=out, target="/out"),),
    ))  # fmt: skip
    assert result.exit_code == 0
    assert (out / "log").read_text().split() == ["gpu0", "ok", "disk", "refused"]
