"""The OCI config builder: namespaces, capabilities, mounts, env, limits, user and init."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlpack.errors import ConfigError
from mlpack.runtime.embedded import spec
from mlpack.runtime.embedded.spec import IdMap, ImageProcess, SpecOptions
from mlpack.runtime.protocol import Mount, RunConfig

IMAGE = ImageProcess(
    env=("PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "MODE=image"),
    entrypoint=("python",),
    cmd=("train.py",),
    working_dir="/app",
    user="",
)


def build(run: RunConfig, **opts: Any) -> dict[str, Any]:
    options = {"hostname": "box", "userns": False, **opts}
    return spec.build_config(IMAGE, run, SpecOptions(**options))


def by_dest(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in config["mounts"]}


def test_process_follows_docker_entrypoint_cmd_rule() -> None:
    assert build(RunConfig(image="x"))["process"]["args"] == ["python", "train.py"]
    args = build(RunConfig(image="x", command=("eval.py",)))["process"]["args"]
    assert args == ["python", "eval.py"]


def test_env_order_image_then_user_replacing_in_place() -> None:
    env = build(RunConfig(image="x", env=(("MODE", "user"), ("NEW", "1"))))["process"]["env"]
    assert env[0] == "PATH=/opt/bin:/usr/bin"
    assert "MODE=user" in env
    assert "MODE=image" not in env
    assert env[-1] == "NEW=1"
    assert "HOSTNAME=box" in env


def test_default_namespaces_and_network() -> None:
    ns = {n["type"] for n in build(RunConfig(image="x"))["linux"]["namespaces"]}
    assert ns == {"pid", "ipc", "uts", "mount", "cgroup", "network"}
    host = build(RunConfig(image="x", network="host"))["linux"]["namespaces"]
    assert "network" not in {n["type"] for n in host}


def test_rootless_user_namespace_maps() -> None:
    maps = (IdMap(container_id=0, host_id=1000, size=1),)
    config = build(RunConfig(image="x"), userns=True, uid_map=maps, gid_map=maps)
    linux = config["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]


def test_capabilities_default_docker_and_non_root() -> None:
    caps = build(RunConfig(image="x"))["process"]["capabilities"]
    assert sorted(caps["bounding"]) == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert caps["effective"] == caps["bounding"]
    assert caps["inheritable"] == caps["ambient"] == []
    docker = build(RunConfig(image="x"), cap_profile="docker")["process"]["capabilities"]
    assert len(docker["bounding"]) == 14
    user = build(RunConfig(image="x", user="1000"))["process"]["capabilities"]
    assert user["effective"] == user["permitted"] == []
    assert len(user["bounding"]) == 3


def test_security_defaults() -> None:
    config = build(RunConfig(image="x"))
    proc, linux = config["process"], config["linux"]
    assert proc["noNewPrivileges"] is True
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert "/proc/kcore" in linux["maskedPaths"]
    assert "/proc/sysrq-trigger" in linux["readonlyPaths"]
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    mounts = by_dest(config)
    assert mounts["/proc"]["options"] == ["nosuid", "noexec", "nodev"]
    assert "ro" in mounts["/sys"]["options"]
    assert "newinstance" in mounts["/dev/pts"]["options"]
    assert "ptmxmode=0666" in mounts["/dev/pts"]["options"]


def test_shm_sized_from_memory_limit() -> None:
    mounts = by_dest(build(RunConfig(image="x", memory=1 << 30)))
    assert f"size={1 << 29}" in mounts["/dev/shm"]["options"]
    mounts = by_dest(build(RunConfig(image="x", memory=1 << 30, shm_size=1 << 20)))
    assert f"size={1 << 20}" in mounts["/dev/shm"]["options"]


def test_resources() -> None:
    res = build(RunConfig(image="x", memory=64 << 20, cpus=1.5, pids_limit=99))["linux"][
        "resources"
    ]
    assert res["memory"]["limit"] == 64 << 20
    assert res["cpu"] == {"quota": 150_000, "period": 100_000}
    assert res["pids"] == {"limit": 99}
    for bad in ({"memory": 100}, {"cpus": 0.0}, {"pids_limit": 0}):
        with pytest.raises(ConfigError):
            build(RunConfig(image="x", **bad))


def test_volumes_are_nosuid_nodev_binds(tmp_path: Path) -> None:
    run = RunConfig(
        image="x",
        mounts=(
            Mount(source=tmp_path, target="/data", read_only=True),
            Mount(source=tmp_path, target="/out"),
        ),
    )
    mounts = by_dest(build(run))
    assert mounts["/data"]["options"] == ["rbind", "nosuid", "nodev", "ro"]
    assert mounts["/out"]["options"] == ["rbind", "nosuid", "nodev"]
    assert mounts["/data"]["source"] == str(tmp_path)


@pytest.mark.parametrize("target", ["relative", "/a/../b"])
def test_bad_volume_targets(tmp_path: Path, target: str) -> None:
    with pytest.raises(ConfigError):
        build(RunConfig(image="x", mounts=(Mount(source=tmp_path, target=target),)))


def test_missing_volume_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build(RunConfig(image="x", mounts=(Mount(source=tmp_path / "nope", target="/d"),)))


def test_user_workdir_init_and_read_only() -> None:
    config = build(
        RunConfig(image="x", user="app:staff", workdir="/w", read_only=True),
        init_binary="/cache/init",
    )
    assert config["annotations"]["org.mlpack.user"] == "app:staff"
    assert config["annotations"]["org.mlpack.init"] == "/dev/init"
    assert config["process"]["cwd"] == "/w"
    assert config["root"]["readonly"] is True
    mounts = by_dest(config)
    assert mounts["/dev/init"]["source"] == "/cache/init"
    assert "ro" in mounts["/dev/init"]["options"]
    assert "/tmp" in mounts  # scratch space on a read-only root
    assert build(RunConfig(image="x"))["process"]["cwd"] == "/app"
    assert "org.mlpack.user" not in build(RunConfig(image="x", user="root"))["annotations"]


def test_image_process_from_raw_config() -> None:
    raw = {
        "config": {
            "Env": ["A=1"],
            "Entrypoint": ["/e"],
            "Cmd": ["c"],
            "WorkingDir": "/w",
            "User": "u",
        }
    }
    assert ImageProcess.from_raw(raw) == ImageProcess(
        env=("A=1",), entrypoint=("/e",), cmd=("c",), working_dir="/w", user="u"
    )
    assert ImageProcess.from_raw({}) == ImageProcess()


def test_cdi_device_nodes_are_nosuid_noexec_binds_and_libraries_read_only() -> None:
    """§7: a CDI device node is bound nosuid,noexec and allowed in the device cgroup; a driver
    library without options of its own is bound read-only, nosuid, nodev."""
    from mlpack.runtime.cdi import CdiEdits, CdiMount, DeviceNode

    edits = CdiEdits(
        devices=("nvidia.com/gpu=0",),
        device_nodes=(
            DeviceNode(path="/dev/nvidia0", host_path="/dev/nvidia0", type="c", major=195, minor=0),
        ),
        mounts=(
            CdiMount(host_path="/usr/lib/libcuda.so.1", container_path="/usr/lib/libcuda.so.1"),
        ),
    )
    mounts, devices = spec.cdi_edits(edits)
    node, library = mounts
    assert node["options"] == ["bind", "nosuid", "noexec"]
    assert {"ro", "nosuid", "nodev"} <= set(library["options"])
    assert devices == [{"type": "c", "major": 195, "minor": 0, "access": "rwm", "allow": True}]


@pytest.mark.parametrize("user", ["4294967295", "0:4294967295", "99999999999"])
def test_an_image_user_out_of_range_is_refused(user: str) -> None:
    """§6 Ids: an image config's User enters like -u; (uid_t)-1 would mean "unchanged", root."""
    image = ImageProcess(env=(), entrypoint=(), cmd=("true",), working_dir="/", user=user)
    with pytest.raises(ConfigError, match=r"the image's User .* is outside 0\.\.2147483647"):
        spec.build_config(image, RunConfig(image="x"), SpecOptions(hostname="h", userns=False))
