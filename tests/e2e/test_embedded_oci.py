"""``mlpack runtime``: the OCI runtime command line, and a differential run against runc (root)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.embedded_support import MLPACK, make_rootfs, require_root, run_cli

pytestmark = [pytest.mark.root]

PROBE_SCRIPT = (
    "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; echo HOST=$(hostname); "
    "echo DEV=$(ls /dev | sort | tr '\\n' ' '); "
    "echo MOUNTS=$(cut -d' ' -f5 /proc/self/mountinfo | grep -v '^/sys/fs/cgroup/' | sort | "
    "tr '\\n' ' '); echo ID=$(id -u); echo CWD=$(pwd); ulimit -n"
)


def runc_spec(
    bundle: Path,
    args: list[str],
    mounts: tuple[dict[str, object], ...] = (),
    *,
    terminal: bool = False,
) -> None:
    """A bundle whose config.json is runc's own default (``runc spec``), with ``args``."""
    require(shutil.which("runc") is not None, "runc")
    subprocess.run(["runc", "spec", "-b", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = terminal
    config["process"]["args"] = args
    config["mounts"] += list(mounts)
    (bundle / "config.json").write_text(json.dumps(config))


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    require_root()
    b = tmp_path / "bundle"
    make_rootfs(b / "rootfs")
    return b


def rt(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["runtime", "--root", str(root), *args], root.parent / "home")


def rt_detached(root: Path, *args: str) -> int:
    """create / run --detach: the container keeps the stdio it inherits, so no pipes here."""
    log = root.parent / "detached.log"
    with log.open("ab") as f:
        done = subprocess.run(
            [*MLPACK, "runtime", "--root", str(root), *args],
            stdin=subprocess.DEVNULL, stdout=f, stderr=f, timeout=120, check=False,
        )  # fmt: skip
    return done.returncode


def wait_until_stopped(root: Path, cid: str, *, timeout: float = 30) -> None:
    """Poll ``state`` until the container has stopped, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while json.loads(rt(root, "state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline, f"{cid} still not stopped after {timeout} s"
        time.sleep(0.05)


def test_create_start_state_kill_delete(bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mount: dict[str, object] = {
        "destination": "/out",
        "type": "bind",
        "source": str(out),
        "options": ["rbind"],
    }
    runc_spec(bundle, ["sh", "-c", "echo started > /out/marker; exec sleep 600"], (mount,))
    root = tmp_path / "state"
    pid_file = tmp_path / "pid"
    assert (
        rt_detached(root, "create", "--bundle", str(bundle), "--pid-file", str(pid_file), "c1") == 0
    )
    state = json.loads(rt(root, "state", "c1").stdout)
    assert state["status"] == "created"
    assert state["ociVersion"].startswith("1.")
    assert state["id"] == "c1"
    assert state["bundle"] == str(bundle)
    assert state["pid"] == int(pid_file.read_text()) > 0
    time.sleep(0.3)
    assert not (out / "marker").exists()  # created: pid 1 waits before the user program
    assert rt_detached(root, "create", "--bundle", str(bundle), "c1") == 7  # id taken
    assert rt(root, "start", "c1").returncode == 0
    deadline = time.monotonic() + 30
    while not (out / "marker").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / "marker").read_text() == "started\n"
    assert json.loads(rt(root, "state", "c1").stdout)["status"] == "running"
    assert rt(root, "start", "c1").returncode == 7  # already running
    assert rt(root, "delete", "c1").returncode == 7  # running: needs --force or a stop first
    assert rt(root, "kill", "c1", "KILL").returncode == 0
    wait_until_stopped(root, "c1")
    assert json.loads(rt(root, "state", "c1").stdout)["pid"] == 0
    assert rt(root, "delete", "c1").returncode == 0
    assert rt(root, "state", "c1").returncode == 7
    assert not (root / "c1").exists()


def test_delete_force_kills_a_running_container(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["sleep", "600"])
    root = tmp_path / "state"
    assert rt_detached(root, "run", "--detach", "--bundle", str(bundle), "c2") == 0
    state = json.loads(rt(root, "state", "c2").stdout)
    assert state["status"] == "running"
    assert rt(root, "delete", "--force", "c2").returncode == 0
    stat = Path(f"/proc/{state['pid']}/stat")
    assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_run_returns_the_exit_status(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["sh", "-c", "echo hi; exit 9"])
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "c3")
    assert done.returncode == 9
    assert done.stdout == "hi\n"
    assert not (tmp_path / "state" / "c3").exists()


def test_without_namespaces_state_gives_the_created_init_pid(bundle: Path, tmp_path: Path) -> None:
    """runtime-tools' linux_ns_itype: no namespace listed, so the container shares ours (no
    mount namespace: a chroot without /proc). ``state`` after ``create`` gives pid 1's host pid,
    whose namespaces are this process's; ``start`` then runs the program.
    """
    runc_spec(bundle, ["sh", "-c", "echo started > /marker"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"] = []
    config.pop("hostname", None)
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "c5") == 0
    state = json.loads(rt(root, "state", "c5").stdout)
    assert state["status"] == "created"
    assert state["pid"] > 0
    for ns in ("mnt", "pid", "net", "uts", "ipc"):
        theirs = Path(f"/proc/{state['pid']}/ns/{ns}").readlink()
        assert theirs == Path(f"/proc/self/ns/{ns}").readlink()
    assert rt(root, "start", "c5").returncode == 0
    wait_until_stopped(root, "c5")
    assert (bundle / "rootfs" / "marker").read_text() == "started\n"
    assert rt(root, "delete", "c5").returncode == 0


def test_run_relays_a_signal_sent_as_soon_as_the_program_speaks(
    bundle: Path, tmp_path: Path
) -> None:
    """The program runs only once the runtime forwards signals: a SIGTERM sent right after its
    first line reaches its trap (exit 3), it does not abort the runtime (130) or go astray.
    """
    runc_spec(bundle, ["sh", "-c", "trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done"])
    proc = subprocess.Popen(
        [*MLPACK, "runtime", "--root", str(tmp_path / "state"), "run", "-b", str(bundle), "c6"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(15)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert not (tmp_path / "state" / "c6").exists()


def parse(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=") if "=" in line else line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
        else:
            fields["nofile"] = line.strip()
    return fields


def test_differential_against_runc(bundle: Path, tmp_path: Path) -> None:
    """Same bundle under runc and mlpack: the process status and mount table shape agree."""
    runc_spec(bundle, ["sh", "-c", PROBE_SCRIPT])
    ran = subprocess.run(
        ["runc", "--root", str(tmp_path / "runc"), "run", "-b", str(bundle), "diff-runc"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    require(ran.returncode == 0, f"a working runc ({ran.stderr.strip()[:200]})")
    ours = rt(tmp_path / "state", "run", "--bundle", str(bundle), "diff-mlpack")
    assert ours.returncode == 0, ours.stderr
    theirs, mine = parse(ran.stdout), parse(ours.stdout)
    for key in (
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "NoNewPrivs",
        "Seccomp",
        "HOST",
        "ID",
        "CWD",
        "nofile",
        "DEV",
    ):
        assert mine.get(key) == theirs.get(key), (key, mine.get(key), theirs.get(key))
    # Mount points: runc on a v1/hybrid host adds one mount per controller under
    # /sys/fs/cgroup (filtered out above); mlpack shows an empty read-only tmpfs there.
    assert set(mine["MOUNTS"].split()) == set(theirs["MOUNTS"].split())


def test_bundle_resources_land_in_cgroups_path(bundle: Path, tmp_path: Path) -> None:
    """runtime-tools reads limits back from linux.cgroupsPath; they must be there."""
    from mlpack.runtime.embedded import cgroups

    layout = cgroups.detect()
    require(layout.version in ("v1", "hybrid"), "a v1 or hybrid cgroup host (checks v1 files)")
    runc_spec(bundle, ["sleep", "600"])
    config = json.loads((bundle / "config.json").read_text())
    cg_path = f"/mlpack-test-{tmp_path.name}"
    config["linux"]["cgroupsPath"] = cg_path
    config["linux"]["resources"] = {
        "memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20,
                   "swappiness": 10},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 40},
    }  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "res") == 0
    try:
        mem = layout.v1_mount("memory")
        cpu = layout.v1_mount("cpu")
        pids = layout.v1_mount("pids")
        cpuset = layout.v1_mount("cpuset")
        assert mem
        assert cpu
        assert pids
        assert cpuset
        rel = cg_path.strip("/")
        assert int((mem / rel / "memory.limit_in_bytes").read_text()) == 64 << 20
        assert int((mem / rel / "memory.soft_limit_in_bytes").read_text()) == 32 << 20
        assert int((mem / rel / "memory.swappiness").read_text()) == 10
        memsw = mem / rel / "memory.memsw.limit_in_bytes"
        if memsw.exists():
            assert int(memsw.read_text()) == 128 << 20
        assert int((cpu / rel / "cpu.shares").read_text()) == 512
        assert int((cpu / rel / "cpu.cfs_quota_us").read_text()) == 20000
        assert (pids / rel / "pids.max").read_text().strip() == "40"
        assert (cpuset / rel / "cpuset.cpus").read_text().strip() == "0"
        state = json.loads(rt(root, "state", "res").stdout)
        procs = (mem / rel / "cgroup.procs").read_text().split()
        assert str(state["pid"]) in procs
    finally:
        assert rt(root, "delete", "--force", "res").returncode == 0
    assert not (layout.v1_mount("memory") / cg_path.strip("/")).exists()  # type: ignore[operator]


def test_oci_defaults_user_namespace_range_and_no_nnp(tmp_path: Path) -> None:
    """As root with a range map (container root = host 1000): the exec fifo and the cgroup join
    still work, files created by root in the namespace are fine, and noNewPrivileges absent
    means off (the OCI default; mlpack's own configs always set it)."""
    require_root()
    # Host 1000 must be able to reach the rootfs: pytest's tmp dirs are 0700 root.
    base = Path(tempfile.mkdtemp(prefix="mlpack-userns-"))
    base.chmod(0o755)
    bundle = base / "bundle"
    make_rootfs(bundle / "rootfs")
    runc_spec(bundle, ["sh", "-c", "cat /proc/self/uid_map; grep NoNewPrivs /proc/self/status"])
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["namespaces"].append({"type": "user"})
    config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 2000}]
    config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 2000}]
    config["linux"]["resources"] = {"pids": {"limit": 50}}
    config["process"].pop("noNewPrivileges", None)
    config["root"]["readonly"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    log = tmp_path / "detached.log"
    assert rt_detached(root, "create", "--bundle", str(bundle), "userns") == 0, log.read_text()
    assert rt(root, "start", "userns").returncode == 0
    wait_until_stopped(root, "userns")
    assert rt(root, "delete", "userns").returncode == 0
    lines = [line.split() for line in log.read_text().splitlines()]
    assert ["0", "1000", "2000"] in lines
    assert ["NoNewPrivs:", "0"] in lines
    shutil.rmtree(base)


def test_sysctl_is_written_before_proc_sys_turns_read_only(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["sh", "-c", ("cat /proc/sys/net/ipv4/ip_forward; "
                       "echo 0 > /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo ro")])  # fmt: skip
    config = json.loads((bundle / "config.json").read_text())
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    config["linux"]["readonlyPaths"] = ["/proc/sys"]
    (bundle / "config.json").write_text(json.dumps(config))
    done = rt(tmp_path / "state", "run", "--bundle", str(bundle), "sysctl")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "ro"]


