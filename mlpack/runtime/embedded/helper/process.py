"""The user process's credentials and the last steps before execve (SECURITY §2, §3, §5).

Ids are resolved in the container's own /etc/passwd and /etc/group (after pivot_root, never
host NSS) and refused outside 0..2147483647: ``(uid_t)-1`` means "unchanged" to setresuid.
"""

from __future__ import annotations

import os

from mlpack.oslib import linux
from mlpack.runtime.embedded.helper.channel import Failure
from mlpack.runtime.embedded.helper.sig import signal

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any


def check_id(kind: str, value: object) -> int:
    """``value`` as a uid or gid, refused outside 0..2147483647 (as runc does)."""
    try:
        number = int(str(value))
    except ValueError:
        raise Failure(f"{kind} {value!r} is not a number") from None
    if not 0 <= number <= linux.MAX_ID:
        raise Failure(f"{kind} {number} is outside 0..{linux.MAX_ID}")
    return number


def _table(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.split(":") for line in f.read().splitlines() if line.count(":") >= 2]
    except OSError:
        return []


def resolve_user(spec: str) -> tuple[int, int, list[int], str]:
    """``name[:group]`` in the image's /etc/passwd and /etc/group: uid, gid, groups, home."""
    user, _, group = spec.partition(":")
    passwd, groups = _table("/etc/passwd"), _table("/etc/group")
    if user.isdigit():
        uid = check_id("uid", user)
        row = next((p for p in passwd if len(p) > 3 and p[2] == user), None)
    else:
        row = next((p for p in passwd if p[0] == user and len(p) > 3), None)
        if row is None:
            raise Failure(f"user {user!r} not found in the image's /etc/passwd")
        uid = check_id(f"uid of {user}", row[2])
    gid = check_id(f"gid of {user}", row[3]) if row else 0
    home = row[5] if row and len(row) > 5 else "/"
    if group.isdigit():
        gid = check_id("gid", group)
    elif group:
        grow = next((g for g in groups if g[0] == group), None)
        if grow is None:
            raise Failure(f"group {group!r} not found in the image's /etc/group")
        gid = check_id(f"gid of group {group}", grow[2])
    name = row[0] if row else None
    extra = {
        check_id(f"gid of group {g[0]}", g[2])
        for g in groups
        if name and len(g) > 3 and name in g[3].split(",")
    }
    return uid, gid, sorted(extra - {gid}), home


class Credentials:
    """Who the user process runs as: uid, gid, supplementary groups, and its environment."""

    def __init__(self, config: dict[str, Any]) -> None:
        proc: dict[str, Any] = config.get("process") or {}
        user: dict[str, Any] = proc.get("user") or {}
        self.env = [str(e) for e in proc.get("env") or ()]
        self.uid = check_id("uid", user.get("uid", 0))
        self.gid = check_id("gid", user.get("gid", 0))
        self.groups = [check_id("gid", g) for g in user.get("additionalGids") or ()]
        self.umask = user.get("umask")
        named = (config.get("annotations") or {}).get("org.mlpack.user")
        if named:
            self.uid, self.gid, self.groups, home = resolve_user(str(named))
            if not any(e.startswith("HOME=") for e in self.env):
                self.env.append(f"HOME={home}")


def _cap_mask(names: list[str] | None) -> int:
    mask = 0
    for name in names or ():
        short = name.removeprefix("CAP_")
        if short not in linux.CAPS:
            raise Failure(f"unknown capability {name}")
        mask |= 1 << linux.CAPS.index(short)
    return mask


class Kernel:
    """What drop_privileges reads from the host's /proc, read before pivot_root or chroot."""

    def __init__(self, *, userns: bool) -> None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            self.last_cap = int(f.read())
        with open("/proc/self/setgroups") as f:
            self.setgroups = not userns or f.read().strip() == "allow"


