"""Device access control: which device nodes a container may create and open (§6 Devices).

Without it, a container with CAP_MKNOD (``--cap-profile docker``) can make a node for any host
device and open it, and a node shipped in an image is usable as it is. As runc does, a
container's device cgroup denies everything, then allows exactly the config's rules, the
devices the config creates, and runc's defaults (``AllowedDevices`` in
``libcontainer/specconv``: mknod of any node, null, zero, full, random, urandom, tty, ptmx and
the pts consoles; runc's tun/tap rule is left out, mlpack never creates that node).

The rules go through one model of the kernel's v1 semantics (``Emulator``) and come out as:
- cgroup v1: ``a`` written to ``devices.deny`` (or ``devices.allow``), then each exception, in
  the config's order (``devices.list`` keeps it, which runtime-tools checks);
- cgroup v2: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the container's cgroup; the
  instruction layout follows runc's ``devices/devicefilter.go``.
A rootful run without limits gets its device cgroup from ``create_cgroup``, without importing
the cgroups module (BENCHMARKS B1). Rootless containers get no device cgroup: the
kernel refuses them device nodes of their own, and /dev holds only bind mounts of the host's
default nodes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import cgroupfs

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Literal

    Kind = Literal["a", "c", "b"]

KINDS: dict[str, Kind] = {"a": "a", "b": "b", "c": "c"}
NODE_KINDS: dict[str, Kind] = {"b": "b", "c": "c", "u": "c"}  # linux.devices types with a rule
WILDCARD = -1
ACCESS = "rwm"
HINT = "check linux.resources.devices: type a, b or c; access a subset of rwm; numeric major/minor"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One device cgroup rule; a major or minor of -1 matches any number."""

    kind: Kind
    major: int = WILDCARD
    minor: int = WILDCARD
    access: str = ACCESS
    allow: bool = False

    def v1(self) -> str:
        """The rule as cgroup v1 writes it: ``c 1:3 rwm``, ``b *:* m``, ``a``."""
        if self.kind == "a":
            return "a"
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"


def _allow(kind: Kind, major: int, minor: int, access: str = ACCESS) -> Rule:
    return Rule(kind=kind, major=major, minor=minor, access=access, allow=True)


# runc's AllowedDevices rules, appended after the config's so a config cannot take them away.
DEFAULT_RULES = (
    _allow("c", WILDCARD, WILDCARD, "m"),
    _allow("b", WILDCARD, WILDCARD, "m"),
    _allow("c", 1, 3),  # null
    _allow("c", 1, 8),  # random
    _allow("c", 1, 7),  # full
    _allow("c", 5, 0),  # tty
    _allow("c", 1, 5),  # zero
    _allow("c", 1, 9),  # urandom
    _allow("c", 136, WILDCARD),  # /dev/pts/*, the console included
    _allow("c", 5, 2),  # ptmx
)
DENY_ALL = Rule(kind="a", allow=False)


def _number(value: Any, what: str) -> int:
    if value is None:
        return WILDCARD
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        msg = f"device rule {what} {value!r} is not a number from 0 to 2^32-1"
        raise ContainerError(msg, hint=HINT)
    return value


def parse_rule(raw: Any) -> Rule:
    """One ``linux.resources.devices`` entry (OCI ``LinuxDeviceCgroup``) as a Rule."""
    if not isinstance(raw, dict) or not isinstance(raw.get("allow"), bool):
        msg = f"device rule {raw!r} has no boolean 'allow'"
        raise ContainerError(msg, hint=HINT)
    kind = _kind(KINDS, raw.get("type") or "a")
    access = raw.get("access") or ACCESS
    if kind is None:
        msg = f"device rule type {raw.get('type')!r} is not a, b or c"
        raise ContainerError(msg, hint=HINT)
    if not isinstance(access, str) or not access or set(access) - set(ACCESS):
        msg = f"device rule access {access!r} is not a subset of rwm"
        raise ContainerError(msg, hint=HINT)
    return Rule(
        kind=kind,
        major=_number(raw.get("major"), "major"),
        minor=_number(raw.get("minor"), "minor"),
        access="".join(c for c in ACCESS if c in access),
        allow=raw["allow"],
    )


