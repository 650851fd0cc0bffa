"""GPU access through the Container Device Interface: read CDI specs, resolve ``--gpus``, vet hooks.

CDI (github.com/cncf-tags/container-device-interface) is how NVIDIA's toolkit describes what a
container needs for a GPU: device nodes, driver libraries to bind-mount, environment variables and
hooks (``nvidia-ctk cdi generate`` writes the spec). Both runtimes consume the resolved
:class:`CdiEdits`; SECURITY-AND-ISOLATION.md §7 sets the rules for hooks.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from mlpack.errors import ConfigError, ContainerError
from mlpack.oslib.linux import DEFAULT_PATH
from mlpack.progress import reporter

GPU_KIND: Final = "nvidia.com/gpu"
SPEC_DIRS: Final = (Path("/etc/cdi"), Path("/var/run/cdi"))  # later dirs take precedence
SPEC_DIRS_ENV: Final = "MLPACK_CDI_SPEC_DIRS"  # colon-separated, replaces SPEC_DIRS
DRIVER_VERSION_FILE: Final = Path("/proc/driver/nvidia/version")
GENERATE_HINT: Final = (
    "generate the CDI spec with the NVIDIA Container Toolkit: "
    "`sudo nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml` "
    "(toolkit >= 1.18 keeps it current with `nvidia-cdi-refresh`)"
)
# Hooks run on the host with root's privileges, so their environment is fixed, never inherited.
# NVIDIA Container Toolkit releases that fix the hook CVEs of SECURITY §7: CVE-2024-0132 (TOCTOU,
# fixed in 1.16.2), CVE-2025-23266 "NVIDIAScape" and CVE-2025-23267 (both fixed in 1.17.8).
FIXED_TOOLKIT: Final = (1, 17, 8)
_TOOLKIT_HOOKS: Final = frozenset(
    {"nvidia-ctk", "nvidia-cdi-hook", "nvidia-container-runtime-hook", "nvidia-container-toolkit"}
)

DeviceType = Literal["c", "b", "u", "p"]


@dataclass(frozen=True, kw_only=True)
class DeviceNode:
    """A device file the container gets: ``path`` inside, ``host_path`` on the host."""

    path: str
    host_path: str
    type: DeviceType
    major: int
    minor: int
    permissions: str = "rwm"  # cgroup device access: r, w, m
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None


@dataclass(frozen=True, kw_only=True)
class CdiMount:
    """A host path (driver library, firmware, IPC socket) mounted into the container."""

    host_path: str
    container_path: str
    options: tuple[str, ...] = ()
    type: str | None = None


@dataclass(frozen=True, kw_only=True)
class Hook:
    """An OCI hook from a CDI spec; ``args[0]`` is argv[0], as in ``execv``."""

    hook_name: str  # createContainer, startContainer, createRuntime, prestart, poststop, ...
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    timeout: int | None = None


@dataclass(frozen=True, kw_only=True)
class CdiEdits:
    """Everything the resolved devices add to a container, merged in CDI order."""

    devices: tuple[str, ...]  # fully qualified names, e.g. "nvidia.com/gpu=0"
    device_nodes: tuple[DeviceNode, ...] = ()
    mounts: tuple[CdiMount, ...] = ()
    env: tuple[str, ...] = ()  # "K=V", applied after the image's Env
    hooks: tuple[Hook, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CdiDevice:
    """One device of a spec, with the spec-level edits it brings along."""

    kind: str
    name: str
    spec_path: Path
    edits: dict[str, Any]
    spec_edits: dict[str, Any]

    @property
    def qualified(self) -> str:
        """Return ``vendor/class=name``."""
        return f"{self.kind}={self.name}"


def driver_version(version_file: Path = DRIVER_VERSION_FILE) -> str | None:
    """Return the NVIDIA kernel driver version, or None when no driver is loaded."""
    try:
        text = version_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = re.search(r"Kernel Module\s+(?:for\s+\S+\s+)?(\d+(?:\.\d+)+)", text)
    if m:
        return m.group(1)
    m = re.search(r"\b(\d{3,}\.\d+(?:\.\d+)?)\b", text)
    return m.group(1) if m else "unknown"


def default_spec_dirs() -> tuple[Path, ...]:
    """Return ``$MLPACK_CDI_SPEC_DIRS`` (colon-separated) when set, else /etc/cdi, /var/run/cdi."""
    value = os.environ.get(SPEC_DIRS_ENV)
    if value:
        return tuple(Path(p) for p in value.split(":") if p)
    return SPEC_DIRS


def spec_files(spec_dirs: tuple[Path, ...] | None = None) -> tuple[Path, ...]:
    """List the CDI spec files (``*.json``, ``*.yaml``, ``*.yml``), lowest precedence first."""
    found: list[Path] = []
    for d in default_spec_dirs() if spec_dirs is None else spec_dirs:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue
        found.extend(p for p in entries if p.suffix in {".json", ".yaml", ".yml"} and p.is_file())
    return tuple(found)


def load_spec(path: Path) -> dict[str, Any]:
    """Parse one CDI spec file (JSON, or YAML through PyYAML) into a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the CDI spec {path}: {exc.strerror}"
        raise ContainerError(msg, hint="check the file's permissions") from exc
    data: Any
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"the CDI spec {path} is not valid JSON: {exc}"
            raise ContainerError(msg, hint=GENERATE_HINT) from exc
    else:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - PyYAML is a dependency
            msg = f"the CDI spec {path} is YAML and PyYAML is not installed"
            raise ContainerError(
                msg,
                hint="`pip install pyyaml`, or write a JSON spec: "
                "`nvidia-ctk cdi generate --format=json --output=/etc/cdi/nvidia.json`",
            ) from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            msg = f"the CDI spec {path} is not valid YAML: {exc}"
            raise ContainerError(msg, hint=GENERATE_HINT) from exc
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        msg = f"the CDI spec {path} has no 'kind'"
        raise ContainerError(msg, hint=GENERATE_HINT)
    if not isinstance(data.get("devices", []), list):
        msg = f"the CDI spec {path}: 'devices' must be a list"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return data


