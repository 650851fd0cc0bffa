"""--gpus through CDI in the embedded runtime, with stand-in devices and a hook that logs its env.

No GPU is needed: the spec maps host character devices made in tmp_path (1:3, like /dev/null)
and a stand-in driver library, and its createContainer hook is a shell script that records
what it was given. SECURITY-AND-ISOLATION.md §10: the hook must see no image ``LD_PRELOAD``,
nothing from the image or the user, only a fixed PATH.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
from pathlib import Path

import pytest

from mlpack.runtime.protocol import RunConfig
from tests import busybox
from tests.conftest import require

pytestmark = [pytest.mark.root]


def _embedded_runtime() -> object:
    require(os.geteuid() == 0, "root")
    require(busybox.available(), "busybox-static")
    module = importlib.import_module("mlpack.runtime.embedded")
    require(hasattr(module, "EmbeddedRuntime"), "the embedded runtime")
    return module.EmbeddedRuntime()


def _spec(host: Path) -> dict[str, object]:
    for name, minor in (("nvidia0", 3), ("nvidiactl", 5)):
        os.mknod(host / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    lib = host / "lib"
    lib.mkdir()
    (lib / "libcuda.so.1").write_text("stand-in driver library\n")
    hook = host / "fake-hook"
    hook.write_text(
        "#!/bin/sh\n"
        f"{{ echo \"cwd=$(pwd)\"; env | sort; echo '--- state'; cat; }} > {host}/hook.log\n"
    )
    hook.chmod(0o755)
    return {
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            {
                "name": "0",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/nvidia0", "hostPath": str(host / "nvidia0")}]
                },
            }
        ],
        "containerEdits": {
            "env": ["NVIDIA_VISIBLE_DEVICES=void"],
            "deviceNodes": [{"path": "/dev/nvidiactl", "hostPath": str(host / "nvidiactl")}],
            "mounts": [
                {
                    "hostPath": str(lib),
                    "containerPath": "/usr/lib/nvidia",
                    "options": ["ro", "nosuid", "nodev", "bind"],
                }
            ],
            "hooks": [
                {
                    "hookName": "createContainer",
                    "path": str(hook),
                    "args": ["fake-hook", "update-ldcache"],
                    "env": ["FROM_SPEC=1", "LD_LIBRARY_PATH=/spec/says"],
                }
            ],
        },
    }


def test_gpus_all_brings_devices_mounts_env_and_a_scrubbed_hook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    runtime = _embedded_runtime()
    from mlpack.oci.store import Store

    host = tmp_path / "host"
    host.mkdir()
    spec_dir = tmp_path / "cdi"
    spec_dir.mkdir()
    (spec_dir / "nvidia.json").write_text(json.dumps(_spec(host)))
    monkeypatch.setenv("MLPACK_CDI_SPEC_DIRS", str(spec_dir))
    monkeypatch.setenv("MLPACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LD_PRELOAD", "/from/the/caller.so")
    image = busybox.store_image(
        Store(tmp_path / "home"),
        env=("LD_PRELOAD=/image/evil.so", "IMAGE_SECRET=1"),
        tag="cdi-evil-env",
    )
    script = (
        "ls -ln /dev/nvidia0 /dev/nvidiactl; cat /usr/lib/nvidia/libcuda.so.1; "
        "echo VIS=$NVIDIA_VISIBLE_DEVICES; echo x > /usr/lib/nvidia/w 2>/dev/null || echo RO"
    )
    result = runtime.run(  # type: ignore[attr-defined]
        RunConfig(
            image=image, command=("sh", "-c", script), gpus="all", env=(("USER_SECRET", "2"),)
        )
    )
    out = capfd.readouterr().out
    assert result.exit_code == 0, out
    lines = out.splitlines()
    assert any(ln.startswith("c") and ln.endswith("/dev/nvidia0") for ln in lines), out
    assert any(ln.startswith("c") and ln.endswith("/dev/nvidiactl") for ln in lines), out
    assert "stand-in driver library" in out
    assert "VIS=void" in lines
    assert "RO" in lines  # the driver libraries are mounted read-only

    log = (host / "hook.log").read_text()
    env_text, state_text = log.split("--- state\n")
    env = dict(
        ln.split("=", 1)
        for ln in env_text.splitlines()
        if "=" in ln and ln != env_text.splitlines()[0]
    )
    assert env_text.splitlines()[0] == "cwd=/"
    assert env["FROM_SPEC"] == "1"
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert not [k for k in env if k.startswith("LD_")], env  # not the image's, caller's or spec's
    assert "IMAGE_SECRET" not in env
    assert "USER_SECRET" not in env
    state = json.loads(state_text)
    assert state["status"] == "creating"
    assert state["id"] == result.container_id