def test_no_pivot_is_not_taken_silently(bundle: Path, tmp_path: Path) -> None:
    """runc's --no-pivot (MS_MOVE + chroot) is not offered: the run says so and pivots anyway."""
    runc_spec(bundle, ["sh", "-c", "test -d /proc/1/root/proc && echo pivoted"])
    done = rt(tmp_path / "state", "run", "--no-pivot", "--bundle", str(bundle), "nopivot")
    assert done.returncode == 0, done.stderr
    assert "--no-pivot is ignored: mlpack always uses pivot_root" in done.stderr
    assert done.stdout.split() == ["pivoted"]


def test_lifecycle_hooks_run_in_order_with_state(bundle: Path, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hook = tmp_path / "hook.sh"
    # Each hook appends its name and the state's status; startContainer runs inside the
    # container, so it writes into the bind-mounted log directory's container path.
    hook.write_text('#!/bin/sh\nstate=$(cat)\necho "$1 $state" >> "$2"\n')
    hook.chmod(0o755)
    runc_spec(bundle, ["true"], ({"destination": "/log", "type": "bind", "source": str(tmp_path),
                                 "options": ["rbind"]},))  # fmt: skip
    config = json.loads((bundle / "config.json").read_text())
    config["root"]["readonly"] = False
    shutil.copy2(hook, bundle / "rootfs" / "hook.sh")

    def h(kind: str, where: str) -> list[dict[str, object]]:
        return [
            {
                "path": where,
                "args": ["hook.sh", kind, "/log/hooks.log" if where == "/hook.sh" else str(log)],
            }
        ]

    config["hooks"] = {
        "createRuntime": h("createRuntime", str(hook)),
        "createContainer": h("createContainer", str(hook)),
        "startContainer": h("startContainer", "/hook.sh"),
        "poststart": h("poststart", str(hook)),
        "poststop": h("poststop", str(hook)),
    }  # fmt: skip
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "hooks") == 0
    assert rt(root, "start", "hooks").returncode == 0
    wait_until_stopped(root, "hooks")
    assert rt(root, "delete", "hooks").returncode == 0
    entries = [line.split(" ", 1) for line in log.read_text().splitlines()]
    kinds = [kind for kind, _ in entries]
    assert kinds == ["createRuntime", "createContainer", "startContainer", "poststart",
                     "poststop"]  # fmt: skip
    states = {kind: json.loads(doc) for kind, doc in entries}
    assert states["createRuntime"]["status"] == "creating"
    assert states["createRuntime"]["id"] == "hooks"
    assert states["createRuntime"]["pid"] > 0
    assert states["poststop"]["status"] == "stopped"


