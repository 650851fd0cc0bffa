"""The default seccomp profile (moby semantics) and its compilation to BPF via libseccomp."""

from __future__ import annotations

import ctypes.util
from pathlib import Path

import pytest

from mlpack.errors import ContainerError
from mlpack.runtime.embedded import seccomp
from mlpack.runtime.seccomp_profile import default_profile
from tests.conftest import require

DEFAULT_CAPS = ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")


def rules_for(profile: dict[str, object], name: str) -> list[dict[str, object]]:
    return [r for r in profile["syscalls"] if name in r["names"]]  # type: ignore[attr-defined]


def allowed_unconditionally(profile: dict[str, object], name: str) -> bool:
    return any(
        r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in rules_for(profile, name)
    )


def test_default_denies_with_eperm() -> None:
    profile = default_profile(DEFAULT_CAPS)
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1


@pytest.mark.parametrize(
    "name", ["mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "fsopen",
             "move_mount", "syslog", "sethostname", "pivot_root", "keyctl", "reboot"],
)  # fmt: skip
def test_admin_calls_denied_without_the_capability(name: str) -> None:
    assert not allowed_unconditionally(default_profile(DEFAULT_CAPS), name)


def test_sys_admin_opens_the_admin_calls() -> None:
    profile = default_profile((*DEFAULT_CAPS, "CAP_SYS_ADMIN"))
    for name in ("mount", "unshare", "setns", "clone", "clone3"):
        assert allowed_unconditionally(profile, name), name


def test_clone_without_namespace_flags_and_clone3_enosys() -> None:
    profile = default_profile(DEFAULT_CAPS)
    (clone,) = rules_for(profile, "clone")
    assert clone["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    (clone3,) = rules_for(profile, "clone3")
    assert (clone3["action"], clone3["errnoRet"]) == ("SCMP_ACT_ERRNO", 38)


def test_vsock_and_personality() -> None:
    profile = default_profile(DEFAULT_CAPS)
    (sock,) = rules_for(profile, "socket")
    assert sock["args"] == [{"index": 0, "value": 40, "valueTwo": 0, "op": "SCMP_CMP_NE"}]
    values = sorted(r["args"][0]["value"] for r in rules_for(profile, "personality"))  # type: ignore[index]
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_ordinary_calls_allowed() -> None:
    profile = default_profile(DEFAULT_CAPS)
    for name in ("read", "write", "execve", "openat", "mmap", "futex"):
        assert allowed_unconditionally(profile, name), name


def test_ptrace_and_process_vm_need_cap_sys_ptrace() -> None:
    calls = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd")
    default = default_profile(DEFAULT_CAPS)
    for name in calls:
        assert not allowed_unconditionally(default, name), name
    traced = default_profile((*DEFAULT_CAPS, "CAP_SYS_PTRACE"))
    for name in calls:
        assert allowed_unconditionally(traced, name), name


def have_libseccomp() -> bool:
    return ctypes.util.find_library("seccomp") is not None


def test_compile_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "_MEMO", {})
    require(have_libseccomp(), "libseccomp2")
    profile = default_profile(DEFAULT_CAPS)
    code = seccomp.compile_profile(profile, tmp_path)
    assert code
    assert len(code) % 8 == 0  # struct sock_filter is 8 bytes
    (cached,) = tmp_path.iterdir()
    source, sep, stored = cached.read_bytes().partition(b"\0")
    assert sep
    assert stored == code
    assert source.startswith(b'{"')  # the profile's JSON text, then arch and version
    # A second compile is a cache read: prove it by planting different bytes under the key.
    assert seccomp.compile_profile(profile, tmp_path) == code  # the in-process memo
    seccomp._MEMO.clear()
    cached.write_bytes(source + b"\0" + b"\0" * 8)
    assert seccomp.compile_profile(profile, tmp_path) == b"\0" * 8
    other = default_profile((*DEFAULT_CAPS, "CAP_SYS_ADMIN"))
    assert seccomp.compile_profile(other, tmp_path) != code
    assert len(list(tmp_path.iterdir())) == 2


def test_a_cache_entry_for_another_source_is_never_used(tmp_path: Path) -> None:
    """The file name is only a digest: an entry under it (a CRC-32 collision, or a planted
    file) whose source is not this profile's is recompiled over, never loaded.
    """
    require(have_libseccomp(), "libseccomp2")
    profile = default_profile(DEFAULT_CAPS)
    seccomp._MEMO.clear()
    code = seccomp.compile_profile(profile, tmp_path)
    (cached,) = tmp_path.iterdir()
    source = cached.read_bytes().partition(b"\0")[0]
    # No source, another source under the same name, and no separator at all.
    for planted in (b"\0" * 8, source[:-1] + b"X\0" + b"\0" * 8, source):
        cached.write_bytes(planted)
        seccomp._MEMO.clear()
        assert seccomp.compile_profile(profile, tmp_path) == code
        assert cached.read_bytes() == source + b"\0" + code  # rewritten with the real BPF


def test_unsupported_action_is_an_error() -> None:
    require(have_libseccomp(), "libseccomp2")
    bad = {"defaultAction": "SCMP_ACT_TRACE", "syscalls": []}
    with pytest.raises(ContainerError, match="not supported"):
        seccomp.compile_profile(bad, None)


def test_old_docker_profile_shapes_compile() -> None:
    """runtime-tools' default profile: several conditions on one argument (an OR, split into
    rules as runc does) and rules whose action equals the default (skipped, as runc does)."""
    require(have_libseccomp(), "libseccomp2")
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ALLOW",
                "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                ],
            },
            {
                "names": ["personality"],
                "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                ],
            },
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    code = seccomp.compile_profile(profile, None)
    assert code
    assert len(code) % 8 == 0
