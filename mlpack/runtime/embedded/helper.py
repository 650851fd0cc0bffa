# ruff: noqa: PTH104, PTH109, PTH112, PTH113, PTH115, PTH118, PTH123, PTH208, SIM105, PLR0917
# (It may import only os, _ctypes, _json, _signal, struct, sys, select: no pathlib, no contextlib.)
"""The container helper: namespaces, rootfs, privileges and execve, from an OCI config.

Run as ``python -I -S helper.py CTL_FD STATUS_FD`` by the embedded runtime. It is a separate,
single-threaded interpreter because ``unshare(CLONE_NEWUSER)`` is refused in a threaded process
(SECURITY-AND-ISOLATION.md §1), and it imports only os, _ctypes, _json, _signal, struct, sys
(and select for hooks): it cannot import mlpack. The ``json`` module is not imported: with
``re`` it is ~4 ms of every container start; its C scanner and encoder are used directly. Sequence:

* supervisor S: ``unshare(CLONE_NEWUSER)`` (the parent writes the id maps), ``unshare(CLONE_NEWPID)``,
  fork C; then S waits for C, relays signals and reports the exit status. S never enters the
  container's mount namespace.
* C (pid 1): joins the cgroups, unshares mount/uts/ipc/net/cgroup, builds the rootfs, pivots,
  drops privileges, waits on the exec fifo for ``create``, loads seccomp last and execs.

Messages to the parent are JSON lines on STATUS_FD; the parent's messages come on CTL_FD.
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False  # typing is not imported at run time (mypy reads this name as True)
if TYPE_CHECKING:
    import ctypes
    import signal
    from typing import Any
else:  # the C module: signal.py wraps it in enums (enum, functools...: ~2.5 ms per start)
    import _signal as signal

    try:
        import _ctypes
    except ImportError:  # pragma: no cover - not CPython
        import ctypes
    else:

        def _simple(name: str, code: str) -> type:
            return type(name, (_ctypes._SimpleCData,), {"_type_": code})

        class ctypes:
            """The parts of ctypes the helper uses, made from _ctypes as ctypes/__init__.py
            makes them: importing ctypes itself is ~1.5 ms of every container start (B1).
            """

            c_int = _simple("c_int", "i")
            c_uint = _simple("c_uint", "I")
            c_long = _simple("c_long", "l")
            c_ulong = _simple("c_ulong", "L")
            c_char = _simple("c_char", "c")
            c_char_p = _simple("c_char_p", "z")
            c_size_t = c_ulong  # LP64: every machine in SYSCALLS
            addressof = staticmethod(_ctypes.addressof)
            get_errno = staticmethod(_ctypes.get_errno)

            @staticmethod
            def create_string_buffer(init: bytes | int) -> object:
                """A char array holding ``init`` and a NUL (or ``init`` zero bytes)."""
                if isinstance(init, int):
                    return (ctypes.c_char * init)()
                buf = (ctypes.c_char * (len(init) + 1))()
                buf.value = init
                return buf

            class CDLL:
                """Functions of a loaded library by name, returning int, errno saved."""

                def __init__(self, name: str | None, use_errno: bool = False) -> None:
                    flags = _ctypes.FUNCFLAG_CDECL
                    if use_errno:
                        flags |= _ctypes.FUNCFLAG_USE_ERRNO

                    class Function(_ctypes.CFuncPtr):
                        _flags_ = flags
                        _restype_ = ctypes.c_int

                    self._function = Function
                    self._handle = _ctypes.dlopen(name, _ctypes.RTLD_LOCAL | os.RTLD_NOW)

                def __getattr__(self, name: str) -> object:
                    if name.startswith("_"):
                        raise AttributeError(name)
                    function = self._function((name, self))
                    setattr(self, name, function)
                    return function


try:
    import _json
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    _json = None  # type: ignore[assignment]

# JSON on the C accelerator: the same few lines as mlpack.fastjson, which the helper cannot import.


class _Scan:
    """What ``_json.make_scanner`` reads from its context: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        """NaN and Infinity are refused, as by a strict parser."""
        msg = f"{name} is not valid JSON"
        raise ValueError(msg)


def _raise_type(value: object) -> object:
    msg = f"{type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


if _json is not None:
    _SCAN = _json.make_scanner(_Scan())  # type: ignore[arg-type]
    _ENCODE = _json.make_encoder(
        {}, _raise_type, _json.encode_basestring_ascii, None, ": ", ", ", False, False, False
    )


def loads(data: bytes | str) -> Any:
    """Parse one JSON document (json.loads, without importing json and re)."""
    text = data.decode() if isinstance(data, bytes) else data
    if _json is None:  # pragma: no cover
        import json  # type: ignore[unreachable]

        return json.loads(text)
    text = text.strip(" \t\n\r")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        msg = "not a JSON document"
        raise ValueError(msg) from None
    if end != len(text):
        msg = f"extra data at {end}"
        raise ValueError(msg)
    return value


def dumps(value: object) -> str:
    """Serialize as json.dumps does (ASCII, but no NaN), without importing json and re."""
    if _json is None:  # pragma: no cover
        import json  # type: ignore[unreachable]

        return json.dumps(value, allow_nan=False)
    return "".join(_ENCODE(value, 0))


CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NS_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# mount(8) option -> (clear, flag); as runc's libcontainer/specconv mountPropagationMapping.
FLAG_OPTS = {
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "remount": (False, MS_REMOUNT),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
# statvfs f_flag bits -> mount flags that a bind remount must keep (locked in a user namespace).
ST_TO_MS = (
    (1, MS_RDONLY),
    (2, MS_NOSUID),
    (4, MS_NODEV),
    (8, MS_NOEXEC),
    (1024, MS_NOATIME),
    (2048, MS_NODIRATIME),
    (4096, MS_RELATIME),
)

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2
CLOSE_RANGE_CLOEXEC = 4
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
PROC_SUPER_MAGIC = 0x9FA0
O_PATH = 0o10000000
CAP_VERSION_3 = 0x20080522

SYSCALLS = {  # machine -> (pivot_root, capset, close_range, openat2)
    "x86_64": (155, 126, 436, 437),
    "aarch64": (41, 91, 436, 437),
}

CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
]
RLIMITS = [
    "CPU",
    "FSIZE",
    "DATA",
    "STACK",
    "CORE",
    "RSS",
    "NPROC",
    "NOFILE",
    "MEMLOCK",
    "AS",
    "LOCKS",
    "SIGPENDING",
    "MSGQUEUE",
    "NICE",
    "RTPRIO",
    "RTTIME",
]
# (name, major, minor) of the devices every container gets (OCI runtime-spec, "Default Devices").
DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
    signal.SIGALRM,
)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = (
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
)
libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)


class Failure(Exception):
    """A setup step failed; reported to the parent as one message."""