def drop_privileges(
    config: dict[str, Any], creds: Credentials, kernel: Kernel, *, seccomp_bpf: object
) -> None:
    """Bounding set, ids, capabilities, no_new_privs and rlimits, in runc's order.

    Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: it is loaded here, while we
    still have it, as runc does; the profile must then allow the remaining setup calls.
    """
    proc: dict[str, Any] = config.get("process") or {}
    caps: dict[str, list[str]] = proc.get("capabilities") or {}
    if creds.umask is not None:
        os.umask(int(creds.umask))
    bounding = _cap_mask(caps.get("bounding"))
    last = kernel.last_cap
    for cap in range(last + 1):  # while still root: PR_CAPBSET_DROP needs CAP_SETPCAP
        if not bounding & (1 << cap):
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    if not proc.get("noNewPrivileges"):
        load_seccomp(seccomp_bpf)
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    if kernel.setgroups:
        os.setgroups(creds.groups)
    os.setresgid(creds.gid, creds.gid, creds.gid)
    os.setresuid(creds.uid, creds.uid, creds.uid)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    eff, perm, inh = (_cap_mask(caps.get(k)) for k in ("effective", "permitted", "inheritable"))
    linux.capset(eff, perm, inh)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    ambient = _cap_mask(caps.get("ambient")) & perm & inh
    for cap in range(last + 1):
        # Ambient needs the cap in permitted and inheritable; others are skipped, as runc does.
        if ambient & (1 << cap):
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    for rl in proc.get("rlimits") or ():
        name = str(rl["type"]).removeprefix("RLIMIT_")
        if name not in linux.RLIMITS:
            raise Failure(f"unknown rlimit {rl['type']}")
        linux.setrlimit(linux.RLIMITS.index(name), int(rl["soft"]), int(rl["hard"]))


def enter_cwd(config: dict[str, Any]) -> str:
    """Chdir to process.cwd and check it is inside the container (CVE-2024-21626)."""
    cwd = str((config.get("process") or {}).get("cwd") or "/")
    try:
        os.chdir(cwd)
        real = os.getcwd()
    except OSError as exc:
        raise Failure(f"working directory {cwd}: {exc.strerror}") from exc
    if not real.startswith("/"):  # a leaked fd as cwd is "(unreachable)/..."
        raise Failure(f"working directory {cwd} is outside the container")
    return real


def find_program(arg0: str, env: list[str], cwd: str) -> str:
    """Resolve argv[0] through the container's PATH, as execvp would."""
    if "/" in arg0:
        return arg0 if arg0.startswith("/") else os.path.join(cwd, arg0)
    path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/local/bin:/usr/bin:/bin")
    for d in path.split(":"):
        cand = os.path.join(d or ".", arg0)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise Failure(f"executable {arg0!r} not found in the container's PATH ({path})")


def command(config: dict[str, Any], creds: Credentials, cwd: str) -> tuple[str, list[str]]:
    """The program to exec and its argv (behind the ``--init`` reaper when asked)."""
    args = [str(a) for a in (config.get("process") or {}).get("args") or ()]
    if not args:
        msg = "no command: the image has no Entrypoint/Cmd and none was given"
        raise Failure(msg)
    program = find_program(args[0], creds.env, cwd)
    init = (config.get("annotations") or {}).get("org.mlpack.init")
    if init:  # pid 1 is the read-only static reaper; it execs the payload by path
        return str(init), [str(init), program, *args[1:]]
    return program, args


def load_seccomp(bpf: object) -> None:
    """Install the compiled filter (raw sock_filter bytes, hex-encoded by the parent)."""
    if isinstance(bpf, str) and bpf:
        linux.seccomp_load(bytes.fromhex(bpf))


def cloexec_from(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec (CVE-2024-21626): close_range, or, where a
    profile refuses it, each fd of /proc/self/fd (as runc falls back).
    """
    if linux.close_range_cloexec(first):
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def execute(
    req: dict[str, Any], config: dict[str, Any], program: str, args: list[str], env: list[str]
) -> None:
    """The session, fds, signals and seccomp (last), then execve."""
    proc: dict[str, Any] = config.get("process") or {}
    os.setsid()  # TIOCSTI injection (CVE-2017-5226)
    if proc.get("terminal"):
        linux.set_controlling_tty(0)
    cloexec_from(3 + int(req.get("preserve_fds") or 0))
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if proc.get("noNewPrivileges"):
        load_seccomp(req.get("seccomp_bpf"))  # last, right before execve (§3)
    try:
        os.execve(program, args, dict(e.partition("=")[::2] for e in env))
    except OSError as exc:
        raise Failure(f"exec {program}: {exc.strerror}") from exc
