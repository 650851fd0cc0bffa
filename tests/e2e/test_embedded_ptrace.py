"""ptrace and process_vm_* are refused inside the container (stricter than moby's profile)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.oci.store import Store
from tests.e2e.embedded_support import require_root, run_cli
from tests.oci_fixtures import debian_base

pytestmark = [pytest.mark.root, pytest.mark.slow]

# PTRACE_TRACEME (0) needs no target and succeeds in any unfiltered process: a refusal can only
# come from the seccomp filter. process_vm_readv of our own memory likewise.
PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(0, 0, 0, 0)
print("ptrace", r, ctypes.get_errno())
buf = ctypes.create_string_buffer(8)
class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
local = IOVec(ctypes.addressof(buf), 8)
remote = IOVec(ctypes.addressof(buf), 8)
ctypes.set_errno(0)
r = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
print("vm_readv", r, ctypes.get_errno())
"""


@pytest.fixture(scope="module")
def debian(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    require_root()
    home = tmp_path_factory.mktemp("home")
    return home, debian_base(Store(home))


def test_probe_succeeds_without_the_filter() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["ptrace 0 0", "vm_readv 8 0"]


def test_ptrace_and_process_vm_readv_are_refused(debian: tuple[Path, str]) -> None:
    home, ref = debian
    done = run_cli(["run", ref, "python3", "-c", PROBE], home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["ptrace -1 1", "vm_readv -1 1"]  # EPERM
