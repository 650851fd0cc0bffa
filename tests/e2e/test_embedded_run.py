"""``mlpack run`` end to end: exit codes, signals, stdio, options, --init, cleanup, rootless."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mlpack.runtime.embedded import cgroups
from tests.e2e.embedded_support import MLPACK, make_rootfs, require_root, run_cli

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = [pytest.mark.root]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    return make_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def containers(home: Path) -> list[Path]:
    root = home / "containers"
    return sorted(root.iterdir()) if root.exists() else []


def spawn(args: list[str], home: Path) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(home), "HOME": str(home)}
    return subprocess.Popen(
        [*MLPACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_line(proc: subprocess.Popen[str], want: str, timeout: float = 30) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if want in line:
                return
            if not line:
                break
    proc.kill()
    _, err = proc.communicate(timeout=30)
    raise AssertionError(f"never saw {want!r}; exit {proc.returncode}, stderr: {err[-2000:]}")


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def test_exit_status_is_propagated(rootfs: Path, home: Path) -> None:
    assert run_cli(["run", str(rootfs), "true"], home).returncode == 0
    assert run_cli(["run", str(rootfs), "sh", "-c", "exit 42"], home).returncode == 42
    # A child killed by a signal: the shell reports 128+n, and so does mlpack.
    done = run_cli(["run", str(rootfs), "sh", "-c", 'sh -c "kill -SEGV \\$\\$"; exit $?'], home)
    assert done.returncode == 139
    assert containers(home) == []


def test_stdout_and_stderr_are_separate_streams(rootfs: Path, home: Path) -> None:
    done = run_cli(["run", str(rootfs), "sh", "-c", "echo out; echo err >&2"], home)
    assert (done.stdout, done.stderr) == ("out\n", "err\n")


def test_stdin_only_with_interactive(rootfs: Path, home: Path) -> None:
    done = run_cli(["run", "-i", str(rootfs), "cat"], home, input_="piped\n")
    assert done.stdout == "piped\n"
    done = run_cli(["run", str(rootfs), "cat"], home, input_="piped\n")
    assert done.stdout == ""


def test_env_workdir_user_and_volume(rootfs: Path, home: Path, tmp_path: Path) -> None:
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=1\nOVER=file\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("input")
    done = run_cli(
        [
            "run", "--env-file", str(envfile), "-e", "OVER=flag", "-e", "A=b c",
            "-w", "/work", "-u", "1000:2000", "-v", f"{data}:/data",
            str(rootfs), "sh", "-c", 'echo $FROM_FILE $OVER "$A"; pwd; id -u; id -g; cat /data/in.txt',
        ],
        home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["1 flag b c", "/work", "1000", "2000", "input"]


def test_unknown_user_and_missing_command_are_clear_errors(rootfs: Path, home: Path) -> None:
    done = run_cli(["run", "-u", "ghost", str(rootfs), "true"], home)
    assert done.returncode == 7
    assert "ghost" in done.stderr
    done = run_cli(["run", str(rootfs), "no-such-program"], home)
    assert done.returncode == 7
    assert "no-such-program" in done.stderr
    assert "hint:" in done.stderr
    assert containers(home) == []


def test_sigterm_reaches_the_program(rootfs: Path, home: Path) -> None:
    script = 'trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.1; done'
    proc = spawn(["run", str(rootfs), "sh", "-c", script], home)
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 42
    assert "got-term" in out
    assert containers(home) == []


def test_ctrl_c_stops_a_pid_one_without_a_handler(rootfs: Path, home: Path) -> None:
    proc = spawn(["run", str(rootfs), "sh", "-c", "echo ready; exec sleep 600"], home)
    wait_line(proc, "ready")
    time.sleep(0.5)  # let the shell exec sleep: ash itself exits 130 on SIGINT
    proc.send_signal(signal.SIGINT)  # the kernel would drop it at pid 1: mlpack kills
    proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert containers(home) == []


def test_ctrl_c_lets_a_handler_finish_then_a_second_one_kills(rootfs: Path, home: Path) -> None:
    script = 'trap "echo saving; exit 42" INT; echo ready; while :; do sleep 0.1; done'
    proc = spawn(["run", str(rootfs), "sh", "-c", script], home)
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 42
    assert "saving" in out
    script = 'trap "echo ignoring" INT; echo ready; while :; do sleep 0.1; done'
    proc = spawn(["run", str(rootfs), "sh", "-c", script], home)
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    assert proc.poll() is None  # handled: still running
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 137
    assert containers(home) == []


def test_init_reaps_zombies_and_forwards_signals(rootfs: Path, home: Path) -> None:
    done = run_cli(
        ["run", "--init", str(rootfs), "sh", "-c",
         "readlink /proc/1/exe; (sleep 0.1 &); sleep 0.5; ps -o stat | grep -c Z; exit 5"],
        home,
    )  # fmt: skip
    assert done.returncode == 5, done.stderr
    assert done.stdout.split() == ["/dev/init", "0"]
    # Without a trap, pid 1 would ignore SIGTERM; under --init the shell is pid 2 and dies.
    proc = spawn(["run", "--init", str(rootfs), "sh", "-c", "echo ready; sleep 600"], home)
    wait_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM


def test_tty_gives_an_interactive_terminal(rootfs: Path, home: Path) -> None:
    master, slave = pty.openpty()
    env = {"PATH": os.environ.get("PATH", ""), "MLPACK_HOME": str(home), "HOME": str(home)}
    proc = subprocess.Popen(
        [*MLPACK, "run", "-it", str(rootfs), "sh", "-c", "tty; test -t 0 && echo is-a-tty"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    chunks = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks += data
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    text = chunks.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "/dev/pts/0" in text or "/dev/console" in text
    assert "is-a-tty" in text


def test_setup_failure_cleans_up(rootfs: Path, home: Path) -> None:
    done = run_cli(["run", "-w", "/bin/busybox/x", "-m", "64m", str(rootfs), "true"], home)
    assert done.returncode == 7
    assert "/bin/busybox/x" in done.stderr
    assert containers(home) == []


def test_sigkill_of_the_cli_leaves_nothing_after_ps(rootfs: Path, home: Path) -> None:
    proc = spawn(["run", "-m", "64m", str(rootfs), "sh", "-c", "echo ready; sleep 600"], home)
    wait_line(proc, "ready")
    (state_dir,) = containers(home)
    st = json.loads((state_dir / "state.json").read_text())
    deadline = time.monotonic() + 30
    while not st["pid"] and time.monotonic() < deadline:  # recorded once setup has finished
        time.sleep(0.05)
        st = json.loads((state_dir / "state.json").read_text())
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (gone(st["pid"]) and gone(st["supervisor"])):
        time.sleep(0.1)
    assert gone(st["pid"])  # the container died with its supervisor (parent-death signals)
    assert gone(st["supervisor"])
    done = run_cli(["ps", "-a"], home)
    assert done.returncode == 0, done.stderr
    assert containers(home) == []
    assert not any(Path(d).exists() for d in st["cgroups"])


def test_ps_and_stop(rootfs: Path, home: Path) -> None:
    proc = spawn(
        ["run", "--name", "sleeper", str(rootfs), "sh", "-c", "echo ready; sleep 600"], home
    )
    wait_line(proc, "ready")
    done = run_cli(["ps"], home)
    assert "sleeper" in done.stdout
    assert "running" in done.stdout
    done = run_cli(["stop", "-t", "1", "sleeper"], home)
    assert done.returncode == 0, done.stderr
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 137, err  # pid 1 ignored SIGTERM, so stop escalated to SIGKILL
    assert containers(home) == []


def test_keep_preserves_the_writable_layer(rootfs: Path, home: Path) -> None:
    done = run_cli(["run", "--keep", str(rootfs), "sh", "-c", "echo kept > /new"], home)
    assert done.returncode == 0, done.stderr
    (kept,) = containers(home)
    assert (kept / "upper" / "new").read_text() == "kept\n"


@pytest.fixture
def nobody_dir() -> Iterator[Path]:
    require_root()
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *MLPACK, "--version"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    require(
        probe.returncode == 0,
        f"a checkout and venv an unprivileged user can read ({probe.stderr.strip()[:200]})",
    )
    # Outside pytest's tmp dir, whose 0700 parents an unprivileged user cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="mlpack-rootless-"))
    path.chmod(0o755)
    os.chown(path, 65534, 65534)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_rootless_as_an_unprivileged_user(nobody_dir: Path) -> None:
    require_root()
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    image = make_rootfs(nobody_dir / "rootfs", owner=65534)
    home = nobody_dir / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    done = run_cli(
        ["run", str(image), "sh", "-c",
         ("id -u; cat /proc/self/uid_map; echo $$; grep NoNewPrivs /proc/self/status; "
         "touch /new && echo writable")],
        home,
        user=65534,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines()]
    assert lines[0] == ["0"]
    assert lines[1] == ["0", "65534", "1"]
    assert lines[2] == ["1"]
    assert lines[3] == ["NoNewPrivs:", "1"]
    assert lines[4] == ["writable"]
    # Rootless cannot enforce cgroup limits here: an error, never a silent unlimited run.
    done = run_cli(["run", "-m", "64m", str(image), "true"], home, user=65534)
    assert done.returncode == 7
    assert "cannot" in done.stderr
    assert not (home / "containers").exists() or not any((home / "containers").iterdir())


def require(condition: bool, what: str) -> None:
    from tests.conftest import require as _require

    _require(condition, what)


def test_layout_detection_matches_the_mount_table() -> None:
    require_root()
    layout = cgroups.detect()
    mounts = Path("/proc/self/mounts").read_text()
    if " /sys/fs/cgroup cgroup2 " in mounts:
        assert layout.version == "v2"
    elif " /sys/fs/cgroup/unified cgroup2 " in mounts:
        assert layout.version == "hybrid"
    else:
        assert layout.version in ("v1", "none")


@pytest.fixture
def subid_user(nobody_dir: Path) -> Iterator[tuple[str, int]]:
    """A throwaway user with a subordinate id range (useradd allocates one on Debian)."""
    require(shutil.which("useradd") is not None, "useradd (passwd)")
    require(shutil.which("newuidmap") is not None, "newuidmap (uidmap)")
    name = f"mlpk{os.getpid() % 100000}"
    saved = {f: Path(f).read_text() for f in ("/etc/subuid", "/etc/subgid")}
    subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", name], check=True)
    try:
        for f in saved:
            if not any(line.startswith(f"{name}:") for line in Path(f).read_text().splitlines()):
                with Path(f).open("a") as fh:
                    fh.write(f"{name}:400000:65536\n")
        yield (
            name,
            int(
                subprocess.run(
                    ["id", "-u", name], capture_output=True, text=True, check=True
                ).stdout
            ),
        )
    finally:
        subprocess.run(["userdel", name], check=False)
        for f, text in saved.items():
            Path(f).write_text(text)


def test_rootless_with_a_subordinate_range(nobody_dir: Path, subid_user: tuple[str, int]) -> None:
    name, uid = subid_user
    os.chown(nobody_dir, uid, uid)
    image = make_rootfs(nobody_dir / "rootfs", owner=uid)
    home = nobody_dir / "home"
    home.mkdir()
    os.chown(home, uid, uid)
    done = run_cli(
        ["run", str(image), "cat", "/proc/self/uid_map", "/proc/self/gid_map"], home, user=uid
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()]

    def first_start(table: str) -> str:
        line = next(x for x in Path(table).read_text().splitlines() if x.startswith(f"{name}:"))
        return line.split(":")[1]

    assert rows[0] == ["0", str(uid), "1"]
    assert rows[1] == ["1", first_start("/etc/subuid"), "65535"]
    assert rows[2] == ["0", str(uid), "1"]
    assert rows[3] == ["1", first_start("/etc/subgid"), "65535"]


def test_rootless_single_mapping_denies_setgroups_and_foreign_chown(nobody_dir: Path) -> None:
    """runc ToRootless(): setgroups is denied before gid_map is written, and with one mapped id
    a chown to any other id fails."""
    require(shutil.which("setpriv") is not None, "setpriv (util-linux)")
    image = make_rootfs(nobody_dir / "rootfs", owner=65534)
    home = nobody_dir / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    done = run_cli(
        ["run", str(image), "sh", "-c",
         "cat /proc/self/setgroups; touch /f; chown 1000 /f 2>/dev/null; echo chown=$?"],
        home,
        user=65534,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["deny", "chown=1"]
