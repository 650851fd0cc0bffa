"""Device rules: parsing, the v1 model, the v2 BPF program (run by a tiny interpreter), and the
real v1 files and v2 attachment as root.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import cgroups, devices
from mlpack.runtime.embedded.devices import DEFAULT_RULES, DENY_ALL, Rule

MKNOD, READ, WRITE = 1, 2, 4
CHAR, BLOCK = 2, 1


def allow(kind: str, major: int, minor: int, access: str = "rwm") -> Rule:
    return Rule(kind=kind, major=major, minor=minor, access=access, allow=True)  # type: ignore[arg-type]


def run_bpf(code: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Interpret the handful of opcodes the generator emits, on a bpf_cgroup_dev_ctx."""
    ctx = struct.pack("<III", dev_type | (access << 16), major, minor)
    regs = [0] * 11
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    pc = 0
    while True:
        op, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        u32 = imm & 0xFFFFFFFF
        if op == 0x61:
            assert src == 1, "loads only from the context"
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == 0x54:
            regs[dst] = (regs[dst] & u32) & 0xFFFFFFFF
        elif op == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xB4:
            regs[dst] = u32
        elif op == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == 0x55:
            pc += off if regs[dst] != (imm & 0xFFFFFFFFFFFFFFFF) else 0
        elif op == 0x5D:
            pc += off if regs[dst] != regs[src] else 0
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


def test_rules_start_with_deny_all_and_end_with_runcs_defaults() -> None:
    config = {
        "linux": {
            "resources": {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                ]
            },
            "devices": [
                {"path": "/dev/kvm", "type": "c", "major": 10, "minor": 232},
                {"path": "/dev/fifo", "type": "p", "major": 0, "minor": 0},
            ],
        }
    }
    rules = devices.rules_of(config)
    assert rules[0] == DENY_ALL
    assert rules[1] == DENY_ALL  # the config's own {"allow": false} is type "a"
    assert rules[2] == allow("c", 10, 229, "rw")
    assert rules[3] == allow("c", 10, 232)  # a node the config creates is usable; a FIFO needs none
    assert rules[4:] == DEFAULT_RULES
    assert devices.rules_of({}) == (DENY_ALL, *DEFAULT_RULES)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "c"},
        {"allow": True, "type": "x"},
        {"allow": True, "type": "c", "access": "rwx"},
        {"allow": True, "type": "c", "major": -5},
        {"allow": True, "type": "c", "major": "1"},
        {"allow": True, "type": "c", "minor": 2**32},
        {"allow": True, "type": ["c"]},
    ],
)
def test_bad_rules_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ContainerError):
        devices.parse_rule(raw)


@pytest.mark.parametrize(
    "node",
    [
        {"path": "/dev/x", "type": "c", "major": 10},  # no minor: never a c 10:* wildcard
        {"path": "/dev/x", "type": "c"},
        {"path": "/dev/x", "type": "s", "major": 1, "minor": 1},
        "c 1:1",
    ],
)
def test_bad_device_nodes_are_refused(node: object) -> None:
    with pytest.raises(ContainerError):
        devices.rules_of({"linux": {"devices": [node]}})


def test_default_rules_in_v1_form() -> None:
    reset, *exceptions = devices.effective((DENY_ALL, *DEFAULT_RULES))
    assert reset.v1() == "a"
    assert not reset.allow
    assert [r.v1() for r in exceptions] == [
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
        "c 1:5 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm",
    ]  # fmt: skip


