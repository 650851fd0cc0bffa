"""``mlpack k8s``: Kubernetes manifests for a project's (or an image's) pushed image."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlpack.cli.output import note, say
from mlpack.deploy.kubernetes import Options, Workload


def render(
    target: Annotated[
        str, typer.Argument(help="Project folder (with mlpack.toml) or image reference.")
    ] = ".",
    *,
    kind: Annotated[
        str, typer.Option("--kind", help="job, pytorchjob (multi-node) or deployment (serving).")
    ] = "job",
    out: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder to write (default: stdout).")
    ] = None,
    image_ref: Annotated[
        str | None,
        typer.Option(
            "--image-ref",
            help="Where it was pushed: REGISTRY/REPO (pinned to the local digest) or @sha256:...",
        ),
    ] = None,
    entry: Annotated[str | None, typer.Option("--entry", help="Entrypoint to run.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", help="CPU request = limit, e.g. 2.")] = None,
    memory: Annotated[
        str | None, typer.Option("--memory", help="Memory request = limit, e.g. 8Gi.")
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="nvidia.com/gpu per pod.")] = 0,
    replicas: Annotated[
        int, typer.Option("--replicas", help="Deployment replicas, or PyTorchJob nodes.")
    ] = 1,
    data_claim: Annotated[
        str | None, typer.Option("--data-claim", help="PVC of the inputs (NAME-data).")
    ] = None,
    outputs_claim: Annotated[
        str | None, typer.Option("--outputs-claim", help="PVC of the outputs (NAME-outputs).")
    ] = None,
    secret_name: Annotated[
        str | None, typer.Option("--secret", help="Secret holding the secrets (NAME-secrets).")
    ] = None,
    health_path: Annotated[
        str, typer.Option("--health-path", help="Path of the probes (deployment).")
    ] = "/health",
) -> None:
    """Render a Job, a Kubeflow PyTorchJob, or a Deployment and Service, pinned by digest."""
    from mlpack.deploy import kubernetes as k8s

    options = Options(
        kind=kind,  # type: ignore[arg-type]  # checked by check_options
        cpu=cpu,
        memory=memory,
        gpus=gpus,
        replicas=replicas,
        data_claim=data_claim,
        outputs_claim=outputs_claim,
        secret_name=secret_name,
        health_path=health_path,
        entry=entry,
    )
    k8s.check_options(options)
    files = k8s.render(_workload(target, image_ref, options), options)
    if out is None:
        say("---\n".join(files[name] for name in sorted(files)).rstrip("\n"))
        return
    for path in k8s.write(files, out):
        note(f"wrote {path}")


def _workload(target: str, image_ref: str | None, options: Options) -> Workload:
    """The workload of a project folder, else of an image in the store."""
    from mlpack.deploy import kubernetes as k8s
    from mlpack.oci.store import Store

    store = Store.default()
    folder = Path(target)
    if folder.is_dir():
        from mlpack.cli.build import _note
        from mlpack.pipeline import project_config

        config = project_config(folder, note=_note)  # without mlpack.toml: analysed in memory
        return k8s.from_project(
            config,
            image=_project_image(folder, config.name),
            image_ref=image_ref,
            store=store,
            kind=options.kind,
            entry=options.entry,
        )
    from mlpack.runs import image_facts

    facts = image_facts(target, store)
    return k8s.from_image(
        target,
        image_ref=image_ref,
        store=store,
        workdir=facts.workdir,
        entrypoints=facts.entrypoints,
        kind=options.kind,
        entry=options.entry,
    )


def _project_image(folder: Path, name: str) -> str:
    """The tag ``mlpack build`` gave the project's image (its lock's hash; none before a lock)."""
    from mlpack.lock.lockfile import read_lock
    from mlpack.pipeline import lock_path
    from mlpack.spec import local_tag, lock_hash

    path = lock_path(folder)
    return local_tag(name, lock_hash(read_lock(path))) if path.is_file() else f"localhost/{name}"


def apply(
    folder: Annotated[Path, typer.Argument(help="Folder of manifests `k8s render -o` wrote.")],
    *,
    namespace: Annotated[str, typer.Option("-n", "--namespace", help="Namespace.")] = "default",
    kubeconfig: Annotated[
        Path | None,
        typer.Option("--kubeconfig", help="Kubeconfig (default: $KUBECONFIG, ~/.kube/config)."),
    ] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="Kubeconfig context (default: current).")
    ] = None,
) -> None:
    """Apply rendered manifests server-side, after a server-side dry run of all of them."""
    from mlpack.deploy import cluster

    docs = cluster.load(folder)
    api = cluster.client(cluster.kubeconfig_path(kubeconfig), context)
    for done in cluster.apply(api, docs, namespace=namespace):
        if not done.dry_run:
            say(f"applied {done.kind}/{done.name} in {namespace}")


def register(app: typer.Typer) -> None:
    """Add the ``k8s`` command group to ``app``."""
    group = typer.Typer(help="Kubernetes manifests for a pushed image.", no_args_is_help=True)
    group.command("render")(render)
    group.command("apply")(apply)
    app.add_typer(group, name="k8s")