def _node_rule(raw: Any) -> Rule | None:
    """A ``linux.devices`` entry (a node the runtime creates) as an allow rule; FIFOs need none."""
    if not isinstance(raw, dict):
        msg = f"linux.devices entry {raw!r} is not an object"
        raise ContainerError(msg, hint="each device needs path, type, major and minor")
    if raw.get("type") == "p":
        return None
    kind = _kind(NODE_KINDS, raw.get("type"))
    major, minor = raw.get("major"), raw.get("minor")
    if kind is None or major is None or minor is None:  # never a wildcard: one node, one rule
        msg = f"linux.devices {raw.get('path')!r} needs a type c, u, b or p, a major and a minor"
        raise ContainerError(msg, hint="use c (or u) for character, b for block, p for a FIFO")
    return _allow(kind, _number(major, "major"), _number(minor, "minor"))


def _kind(kinds: dict[str, Kind], value: Any) -> Kind | None:
    return kinds.get(value) if isinstance(value, str) else None


def rules_of(config: dict[str, Any]) -> tuple[Rule, ...]:
    """Every rule for one OCI config, in the order they apply (as runc: config, then defaults).

    The list always starts by denying everything: whatever the config says, a device nobody
    listed stays closed. Nodes in ``linux.devices`` are allowed after the config's own rules.
    """
    linux = config.get("linux") or {}
    listed = (linux.get("resources") or {}).get("devices") or ()
    nodes = (_node_rule(d) for d in linux.get("devices") or ())
    return (
        DENY_ALL,
        *(parse_rule(r) for r in listed),
        *(r for r in nodes if r is not None),
        *DEFAULT_RULES,
    )


class Emulator:
    """The kernel's v1 device-cgroup state: a default and exceptions, in insertion order.

    As runc's emulator it refuses a rule that would punch a hole in a wildcard exception (the
    kernel would silently keep the wildcard), so a deny in a config is never a no-op.
    """

    def __init__(self) -> None:
        self.default_allow = False
        self.exceptions: dict[tuple[Kind, int, int], str] = {}

    def apply(self, rule: Rule) -> None:
        """One rule, as a write to ``devices.allow`` or ``devices.deny`` would change things."""
        if rule.kind == "a":  # the kernel resets on "a", whatever follows it
            self.default_allow = rule.allow
            self.exceptions.clear()
            return
        key = (rule.kind, rule.major, rule.minor)
        if rule.allow != self.default_allow:
            old = self.exceptions.get(key, "")
            self.exceptions[key] = "".join(c for c in ACCESS if c in old + rule.access)
            return
        wider = (
            (rule.kind, WILDCARD, rule.minor),
            (rule.kind, rule.major, WILDCARD),
            (rule.kind, WILDCARD, WILDCARD),
        )
        if any(k != key and set(self.exceptions.get(k, "")) & set(rule.access) for k in wider):
            msg = f"device rule {rule.v1()!r} cannot narrow the wildcard rule before it"
            raise ContainerError(msg, hint="list the narrower rule before the wildcard one")
        # The rule takes its access from every exception it covers: a deny of c 1:* closes
        # c 1:3 too (the kernel itself would only touch an exception with the same numbers).
        for k in [k for k in self.exceptions if _covers(rule, k)]:
            left = "".join(c for c in self.exceptions[k] if c not in rule.access)
            if left:
                self.exceptions[k] = left
            else:
                del self.exceptions[k]

    def rules(self) -> tuple[Rule, ...]:
        """The smallest equivalent list: the ``a`` reset, then each exception."""
        return (
            Rule(kind="a", allow=self.default_allow),
            *(
                Rule(kind=k, major=ma, minor=mi, access=acc, allow=not self.default_allow)
                for (k, ma, mi), acc in self.exceptions.items()
            ),
        )


def _covers(rule: Rule, key: tuple[Kind, int, int]) -> bool:
    kind, major, minor = key
    return kind == rule.kind and rule.major in (WILDCARD, major) and rule.minor in (WILDCARD, minor)