@pytest.mark.parametrize(
    ("script", "timeout", "why"),
    [("exit 3", None, "exited with 3"), ("exec sleep 30", 1, "timed out")],
)
def test_a_failing_or_hanging_create_container_hook_fails_create_with_why(
    bundle: Path, tmp_path: Path, script: str, timeout: int | None, why: str
) -> None:
    hook = tmp_path / "bad-hook"
    hook.write_text(f"#!/bin/sh\n{script}\n")
    hook.chmod(0o755)
    runc_spec(bundle, ["true"])
    config = json.loads((bundle / "config.json").read_text())
    entry: dict[str, object] = {"path": str(hook), "args": ["bad-hook"]}
    if timeout is not None:
        entry["timeout"] = timeout
    config["hooks"] = {"createContainer": [entry]}
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    done = rt(root, "create", "--bundle", str(bundle), "badhook")
    assert done.returncode != 0
    assert f"createContainer hook {hook}" in done.stderr
    assert why in done.stderr
    assert not (root / "badhook").exists()


def test_create_fails_when_a_capability_is_outside_the_bounding_set(
    bundle: Path, tmp_path: Path
) -> None:
    """capset is applied before the exec fifo (as runc's finalizeNamespace): a capability the
    runtime's bounding set lacks fails `create` with the error, not the program after `start`.
    """
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    runc_spec(bundle, ["true"])
    config = json.loads((bundle / "config.json").read_text())
    for kind in ("bounding", "effective", "permitted"):
        config["process"]["capabilities"][kind] = ["CAP_KILL", "CAP_SYS_RESOURCE"]
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-sys_resource", "--", *MLPACK,
         "runtime", "--root", str(root), "create", "--bundle", str(bundle), "caps"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 7, done.stderr
    assert "capset" in done.stderr
    assert not (root / "caps").exists()


