"""An OCI ``linux.seccomp`` profile compiled to BPF with libseccomp (ctypes), and cached."""

from __future__ import annotations

import os

from mlpack.errors import ContainerError
from mlpack.oslib import jsoncodec
from mlpack.runtime.seccomp_profile import EPERM

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from os import PathLike
    from typing import Any, Final

    StrPath = str | PathLike[str]

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
                self._add_arch(ctx, arch)
            for rule in profile.get("syscalls") or ():
                action = _action(rule["action"], rule.get("errnoRet"))
                if action != default:  # libseccomp refuses these (EACCES); runc skips them
                    self._add_rule(ctx, action, rule)
            return self._export(ctx)
        finally:
            lib.seccomp_release(ctx)

    def _add_arch(self, ctx: int, arch: str) -> None:
        token = self.lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
        if token and self.lib.seccomp_arch_add(ctx, token) not in (0, -17):  # -EEXIST: native
            msg = f"seccomp: architecture {arch} could not be added"
            raise ContainerError(msg, hint="remove it from the profile's architectures")

    def _add_rule(self, ctx: int, action: int, rule: dict[str, Any]) -> None:
        """One profile rule: its action for each of its syscalls, under its argument tests.

        libseccomp cannot AND two conditions on one argument: like runc, such a rule becomes
        one rule per condition (OR), as Docker's old profiles mean it.
        """
        import ctypes

        args = rule.get("args") or []
        indexes = [int(a["index"]) for a in args]
        groups = [[a] for a in args] if len(set(indexes)) < len(indexes) else [args]
        for group in groups or [[]]:
            arr = (ctypes.c_byte * (24 * max(len(group), 1)))()
            for i, arg in enumerate(group):
                ctypes.memmove(ctypes.addressof(arr) + 24 * i, _pack_arg(arg), 24)
            for name in rule["names"]:
                nr = self.lib.seccomp_syscall_resolve_name(name.encode())
                if nr == -1:  # __NR_SCMP_ERROR: unknown on every arch of this filter
                    continue
                ret = self.lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                if ret < 0 and ret != -17:
                    msg = f"seccomp: rule for {name} rejected ({os.strerror(-ret)})"
                    raise ContainerError(msg, hint="check the profile's rule for it")

    def _export(self, ctx: int) -> bytes:
        fd = os.memfd_create("mlpack-seccomp", os.MFD_CLOEXEC)
        try:
            if self.lib.seccomp_export_bpf(ctx, fd) < 0:
                msg = "seccomp_export_bpf failed"
                raise ContainerError(msg, hint="report this with your libseccomp version")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)


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
    """The BPF from the disk cache, else compiled (and cached).

    An entry holds its whole source (the profile, architecture and libseccomp version) before
    a NUL and the BPF after it, and is used only when that source equals this one: the file
    name is a cheap digest (CRC-32 and length) for finding it, never trusted for matching, so
    no hashlib (OpenSSL, ~2 ms) is loaded on a container's start path.
    """
    import zlib

    ident = _lib_identity()
    lib = None if ident else _Lib()
    version = ident or (lib.version() if lib else "")
    source = f"{text}|{os.uname().machine}|{version}".encode()  # JSON text: no raw NUL
    if cache_dir is None:
        return (lib or _Lib()).compile(profile)
    path = os.path.join(cache_dir, f"{zlib.crc32(source):08x}-{len(source)}.bpf")  # noqa: PTH118
    try:
        with open(path, "rb") as f:  # noqa: PTH123
            head, sep, code = f.read().partition(b"\0")
        if sep and head == source:
            return code
    except OSError:
        pass
    code = (lib or _Lib()).compile(profile)
    from mlpack.oslib.fs import atomic_write

    try:
        os.makedirs(cache_dir, exist_ok=True)  # noqa: PTH103
        atomic_write(path, source + b"\0" + code)
    except OSError:
        pass  # a cache that cannot be written only costs the next run a compile
    return code
