"""Linux constants and the few system calls Python 3.11 has no wrapper for, through ctypes.

``unshare``, ``setns``, ``mount``, ``umount2``, ``pivot_root``, ``openat2``, ``close_range``,
``capset``, ``prctl``, ``prlimit`` with a struct, ``sethostname``, ``fstatfs``: the container
helper needs them (SECURITY-AND-ISOLATION.md §1), the layer applier needs ``openat2``. Each
wrapper raises ``OSError`` with ``errno`` set and the operation in ``filename``, as ``os`` does.
(``ctypes`` itself only for type checking: ``oslib.clib`` has the pieces used.)
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    import ctypes
else:  # ctypes' own pieces, without importing ctypes (~2 ms of every container start)
    from mlpack.oslib import clib as ctypes

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# OCI linux.namespaces[].type -> the CLONE_NEW* flag that makes (or, for setns, checks) it.
NAMESPACES = {
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "network": CLONE_NEWNET,
}
# ioctl on a namespace fd: the CLONE_NEW* type of the namespace it names (Linux >= 4.11).
NS_GET_NSTYPE = 0xB703

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
# statvfs f_flag bits -> the mount flags that a bind remount must keep (locked in a userns).
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
CAP_VERSION_3 = 0x20080522
TIOCSCTTY = 0x540E

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10
PROC_SUPER_MAGIC = 0x9FA0

# The PATH of a process whose config sets none, and of hooks (runc's and Docker's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The largest id runc accepts: (uid_t)-1 means "unchanged" to setresuid, i.e. root stays root.
MAX_ID = 2**31 - 1

# machine -> (pivot_root, capset, close_range, openat2)
_SYSCALLS = {"x86_64": (155, 126, 436, 437), "aarch64": (41, 91, 436, 437)}

CAPS = (
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
)
RLIMITS = (
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
libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)
libc.unshare.argtypes = (ctypes.c_int,)


def check(ret: int, what: str) -> int:
    """``ret`` when it is not negative, else OSError from errno naming ``what``."""
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


def _nr(index: int) -> int:
    machine = os.uname().machine
    if machine not in _SYSCALLS:
        raise OSError(38, f"unsupported architecture {machine}", "syscall")  # ENOSYS
    return _SYSCALLS[machine][index]


def _fs(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(src: str | None, tgt: str, fstype: str | None, flags: int, data: str | None) -> None:
    """Mount (the system call), naming the target in errors."""
    check(libc.mount(_fs(src), _fs(tgt), _fs(fstype), flags, _fs(data)), f"mount {tgt}")


def umount2(target: str, flags: int) -> None:
    """Unmount ``target`` with umount2 ``flags`` (e.g. MNT_DETACH)."""
    check(libc.umount2(os.fsencode(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    """Leave the namespaces in ``flags`` for new ones (the unshare system call)."""
    check(libc.unshare(flags), f"unshare({flags:#x})")


def setns(fd: int, nstype: int) -> None:
    """Join the namespace ``fd`` names; the kernel refuses one not of type ``nstype``."""
    check(libc.setns(fd, nstype), "setns")


def namespace_type(fd: int) -> int:
    """The CLONE_NEW* type of the namespace file ``fd`` (NS_GET_NSTYPE)."""
    return check(libc.ioctl(fd, NS_GET_NSTYPE, 0), "NS_GET_NSTYPE")


def prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    """Process control (the prctl system call) with integer arguments."""
    check(libc.prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


def sethostname(name: str) -> None:
    """Set the UTS namespace's hostname."""
    raw = name.encode()
    check(libc.sethostname(raw, len(raw)), "sethostname")


def pivot_root(new_root: str, put_old: str) -> None:
    """Make ``new_root`` the root, moving the old one to ``put_old`` (pivot_root)."""
    check(libc.syscall(_nr(0), os.fsencode(new_root), os.fsencode(put_old)), "pivot_root")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (capset, version 3: 64 bits each)."""
    hdr = ctypes.create_string_buffer(struct.pack("Ii", CAP_VERSION_3, 0))
    lo = (effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF)
    data = ctypes.create_string_buffer(
        struct.pack(
            "IIIIII", lo[0], lo[1], lo[2], effective >> 32, permitted >> 32, inheritable >> 32
        )
    )
    check(libc.syscall(_nr(1), hdr, data), "capset")


def close_range_cloexec(first: int) -> bool:
    """Mark every fd >= ``first`` close-on-exec; False where close_range is refused."""
    return int(libc.syscall(_nr(2), first, ctypes.c_uint(0xFFFFFFFF), CLOSE_RANGE_CLOEXEC)) == 0


def openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    """Open ``path`` under ``dirfd``, resolved as ``resolve`` says (openat2, Linux >= 5.6)."""
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags | os.O_CLOEXEC, 0, resolve))
    ret = libc.syscall(_nr(3), dirfd, os.fsencode(path), how, ctypes.c_size_t(24))
    return check(ret, path)


def fstatfs_type(fd: int) -> int:
    """``f_type`` of fstatfs(2) on ``fd`` (e.g. PROC_SUPER_MAGIC)."""
    buf = ctypes.create_string_buffer(128)  # struct statfs; f_type is its first field
    check(libc.fstatfs(fd, buf), "fstatfs")
    return int(struct.unpack_from("l", buf.raw)[0])


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """Set one resource limit of this process (prlimit; 2**64-1 is RLIM_INFINITY)."""
    new = ctypes.create_string_buffer(struct.pack("QQ", soft, hard))
    check(libc.prlimit(0, resource, new, None), f"setrlimit {RLIMITS[resource]}")


def seccomp_load(bpf: bytes) -> None:
    """Install a classic-BPF seccomp filter (raw ``struct sock_filter`` array)."""
    filt = ctypes.create_string_buffer(bpf)
    prog = ctypes.create_string_buffer(
        struct.pack("HxxxxxxP", len(bpf) // 8, ctypes.addressof(filt))
    )
    check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def set_controlling_tty(fd: int) -> None:
    """TIOCSCTTY: ``fd``'s terminal becomes this session's controlling terminal."""
    check(libc.ioctl(fd, TIOCSCTTY, 0), "TIOCSCTTY")


def loopback_up() -> None:
    """Set IFF_UP on ``lo`` of this network namespace (SIOCGIFFLAGS, then SIOCSIFFLAGS)."""
    sock = check(libc.socket(2, 2, 0), "socket")  # AF_INET, SOCK_DGRAM
    try:
        ifr = ctypes.create_string_buffer(b"lo".ljust(40, b"\0"))
        check(libc.ioctl(sock, 0x8913, ifr), "SIOCGIFFLAGS lo")
        struct.pack_into("H", ifr, 16, struct.unpack_from("H", ifr.raw, 16)[0] | 1)
        check(libc.ioctl(sock, 0x8914, ifr), "SIOCSIFFLAGS lo")
    finally:
        os.close(sock)
