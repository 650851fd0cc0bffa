"""Kubernetes manifests for an image: a Job, a Kubeflow PyTorchJob, or a Deployment and Service.

mlpack does not schedule across machines; it hands the cluster's own engine manifests that run
the image exactly as ``mlpack run``/``serve`` would: pinned by digest (a tag can move), as the
image's non-root user under the restricted Pod Security Standard, data and outputs on
PersistentVolumeClaims, secrets by reference to a Secret, never by value. Output is
deterministic (sorted keys, names derived from the project), so a diff of two renders is a diff
of what changed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml

from mlpack.deploy.images import pinned
from mlpack.errors import DeployError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlpack.config import ProjectConfig
    from mlpack.oci.store import Store
    from mlpack.vocabulary import EntrypointSpec

Kind = Literal["job", "pytorchjob", "deployment"]
KINDS: Final[tuple[Kind, ...]] = ("job", "pytorchjob", "deployment")
_LABEL: Final = re.compile(r"[^a-z0-9-]+")
_QUANTITY: Final = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


@dataclass(frozen=True, kw_only=True)
class Workload:
    """What the manifests run: the pinned image, its command, and the project's layout and env."""

    name: str  # a DNS-1123 label, from the project or image name
    image: str  # registry/repo@sha256:...
    command: tuple[str, ...]  # empty: the image's own CMD
    port: int | None
    workdir: str
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]
    inputs: tuple[str, ...]  # relative to workdir; mounted read-only from the data claim
    outputs: tuple[str, ...]  # relative to workdir; mounted from the outputs claim
    layout_known: bool  # False for a bare image: its writable paths are unknown


@dataclass(frozen=True, kw_only=True)
class Options:
    """How to run it: the kind, resources, claim and Secret names, and the health path."""

    kind: Kind
    cpu: str | None = None
    memory: str | None = None
    gpus: int = 0
    replicas: int = 1  # Deployment replicas, or PyTorchJob nodes (Master + Workers)
    data_claim: str | None = None
    outputs_claim: str | None = None
    secret_name: str | None = None
    health_path: str = "/health"
    entry: str | None = None


def check_options(options: Options) -> None:
    """Refuse what the cluster would refuse later, before anything is rendered or written."""
    if options.kind not in KINDS:
        msg = f"unknown kind {options.kind!r}"
        raise DeployError(msg, hint=f"use --kind {', '.join(KINDS)}")
    if options.gpus < 0:
        msg = f"GPU count {options.gpus} is negative"
        raise DeployError(msg, hint="give --gpus 0 or more")
    if options.replicas < 1:
        msg = f"replica count {options.replicas} is below 1"
        raise DeployError(msg, hint="give --replicas 1 or more")
    for flag, value in (("--cpu", options.cpu), ("--memory", options.memory)):
        if value is not None and not _QUANTITY.match(value):
            msg = f"{flag} {value!r} is not a Kubernetes quantity"
            raise DeployError(msg, hint="write e.g. --cpu 2 or 500m, --memory 8Gi")
    if not options.health_path.startswith("/"):
        msg = f"health path {options.health_path!r} does not start with /"
        raise DeployError(msg, hint="write e.g. --health-path /health")


def dns_label(text: str) -> str:
    """A DNS-1123 label (lowercase alphanumerics and '-', at most 63) for object names."""
    label = _LABEL.sub("-", text.lower()).strip("-")[:63].strip("-")
    return label or "mlpack"


def from_project(
    config: ProjectConfig,
    *,
    image: str,
    image_ref: str | None,
    store: Store,
    kind: Kind,
    entry: str | None,
) -> Workload:
    """The workload of a project (``image``: its local build) from the config's layout and env."""
    from mlpack.spec import WORKDIR

    chosen = _entry(config.entrypoints, entry, kind)
    return Workload(
        name=dns_label(config.name),
        image=pinned(image, image_ref=image_ref, store=store),
        command=chosen.command,
        port=chosen.port,
        workdir=WORKDIR,
        env=tuple((e.name, e.default) for e in config.env if not e.secret and e.default),
        secrets=tuple(e.name for e in config.env if e.secret),
        inputs=config.inputs,
        outputs=config.outputs,
        layout_known=True,
    )


