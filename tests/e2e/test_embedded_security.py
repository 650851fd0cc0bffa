"""Isolation and security of the embedded runtime, checked from inside real containers (root)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from mlpack.runtime.protocol import Mount
from tests.conftest import require
from tests.e2e.embedded_support import make_rootfs, require_root, run_cli

pytestmark = [pytest.mark.root]

CAP_DEFAULT = (1 << 5) | (1 << 10) | (1 << 29)  # KILL, NET_BIND_SERVICE, AUDIT_WRITE


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    return make_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def sh(rootfs: Path, home: Path, script: str, *flags: str) -> tuple[int, str, str]:
    done = run_cli(["run", *flags, str(rootfs), "sh", "-c", script], home)
    return done.returncode, done.stdout, done.stderr


def status_field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in {text!r}")


def test_pid_one_hostname_and_payload_exe(rootfs: Path, home: Path) -> None:
    code, out, err = sh(
        rootfs, home, "echo $$; hostname; readlink /proc/1/exe", "--hostname", "box"
    )
    assert code == 0, err
    assert out.split() == ["1", "box", "/bin/busybox"]


def test_host_files_and_processes_are_invisible(rootfs: Path, home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("secret")
    code, out, err = sh(rootfs, home, f"test -e {marker} && echo visible; ps -o pid | wc -l")
    assert code == 0, err
    assert "visible" not in out
    assert int(out.split()[-1]) <= 4  # header, sh, ps, wc: only the container's own


def test_status_caps_no_new_privs_seccomp(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "cat /proc/self/status")
    assert code == 0, err
    assert int(status_field(out, "CapEff"), 16) == CAP_DEFAULT
    assert int(status_field(out, "CapBnd"), 16) == CAP_DEFAULT
    assert int(status_field(out, "CapInh"), 16) == 0
    assert int(status_field(out, "CapAmb"), 16) == 0
    assert status_field(out, "NoNewPrivs") == "1"
    assert status_field(out, "Seccomp") == "2"


def test_docker_cap_profile_gives_fourteen(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "cat /proc/self/status", "--cap-profile", "docker")
    assert code == 0, err
    assert int(status_field(out, "CapEff"), 16).bit_count() == 14


def test_non_root_user_has_no_effective_caps(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "id -u; id -g; id -G; cat /proc/self/status", "-u", "user")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["1000", "1000"]
    assert "2000" in lines[2].split()  # supplementary group from the image's /etc/group
    assert int(status_field(out, "CapEff"), 16) == 0


def test_only_stdio_fds_and_cwd_inside_root(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "ls /proc/$$/fd; readlink /proc/$$/cwd", "-w", "/tmp")
    assert code == 0, err
    *fds, cwd = out.split()
    assert sorted(int(f) for f in fds) == [0, 1, 2]
    assert cwd == "/tmp"


def test_mount_and_unshare_are_refused(rootfs: Path, home: Path) -> None:
    code, out, _ = sh(
        rootfs, home, "mount -t tmpfs none /mnt 2>&1; echo m=$?; unshare -m true 2>&1; echo u=$?"
    )
    assert code == 0
    assert "m=0" not in out
    assert "u=0" not in out


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the probe is x86_64")
def test_seccomp_clone3_enosys_vsock_and_unshare_denied(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "probe c; echo $?; probe v; echo $?; probe n; echo $?")
    assert code == 0, err
    clone3, vsock, unshare = (int(x) for x in out.split())
    assert clone3 == 38  # ENOSYS, so libc falls back to clone (which the filter can inspect)
    assert vsock == 1  # EPERM
    assert unshare == 1  # EPERM


def test_proc_sys_sysrq_and_masked_paths_not_writable(rootfs: Path, home: Path) -> None:
    script = (
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null; echo sys=$?; "
        "echo h > /proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; "
        "cat /proc/kcore 2>/dev/null | wc -c; "
        "touch /proc/acpi/x 2>/dev/null; echo acpi=$?; "
        "ls /sys/firmware | wc -l"
    )
    code, out, err = sh(rootfs, home, script)
    assert code == 0, err
    lines = out.split()
    assert "sys=0" not in lines
    assert "sysrq=0" not in lines
    assert lines[2] == "0"  # /proc/kcore is /dev/null: empty
    assert "acpi=0" not in lines
    assert lines[4] == "0"  # /sys/firmware is an empty tmpfs


def test_read_only_rootfs_and_ro_volume(rootfs: Path, home: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    code, out, _ = sh(
        rootfs,
        home,
        "touch /x 2>/dev/null; echo root=$?; touch /data/y 2>/dev/null; echo data=$?; "
        "touch /tmp/z; echo tmp=$?",
        "--read-only",
        "-v",
        f"{data}:/data:ro",
    )
    assert code == 0
    assert out.split() == ["root=1", "data=1", "tmp=0"]
    assert not (data / "y").exists()


def test_writable_layer_leaves_the_image_untouched(
    rootfs: Path, home: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = sh(
        rootfs, home, "echo hi > /new; rm /bin/cat; echo r > /out/result", "-v", f"{out_dir}:/out"
    )
    assert code == 0, err
    assert not (rootfs / "new").exists()
    assert (rootfs / "bin" / "cat").is_symlink()
    assert (out_dir / "result").read_text() == "r\n"


def test_image_dev_symlink_to_root_leaves_host_untouched(tmp_path: Path) -> None:
    require_root()
    evil = make_rootfs(tmp_path / "evil")
    shutil.rmtree(evil / "dev")
    (evil / "dev").symlink_to("/")
    before = sorted(p.name for p in evil.iterdir())
    done = run_cli(["run", str(evil), "true"], tmp_path / "home")
    assert done.returncode != 0
    assert "/dev" in done.stderr
    assert sorted(p.name for p in evil.iterdir()) == before
    assert not Path("/null").exists()


def test_image_dev_null_symlink_is_replaced(tmp_path: Path) -> None:
    require_root()
    evil = make_rootfs(tmp_path / "evil")
    (evil / "dev" / "null").symlink_to("/etc/passwd")
    (evil / "dev" / "console").symlink_to("/etc/group")
    passwd = (evil / "etc" / "passwd").read_text()
    host_passwd = Path("/etc/passwd").read_text()
    done = run_cli(
        ["run", str(evil), "sh", "-c", "echo pwned > /dev/null; echo pwned > /dev/console; true"],
        tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert (evil / "etc" / "passwd").read_text() == passwd
    assert Path("/etc/passwd").read_text() == host_passwd


def test_setuid_binary_gains_nothing(tmp_path: Path) -> None:
    require_root()
    image = make_rootfs(tmp_path / "suid")
    suid = image / "bin" / "suid-probe"
    shutil.copy2(image / "bin" / "probe", suid)
    os.chown(suid, 0, 0)
    suid.chmod(0o4755)
    done = run_cli(
        ["run", "-u", "nobody", str(image), "sh", "-c", "suid-probe u; echo $?"], tmp_path / "home"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(65534 & 255)]  # euid stayed nobody: no_new_privs


def test_loopback_only_by_default_and_host_network_opt_in(rootfs: Path, home: Path) -> None:
    code, out, err = sh(rootfs, home, "ls /sys/class/net")
    assert code == 0, err
    assert out.split() == ["lo"]
    code, out, err = sh(rootfs, home, "ip link show lo")
    assert "UP" in out
    code, out, err = sh(rootfs, home, "ls /sys/class/net", "--network", "host")
    assert code == 0, err
    assert sorted(out.split()) == sorted(p.name for p in Path("/sys/class/net").iterdir())


HOOK = """#!/usr/bin/python3
import json, os, sys
state = json.load(sys.stdin)
config = json.load(open(os.path.join(state["bundle"], "config.json")))
with open(os.path.join(config["root"]["path"], "hooked"), "w") as f:
    f.write("hooked\\n")