def devices_of_kind(
    kind: str = GPU_KIND, *, spec_dirs: tuple[Path, ...] | None = None
) -> tuple[CdiDevice, ...]:
    """Return the devices of ``kind`` from every spec, in spec order.

    A name defined again in a later spec (a higher-precedence directory, ``/var/run/cdi``
    over ``/etc/cdi``) replaces the earlier definition, as in the CDI reference library.
    """
    by_name: dict[str, CdiDevice] = {}
    for path in spec_files(spec_dirs):
        spec = load_spec(path)
        if spec["kind"] != kind:
            continue
        spec_edits = _mapping(spec.get("containerEdits"), path)
        for raw in spec.get("devices") or ():
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                msg = f"the CDI spec {path} has a device without a name"
                raise ContainerError(msg, hint=GENERATE_HINT)
            by_name.pop(raw["name"], None)
            by_name[raw["name"]] = CdiDevice(
                kind=kind,
                name=raw["name"],
                spec_path=path,
                edits=_mapping(raw.get("containerEdits"), path),
                spec_edits=spec_edits,
            )
    return tuple(by_name.values())


def resolve_cdi(
    gpus: str,
    *,
    kind: str = GPU_KIND,
    spec_dirs: tuple[Path, ...] | None = None,
    driver_file: Path = DRIVER_VERSION_FILE,
) -> CdiEdits:
    """Resolve ``--gpus all|N|ID[,ID...]`` into the merged container edits.

    ``N`` is a count (the first N devices, numbered ones in index order); IDs are device names
    or UUIDs (``0``, ``GPU-…``, ``nvidia.com/gpu=0``; ``device=0,1`` as in Docker is accepted).
    Raises ContainerError naming the missing piece (driver, spec, device) and the fix.
    """
    dirs = default_spec_dirs() if spec_dirs is None else spec_dirs
    devices = devices_of_kind(kind, spec_dirs=dirs)
    if not devices:
        where = ", ".join(str(d) for d in dirs)
        if driver_version(driver_file) is None:
            msg = (
                f"--gpus {gpus}: no NVIDIA driver on this host ({driver_file} is missing) and "
                f"no CDI spec for {kind} in {where}"
            )
            raise ContainerError(
                msg, hint=f"install the NVIDIA driver and container toolkit, then {GENERATE_HINT}"
            )
        msg = f"--gpus {gpus}: the NVIDIA driver is loaded but there is no CDI spec for {kind} in {where}"
        raise ContainerError(msg, hint=GENERATE_HINT)
    chosen = _select(gpus, devices, kind)
    edits = merge_edits(chosen)
    for hook in edits.hooks:
        check_hook(hook)
    return edits