def test_created_container_with_a_non_root_user_starts(bundle: Path, tmp_path: Path) -> None:
    """pid 1 opens the exec fifo after its uid change and capability drop."""
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    mount: dict[str, object] = {
        "destination": "/out",
        "type": "bind",
        "source": str(out),
        "options": ["rbind"],
    }
    runc_spec(bundle, ["sh", "-c", "id -u > /out/uid"], (mount,))
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    (bundle / "config.json").write_text(json.dumps(config))
    root = tmp_path / "state"
    assert rt_detached(root, "create", "--bundle", str(bundle), "nonroot") == 0
    assert rt(root, "start", "nonroot").returncode == 0
    wait_until_stopped(root, "nonroot")
    assert rt(root, "delete", "nonroot").returncode == 0
    assert (out / "uid").read_text() == "1000\n"


def _console_receiver(path: Path) -> tuple[threading.Thread, list[bytes]]:
    """A minimal recvtty: accept one connection, take the pty fd, read it to the end."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    got: list[bytes] = []

    def receive() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                name, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
            got.append(name)
            out = b""
            while True:
                try:
                    chunk = os.read(fds[0], 4096)
                except OSError:  # EIO: every replica fd is closed (the container exited)
                    break
                if not chunk:
                    break
                out += chunk
            os.close(fds[0])
            got.append(out)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    return thread, got


def test_console_socket_receives_the_containers_terminal(bundle: Path, tmp_path: Path) -> None:
    script = "test -t 0 && test -t 1 && echo tty-ok; exit 3"
    runc_spec(bundle, ["sh", "-c", script], terminal=True)
    sock = tmp_path / "console.sock"
    thread, got = _console_receiver(sock)
    root = tmp_path / "state"
    done = rt(root, "run", "--console-socket", str(sock), "--bundle", str(bundle), "t1")
    thread.join(timeout=30)
    assert done.returncode == 3, done.stderr
    assert got[0].startswith(b"/dev/pts/")
    assert b"tty-ok" in got[1]


def test_console_socket_misuse_is_refused(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["true"])  # terminal: false
    root = tmp_path / "state"
    done = rt(root, "run", "--console-socket", str(tmp_path / "s"), "--bundle", str(bundle), "t2")
    assert done.returncode == 7
    assert "only for containers with process.terminal: true" in done.stderr
    (bundle / "config.json").unlink()  # runc spec writes a new one only
    runc_spec(bundle, ["true"], terminal=True)
    done = rt(root, "create", "--bundle", str(bundle), "t3")
    assert done.returncode == 7
    assert "needs --console-socket" in done.stderr
    assert rt(root, "list").stdout == ""  # nothing half-created is left


def test_console_socket_with_create_and_start(bundle: Path, tmp_path: Path) -> None:
    runc_spec(bundle, ["sh", "-c", "test -t 0 && echo detached-tty-ok"], terminal=True)
    sock = tmp_path / "console.sock"
    thread, got = _console_receiver(sock)
    root = tmp_path / "state"
    args = ("create", "--console-socket", str(sock), "--bundle", str(bundle), "t4")
    assert rt_detached(root, *args) == 0
    assert rt(root, "start", "t4").returncode == 0
    thread.join(timeout=30)
    assert b"detached-tty-ok" in got[1]
    wait_until_stopped(root, "t4", timeout=10)
    assert rt(root, "delete", "t4").returncode == 0


def test_only_the_preserved_fds_reach_the_container(bundle: Path, tmp_path: Path) -> None:
    """--preserve-fds 1 passes fd 3 and nothing above it (CVE-2024-21626: no leaked fd)."""
    runc_spec(bundle, ["sh", "-c", "ls /proc/$$/fd; true"])
    argv = [*MLPACK, "runtime", "--root", str(tmp_path / "state"), "run", "--preserve-fds", "1",
            "--bundle", str(bundle), "fds"]  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", 'exec "$@" 3</etc/hostname 4</etc/passwd', "sh", *argv],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(int(fd) for fd in done.stdout.split()) == [0, 1, 2, 3]