with open("@LOG@", "w") as f:
    json.dump({"env": dict(os.environ), "state": state, "argv": sys.argv, "cwd": os.getcwd()}, f)
"""


def test_gpu_cdi_edits_and_scrubbed_create_container_hook(rootfs: Path, tmp_path: Path) -> None:
    """A fake CDI spec: its device node, env and hook reach the container; the hook sees
    neither the image's nor the user's environment (no LD_PRELOAD, CVE-2025-23266)."""
    import json
    import shutil as sh_

    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import RunConfig

    require_root()
    require(sh_.which("python3") is not None, "python3 on the host, for the fake hook")
    log = tmp_path / "hook.json"
    hook = tmp_path / "fake-cdi-hook"
    hook.write_text(HOOK.replace("@LOG@", str(log)))
    hook.chmod(0o755)
    specs = tmp_path / "cdi"
    specs.mkdir()
    (specs / "fake.json").write_text(json.dumps({
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [{"name": "0", "containerEdits": {
            "deviceNodes": [{"path": "/dev/fakegpu0", "hostPath": "/dev/null"}],
            "env": ["FAKE_GPU=0"],
        }}],
        "containerEdits": {"hooks": [{
            "hookName": "createContainer", "path": str(hook),
            "args": ["fake-cdi-hook", "update-ldcache"],
            "env": ["HOOK_OK=1", "LD_PRELOAD=/spec/evil.so"],
        }]},
    }))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    runtime = EmbeddedRuntime(root=tmp_path / "containers", cdi_spec_dirs=(specs,))
    script = "cat /hooked; echo $FAKE_GPU; test -c /dev/fakegpu0 && echo dev > /out/result"
    result = runtime.run(RunConfig(
        image=str(rootfs), command=("sh", "-c", script + "; cat /hooked > /out/hooked"),
        gpus="all", env=(("LD_PRELOAD", "/image/evil.so"), ("SECRET", "x")),
        mounts=(Mount(source=out, target="/out"),),
    ))  # fmt: skip
    assert result.exit_code == 0
    assert (out / "result").read_text() == "dev\n"
    assert (out / "hooked").read_text() == "hooked\n"
    seen = json.loads(log.read_text())
    assert seen["env"].get("HOOK_OK") == "1"
    assert not any(k.startswith("LD_") for k in seen["env"])
    assert "SECRET" not in seen["env"]
    assert seen["cwd"] == "/"
    assert seen["argv"][1:] == ["update-ldcache"]
    assert seen["state"]["status"] == "creating"
    assert seen["state"]["pid"] > 0
    assert not (rootfs / "hooked").exists()  # it wrote into the container's writable layer


def test_volume_target_through_an_image_symlink_stays_in_root(tmp_path: Path) -> None:
    """An image symlink pointing at a host path: the -v target is resolved inside the root."""
    require_root()
    victim = tmp_path / "victim"
    victim.mkdir()
    image = make_rootfs(tmp_path / "image")
    (image / "out").symlink_to(str(victim))  # absolute: a naive join would follow it out
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("data")
    done = run_cli(
        ["run", "-v", f"{data}:/out/mnt", str(image), "sh", "-c", "cat /out/mnt/f"],
        tmp_path / "home",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "data"
    assert list(victim.iterdir()) == []  # nothing was created on the host side


# The rules below are those of §4/§5 that the probes above do not reach (docs/security-tests.md).

INSIDE = (
    "cat /proc/self/mountinfo; echo ==; cat /proc/1/stat; echo; echo ==; env; echo ==; "
    "ulimit -n; echo ==; for l in ptmx fd stdin stdout stderr; do readlink /dev/$l; done; echo ==; "
    "touch /sys/fs/cgroup/x 2>/dev/null; echo cg=$?; touch /sys/kernel/x 2>/dev/null; echo sys=$?"
)


@pytest.fixture(scope="module")
def inside(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """One container's view of its mounts, session, env, limits, /dev links and /sys."""
    home = tmp_path_factory.mktemp("inside") / "home"
    code, out, err = sh(rootfs, home, INSIDE)
    assert code == 0, err
    sections = out.split("==\n")
    assert str(home) not in sections[2]  # nothing of the host's environment (MLPACK_HOME, HOME)
    return sections


