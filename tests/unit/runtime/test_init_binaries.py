"""The embedded --init reapers: rebuilt from their sources, and the aarch64 one run under qemu."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlpack.runtime.embedded import init
from tests.conftest import require

SOURCES = Path(init.__file__).parent
TOOLS = {"x86_64": ("as", "ld"), "aarch64": ("aarch64-linux-gnu-as", "aarch64-linux-gnu-ld")}
LDFLAGS = ["-static", "-s", "--build-id=none", "-z", "noexecstack", "-z", "noseparate-code"]


@pytest.mark.parametrize("machine", sorted(init.BINARIES))
def test_embedded_binary_is_its_source_assembled(machine: str, tmp_path: Path) -> None:
    asm, ld = TOOLS[machine]
    require(shutil.which(asm) is not None and shutil.which(ld) is not None, f"binutils ({asm})")
    obj, exe = tmp_path / "init.o", tmp_path / "init"
    subprocess.run([asm, "-o", str(obj), str(SOURCES / f"init_{machine}.S")], check=True)
    subprocess.run([ld, *LDFLAGS, "-o", str(exe), str(obj)], check=True)
    assert exe.read_bytes() == init.program(machine)


@pytest.fixture
def aarch64_init(tmp_path: Path) -> list[str]:
    """The aarch64 reaper, run by qemu's user-mode emulator (its payloads run natively)."""
    qemu = shutil.which("qemu-aarch64")
    require(qemu is not None, "qemu-user (qemu-aarch64)")
    exe = tmp_path / "init-aarch64"
    exe.write_bytes(init.program("aarch64"))
    exe.chmod(0o555)
    return [str(qemu), str(exe)]


def test_aarch64_init_passes_on_the_exit_status(aarch64_init: list[str]) -> None:
    run = [*aarch64_init, "/bin/sh", "-c"]
    assert subprocess.run([*run, "exit 3"], check=False).returncode == 3
    assert subprocess.run([*run, "kill -TERM $$"], check=False).returncode == 128 + 15
    assert subprocess.run([*aarch64_init, "/nonexistent"], check=False).returncode == 127


def test_aarch64_init_forwards_signals_and_reaps(aarch64_init: list[str]) -> None:
    script = 'trap "echo got-term; exit 7" TERM; (sleep 0.1 &); sleep 3 >/dev/null & wait'
    proc = subprocess.Popen([*aarch64_init, "/bin/sh", "-c", script], stdout=subprocess.PIPE)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert out == b"got-term\n"