def _select(gpus: str, devices: tuple[CdiDevice, ...], kind: str) -> tuple[CdiDevice, ...]:
    want = gpus.strip()
    if want.startswith("device="):
        want = want[len("device=") :].strip("\"'")
    if want == "all":
        named = {d.name: d for d in devices}
        if "all" in named:
            return (named["all"],)
        return tuple(d for d in devices if d.name != "all")
    if want.isdigit() and "," not in want and not gpus.startswith("device="):
        return _first(gpus, int(want), devices)
    return _named(gpus, want, devices, kind)


def _first(gpus: str, count: int, devices: tuple[CdiDevice, ...]) -> tuple[CdiDevice, ...]:
    """``--gpus N``: the first N devices with numeric names, in index order."""
    indexed = sorted((d for d in devices if d.name.isdigit()), key=lambda d: int(d.name))
    if count < 1:
        msg = f"--gpus {gpus}: a GPU count must be at least 1"
        raise ConfigError(msg, hint="leave --gpus out to run without GPUs")
    if count > len(indexed):
        msg = f"--gpus {gpus}: {count} GPUs requested, the CDI specs list {len(indexed)}"
        raise ContainerError(msg, hint=f"available devices: {_names(devices)}")
    return tuple(indexed[:count])


def _named(
    gpus: str, want: str, devices: tuple[CdiDevice, ...], kind: str
) -> tuple[CdiDevice, ...]:
    """``--gpus device=A,B`` or ``--gpus kind=A``: each name once, in the order given."""
    named = {d.name: d for d in devices}
    chosen: list[CdiDevice] = []
    for item in (part.strip() for part in want.split(",")):
        if not item:
            continue
        name = item
        if "=" in item:
            item_kind, _, name = item.partition("=")
            if item_kind != kind:
                msg = f"--gpus {gpus}: {item_kind!r} is not the GPU device kind {kind!r}"
                raise ConfigError(msg, hint=f"use names like {kind}=0")
        dev = named.get(name)
        if dev is None:
            msg = f"--gpus {gpus}: no CDI device named {name!r} of kind {kind}"
            raise ContainerError(
                msg,
                hint=f"available devices: {_names(devices)}; regenerate the spec if a GPU was "
                f"added ({GENERATE_HINT})",
            )
        if dev not in chosen:
            chosen.append(dev)
    if not chosen:
        msg = f"--gpus {gpus!r} names no device"
        raise ConfigError(msg, hint="use all, a count, or device names/UUIDs separated by commas")
    return tuple(chosen)


def _names(devices: tuple[CdiDevice, ...]) -> str:
    return ", ".join(d.name for d in devices)