def test_emulator_merges_resets_and_removes() -> None:
    assert devices.effective((allow("c", 1, 3, "r"), allow("c", 1, 3, "w")))[1].access == "rw"
    deny_w = Rule(kind="c", major=1, minor=3, access="w", allow=False)
    assert devices.effective((allow("c", 1, 3), deny_w))[1].access == "rm"
    everything = devices.effective((allow("c", 1, 3), Rule(kind="a", allow=True)))
    assert everything == (Rule(kind="a", allow=True),)  # "a" resets, as the kernel does
    blacklist = devices.effective((Rule(kind="a", allow=True), deny_w))
    assert blacklist[1] == deny_w
    deny_major = Rule(kind="c", major=1, minor=-1, access="rwm", allow=False)
    closed = devices.effective((allow("c", 1, 3), allow("c", 5, 0), deny_major))
    assert closed[1:] == (allow("c", 5, 0),)  # a deny of c 1:* closes c 1:3 as well


def test_a_deny_inside_an_allowed_wildcard_is_refused() -> None:
    with pytest.raises(ContainerError, match="wildcard"):
        devices.effective(
            (allow("c", 1, -1), Rule(kind="c", major=1, minor=3, access="r", allow=False))
        )


def test_program_layout() -> None:
    insns = devices.program((DENY_ALL, allow("c", 1, 3, "rw")))
    assert insns[:6] == devices.PROLOGUE
    # type, access (mov, and, jne), major, minor tests, then r0 = 1; exit; then r0 = 0; exit.
    assert [i[0] for i in insns[6:]] == [
        0x55, 0xBC, 0x54, 0x5D, 0x55, 0x55, 0xB4, 0x95, 0xB4, 0x95,
    ]  # fmt: skip
    jumps = [(n, i) for n, i in enumerate(insns) if i[0] in (0x55, 0x5D)]
    assert all(n + 1 + i[3] == 14 for n, i in jumps)  # every miss lands on the default verdict
    assert insns[-2][4] == 0
    assert insns[-4][4] == 1
    code = devices.encode(insns)
    assert len(code) == 8 * len(insns)
    assert code[:8] == bytes([0x61, 0x12, 0, 0, 0, 0, 0, 0])  # r2 = *(u32 *)(r1 + 0)


def test_program_verdicts_match_the_rules() -> None:
    code = devices.encode(devices.program(devices.rules_of({})))
    assert run_bpf(code, CHAR, READ | WRITE, 1, 3)  # /dev/null
    assert run_bpf(code, CHAR, READ, 136, 7)  # a pts
    assert run_bpf(code, BLOCK, MKNOD, 7, 0)  # mknod of any node, as runc
    assert not run_bpf(code, BLOCK, READ, 7, 0)  # /dev/loop0
    assert not run_bpf(code, CHAR, READ | WRITE, 10, 232)  # /dev/kvm
    assert not run_bpf(code, CHAR, READ, 4, 0)  # /dev/tty0
    assert not run_bpf(code, CHAR, READ, 1, 1)  # /dev/mem
    only_read = devices.encode(devices.program((DENY_ALL, allow("c", 10, 229, "r"))))
    assert run_bpf(only_read, CHAR, READ, 10, 229)
    assert not run_bpf(only_read, CHAR, READ | WRITE, 10, 229)
    assert not run_bpf(only_read, BLOCK, READ, 10, 229)
    blacklist = (Rule(kind="a", allow=True), Rule(kind="b", access="rwm", allow=False))
    open_all = devices.encode(devices.program(blacklist))
    assert run_bpf(open_all, CHAR, READ, 4, 0)
    assert not run_bpf(open_all, BLOCK, READ, 7, 0)


def _devices_mount() -> Path | None:
    return cgroups.detect().v1_mount("devices")


def test_v1_devices_files_hold_the_rules_in_order() -> None:
    mount = _devices_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and a cgroup v1 devices hierarchy")
    d = mount / f"mlpack-test-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        config = {"linux": {"resources": {"devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
            {"allow": True, "type": "b", "major": 8, "minor": 20, "access": "rw"},
        ]}}}  # fmt: skip
        devices.apply_v1(d, devices.rules_of(config))
        listed = (d / "devices.list").read_text().split()
        assert listed[:6] == ["c", "10:229", "rwm", "b", "8:20", "rw"]
        assert "a" not in listed[::3]
        assert "7:0" not in listed
    finally:
        d.rmdir()


