"""The default seccomp profile (moby default.json semantics), compiled to BPF and cached."""

from __future__ import annotations

import os

from mlpack.errors import ContainerError
from mlpack.oslib import jsoncodec

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any, Final

    StrPath = str | PathLike[str]

# The allowlist of moby's profiles/seccomp/default.json (as shipped in containers-common for
# Debian 12), without the calls moby grants only with a capability: those are in CAP_GATED
# (where mlpack also puts ptrace and process_vm_*, see there).
ALLOWED: Final = [
    "_llseek",
    "_newselect",
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futimesat",
    "get_mempolicy",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_setup",
    "io_submit",
    "ioctl",
    "ioprio_get",
    "ioprio_set",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "mbind",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readdir",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "set_mempolicy",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setsockopt",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaction",
    "sigaltstack",
    "signal",
    "signalfd",
    "signalfd4",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "syscall",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
]

# Calls allowed only when the container keeps the capability (moby's "includes": {"caps"}).
CAP_GATED: Final = {
    "CAP_SYS_ADMIN": [
        "bpf",
        "clone",
        "clone3",
        "fanotify_init",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "open_tree",
        "perf_event_open",
        "quotactl",
        "quotactl_fd",
        "setdomainname",
        "sethostname",
        "setns",
        "syslog",
        "umount",
        "umount2",
        "unshare",
    ],
    "CAP_SYS_BOOT": ["reboot"],
    "CAP_SYS_CHROOT": ["chroot"],
    "CAP_SYS_MODULE": ["delete_module", "init_module", "finit_module"],
    "CAP_SYS_PACCT": ["acct"],
    # moby allows ptrace and process_vm_* to everyone on Linux >= 4.8; mlpack is stricter: a
    # training or inference container has no reason to trace or read other processes' memory,
    # so these need CAP_SYS_PTRACE (which neither capability profile grants).
    "CAP_SYS_PTRACE": [
        "kcmp",
        "pidfd_getfd",
        "process_madvise",
        "process_vm_readv",
        "process_vm_writev",
        "ptrace",
    ],
    "CAP_SYS_RAWIO": ["iopl", "ioperm"],
    "CAP_SYS_TIME": ["settimeofday", "stime", "clock_settime", "clock_settime64"],
    "CAP_SYS_TTY_CONFIG": ["vhangup"],
    "CAP_SYSLOG": ["syslog"],
    "CAP_BPF": ["bpf"],
    "CAP_PERFMON": ["perf_event_open"],
    "CAP_DAC_READ_SEARCH": ["open_by_handle_at"],
}
CLONE_NS_FLAGS: Final = 0x7E020000  # any CLONE_NEW*: namespaces only with CAP_SYS_ADMIN
AF_VSOCK: Final = 40
EPERM: Final = 1
ENOSYS: Final = 38
PERSONALITIES: Final = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
ARCHES: Final = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64"}
SUB_ARCHES: Final = {"x86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"), "aarch64": ("SCMP_ARCH_ARM",)}

SCMP_ACT_ALLOW: Final = 0x7FFF0000
SCMP_ACT_ERRNO_BASE: Final = 0x00050000
SCMP_ACT_KILL_PROCESS: Final = 0x80000000
SCMP_ACT_LOG: Final = 0x7FFC0000
OPS: Final = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}