def _fs(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise Failure(f"{what}: {os.strerror(err)} (errno {err})")
    return ret


def _nr(index: int) -> int:
    machine = os.uname().machine
    if machine not in SYSCALLS:
        raise Failure(f"unsupported architecture {machine}")
    return SYSCALLS[machine][index]


def mount(src: str | None, tgt: str, fstype: str | None, flags: int, data: str | None) -> None:
    """Mount via libc, raising Failure with the target named."""
    _check(libc.mount(_fs(src), _fs(tgt), _fs(fstype), flags, _fs(data)), f"mount {tgt}")


def unshare(flags: int) -> None:
    """Leave namespaces via the unshare syscall."""
    _check(libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    """Process control (the prctl syscall) with integer arguments."""
    _check(libc.prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


DETACHED = False
CREATED = False  # "created" was sent: a detached parent no longer reads the status pipe


def send(fd: int, msg: dict[str, object]) -> None:
    """Write one JSON line to the parent; a parent that went away is not an error.

    A detached container's parent (``create``) is gone after setup: errors go to stderr too.
    """
    try:
        os.write(fd, dumps(msg).encode() + b"\n")
    except OSError:
        pass
    if DETACHED and CREATED and "error" in msg:
        try:
            os.write(2, f"mlpack: container setup failed: {msg['error']}\n".encode())
        except OSError:
            pass


_PENDING = bytearray()


def read_line(fd: int) -> bytes:
    """Read one newline-terminated message from the parent (in chunks; the rest is kept)."""
    while b"\n" not in _PENDING:
        chunk = os.read(fd, 65536)
        if not chunk:
            line = bytes(_PENDING)
            _PENDING.clear()
            return line
        _PENDING.extend(chunk)
    line, _, rest = bytes(_PENDING).partition(b"\n")
    _PENDING[:] = rest
    return line


# ---------------------------------------------------------------- in-root path resolution


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """Open with RESOLVE_* flags (openat2): symlinks resolve as if dirfd were the root."""
    how = struct.pack("QQQ", flags | os.O_CLOEXEC, 0, resolve)
    buf = ctypes.create_string_buffer(how)
    ret = libc.syscall(_nr(3), dirfd, os.fsencode(path), buf, ctypes.c_size_t(len(how)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(ret)


def open_in_root(rootfd: int, path: str, flags: int = O_PATH) -> int:
    """Open ``path`` inside the root: symlinks, ``..`` and absolute links stay in the root."""
    rel = path.lstrip("/") or "."
    return openat2(rootfd, rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def _normalize(path: str) -> list[str]:
    """Lexical components with ``..`` clamped at the root (every prefix is then resolved by
    openat2 with RESOLVE_IN_ROOT, so nothing can leave the root either way).
    """
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return out


def mkdirs_in_root(rootfd: int, path: str, *, _depth: int = 0) -> int:
    """``mkdir -p`` inside the root without following a symlink out; return an O_PATH fd.

    Every prefix resolves from the root with RESOLVE_IN_ROOT; a dangling image symlink on the
    way has its target created, also inside the root (like runc's securejoin MkdirAll).
    """
    if _depth == 0 and ".." in path.split("/"):
        raise Failure(f"path {path!r} contains '..'")
    if _depth > 40:
        raise Failure(f"cannot create {path}: too many levels of symbolic links")
    resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
    parts = _normalize(path)
    for i, part in enumerate(parts):
        sub = "/".join(parts[: i + 1])
        try:
            os.close(openat2(rootfd, sub, O_PATH | os.O_DIRECTORY, resolve))
            continue
        except NotADirectoryError as exc:
            raise Failure(f"cannot create {path}: a component is not a directory") from exc
        except FileNotFoundError:
            pass
        parent = "/".join(parts[:i]) or "."
        pfd = openat2(rootfd, parent, O_PATH | os.O_DIRECTORY, resolve)
        try:
            try:
                os.mkdir(part, 0o755, dir_fd=pfd)
            except FileExistsError:
                target = os.readlink(part, dir_fd=pfd)  # a dangling symlink: create its target
                base = target if target.startswith("/") else f"{parent}/{target}"
                rest = "/".join(parts[i + 1 :])
                return mkdirs_in_root(rootfd, f"{base}/{rest}", _depth=_depth + 1)
        finally:
            os.close(pfd)
    return openat2(rootfd, "/".join(parts) or ".", O_PATH | os.O_DIRECTORY, resolve)


def create_target(rootfd: int, path: str, *, directory: bool, follow: bool = True) -> int:
    """Create a mount target in-root (parents followed in-root, the leaf never followed).

    Without ``follow`` an existing symlink leaf is refused: the system mounts (/proc, /dev,
    /sys, ...) go on real directories only (CVE-2026-41579: an image's ``/dev -> /``).
    """
    parent, _, leaf = path.rstrip("/").rpartition("/")
    if not leaf:
        return os.dup(rootfd)
    if leaf == "..":
        raise Failure(f"path {path!r} contains '..'")
    pfd = mkdirs_in_root(rootfd, parent)
    try:
        try:
            if directory:
                os.mkdir(leaf, 0o755, dir_fd=pfd)
            else:
                fd = os.open(
                    leaf,
                    os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC,
                    0o644,
                    dir_fd=pfd,
                )
                os.close(fd)
        except FileExistsError:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
            if not follow and st.st_mode & 0o170000 == 0o120000:
                msg = f"{path} is a symlink in the image; refusing to mount over it"
                raise Failure(msg) from None
        # The leaf may be an image symlink; it then resolves in-root, like runc's securejoin.
        return openat2(rootfd, path.lstrip("/"), O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(pfd)


def fdpath(fd: int) -> str:
    """The magic link through which mount(2) reaches an O_PATH fd."""
    return f"/proc/self/fd/{fd}"


# ---------------------------------------------------------------- mounts


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Split OCI mount options into (flags, propagation, data)."""
    flags = 0
    prop = 0
    data = []
    for opt in options:
        if opt in FLAG_OPTS:
            clear, bit = FLAG_OPTS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt in ("idmap", "ridmap", "tmpcopyup"):
            raise Failure(f"mount option {opt!r} is not supported")
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def locked_flags(path: str) -> int:
    """The flags of the mount at ``path`` that a remount inside a user namespace must keep."""
    f_flag = os.statvfs(path).f_flag
    return sum(ms for st, ms in ST_TO_MS if f_flag & st)


def remount(path: str, flags: int) -> None:
    """Bind-remount ``path`` with ``flags`` plus the locked ones (else EPERM in a userns)."""
    keep = locked_flags(path) & (
        MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
    )
    mount(None, path, None, MS_BIND | MS_REMOUNT | flags | keep, None)


class Rootfs:
    """Builds the container's root filesystem inside the new mount namespace."""

    def __init__(self, req: dict[str, object], config: dict[str, object], userns: bool) -> None:
        self.req = req
        self.config = config
        self.userns = userns
        self.root = str(req["rootfs"])
        self.linux: dict[str, object] = config.get("linux") or {}  # type: ignore[assignment]

    def build(self) -> None:
        """Run §5's sequence up to, not including, pivot_root."""
        prop = PROPAGATION.get(str(self.linux.get("rootfsPropagation") or "rslave"), MS_SLAVE)
        mount(None, "/", None, prop | MS_REC, None)
        overlay = self.req.get("overlay")
        if isinstance(overlay, dict):
            lower = ":".join(reversed(overlay["lower"]))  # overlayfs lists the top layer first
            data = f"lowerdir={lower},upperdir={overlay['upper']},workdir={overlay['work']}"
            if self.userns:
                data += ",userxattr"
            flags = MS_NOSUID | MS_NODEV  # nothing the layers hold is setuid or a device (§6)
            try:
                if overlay.get("volatile"):
                    # The upper dir is removed after the run: skip the sync of the host
                    # filesystem at unmount (Linux >= 5.10; older kernels mount without it).
                    try:
                        mount("overlay", self.root, "overlay", flags, data + ",volatile")
                    except Failure:
                        mount("overlay", self.root, "overlay", flags, data)
                else:
                    mount("overlay", self.root, "overlay", flags, data)
            except Failure as exc:
                msg = f"overlay: {exc}"  # the runtime falls back to a copy of the image
                raise Failure(msg) from exc
        mount(self.root, self.root, None, MS_BIND | MS_REC, None)
        self.rootfd = os.open(self.root, O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for m in self.config.get("mounts") or ():  # type: ignore[attr-defined]
            self.mount_one(m)
        self.devices()
        for key, value in (self.linux.get("sysctl") or {}).items():  # type: ignore[attr-defined]
            self.sysctl(str(key), str(value))
        for path in self.linux.get("maskedPaths") or ():  # type: ignore[attr-defined]
            self.mask(str(path))
        for path in self.linux.get("readonlyPaths") or ():  # type: ignore[attr-defined]
            self.readonly(str(path))
        cwd = str((self.config.get("process") or {}).get("cwd") or "/")  # type: ignore[attr-defined]
        os.close(mkdirs_in_root(self.rootfd, cwd))  # as Docker: a missing workdir is created

    def mount_one(self, m: dict[str, object]) -> None:
        """Mount one OCI mount entry at its in-root destination."""
        try:
            self._mount_one(m)
        except Failure as exc:
            raise Failure(f"{exc} (mounting {m.get('type')} on {m.get('destination')})") from exc

    def _mount_one(self, m: dict[str, object]) -> None:
        dest = str(m["destination"])
        mtype = str(m.get("type") or "")
        src = m.get("source")
        options = [str(o) for o in m.get("options") or ()]  # type: ignore[attr-defined]
        flags, prop, data = parse_options(options)
        is_bind = bool(flags & MS_BIND) or mtype == "bind"
        if is_bind:
            flags |= MS_BIND
            src = str(src)
            directory = os.path.isdir(src)
        else:
            directory = True
        if mtype in {"cgroup", "cgroup2"}:
            self.cgroup_mount(dest, flags)
            return
        fd = create_target(self.rootfd, dest, directory=directory, follow=is_bind)
        try:
            target = fdpath(fd)
            if is_bind:
                mount(str(src), target, None, flags & (MS_BIND | MS_REC), None)
                rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
                if rest:
                    self.remount_at(dest, rest)
            elif mtype == "sysfs" and self.userns and "network" not in self.namespaces():
                # sysfs needs a netns we own; runc rootless binds the host's read-only instead.
                mount("/sys", target, None, MS_BIND | MS_REC, None)
                self.remount_at(dest, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            else:
                if mtype == "devpts" and "gid=5" in data and not self.gid_mapped(5):
                    data = ",".join(o for o in data.split(",") if o != "gid=5")
                try:
                    mount(str(src or mtype), target, mtype, flags & ~MS_REMOUNT, data or None)
                except Failure:
                    if mtype != "sysfs":
                        raise
                    mount("/sys", target, None, MS_BIND | MS_REC, None)
                    self.remount_at(dest, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            if prop:
                top = open_in_root(self.rootfd, dest)
                try:
                    mount(None, fdpath(top), None, prop, None)
                finally:
                    os.close(top)
        finally:
            os.close(fd)

    def sysctl(self, key: str, value: str) -> None:
        """Write one sysctl through the container's /proc, before /proc/sys turns read-only;
        the file must be on procfs (CVE-2024-45310: a mount over /proc redirects writes).
        """
        rel = "/proc/sys/" + key.replace(".", "/")
        try:
            fd = openat2(
                self.rootfd,
                rel.lstrip("/"),
                os.O_WRONLY,
                RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
            )
        except OSError as exc:
            raise Failure(f"sysctl {key}: {exc.strerror}") from exc
        try:
            buf = ctypes.create_string_buffer(128)  # struct statfs; f_type is the first field
            _check(libc.fstatfs(fd, buf), f"fstatfs {rel}")
            if struct.unpack_from("l", buf.raw)[0] != PROC_SUPER_MAGIC:
                raise Failure(f"sysctl {key}: {rel} is not on procfs")
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def remount_at(self, dest: str, flags: int) -> None:
        """Remount the mount now on top of ``dest`` (an fd taken before it was mounted over
        still names the covered directory).
        """
        fd = open_in_root(self.rootfd, dest)
        try:
            remount(fdpath(fd), flags)
        finally:
            os.close(fd)

    def cgroup_mount(self, dest: str, flags: int) -> None:
        """Mount the container's cgroup view: cgroup2 in its cgroupns, else an empty tmpfs."""
        fd = create_target(self.rootfd, dest, directory=True, follow=False)
        try:
            ro = flags & MS_RDONLY
            base = MS_NOSUID | MS_NODEV | MS_NOEXEC
            if self.req.get("cgroup_version") == 2 and "cgroup" in self.namespaces():
                mount("cgroup2", fdpath(fd), "cgroup2", base | ro, None)
            else:
                # v1/hybrid: the host hierarchy is not shown; an empty read-only tmpfs is.
                mount("tmpfs", fdpath(fd), "tmpfs", base, "mode=755,size=64k")
                self.remount_at(dest, MS_RDONLY)
        finally:
            os.close(fd)

    def namespaces(self) -> set[str]:
        """The namespace types the config creates."""
        return {str(n["type"]) for n in self.linux.get("namespaces") or ()}  # type: ignore[attr-defined]

    def gid_mapped(self, gid: int) -> bool:
        """Whether ``gid`` is mapped in the user namespace (always true without one)."""
        if not self.userns:
            return True
        for line in open("/proc/self/gid_map").read().splitlines():  # noqa: SIM115
            inside, _, count = (int(x) for x in line.split())
            if inside <= gid < inside + count:
                return True
        return False

    def devices(self) -> None:
        """Populate /dev: default and configured nodes (mknod, or host binds in a userns)."""
        devfd = open_in_root(self.rootfd, "/dev")
        try:
            wanted = [(n, "c", ma, mi, 0o666, 0, 0) for n, ma, mi in DEFAULT_DEVICES]
            for d in self.linux.get("devices") or ():  # type: ignore[attr-defined]
                path = str(d["path"])
                if not path.startswith("/dev/"):
                    raise Failure(f"device {path} is outside /dev")
                wanted.append(
                    (
                        path[5:],
                        str(d["type"]),
                        int(d["major"]),
                        int(d["minor"]),
                        int(d.get("fileMode", 0o666)),
                        int(d.get("uid", 0)),
                        int(d.get("gid", 0)),
                    )
                )
            for name, kind, major, minor, mode, uid, gid in wanted:
                self.device(name, kind, major, minor, mode, uid, gid)
            for name, target in DEV_LINKS:
                try:
                    os.symlink(target, name, dir_fd=devfd)
                except FileExistsError:
                    pass
            console = self.req.get("console_fd")
            if isinstance(console, int):
                # By path: the pts mount must be the copy in this mount namespace (an fd
                # names the parent namespace's mount, which mount(2) refuses to bind).
                name = os.ttyname(console)
                fd = create_target(self.rootfd, "/dev/console", directory=False)
                try:
                    mount(name, fdpath(fd), None, MS_BIND, None)
                finally:
                    os.close(fd)
        finally:
            os.close(devfd)

    def device(
        self, name: str, kind: str, major: int, minor: int, mode: int, uid: int, gid: int
    ) -> None:
        """Create one device node in-root; the image's /dev is never trusted (CVE-2026-41579)."""
        parent, _, leaf = name.rpartition("/")
        pfd = mkdirs_in_root(self.rootfd, "/dev/" + parent)
        try:
            try:
                os.unlink(leaf, dir_fd=pfd)
            except FileNotFoundError:
                pass
            if self.userns:
                fd = os.open(
                    leaf,
                    os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC,
                    0o600,
                    dir_fd=pfd,
                )
                os.close(fd)
                tfd = openat2(pfd, leaf, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
                try:
                    mount("/dev/" + name, fdpath(tfd), None, MS_BIND, None)
                finally:
                    os.close(tfd)
                return
            ftype = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}[kind]
            os.mknod(leaf, ftype | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
            os.chown(leaf, uid, gid, dir_fd=pfd, follow_symlinks=False)
            os.chmod(leaf, mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def mask(self, path: str) -> None:
        """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory."""
        try:
            fd = open_in_root(self.rootfd, path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if os.path.isdir(fdpath(fd)):
                mount("tmpfs", fdpath(fd), "tmpfs", MS_RDONLY, "size=0k")
                return
            null = open_in_root(self.rootfd, "/dev/null")
            try:
                st = os.fstat(null)
                # CVE-2025-31133: never bind anything but the real null device over a file.
                if not (st.st_mode & 0o170000 == 0o020000 and st.st_rdev == os.makedev(1, 3)):
                    msg = "/dev/null is not the null device; refusing to mask with it"
                    raise Failure(msg)
                mount(fdpath(null), fdpath(fd), None, MS_BIND, None)
            finally:
                os.close(null)
        finally:
            os.close(fd)

    def readonly(self, path: str) -> None:
        """Bind ``path`` onto itself read-only."""
        try:
            fd = open_in_root(self.rootfd, path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            mount(fdpath(fd), fdpath(fd), None, MS_BIND | MS_REC, None)
            self.remount_at(path, MS_RDONLY)
        finally:
            os.close(fd)

    def pivot(self) -> None:
        """pivot_root as runc's rootfs_linux.go does, then detach the old root."""
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        newroot = os.open(self.root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        os.fchdir(newroot)
        _check(libc.syscall(_nr(0), b".", b"."), "pivot_root")
        os.fchdir(oldroot)
        mount(None, ".", None, MS_SLAVE | MS_REC, None)
        _check(libc.umount2(b".", MNT_DETACH), "umount old root")
        os.chdir("/")
        os.close(oldroot)
        os.close(newroot)
        os.close(self.rootfd)
        root = self.config.get("root") or {}
        if isinstance(root, dict) and root.get("readonly"):
            remount("/", MS_RDONLY)


# ---------------------------------------------------------------- the process


def bring_up_loopback() -> None:
    """Set IFF_UP on lo in the new network namespace (SIOCGIFFLAGS/SIOCSIFFLAGS)."""
    sock = _check(libc.socket(2, 2, 0), "socket")  # AF_INET, SOCK_DGRAM
    try:
        ifr = ctypes.create_string_buffer(b"lo".ljust(40, b"\0"))
        _check(libc.ioctl(sock, 0x8913, ifr), "SIOCGIFFLAGS lo")
        flags = struct.unpack_from("H", ifr.raw, 16)[0] | 1  # IFF_UP
        struct.pack_into("H", ifr, 16, flags)
        _check(libc.ioctl(sock, 0x8914, ifr), "SIOCSIFFLAGS lo")
    finally:
        os.close(sock)


def cap_mask(names: list[str] | None) -> int:
    """Bit mask of capability names such as CAP_KILL."""
    mask = 0
    for name in names or ():
        short = name.removeprefix("CAP_")
        if short not in CAPS:
            raise Failure(f"unknown capability {name}")
        mask |= 1 << CAPS.index(short)
    return mask


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def drop_bounding(caps: dict[str, list[str]]) -> None:
    """Drop the bounding set while still root (PR_CAPBSET_DROP needs CAP_SETPCAP)."""
    bounding = cap_mask(caps.get("bounding"))
    for cap in range(last_cap() + 1):
        if not bounding & (1 << cap):
            prctl(PR_CAPBSET_DROP, cap)


def apply_caps(caps: dict[str, list[str]]) -> None:
    """Set effective/permitted/inheritable after the uid change; ambient only if configured."""
    last = last_cap()
    eff, perm, inh = (cap_mask(caps.get(k)) for k in ("effective", "permitted", "inheritable"))
    hdr = ctypes.create_string_buffer(struct.pack("Ii", CAP_VERSION_3, 0))
    data = ctypes.create_string_buffer(
        struct.pack(
            "IIIIII",
            eff & 0xFFFFFFFF,
            perm & 0xFFFFFFFF,
            inh & 0xFFFFFFFF,
            eff >> 32,
            perm >> 32,
            inh >> 32,
        )
    )
    _check(libc.syscall(_nr(1), hdr, data), "capset")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    ambient = cap_mask(caps.get("ambient")) & perm & inh
    for cap in range(last + 1):
        # Ambient needs the cap in permitted and inheritable; others are skipped, as runc does.
        if ambient & (1 << cap):
            prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def set_rlimits(rlimits: list[dict[str, object]]) -> None:
    """prlimit(2) each configured limit (e.g. RLIMIT_NOFILE 1024/1024)."""
    for rl in rlimits:
        name = str(rl["type"]).removeprefix("RLIMIT_")
        if name not in RLIMITS:
            raise Failure(f"unknown rlimit {rl['type']}")
        new = ctypes.create_string_buffer(struct.pack("QQ", int(rl["soft"]), int(rl["hard"])))  # type: ignore[call-overload]
        _check(libc.prlimit(0, RLIMITS.index(name), new, None), f"setrlimit {rl['type']}")


def resolve_user(spec: str) -> tuple[int, int, list[int]]:
    """Resolve ``name[:group]`` in the container's own /etc/passwd and /etc/group (post-pivot)."""
    user, _, group = spec.partition(":")

    def table(path: str) -> list[list[str]]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return [line.split(":") for line in f.read().splitlines() if line.count(":") >= 2]
        except OSError:
            return []

    passwd = table("/etc/passwd")
    groups = table("/etc/group")
    if user.isdigit():
        uid = int(user)
        gid = next((int(p[3]) for p in passwd if len(p) > 3 and p[2] == user), 0)
        name = next((p[0] for p in passwd if p[2] == user), None)
    else:
        row = next((p for p in passwd if p[0] == user and len(p) > 3), None)
        if row is None:
            raise Failure(f"user {user!r} not found in the image's /etc/passwd")
        uid, gid, name = int(row[2]), int(row[3]), user
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            grow = next((g for g in groups if g[0] == group), None)
            if grow is None:
                raise Failure(f"group {group!r} not found in the image's /etc/group")
            gid = int(grow[2])
    extra = [int(g[2]) for g in groups if name and len(g) > 3 and name in g[3].split(",")]
    return uid, gid, sorted(set(extra) - {gid})


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


HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run_hooks(
    req: dict[str, object],
    config: dict[str, object],
    kind: str = "createContainer",
    status: str = "creating",
    pid: int = 0,
) -> None:
    """Run the hooks of ``kind`` from this process, i.e. in the container's namespaces:
    createContainer after the mounts and before pivot_root, startContainer just before exec.
    State JSON on stdin, cwd /, only the hook's own env (PATH fixed, no LD_*).
    """
    hooks = (config.get("hooks") or {}).get(kind) or ()  # type: ignore[attr-defined]
    if not hooks:
        return
    import select

    state = dumps(
        {
            "ociVersion": config.get("ociVersion", "1.0.2"),
            "id": req.get("id", ""),
            "status": status,
            "pid": pid,
            "bundle": req.get("bundle", ""),
            "annotations": config.get("annotations") or {},
        }
    ).encode()
    for hook in hooks:
        path = str(hook["path"])
        args = [str(a) for a in hook.get("args") or [path]]
        env = {"PATH": HOOK_PATH}
        for entry in hook.get("env") or ():
            key, sep, value = str(entry).partition("=")
            if sep and key and not key.startswith("LD_") and key != "PATH":
                env[key] = value
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(r, 0)
                os.chdir("/")
                os.execve(path, args, env)
            finally:
                os._exit(127)
        os.close(r)
        try:
            os.write(w, state)
        except OSError:
            pass
        os.close(w)
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], float(hook.get("timeout") or 60))
        finally:
            os.close(pidfd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        _, wstatus = os.waitpid(pid, 0)
        if not ready or os.waitstatus_to_exitcode(wstatus) != 0:
            why = "timed out" if not ready else f"exited with {os.waitstatus_to_exitcode(wstatus)}"
            msg = f"{kind} hook {path} {' '.join(args[1:])} {why}"
            raise Failure(msg)


def container(req: dict[str, object], status: int, userns: bool) -> None:
    """C, pid 1 of the new pid namespace: everything up to execve."""
    config: dict[str, object] = req["config"]  # type: ignore[assignment]
    linux: dict[str, object] = config.get("linux") or {}  # type: ignore[assignment]
    proc: dict[str, object] = config["process"]  # type: ignore[assignment]
    if not req.get("detach"):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    host_pid = int(os.readlink("/proc/self"))  # /proc is the host's until pivot_root
    for procs in req.get("cgroup_procs") or ():  # type: ignore[attr-defined]
        with open(procs, "w") as f:
            f.write("0")
    if userns:
        # Become the namespace's root, after joining the cgroups (which needs the host id we
        # started as): that id may be unmapped (a rootful range map), and files created by an
        # unmapped id fail with EOVERFLOW.
        if _lines("/proc/self/setgroups") == ["allow"]:
            os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    flags = 0
    types = {str(n["type"]) for n in linux.get("namespaces") or ()}  # type: ignore[attr-defined]
    if "mount" not in types:  # the rootfs setup below must never touch the host's mounts
        msg = "config.json must create a mount namespace (linux.namespaces: mount)"
        raise Failure(msg)
    if "oomScoreAdj" in proc:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(int(proc["oomScoreAdj"])))  # type: ignore[call-overload]
    for name, flag in NS_FLAGS.items():
        if name in types:
            flags |= flag
    unshare(flags)
    if "uts" in types and config.get("hostname"):
        host = str(config["hostname"]).encode()
        _check(libc.sethostname(host, len(host)), "sethostname")
    if "network" in types:
        bring_up_loopback()
    fifo = -1
    if isinstance(req.get("exec_fifo_fd"), int):
        # Opened (O_PATH) by the parent: the state dir may not be searchable by the
        # namespace's root; only the fifo itself is chowned to it, as runc does.
        fifo = int(req["exec_fifo_fd"])  # type: ignore[call-overload]
    elif req.get("exec_fifo"):
        fifo = os.open(str(req["exec_fifo"]), O_PATH | os.O_CLOEXEC)
    rootfs = Rootfs(req, config, userns)
    rootfs.build()
    hooks: dict[str, object] = config.get("hooks") or {}  # type: ignore[assignment]
    if hooks.get("prestart") or hooks.get("createRuntime"):
        # These run in the runtime's namespaces: the parent runs them while we wait.
        send(status, {"hooks": "createRuntime", "pid": host_pid})
        answer = read_line(int(req["ctl_fd"]))  # type: ignore[call-overload]
        if answer != b"ok":
            raise Failure(answer.decode(errors="replace") or "the runtime went away")
    run_hooks(req, config, "createContainer", "creating", host_pid)
    rootfs.pivot()
    env = [str(e) for e in proc.get("env") or ()]  # type: ignore[attr-defined]
    user: dict[str, object] = proc.get("user") or {}  # type: ignore[assignment]
    uid, gid = int(user.get("uid", 0)), int(user.get("gid", 0))  # type: ignore[call-overload]
    extra = [int(g) for g in user.get("additionalGids") or ()]  # type: ignore[attr-defined]
    named = (config.get("annotations") or {}).get("org.mlpack.user")  # type: ignore[attr-defined]
    if named:
        uid, gid, extra = resolve_user(str(named))
        if not any(e.startswith("HOME=") for e in env):
            home = next(
                (
                    p[5]
                    for p in (line.split(":") for line in _lines("/etc/passwd"))
                    if len(p) > 5 and p[2] == str(uid)
                ),
                "/",
            )
            env.append(f"HOME={home}")
    if "umask" in user:
        os.umask(int(user["umask"]))  # type: ignore[call-overload]
    caps: dict[str, list[str]] = proc.get("capabilities") or {}  # type: ignore[assignment]
    drop_bounding(caps)
    nnp = bool(proc.get("noNewPrivileges"))  # OCI default false; mlpack's configs set true
    if not nnp:
        # Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it while we still
        # have it, as runc does; the profile must then allow the remaining setup calls.
        load_seccomp(req.get("seccomp_bpf"))
    prctl(PR_SET_KEEPCAPS, 1)
    if not userns or _lines("/proc/self/setgroups") == ["allow"]:
        os.setgroups(extra)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    prctl(PR_SET_KEEPCAPS, 0)
    apply_caps(caps)
    if nnp:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    set_rlimits(proc.get("rlimits") or [])  # type: ignore[arg-type]
    # Every step that can fail on this host (capset with a capability outside the bounding
    # set, setgroups, rlimits) is done: only now is the container "created" (as runc's
    # finalizeNamespace runs before the exec fifo), so `create` reports such a failure.
    send(status, {"created": True})
    global CREATED  # noqa: PLW0603 - one process-wide switch, set once
    CREATED = True
    if fifo >= 0:
        # The fifo is mode 0622 (as runc's): the user program's uid may write to it.
        w = os.open(fdpath(fifo), os.O_WRONLY | os.O_CLOEXEC)  # blocks until `start` reads
        os.write(w, b"0")
        # Left open, close-on-exec: `start` sees EOF once the program runs (or we fail), so it
        # runs poststart hooks after the exec, as runtime-spec orders them.
        os.close(fifo)
    run_hooks(req, config, "startContainer", "created", host_pid)
    if not proc.get("terminal"):
        os.setsid()
    else:
        os.setsid()
        _check(libc.ioctl(0, 0x540E, 0), "TIOCSCTTY")  # the pty becomes the controlling tty
    cwd = str(proc.get("cwd") or "/")
    try:
        os.chdir(cwd)
        real = os.getcwd()
    except OSError as exc:
        raise Failure(f"working directory {cwd}: {exc.strerror}") from exc
    if not real.startswith("/"):  # CVE-2024-21626: a leaked fd as cwd is "(unreachable)/..."
        raise Failure(f"working directory {cwd} is outside the container")
    args = [str(a) for a in proc.get("args") or ()]  # type: ignore[attr-defined]
    if not args:
        msg = "no command: the image has no Entrypoint/Cmd and none was given"
        raise Failure(msg)
    program = find_program(args[0], env, real)
    init = (config.get("annotations") or {}).get("org.mlpack.init")  # type: ignore[attr-defined]
    if init:  # pid 1 is the read-only static reaper; it execs the payload by path
        args = [str(init), program, *args[1:]]
        program = str(init)
    keep = int(req.get("preserve_fds") or 0)  # type: ignore[call-overload]
    cloexec_from(3 + keep)
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if nnp:
        load_seccomp(req.get("seccomp_bpf"))  # last, right before execve (§3)
    try:
        os.execve(program, args, dict(e.partition("=")[::2] for e in env))
    except OSError as exc:
        raise Failure(f"exec {program}: {exc.strerror}") from exc


def cloexec_from(first: int) -> None:
    """Mark every fd >= ``first`` close-on-exec (CVE-2024-21626): close_range, or, where a
    profile refuses it, each fd of /proc/self/fd (as runc falls back).
    """
    if libc.syscall(_nr(2), first, ctypes.c_uint(0xFFFFFFFF), CLOSE_RANGE_CLOEXEC) == 0:
        return
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= first:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def load_seccomp(bpf: object) -> None:
    """Install the compiled filter (raw sock_filter bytes, hex-encoded by the parent)."""
    if not isinstance(bpf, str) or not bpf:
        return
    code = bytes.fromhex(bpf)
    filt = ctypes.create_string_buffer(code)
    prog = ctypes.create_string_buffer(
        struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(filt))
    )
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def _lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def supervisor(ctl: int, status: int) -> int:
    """S: user and pid namespaces, fork C, wait, relay signals, report the exit status."""
    line = read_line(ctl)
    if not line:  # started ahead of a request that never came: the caller failed first
        return 0
    req = loads(line)
    req["ctl_fd"] = ctl
    config = req["config"]
    linux = config.get("linux") or {}
    types = {n["type"] for n in linux.get("namespaces") or ()}
    userns = "user" in types
    global DETACHED  # noqa: PLW0603 - one process-wide switch, set once
    DETACHED = bool(req.get("detach"))
    if not req.get("detach"):
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    try:
        if userns:
            unshare(CLONE_NEWUSER)
            send(status, {"userns": os.getpid()})
            answer = read_line(ctl)
            if answer != b"ok":
                return 1
        if "pid" in types:
            unshare(CLONE_NEWPID)
    except Failure as exc:
        send(status, {"error": str(exc)})
        return 1
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            container(req, status, userns)
        except Failure as exc:
            send(status, {"error": str(exc)})
        except OSError as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_name}:{tb.tb_lineno}" if tb else "setup"
            send(status, {"error": f"{exc.filename or where}: {exc.strerror}"})
        except BaseException as exc:  # noqa: BLE001 - report, never run a payload half-set-up
            send(status, {"error": f"helper bug: {exc!r}"})
        finally:
            os._exit(code)
    os.close(ctl)
    send(status, {"pid": pid})

    def relay(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, relay)
    cpu_us = maxrss = None
    try:
        _, wstatus, usage = os.wait4(pid, 0)
        # Without a cgroup these are the figures: pid 1 and the children it reaped.
        cpu_us = int((usage.ru_utime + usage.ru_stime) * 1e6)
        maxrss = usage.ru_maxrss * 1024
    except ChildProcessError:
        wstatus = 0
    result: dict[str, object]
    if os.WIFSIGNALED(wstatus):
        result = {"exit": 128 + os.WTERMSIG(wstatus), "signal": os.WTERMSIG(wstatus)}
    else:
        result = {"exit": os.waitstatus_to_exitcode(wstatus), "signal": None}
    result["cpu_us"] = cpu_us
    result["maxrss"] = maxrss
    state_dir = req.get("state_dir")
    if state_dir:
        tmp = os.path.join(state_dir, ".exit.json.tmp")
        with open(tmp, "w") as f:
            f.write(dumps(result))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(state_dir, "exit.json"))
    send(status, result)
    return 0


def main() -> int:
    """Entry point: ``helper.py CTL_FD STATUS_FD [KEEP_FD ...]``.

    Only stdio, the two pipes and the KEEP fds are meant for the helper (it was spawned without
    closing the caller's other inheritable fds): any other is closed first.
    """
    ctl, status = int(sys.argv[1]), int(sys.argv[2])
    keep = sorted({0, 1, 2, ctl, status, *(int(a) for a in sys.argv[3:])})
    for low, high in zip(keep, [*keep[1:], 1 << 30], strict=True):
        if high > low + 1:
            os.closerange(low + 1, high)
    return supervisor(ctl, status)


if __name__ == "__main__":
    # Everything is written with os.write: skip the interpreter's teardown (a few ms on every
    # container exit); an exception still unwinds and prints through the normal path.
    os._exit(main())