def mount_options(mountinfo: str) -> dict[str, tuple[set[str], list[str]]]:
    """mount point -> (per-mount and super options, optional fields) from /proc/self/mountinfo."""
    found: dict[str, tuple[set[str], list[str]]] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        options = set(fields[5].split(",")) | set(right.split()[2].split(","))
        found[fields[4]] = (options, fields[6:])
    return found


def test_no_mount_is_shared_with_the_host(rootfs: Path, tmp_path: Path) -> None:
    """MS_SLAVE|MS_REC on / right after unshare: even a volume from a shared host mount joins
    no peer group, so nothing mounted in the container can propagate to the host."""
    require(shutil.which("mount") is not None, "mount (util-linux)")
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(shared)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(shared)], check=True)
        assert (
            "shared:" in mount_options(Path("/proc/self/mountinfo").read_text())[str(shared)][1][0]
        )
        code, out, err = sh(
            rootfs, tmp_path / "home", "cat /proc/self/mountinfo", "-v", f"{shared}:/data"
        )
    finally:
        subprocess.run(["umount", "-l", str(shared)], check=True)
    assert code == 0, err
    mounts = mount_options(out)
    assert {"nosuid", "nodev"} <= mounts["/data"][0]  # user mounts are nosuid,nodev
    for point, (_, optional) in mounts.items():
        assert not any(tag.startswith("shared:") for tag in optional), point