def from_image(
    image: str,
    *,
    image_ref: str | None,
    store: Store,
    workdir: str,
    entrypoints: Sequence[EntrypointSpec],
    kind: Kind,
    entry: str | None,
) -> Workload:
    """The workload of a stored image (its workdir and entrypoints from ``mlpack.runs``).

    A bare image carries no layout, so it gets no claims and a writable root filesystem.
    """
    from mlpack.errors import ImageError
    from mlpack.oci.reference import parse

    try:
        ref = parse(image, default_tag=None)
    except ImageError as exc:
        msg = f"{image!r} is neither a project folder nor an image reference"
        raise DeployError(msg, hint="give a folder with mlpack.toml, or an image") from exc
    chosen = _entry(entrypoints, entry, kind)
    return Workload(
        name=dns_label(ref.repository.rsplit("/", 1)[-1]),
        image=pinned(image, image_ref=image_ref, store=store),
        command=chosen.command,
        port=chosen.port,
        workdir=workdir,
        env=(),  # the image carries its defaults already
        secrets=(),
        inputs=(),
        outputs=(),
        layout_known=False,
    )


def _entry(entries: Sequence[EntrypointSpec], name: str | None, kind: Kind) -> EntrypointSpec:
    """The entrypoint ``name``, else the first one a ``kind`` runs (a deployment: inference,
    else training); DeployError when there is none.
    """
    wanted = "inference" if kind == "deployment" else "training"
    if name is not None:
        found = [e for e in entries if e.name == name]
    else:
        found = [e for e in entries if e.kind == wanted]
    if not found:
        names = ", ".join(e.name for e in entries) or "none"
        what = f"no entrypoint {name!r}" if name else f"no {wanted} entrypoint"
        msg = f"the project has {what} (it has: {names})"
        raise DeployError(msg, hint="pick one with --entry, or declare one in mlpack.toml")
    return found[0]


def render(workload: Workload, options: Options) -> dict[str, str]:
    """``{file name: YAML text}`` of every object, in a stable order; nothing is written."""
    check_options(options)
    if options.kind == "deployment" and workload.port is None:
        msg = "the inference entrypoint declares no port for the Service and the probes"
        raise DeployError(msg, hint="set `port` on the entrypoint in mlpack.toml")
    labels = {"app.kubernetes.io/managed-by": "mlpack", "app.kubernetes.io/name": workload.name}
    context: dict[str, Any] = {
        "name": workload.name,
        "labels": labels,
        "selector": {"app.kubernetes.io/name": workload.name},
        "pod": pod_spec(workload, options),
        "replicas": options.replicas,
        "workers": options.replicas,
        "port": workload.port,
    }
    templates = {
        "job": ("job",),
        "pytorchjob": ("pytorchjob",),
        "deployment": ("deployment", "service"),
    }[options.kind]
    return {f"{t}-{workload.name}.yaml": _render_one(t, context) for t in templates}


def _render_one(template: str, context: dict[str, Any]) -> str:
    """The template's YAML, re-dumped with sorted keys so the text is canonical."""
    from mlpack.render import environment

    env = environment()
    env.filters["json"] = lambda value: json.dumps(value, sort_keys=True, ensure_ascii=False)
    text = env.get_template(f"k8s/{template}.yaml.j2").render(**context)
    return yaml.safe_dump(yaml.safe_load(text), sort_keys=True, default_flow_style=False)