def merge_edits(devices: tuple[CdiDevice, ...]) -> CdiEdits:
    """Merge spec-level then device-level edits, as the CDI reference library applies them.

    Each spec's own edits are applied once, before its devices'. Env entries with the same name
    and device nodes or mounts at the same container path are replaced by the later one; hooks
    are appended; mounts are ordered parents first.
    """
    env: dict[str, str] = {}
    nodes: dict[str, DeviceNode] = {}
    mounts: dict[str, CdiMount] = {}
    hooks: list[Hook] = []
    seen_specs: set[Path] = set()
    for dev in devices:
        layers = [dev.edits]
        if dev.spec_path not in seen_specs:
            seen_specs.add(dev.spec_path)
            layers.insert(0, dev.spec_edits)
        for edits in layers:
            for entry in _strings(edits.get("env"), "env", dev.spec_path):
                key, sep, _ = entry.partition("=")
                if not sep or not key:
                    msg = f"the CDI spec {dev.spec_path} has an env entry {entry!r} without '='"
                    raise ContainerError(msg, hint=GENERATE_HINT)
                env.pop(key, None)
                env[key] = entry
            for raw in _dicts(edits.get("deviceNodes"), "deviceNodes", dev.spec_path):
                node = _device_node(raw, dev.spec_path)
                nodes.pop(node.path, None)
                nodes[node.path] = node
            for raw in _dicts(edits.get("mounts"), "mounts", dev.spec_path):
                mount = _mount(raw, dev.spec_path)
                mounts.pop(mount.container_path, None)
                mounts[mount.container_path] = mount
            hooks.extend(
                _hook(raw, dev.spec_path)
                for raw in _dicts(edits.get("hooks"), "hooks", dev.spec_path)
            )
    ordered = sorted(mounts.values(), key=lambda m: len(Path(m.container_path).parts))
    return CdiEdits(
        devices=tuple(d.qualified for d in devices),
        device_nodes=tuple(nodes.values()),
        mounts=tuple(ordered),
        env=tuple(env.values()),
        hooks=tuple(hooks),
    )