def test_proc_dev_shm_and_sys_mount_flags(inside: list[str]) -> None:
    mounts = mount_options(inside[0])
    assert {"nosuid", "nodev", "noexec"} <= mounts["/proc"][0]
    assert {"nosuid", "nodev", "noexec"} <= mounts["/dev/shm"][0]
    assert {"nosuid", "mode=755"} <= mounts["/dev"][0]
    assert {"ptmxmode=666", "mode=620"} <= mounts["/dev/pts"][0]
    assert "/dev/mqueue" in mounts
    assert "ro" in mounts["/sys"][0]
    assert "ro" in mounts["/sys/fs/cgroup"][0]
    assert inside[5].split() == ["cg=1", "sys=1"]  # /sys and /sys/fs/cgroup refuse writes


def test_payload_leads_its_own_session(inside: list[str]) -> None:
    """setsid() for every payload (TIOCSTI, CVE-2017-5226): pid 1 is its session's leader."""
    after_comm = inside[1].rpartition(")")[2].split()
    assert after_comm[2:4] == ["1", "1"]  # pgrp, session


def test_env_is_the_images_and_nofile_is_1024(inside: list[str]) -> None:
    names = {line.partition("=")[0] for line in inside[2].splitlines()}
    assert "MLPACK_HOME" not in names
    assert inside[3].split() == ["1024"]


def test_dev_links(inside: list[str]) -> None:
    assert inside[4].split() == [
        "pts/ptmx", "/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2",
    ]  # fmt: skip


def test_the_library_process_never_enters_a_namespace(rootfs: Path, tmp_path: Path) -> None:
    """A run from this (threaded) process leaves its namespaces as they were: only the helper
    unshares, never the caller (§1)."""
    import threading

    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import RunConfig

    kinds = ("user", "mnt", "pid", "uts", "ipc", "net", "cgroup")
    before = {k: str(Path(f"/proc/self/ns/{k}").readlink()) for k in kinds}
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()  # the caller is multithreaded, as the CLI is
    try:
        result = EmbeddedRuntime(root=tmp_path / "containers").run(
            RunConfig(image=str(rootfs), command=("true",), memory=64 << 20)
        )
    finally:
        stop.set()
        worker.join()
    assert result.exit_code == 0
    assert {k: str(Path(f"/proc/self/ns/{k}").readlink()) for k in kinds} == before