def pod_spec(workload: Workload, options: Options) -> dict[str, Any]:
    """The pod: one container, its mounts, and the restricted security context (the image's
    user by number, so that runAsNonRoot can check it).
    """
    from mlpack.spec import USER_ID

    volumes, mounts = _volumes(workload, options)
    container: dict[str, Any] = {
        "name": "pytorch" if options.kind == "pytorchjob" else "main",  # Kubeflow requires it
        "image": workload.image,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": workload.workdir,
        "env": _env(workload, options),
        "resources": _resources(options),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": workload.layout_known,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if workload.command:
        container["command"] = list(workload.command)
    if options.kind == "deployment":
        container.update(_serving(workload, options))
    init = _output_files(workload, container)
    return {
        "containers": [container],
        **({"initContainers": init} if init else {}),
        "restartPolicy": {"job": "Never", "pytorchjob": "OnFailure"}.get(options.kind, "Always"),
        "securityContext": {
            "fsGroup": USER_ID,
            "runAsGroup": USER_ID,
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": volumes,
    }


def _output_files(workload: Workload, container: dict[str, Any]) -> list[dict[str, Any]]:
    """An init container that creates each output file beside the code (``model.pkl``) in the
    outputs claim, keeping one that is there: kubelet makes a missing subPath a folder, into
    which the program could not write its file. ``mlpack run`` creates it the same way.
    """
    from mlpack.analyze.layout import is_file_output

    files = [rel.strip("/") for rel in workload.outputs if is_file_output(rel)]
    if not files:
        return []
    return [
        {
            "name": "output-files",
            "image": workload.image,
            "imagePullPolicy": "IfNotPresent",
            # `: >>` creates a missing file and leaves an existing one as it is.
            "command": ["sh", "-c", 'for f; do : >> "/outputs/$f"; done', "sh", *files],
            "securityContext": container["securityContext"],
            "volumeMounts": [{"mountPath": "/outputs", "name": "outputs"}],
        }
    ]


def _serving(workload: Workload, options: Options) -> dict[str, Any]:
    """The named port and the probes on the health path."""
    probe = {"httpGet": {"path": options.health_path, "port": "http"}, "periodSeconds": 10}
    return {
        "ports": [{"containerPort": workload.port, "name": "http", "protocol": "TCP"}],
        "readinessProbe": {**probe, "failureThreshold": 3},
        "livenessProbe": {**probe, "failureThreshold": 6, "initialDelaySeconds": 10},
    }


def _env(workload: Workload, options: Options) -> list[dict[str, Any]]:
    """The config's defaults by value; each secret by reference to a key of one Secret."""
    secret = options.secret_name or f"{workload.name}-secrets"
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in workload.env]
    env += [
        {"name": s, "valueFrom": {"secretKeyRef": {"key": s, "name": secret}}}
        for s in workload.secrets
    ]
    return env


def _resources(options: Options) -> dict[str, Any]:
    """Requests equal limits: the scheduler places the pod where it will actually fit."""
    wanted: dict[str, Any] = {}
    if options.cpu is not None:
        wanted["cpu"] = options.cpu
    if options.memory is not None:
        wanted["memory"] = options.memory
    if options.gpus:
        wanted["nvidia.com/gpu"] = str(options.gpus)
    return {"limits": dict(wanted), "requests": dict(wanted)} if wanted else {}


def _volumes(
    workload: Workload, options: Options
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """/tmp as an emptyDir; inputs and outputs as subPaths of the data and outputs claims."""
    volumes: list[dict[str, Any]] = [{"emptyDir": {}, "name": "tmp"}]
    mounts: list[dict[str, Any]] = [{"mountPath": "/tmp", "name": "tmp"}]
    for volume, claim, paths, read_only in (
        ("data", options.data_claim or f"{workload.name}-data", workload.inputs, True),
        ("outputs", options.outputs_claim or f"{workload.name}-outputs", workload.outputs, False),
    ):
        if not paths:
            continue
        volumes.append(
            {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
        )
        mounts += [
            {
                "mountPath": str(Path(workload.workdir) / rel),
                "name": volume,
                "readOnly": read_only,
                "subPath": rel.strip("/"),
            }
            for rel in paths
        ]
    return volumes, mounts


def write(files: dict[str, str], out: Path) -> tuple[Path, ...]:
    """Write the rendered files into ``out`` (created), each atomically."""
    from mlpack.oslib.fs import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        atomic_write(str(out / name), text.encode())
        written.append(out / name)
    return tuple(written)
