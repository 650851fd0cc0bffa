"""CDI specs: parsing, --gpus resolution, merge order, hook safety, over fixture specs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mlpack.errors import ConfigError, ContainerError
from mlpack.runtime import cdi
from tests.conftest import require

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cdi"


def _render(src: str, dest: Path, **subst: str) -> Path:
    text = (FIXTURES / src).read_text()
    for key, value in subst.items():
        text = text.replace(f"@{key}@", value)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def _hook_script(
    root: Path, name: str = "fake-hook", version: str = "1.18.0", exit: int = 0
) -> Path:
    path = _render(
        "fake-hook.sh", root / "bin" / name, ROOT=str(root), VERSION=version, EXIT=str(exit)
    )
    path.chmod(0o755)
    return path


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A fake host: stand-in device files, a driver library, a hook, and /etc/cdi."""
    for name in ("nvidia0", "nvidia1", "nvidia2", "nvidiactl"):
        (tmp_path / "dev").mkdir(exist_ok=True)
        (tmp_path / "dev" / name).write_bytes(b"")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libcuda.so.550.54.15").write_bytes(b"\x7fELF")
    _hook_script(tmp_path)
    _render("nvidia.yaml", tmp_path / "etc" / "cdi" / "nvidia.yaml", ROOT=str(tmp_path))
    (tmp_path / "run" / "cdi").mkdir(parents=True)
    return tmp_path


def dirs(root: Path) -> tuple[Path, ...]:
    return (root / "etc" / "cdi", root / "run" / "cdi")


def test_all_uses_the_all_device_and_spec_edits(host: Path) -> None:
    edits = cdi.resolve_cdi("all", spec_dirs=dirs(host))
    assert edits.devices == ("nvidia.com/gpu=all",)
    assert [n.path for n in edits.device_nodes] == [
        "/dev/nvidiactl",
        "/dev/nvidia0",
        "/dev/nvidia1",
    ]
    assert edits.env == ("NVIDIA_VISIBLE_DEVICES=void", "NVIDIA_DRIVER_CAPABILITIES=all")
    ctl = edits.device_nodes[0]
    assert (ctl.host_path, ctl.type, ctl.major, ctl.minor) == (
        str(host / "dev" / "nvidiactl"),
        "c",
        195,
        255,
    )
    assert ctl.permissions == "rwm"
    # Parents are mounted before their children, whatever the spec order.
    assert [m.container_path for m in edits.mounts] == [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15",
    ]
    assert edits.mounts[1].options == ("ro", "nosuid", "nodev", "bind")
    (hook,) = edits.hooks
    assert hook.hook_name == "createContainer"
    assert hook.path == str(host / "bin" / "fake-hook")
    assert hook.args[:2] == ("fake-hook", "create-symlinks")


def test_count_takes_the_first_numbered_devices(host: Path) -> None:
    one = cdi.resolve_cdi("1", spec_dirs=dirs(host))
    assert one.devices == ("nvidia.com/gpu=0",)
    two = cdi.resolve_cdi("2", spec_dirs=dirs(host))
    assert two.devices == ("nvidia.com/gpu=0", "nvidia.com/gpu=1")
    assert "NVIDIA_GPU_1=yes" in two.env
    assert two.device_nodes[-1].permissions == "rw"
    with pytest.raises(ContainerError, match="3 GPUs requested"):
        cdi.resolve_cdi("3", spec_dirs=dirs(host))
    with pytest.raises(ConfigError, match="at least 1"):
        cdi.resolve_cdi("0", spec_dirs=dirs(host))


def test_ids_and_uuids_and_qualified_names(host: Path) -> None:
    edits = cdi.resolve_cdi(
        "GPU-11111111-2222-3333-4444-555555555555,nvidia.com/gpu=1", spec_dirs=dirs(host)
    )
    assert edits.devices == (
        "nvidia.com/gpu=GPU-11111111-2222-3333-4444-555555555555",
        "nvidia.com/gpu=1",
    )
    # The spec-level edits are applied once even for two devices of the same spec.
    assert [n.path for n in edits.device_nodes] == [
        "/dev/nvidiactl",
        "/dev/nvidia0",
        "/dev/nvidia1",
    ]
    assert len(edits.hooks) == 1
    assert cdi.resolve_cdi("device=1", spec_dirs=dirs(host)).devices == ("nvidia.com/gpu=1",)
    with pytest.raises(ContainerError, match="no CDI device named '7'") as info:
        cdi.resolve_cdi("0,7", spec_dirs=dirs(host))
    assert "available devices: 0, GPU-11111111" in info.value.hint
    with pytest.raises(ConfigError, match="not the GPU device kind"):
        cdi.resolve_cdi("amd.com/gpu=0", spec_dirs=dirs(host))


def test_json_spec_in_a_later_dir_merges_env_in_order(host: Path) -> None:
    _render("nvidia.json", host / "run" / "cdi" / "nvidia.json", ROOT=str(host))
    edits = cdi.resolve_cdi("0,2", spec_dirs=dirs(host))
    assert edits.devices == ("nvidia.com/gpu=0", "nvidia.com/gpu=2")
    # NVIDIA_VISIBLE_DEVICES appears in both specs: one entry, the later value, moved last.
    assert edits.env == (
        "NVIDIA_DRIVER_CAPABILITIES=all",
        "NVIDIA_VISIBLE_DEVICES=void",
        "JSON_SPEC=1",
        "FROM_JSON=1",
    )