def effective(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    """``rules`` reduced to a reset and exceptions (see Emulator)."""
    emu = Emulator()
    for rule in rules:
        emu.apply(rule)
    return emu.rules()


def apply_v1(directory: Path, rules: tuple[Rule, ...]) -> None:
    """Program a v1 devices cgroup: the reset, then each exception, then read the list back."""
    reset, *exceptions = effective(rules)
    files = {True: directory / "devices.allow", False: directory / "devices.deny"}
    _write(files[reset.allow], "a")
    for rule in exceptions:
        _write(files[rule.allow], rule.v1())
    if not reset.allow:
        got = (directory / "devices.list").read_text().split("\n")
        if [r.v1() for r in exceptions] != [line for line in got if line]:
            msg = f"{directory}/devices.list does not match the rules written: {got}"
            raise ContainerError(msg, hint="a parent devices cgroup may allow less; check it")


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        msg = f"cannot write {value!r} to {path}: {exc.strerror}"
        raise ContainerError(msg, hint="a parent devices cgroup may allow less; check it") from exc


# --- cgroup v2: the eBPF program -------------------------------------------------------------

# Opcodes (linux/bpf.h, linux/bpf_common.h).
LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
MOV32_K = 0xB4  # BPF_ALU | BPF_MOV | BPF_K
MOV32_X = 0xBC  # BPF_ALU | BPF_MOV | BPF_X
JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
JNE_X = 0x5D  # BPF_JMP | BPF_JNE | BPF_X
EXIT = 0x95  # BPF_JMP | BPF_EXIT
# struct bpf_cgroup_dev_ctx: access_type (type in the low 16 bits, access above), major, minor.
DEV_TYPE = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
DEV_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
R0, R1, R2, R3, R4, R5 = range(6)
Insn = tuple[int, int, int, int, int]  # opcode, dst, src, off, imm


def _insn(op: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> Insn:
    return (op, dst, src, off, imm)


PROLOGUE = (
    _insn(LDX_MEM_W, R2, R1, 0),  # R2 = access_type
    _insn(AND32_K, R2, imm=0xFFFF),  # R2 = device type
    _insn(LDX_MEM_W, R3, R1, 0),
    _insn(RSH32_K, R3, imm=16),  # R3 = requested access
    _insn(LDX_MEM_W, R4, R1, 4),  # R4 = major
    _insn(LDX_MEM_W, R5, R1, 8),  # R5 = minor
)


def _block(rule: Rule) -> list[Insn]:
    """Return the rule's verdict when the device matches it, else fall through to the next."""
    tests: list[tuple[int, int, int, int]] = [(JNE_K, R2, 0, DEV_TYPE[rule.kind])]
    access = sum(DEV_ACCESS[c] for c in rule.access)
    if access != 7:  # rwm matches any request; else every requested bit must be in the rule
        tests.append((MOV32_X, R1, R3, 0))
        tests.append((AND32_K, R1, 0, access))
        tests.append((JNE_X, R1, R3, 0))
    if rule.major != WILDCARD:
        tests.append((JNE_K, R4, 0, _imm(rule.major)))
    if rule.minor != WILDCARD:
        tests.append((JNE_K, R5, 0, _imm(rule.minor)))
    size = len(tests) + 2
    out = [
        _insn(op, dst, src, size - i - 1 if op in (JNE_K, JNE_X) else 0, imm)
        for i, (op, dst, src, imm) in enumerate(tests)
    ]
    return [*out, _insn(MOV32_K, R0, imm=int(rule.allow)), _insn(EXIT)]


def _imm(n: int) -> int:
    """A u32 as the signed 32-bit immediate the instruction holds (the compare is 64-bit on a
    zero-extended register, so majors above 2^31 cannot be matched; the kernel has none).
    """
    return n - 2**32 if n >= 2**31 else n


def program(rules: tuple[Rule, ...]) -> tuple[Insn, ...]:
    """The device filter for ``rules``: a block per exception, then the default verdict."""
    reset, *exceptions = effective(rules)
    body = [insn for rule in exceptions for insn in _block(rule)]
    return (*PROLOGUE, *body, _insn(MOV32_K, R0, imm=int(reset.allow)), _insn(EXIT))


def encode(insns: tuple[Insn, ...]) -> bytes:
    """``struct bpf_insn`` array: u8 code, u8 dst:4|src:4, s16 off, s32 imm (little-endian)."""
    return b"".join(
        struct.pack("<BBhi", op, (src << 4) | dst, off, imm) for op, dst, src, off, imm in insns
    )


BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
SYS_BPF = {"x86_64": 321, "aarch64": 280}


def attach_v2(directory: Path, rules: tuple[Rule, ...]) -> None:
    """Load the filter and attach it to a cgroup2 directory (needs root; the attachment lives
    as long as the cgroup, so the program fd is closed at once).
    """
    import ctypes

    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        msg = f"no bpf syscall number known for {os.uname().machine}"
        raise ContainerError(msg, hint="device rules on cgroup v2 need x86_64 or aarch64")
    libc = ctypes.CDLL(None, use_errno=True)
    code = ctypes.create_string_buffer(encode(program(rules)))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    load = ctypes.create_string_buffer(128)  # union bpf_attr, zero-filled
    struct.pack_into(
        "<IIQQIIQ",
        load,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code.raw) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_),
        1,  # log_level: the verifier explains a refusal
        len(log),
        ctypes.addressof(log),
    )
    prog = libc.syscall(nr, BPF_PROG_LOAD, load, len(load))
    if prog < 0:
        err = ctypes.get_errno()
        msg = f"the kernel refused the device filter: {os.strerror(err)}: {log.value.decode()}"
        raise ContainerError(msg, hint="run as root on Linux >= 4.15 with CONFIG_CGROUP_BPF")
    cg = -1
    try:
        cg = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        attach = ctypes.create_string_buffer(
            struct.pack("<IIII", cg, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
        )
        if libc.syscall(nr, BPF_PROG_ATTACH, attach, len(attach)) < 0:
            err = ctypes.get_errno()
            msg = f"cannot attach the device filter to {directory}: {os.strerror(err)}"
            raise ContainerError(msg, hint="run as root on Linux >= 4.15 with CONFIG_CGROUP_BPF")
    finally:
        os.close(prog)
        if cg >= 0:
            os.close(cg)


@dataclass(frozen=True, kw_only=True)
class DeviceCgroup:
    """The one cgroup of a rootful run without limits: there for its device rules alone."""

    path: Path
    version: int  # 2 on a cgroup2-only host (what the helper's cgroup namespace needs to know)

    @property
    def dirs(self) -> tuple[Path, ...]:
        """The directories the container is in (cgroups.Cgroup's name for the same thing)."""
        return (self.path,)

    def add(self, pid: int) -> None:
        """Move process ``pid`` (the container's supervisor, before it forks pid 1) in."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError as exc:
            msg = f"cannot join cgroup {self.path}: {exc.strerror}"
            raise ContainerError(msg, hint="run as root, or use --runtime docker") from exc

    def remove(self) -> None:
        """Kill any straggler and remove the directory."""
        from mlpack.runtime.embedded.state import remove_cgroup_dir

        remove_cgroup_dir(str(self.path))


def create_cgroup(name: str, rules: tuple[Rule, ...]) -> DeviceCgroup:
    """Make the container's device cgroup where ``cgroups.create`` would: the v1 devices
    hierarchy, else the cgroup2 one (a subtree of the root on a cgroup2-only host).
    """
    types = cgroupfs.mount_types()
    v1 = cgroupfs.v1_mount(types, "devices")
    unified = cgroupfs.unified_mount(types)
    pure_v2 = unified == cgroupfs.ROOT
    if v1 is not None:
        parent = v1 / cgroupfs.self_path("devices").strip("/")
    elif unified is not None:
        parent = unified / ("" if pure_v2 else cgroupfs.self_path("").strip("/"))
    else:
        msg = "device rules cannot be enforced: no devices cgroup and no cgroup2 mount"
        raise ContainerError(
            msg, hint="mount cgroup2 at /sys/fs/cgroup, or the v1 devices controller"
        )
    group = DeviceCgroup(path=parent / "mlpack" / name, version=2 if pure_v2 else 1)
    try:
        group.path.mkdir(parents=True)
    except OSError as exc:
        msg = f"cannot create cgroup {group.path}: {exc.strerror}"
        raise ContainerError(msg, hint="run as root, or use --runtime docker") from exc
    try:
        if v1 is not None:
            apply_v1(group.path, rules)
        else:
            attach_v2(group.path, rules)
    except BaseException:
        group.remove()
        raise
    return group
