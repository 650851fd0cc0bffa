"""Issue 10's runtime items, as negative tests (root): ids, dangling /etc targets, setup
failures after create, namespaces by path, rootless over a root-owned rootfs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.embedded_support import make_rootfs, require_root, run_cli
from tests.e2e.test_embedded_oci import rt, rt_detached, runc_spec, wait_until_stopped

pytestmark = [pytest.mark.root]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    require_root()
    return make_rootfs(tmp_path / "rootfs")


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    require_root()
    b = tmp_path / "bundle"
    make_rootfs(b / "rootfs")
    return b


def _edit(bundle: Path, **process: object) -> dict[str, object]:
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(process)
    (bundle / "config.json").write_text(json.dumps(config))
    return dict(config)


def _write(bundle: Path, config: dict[str, object]) -> None:
    (bundle / "config.json").write_text(json.dumps(config))


# Item 3: uids and gids outside 0..2147483647 are refused wherever they enter.


@pytest.mark.parametrize("user", ["4294967295", "99999999999", "0:4294967295"])
def test_run_refuses_a_uid_or_gid_out_of_range(image: Path, tmp_path: Path, user: str) -> None:
    done = run_cli(["run", "-u", user, str(image), "id", "-u"], tmp_path / "home")
    assert done.returncode != 0
    assert "is outside 0..2147483647" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_passwd_entry_out_of_range_is_refused(image: Path, tmp_path: Path) -> None:
    with (image / "etc" / "passwd").open("a") as f:
        f.write("evil:x:4294967295:0:evil:/:/bin/sh\n")
    done = run_cli(["run", "-u", "evil", str(image), "id", "-u"], tmp_path / "home")
    assert done.returncode != 0
    assert "uid of evil 4294967295 is outside 0..2147483647" in done.stderr
    assert done.stdout == ""


def test_a_bundle_user_out_of_range_is_refused(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["id", "-u"])
    _edit(bundle, user={"uid": 4294967295, "gid": 0})
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode != 0
    assert "process.user.uid 4294967295 is outside 0..2147483647" in done.stderr
    assert "Traceback" not in done.stderr


# Item 7: a dangling /etc/hosts or /etc/resolv.conf gets its target made inside the root.


def test_dangling_etc_hosts_and_resolv_conf_symlinks_run(image: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host-side"
    (image / "etc" / "hosts").symlink_to(outside / "hosts")
    (image / "etc" / "resolv.conf").symlink_to("../run/systemd/resolve/stub-resolv.conf")
    done = run_cli(["run", str(image), "cat", "/etc/hosts"], tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert "localhost" in done.stdout
    assert not outside.exists()


# Item 13: any failure between create and exec fails create/start/run with its reason.


def test_a_missing_program_fails_create_with_the_reason(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["no-such-program"])
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "c1") != 0
    assert "'no-such-program' not found" in (tmp_path / "detached.log").read_text()
    assert not (root / "c1").exists()


def test_an_unusable_working_directory_fails_create(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["true"])
    _edit(bundle, cwd="/etc/passwd")
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "c1") != 0
    assert "working directory /etc/passwd" in (tmp_path / "detached.log").read_text()


def test_an_exec_failure_after_create_fails_start(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["/no/such/program"])
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "c1") == 0
    done = rt(root, "start", "c1")
    assert done.returncode != 0
    assert "exec /no/such/program" in done.stderr
    wait_until_stopped(root, "c1")
    assert rt(root, "delete", "c1").returncode == 0


def test_mlpack_run_reports_a_failed_exec(image: Path, tmp_path: Path) -> None:
    done = run_cli(["run", str(image), "/no/such/program"], tmp_path / "home")
    assert done.returncode != 0
    assert "exec /no/such/program" in done.stderr


# Item 14: namespaces by path are joined; a path of the wrong type is refused.


def _ns(pid: int | str) -> str:
    return str(Path(f"/proc/{pid}/ns/net").readlink())


@pytest.fixture
def netns_holder() -> Iterator[int]:
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        deadline = 100
        while _ns(proc.pid) == _ns("self"):
            deadline -= 1
            assert deadline, "unshare never entered its network namespace"
            subprocess.run(["sleep", "0.05"], check=True)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def _set_namespace(bundle: Path, kind: str, path: str | None) -> None:
    config = json.loads((bundle / "config.json").read_text())
    spaces = [n for n in config["linux"]["namespaces"] if n["type"] != kind]
    if path is not None:
        spaces.append({"type": kind, "path": path})
    config["linux"]["namespaces"] = spaces
    _write(bundle, config)


def test_a_network_namespace_path_is_joined(
    bundle: Path, tmp_path: Path, netns_holder: int
) -> None:
    runc_spec(bundle, ["readlink", "/proc/self/ns/net"])
    _set_namespace(bundle, "network", f"/proc/{netns_holder}/ns/net")
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _ns(netns_holder)


def test_a_namespace_path_of_the_wrong_type_is_refused(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["true"])
    _set_namespace(bundle, "network", "/proc/self/ns/uts")
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode != 0
    assert "is a uts namespace, not network" in done.stderr


def test_a_config_without_a_mount_namespace_runs(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["cat", "/etc/group"])
    _set_namespace(bundle, "mount", None)
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode == 0, done.stderr
    assert "extra:x:2000:user" in done.stdout  # the bundle's rootfs, not the host's /etc
    assert str(bundle) not in Path("/proc/self/mountinfo").read_text()  # nothing mounted here


# Item 10: rootless over a root-owned rootfs says why, and what to do.


@pytest.fixture
def nobody_home() -> Iterator[Path]:
    require_root()
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    path = Path(tempfile.mkdtemp(prefix="mlpack-rootless-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_rootless_over_a_root_owned_rootfs_explains(nobody_home: Path) -> None:
    image = make_rootfs(nobody_home / "rootfs")  # owned by root, unmapped for nobody
    home = nobody_home / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    done = run_cli(["run", str(image), "true"], home, user=65534)
    assert done.returncode != 0
    assert "not mapped in this rootless container" in done.stderr
    assert "hint:" in done.stderr
    assert "Permission denied" not in done.stderr.splitlines()[0]


# Item 4: nothing that walks a container's tree recurses; cleanup steps are independent.


def test_a_container_that_made_a_deep_tree_is_cleaned_up(image: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = "i=0; while [ $i -lt 1200 ]; do mkdir d && cd d || exit 9; i=$((i+1)); done"
    done = run_cli(["run", str(image), "sh", "-c", script], home, timeout=300)
    assert done.returncode == 0, done.stderr
    assert run_cli(["ps"], home).returncode == 0
    assert list((home / "containers").iterdir()) == []


def test_rootless_run_refuses_a_uid_out_of_range(nobody_home: Path) -> None:
    image = make_rootfs(nobody_home / "rootfs", owner=65534)
    home = nobody_home / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    done = run_cli(["run", "-u", "4294967295", str(image), "id", "-u"], home, user=65534)
    assert done.returncode != 0
    assert "is outside 0..2147483647" in done.stderr
    assert done.stdout == ""


def test_a_user_namespace_path_is_joined(bundle: Path, tmp_path: Path) -> None:
    require(shutil.which("unshare") is not None, "unshare (util-linux)")
    holder = subprocess.Popen(["unshare", "--user", "--map-root-user", "sleep", "600"])
    try:
        deadline = 100
        while (
            Path(f"/proc/{holder.pid}/ns/user").readlink() == Path("/proc/self/ns/user").readlink()
        ):
            deadline -= 1
            assert deadline, "unshare never entered its user namespace"
            subprocess.run(["sleep", "0.05"], check=True)
        runc_spec(bundle, ["readlink", "/proc/self/ns/user"])
        _set_namespace(bundle, "user", f"/proc/{holder.pid}/ns/user")
        done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(Path(f"/proc/{holder.pid}/ns/user").readlink())
    finally:
        holder.kill()
        holder.wait()


def test_a_user_namespace_without_id_mappings_is_refused(bundle: Path, tmp_path: Path) -> None:
    """At least one uid and one gid mapping (runc validate/rootless.go), never an unmapped run."""
    runc_spec(bundle, ["cat", "/proc/self/uid_map"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "user"})
    _write(bundle, config)
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode != 0
    assert "needs at least one uid and one gid mapping" in done.stderr
    assert done.stdout == ""


def test_masking_refuses_a_dev_null_that_is_not_the_null_device(
    bundle: Path, tmp_path: Path
) -> None:
    """CVE-2025-31133: a config whose /dev/null is another device (here zero) must not get it
    bound over /proc/kcore and the other masked files."""
    runc_spec(bundle, ["sh", "-c", "head -c4 /proc/kcore | wc -c"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["devices"] = [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 5, "fileMode": 438}
    ]
    _write(bundle, config)
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode != 0, done.stdout
    assert "/dev/null is not the null device" in done.stderr


def test_a_sysctl_is_never_written_outside_procfs(bundle: Path, tmp_path: Path) -> None:
    """CVE-2024-45310: a mount over /proc/sys must not redirect a sysctl write to a host file."""
    fake = tmp_path / "fake-sys"
    (fake / "net" / "ipv4").mkdir(parents=True)
    (fake / "net" / "ipv4" / "ip_forward").write_text("0\n")
    runc_spec(bundle, ["true"])
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"].append(
        {"destination": "/proc/sys", "type": "bind", "source": str(fake), "options": ["rbind"]}
    )
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    _write(bundle, config)
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c1")
    assert done.returncode != 0
    assert "is not on procfs" in done.stderr
    assert (fake / "net" / "ipv4" / "ip_forward").read_text() == "0\n"