def default_profile(caps: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container keeping ``caps`` (bounding set)."""
    machine = os.uname().machine
    names = list(ALLOWED)
    for cap, calls in CAP_GATED.items():
        if cap in caps:
            names += [c for c in calls if c not in names]
    syscalls: list[dict[str, Any]] = [{"names": sorted(set(names)), "action": "SCMP_ACT_ALLOW"}]
    if "CAP_SYS_ADMIN" not in caps:
        syscalls += [
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
                ],
            },
            # clone3 passes flags in a struct BPF cannot read: ENOSYS makes libc fall back.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
        ]
    syscalls.append(
        {
            "names": ["socket"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": AF_VSOCK, "valueTwo": 0, "op": "SCMP_CMP_NE"}],
        }
    )
    syscalls += [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
        for p in PERSONALITIES
    ]
    if machine == "x86_64":
        syscalls.append({"names": ["arch_prctl", "modify_ldt"], "action": "SCMP_ACT_ALLOW"})
    arches = [ARCHES[machine], *SUB_ARCHES[machine]] if machine in ARCHES else []
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": arches,
        "syscalls": syscalls,
    }


def _action(name: str, errno_ret: int | None) -> int:
    if name == "SCMP_ACT_ALLOW":
        return SCMP_ACT_ALLOW
    if name == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO_BASE | (EPERM if errno_ret is None else errno_ret)
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"):
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    msg = f"seccomp action {name} is not supported"
    raise ContainerError(msg, hint="use SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL or _LOG")


class _Lib:
    """libseccomp through ctypes; only the parent uses it, the helper loads the bytes."""

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        try:
            try:
                self.lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
            except OSError:
                self.lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "", use_errno=True)
        except OSError as exc:
            msg = f"libseccomp is not available ({exc})"
            raise ContainerError(msg, hint="install it: apt-get install libseccomp2") from exc
        lib = self.lib
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_release.argtypes = (ctypes.c_void_p,)
        lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_void_p,
        )
        lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
        lib.seccomp_version.restype = ctypes.c_void_p

    def version(self) -> str:
        """Libseccomp's version, part of the cache key."""
        import ctypes

        ptr = self.lib.seccomp_version()
        major, minor, micro = (ctypes.c_uint * 3).from_address(ptr)
        return f"{major}.{minor}.{micro}"

    def compile(self, profile: dict[str, Any]) -> bytes:
        """Compile an OCI seccomp object into the raw BPF program."""
        import ctypes

        lib = self.lib
        default = _action(
            profile.get("defaultAction", "SCMP_ACT_ERRNO"), profile.get("defaultErrnoRet")
        )
        ctx = lib.seccomp_init(default)
        if not ctx:
            msg = "seccomp_init failed"
            raise ContainerError(msg, hint="check the profile's defaultAction")
        try:
            for arch in profile.get("architectures") or ():
                token = lib.seccomp_arch_resolve_name(
                    arch.removeprefix("SCMP_ARCH_").lower().encode()
                )
                if token and lib.seccomp_arch_add(ctx, token) not in (0, -17):  # -EEXIST: native
                    msg = f"seccomp: architecture {arch} could not be added"
                    raise ContainerError(msg, hint="remove it from the profile's architectures")
            for rule in profile.get("syscalls") or ():
                action = _action(rule["action"], rule.get("errnoRet"))
                if action == default:  # libseccomp refuses these (EACCES); runc skips them
                    continue
                args = rule.get("args") or []
                # libseccomp cannot AND two conditions on one argument: like runc, such a rule
                # becomes one rule per condition (OR), as Docker's old profiles mean it.
                indexes = [int(a["index"]) for a in args]
                groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
                for group in groups or [[]]:
                    arr = (ctypes.c_byte * (24 * max(len(group), 1)))()
                    for i, arg in enumerate(group):
                        ctypes.memmove(ctypes.addressof(arr) + 24 * i, _pack_arg(arg), 24)
                    for name in rule["names"]:
                        nr = lib.seccomp_syscall_resolve_name(name.encode())
                        if nr == -1:  # __NR_SCMP_ERROR: unknown on every arch of this filter
                            continue
                        ret = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                        if ret < 0 and ret != -17:
                            msg = f"seccomp: rule for {name} rejected ({os.strerror(-ret)})"
                            raise ContainerError(msg, hint="check the profile's rule for it")
            fd = os.memfd_create("mlpack-seccomp", os.MFD_CLOEXEC)
            try:
                if lib.seccomp_export_bpf(ctx, fd) < 0:
                    msg = "seccomp_export_bpf failed"
                    raise ContainerError(msg, hint="report this with your libseccomp version")
                size = os.lseek(fd, 0, os.SEEK_END)
                return os.pread(fd, size, 0)
            finally:
                os.close(fd)
        finally:
            lib.seccomp_release(ctx)


def _pack_arg(arg: dict[str, Any]) -> bytes:
    import struct

    op = OPS.get(arg["op"])
    if op is None:
        msg = f"seccomp: comparison {arg['op']} is not supported"
        raise ContainerError(msg, hint="use one of " + ", ".join(OPS))
    return struct.pack(
        "IiQQ", int(arg["index"]), op, int(arg["value"]), int(arg.get("valueTwo", 0))
    )


_MEMO: dict[tuple[str, str | None], bytes] = {}


def compile_profile(profile: dict[str, Any], cache_dir: StrPath | None) -> bytes:
    """BPF for ``profile``, cached by profile hash, architecture and libseccomp version.

    Cached on disk and, for a warm library process, in memory.
    """
    text = jsoncodec.dumps(profile, sort_keys=True)
    cache = None if cache_dir is None else os.fspath(cache_dir)
    memo = _MEMO.get((text, cache))
    if memo is not None:
        return memo
    code = _compile_cached(profile, text, cache)
    _MEMO[(text, cache)] = code
    return code


LIB_DIRS: Final = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
)


def _lib_identity() -> str:
    """Libseccomp's versioned file name (libseccomp.so.2.5.4), found without loading it."""
    for d in LIB_DIRS:
        path = os.path.join(d, "libseccomp.so.2")  # noqa: PTH118 - hot path, no pathlib
        if os.path.exists(path):  # noqa: PTH110
            return os.path.basename(os.path.realpath(path))  # noqa: PTH119
    return ""


def _compile_cached(profile: dict[str, Any], text: str, cache_dir: str | None) -> bytes:
    ident = _lib_identity()
    lib = None if ident else _Lib()
    version = ident or (lib.version() if lib else "")
    import hashlib

    from mlpack.oslib.fs import atomic_write

    key = hashlib.sha256(f"{text}|{os.uname().machine}|{version}".encode()).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf") if cache_dir else None  # noqa: PTH118
    if path is not None:
        try:
            with open(path, "rb") as f:  # noqa: PTH123
                return f.read()
        except OSError:
            pass
    code = (lib or _Lib()).compile(profile)
    if path is not None and cache_dir is not None:
        try:
            os.makedirs(cache_dir, exist_ok=True)  # noqa: PTH103
            atomic_write(path, code)
        except OSError:
            pass  # a cache that cannot be written only costs the next run a compile
    return code