OPEN_EACH = """
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        print(path, 0)
    except OSError as exc:
        print(path, exc.errno)
"""


def test_v2_filter_attached_to_a_real_cgroup() -> None:
    unified = cgroups.detect().unified
    if os.geteuid() != 0 or unified is None:
        pytest.skip("needs root and a cgroup2 mount")
    d = unified / f"mlpack-test-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    try:
        devices.attach_v2(d, devices.rules_of({}))
        hosts = ("/dev/loop0", "/dev/tty0", "/dev/kvm")
        paths = ["/dev/null", "/dev/full", *(p for p in hosts if Path(p).exists())]
        done = subprocess.run(
            ["sh", "-c", f'echo $$ > {d}/cgroup.procs && exec "$0" "$@"',
             sys.executable, "-c", OPEN_EACH, *paths],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        got = dict(line.split() for line in done.stdout.splitlines())
        assert got.pop("/dev/null") == "0"
        assert got.pop("/dev/full") == "0"
        assert got
        assert all(int(v) == errno.EPERM for v in got.values()), got
    finally:
        d.rmdir()


def test_cgroups_create_on_a_v2_layout_attaches_the_filter(tmp_path: Path) -> None:
    """A pure-v2 host, played by the hybrid host's cgroup2 mount: no v1 devices hierarchy, so
    ``cgroups.create`` must fall back to the BPF filter on the container's v2 directory.
    """
    unified = cgroups.detect().unified
    if os.geteuid() != 0 or unified is None:
        pytest.skip("needs root and a cgroup2 mount")
    layout = cgroups.Layout(version="v2", unified=unified)
    rules = devices.rules_of({})
    loop = tmp_path / "loop0"  # checked before any driver: EPERM even where loop is absent
    os.mknod(loop, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    group = cgroups.create(layout, f"dev-{uuid.uuid4().hex[:8]}", cgroups.Limits(devices=rules))
    try:
        assert group.v1 == ()
        assert group.v2 is not None
        done = subprocess.run(
            ["sh", "-c", f'echo $$ > {group.v2}/cgroup.procs && exec "$0" "$@"',
             sys.executable, "-c", OPEN_EACH, "/dev/zero", str(loop)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert results(done.stdout) == {"/dev/zero": "0", str(loop): str(errno.EPERM)}
    finally:
        group.remove()


def results(out: str) -> dict[str, str]:
    return dict(line.split() for line in out.splitlines())


def test_create_cgroup_puts_the_rules_where_cgroups_create_would() -> None:
    """The cgroup of a run without limits, made without the cgroups module."""
    layout = cgroups.detect()
    if os.geteuid() != 0 or layout.version == "none":
        pytest.skip("needs root and cgroups")
    name = f"dev-{uuid.uuid4().hex[:8]}"
    group = devices.create_cgroup(name, devices.rules_of({}))
    try:
        hierarchy = layout.v1_mount("devices") or layout.unified
        assert hierarchy is not None
        assert group.path.is_relative_to(hierarchy)
        assert group.path.parts[-2:] == ("mlpack", name)
        child = subprocess.Popen(["sleep", "30"])
        try:  # the supervisor is moved in before it forks pid 1
            group.add(child.pid)
            assert (group.path / "cgroup.procs").read_text().split() == [str(child.pid)]
        finally:
            child.kill()
            child.wait()
        assert group.version == (2 if layout.version == "v2" else 1)
        if layout.v1_mount("devices"):
            assert "c 1:3 rwm" in (group.path / "devices.list").read_text()
    finally:
        group.remove()
    assert not group.path.exists()
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, mlpack.runtime.embedded.devices; print(*sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "mlpack.runtime.embedded.cgroups" not in imported  # B1: not on the run path