def test_a_later_dir_overrides_a_device_of_the_same_name(host: Path) -> None:
    spec = {
        "cdiVersion": "0.6.0",
        "kind": "nvidia.com/gpu",
        "devices": [
            {
                "name": "0",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 9}]
                },
            }
        ],
    }
    (host / "run" / "cdi" / "override.json").write_text(json.dumps(spec))
    edits = cdi.resolve_cdi("device=0", spec_dirs=dirs(host))
    assert [(n.path, n.minor) for n in edits.device_nodes] == [("/dev/nvidia0", 9)]


def test_missing_driver_and_spec_are_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ContainerError, match="no NVIDIA driver on this host") as info:
        cdi.resolve_cdi("all", spec_dirs=dirs(tmp_path), driver_file=tmp_path / "nope")
    assert "nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml" in info.value.hint
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
    )
    assert cdi.driver_version(version) == "550.54.15"
    with pytest.raises(ContainerError, match="driver is loaded but there is no CDI spec") as info:
        cdi.resolve_cdi("all", spec_dirs=dirs(tmp_path), driver_file=version)
    assert "nvidia-ctk cdi generate" in info.value.hint


def test_bad_specs_are_clear_errors(tmp_path: Path) -> None:
    d = tmp_path / "etc" / "cdi"
    d.mkdir(parents=True)
    (d / "broken.json").write_text("{not json")
    with pytest.raises(ContainerError, match="not valid JSON"):
        cdi.resolve_cdi("all", spec_dirs=(d,))
    (d / "broken.json").write_text(json.dumps({"cdiVersion": "0.6.0"}))
    with pytest.raises(ContainerError, match="has no 'kind'"):
        cdi.resolve_cdi("all", spec_dirs=(d,))
    (d / "broken.json").write_text(
        json.dumps(
            {
                "kind": "nvidia.com/gpu",
                "devices": [
                    {"name": "0", "containerEdits": {"deviceNodes": [{"path": "dev/nvidia0"}]}}
                ],
            }
        )
    )
    with pytest.raises(ContainerError, match="must be an absolute path"):
        cdi.resolve_cdi("all", spec_dirs=(d,))
    (d / "broken.json").write_text(
        json.dumps(
            {
                "kind": "nvidia.com/gpu",
                "devices": [
                    {
                        "name": "0",
                        "containerEdits": {
                            "deviceNodes": [
                                {"path": "/dev/nvidia0", "hostPath": str(tmp_path / "plain")}
                            ]
                        },
                    }
                ],
            }
        )
    )
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(ContainerError, match="is not a device file"):
        cdi.resolve_cdi("all", spec_dirs=(d,))


def test_missing_device_info_is_read_from_the_host_node(tmp_path: Path) -> None:
    d = tmp_path / "cdi"
    d.mkdir()
    spec = {
        "kind": "nvidia.com/gpu",
        "devices": [
            {
                "name": "0",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/nvidia0", "hostPath": "/dev/null"}]
                },
            }
        ],
    }
    (d / "x.json").write_text(json.dumps(spec))
    (node,) = cdi.resolve_cdi("all", spec_dirs=(d,)).device_nodes
    st = Path("/dev/null").stat()
    assert stat.S_ISCHR(st.st_mode)
    assert (node.type, node.major, node.minor) == ("c", os.major(st.st_rdev), os.minor(st.st_rdev))


def test_vulnerable_toolkit_hooks_are_refused(host: Path) -> None:
    old = _hook_script(host, name="nvidia-cdi-hook", version="1.17.7")
    hook = cdi.Hook(hook_name="createContainer", path=str(old), args=("nvidia-cdi-hook",))
    with pytest.raises(ContainerError, match="CVE-2025-23266") as info:
        cdi.check_hook(hook)
    assert "1.17.8" in info.value.hint
    assert not (host / "hook.log").exists()  # refused before it ran
    older = _hook_script(host, name="nvidia-ctk", version="1.16.1")
    with pytest.raises(ContainerError, match="CVE-2024-0132"):
        cdi.check_hook(cdi.Hook(hook_name="createContainer", path=str(older)))
    fixed = _hook_script(host, name="nvidia-container-runtime-hook", version="1.17.8")
    cdi.check_hook(cdi.Hook(hook_name="createContainer", path=str(fixed)))


def test_resolve_refuses_a_spec_whose_hook_is_vulnerable(host: Path) -> None:
    old = _hook_script(host, name="nvidia-ctk", version="1.14.3")
    spec = {
        "kind": "nvidia.com/gpu",
        "devices": [
            {
                "name": "9",
                "containerEdits": {
                    "hooks": [
                        {
                            "hookName": "createContainer",
                            "path": str(old),
                            "args": ["nvidia-ctk", "hook"],
                        }
                    ]
                },
            }
        ],
    }
    (host / "run" / "cdi" / "old.json").write_text(json.dumps(spec))
    with pytest.raises(ContainerError, match="refusing the CDI hook"):
        cdi.resolve_cdi("device=9", spec_dirs=dirs(host))


def test_real_char_devices_as_root(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root (mknod)")
    node = tmp_path / "nvidia0"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    d = tmp_path / "cdi"
    d.mkdir()
    spec = {
        "kind": "nvidia.com/gpu",
        "devices": [
            {
                "name": "0",
                "containerEdits": {
                    "deviceNodes": [{"path": "/dev/nvidia0", "hostPath": str(node)}]
                },
            }
        ],
    }
    (d / "x.json").write_text(json.dumps(spec))
    (dev,) = cdi.resolve_cdi("1", spec_dirs=(d,)).device_nodes
    assert (dev.type, dev.major, dev.minor) == ("c", 1, 3)