def _mapping(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        msg = f"the CDI spec {path}: 'containerEdits' must be a mapping"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return value


def _dicts(value: Any, field: str, path: Path) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        msg = f"the CDI spec {path}: '{field}' must be a list of mappings"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return value


def _strings(value: Any, field: str, path: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"the CDI spec {path}: '{field}' must be a list of strings"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return value


def _absolute(value: Any, what: str, path: Path) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        msg = f"the CDI spec {path}: {what} must be an absolute path, got {value!r}"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return value


def _device_node(raw: dict[str, Any], spec: Path) -> DeviceNode:
    path = _absolute(raw.get("path"), "a device node's path", spec)
    host_path = _absolute(raw.get("hostPath", path), "a device node's hostPath", spec)
    dtype = raw.get("type")
    major, minor = raw.get("major"), raw.get("minor")
    if dtype is None or (dtype in {"c", "b", "u"} and (major is None or minor is None)):
        # Fill what the spec leaves out from the host node, as the CDI library does.
        try:
            st = Path(host_path).stat()
        except OSError as exc:
            msg = f"the CDI device node {host_path} (spec {spec}) does not exist on this host"
            raise ContainerError(
                msg, hint=f"is the NVIDIA driver loaded? then regenerate the spec: {GENERATE_HINT}"
            ) from exc
        if stat.S_ISCHR(st.st_mode):
            host_type: DeviceType = "c"
        elif stat.S_ISBLK(st.st_mode):
            host_type = "b"
        elif stat.S_ISFIFO(st.st_mode):
            host_type = "p"
        else:
            msg = f"the CDI device node {host_path} (spec {spec}) is not a device file"
            raise ContainerError(msg, hint=GENERATE_HINT)
        dtype = dtype or host_type
        major = os.major(st.st_rdev) if major is None else major
        minor = os.minor(st.st_rdev) if minor is None else minor
    if dtype not in {"c", "b", "u", "p"}:
        msg = f"the CDI spec {spec}: device type {dtype!r} of {path} is not c, b, u or p"
        raise ContainerError(msg, hint=GENERATE_HINT)
    permissions = raw.get("permissions") or "rwm"
    if not isinstance(permissions, str) or set(permissions) - set("rwm"):
        msg = f"the CDI spec {spec}: permissions {permissions!r} of {path} are not r/w/m"
        raise ContainerError(msg, hint=GENERATE_HINT)
    return DeviceNode(
        path=path,
        host_path=host_path,
        type=dtype,
        major=int(major or 0),
        minor=int(minor or 0),
        permissions=permissions,
        file_mode=_opt_int(raw.get("fileMode")),
        uid=_opt_int(raw.get("uid")),
        gid=_opt_int(raw.get("gid")),
    )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _mount(raw: dict[str, Any], spec: Path) -> CdiMount:
    options = raw.get("options") or []
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        msg = f"the CDI spec {spec}: mount options must be a list of strings"
        raise ContainerError(msg, hint=GENERATE_HINT)
    mtype = raw.get("type")
    return CdiMount(
        host_path=_absolute(raw.get("hostPath"), "a mount's hostPath", spec),
        container_path=_absolute(raw.get("containerPath"), "a mount's containerPath", spec),
        options=tuple(options),
        type=mtype if isinstance(mtype, str) else None,
    )


def _hook(raw: dict[str, Any], spec: Path) -> Hook:
    name = raw.get("hookName")
    if not isinstance(name, str) or not name:
        msg = f"the CDI spec {spec} has a hook without a hookName"
        raise ContainerError(msg, hint=GENERATE_HINT)
    timeout = raw.get("timeout")
    return Hook(
        hook_name=name,
        path=_absolute(raw.get("path"), "a hook's path", spec),
        args=tuple(_strings(raw.get("args"), "hook args", spec)),
        env=tuple(_strings(raw.get("env"), "hook env", spec)),
        timeout=int(timeout) if timeout is not None else None,
    )


def hook_env(hook: Hook) -> dict[str, str]:
    """Return the environment a hook runs with: a fixed PATH plus the spec's own entries.

    Nothing comes from the caller or the image, and no ``LD_*`` variable is ever passed
    (CVE-2025-23266: an image's ``LD_PRELOAD`` reached the NVIDIA hook).
    """
    env = {"PATH": DEFAULT_PATH}
    for entry in hook.env:
        key, sep, value = entry.partition("=")
        if sep and key and not key.startswith("LD_") and key != "PATH":
            env[key] = value
    return env


_versions: dict[tuple[str, int], tuple[int, ...] | None] = {}


def toolkit_version(path: str) -> tuple[int, ...] | None:
    """Return the NVIDIA Container Toolkit version of a hook binary, or None when unknown."""
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return None
    key = (path, mtime)
    if key not in _versions:
        try:
            proc = subprocess.run(  # an absolute path from a root-owned CDI spec
                [path, "--version"],
                env={"PATH": DEFAULT_PATH},
                cwd="/",
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )
            text = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            text = ""
        m = re.search(r"version\s+v?(\d+)\.(\d+)\.(\d+)", text)
        _versions[key] = tuple(int(g) for g in m.groups()) if m else None
    return _versions[key]


def check_hook(hook: Hook) -> None:
    """Refuse a hook from an NVIDIA Container Toolkit release with a known container escape."""
    if Path(hook.path).name not in _TOOLKIT_HOOKS:
        return
    version = toolkit_version(hook.path)
    if version is None:
        reporter().notice(
            f"cannot tell the NVIDIA Container Toolkit version of {hook.path}; "
            f"make sure it is >= {'.'.join(map(str, FIXED_TOOLKIT))}"
        )
        return
    if version < FIXED_TOOLKIT:
        shown = ".".join(map(str, version))
        msg = (
            f"refusing the CDI hook {hook.path}: NVIDIA Container Toolkit {shown} has known "
            "container escapes (CVE-2025-23266, CVE-2025-23267"
            + (", CVE-2024-0132" if version < (1, 16, 2) else "")
            + ")"
        )
        raise ContainerError(
            msg,
            hint=f"upgrade nvidia-container-toolkit to >= {'.'.join(map(str, FIXED_TOOLKIT))} "
            "and regenerate the spec (`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml`)",
        )
