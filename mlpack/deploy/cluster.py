"""Applying rendered manifests to a cluster with the official ``kubernetes`` client.

Server-side apply (``PATCH`` with ``application/apply-patch+yaml``) creates or updates each
object in one request, so ``apply`` can run again after an edit. Every object is first sent
with ``dryRun=All``: the API server runs its admission and validation (quotas, Pod Security,
the Kubeflow CRD) on all of them before any is changed, so a bad set changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

from mlpack.errors import DeployError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER: Final = "mlpack"


@dataclass(frozen=True, kw_only=True)
class Applied:
    """One object the server accepted: ``kind/name`` and whether it was only a dry run."""

    kind: str
    name: str
    dry_run: bool


def kubeconfig_path(given: Path | None, environ: dict[str, str] | None = None) -> Path:
    """``--kubeconfig``, else the first of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ if environ is None else environ
    if given is not None:
        return given
    if env.get("KUBECONFIG"):
        return Path(env["KUBECONFIG"].split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def client(kubeconfig: Path, context: str | None) -> ApiClient:
    """An API client from the user's kubeconfig; DeployError when there is none or it is bad."""
    try:
        from kubernetes import config
    except ImportError as exc:  # an optional dependency: render needs none of it
        msg = "the kubernetes client is not installed"
        raise DeployError(msg, hint="pip install 'mlpack-env[k8s]'") from exc
    if not kubeconfig.is_file():
        msg = f"no kubeconfig: {kubeconfig} does not exist"
        raise DeployError(msg, hint="point --kubeconfig or $KUBECONFIG at your cluster's config")
    try:
        api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig), context=context
        )
    except config.ConfigException as exc:
        msg = f"kubeconfig {kubeconfig} is not usable: {exc}"
        raise DeployError(msg, hint="check it with `kubectl config view`") from exc
    api.configuration.retries = 0  # a cluster that is down should fail at once, not in minutes
    return api


def load(folder: Path) -> list[dict[str, Any]]:
    """The objects of every ``*.yaml`` in ``folder`` (as ``mlpack k8s render -o`` wrote them)."""
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        msg = f"no manifests in {folder}"
        raise DeployError(msg, hint="render them first: mlpack k8s render ... -o DIR")
    docs = [d for f in files for d in yaml.safe_load_all(f.read_text()) if d]
    return sorted(docs, key=lambda d: d.get("kind") != "Service")  # a Service before its pods


def apply(api: ApiClient, docs: list[dict[str, Any]], *, namespace: str) -> list[Applied]:
    """Dry-run every object on the server, then apply them all; nothing changes on a refusal."""
    done = [_send(api, doc, namespace, dry_run=True) for doc in docs]
    return done + [_send(api, doc, namespace, dry_run=False) for doc in docs]


def _path(doc: dict[str, Any], namespace: str) -> str:
    """The object's URL: core ``/api/v1`` or a group's ``/apis/GROUP/VERSION``."""
    version = doc["apiVersion"]
    base = "/api/v1" if version == "v1" else f"/apis/{version}"
    plural = doc["kind"].lower() + "s"  # Job, PyTorchJob, Deployment, Service
    return f"{base}/namespaces/{namespace}/{plural}/{doc['metadata']['name']}"


def _send(api: ApiClient, doc: dict[str, Any], namespace: str, *, dry_run: bool) -> Applied:
    import urllib3
    from kubernetes.client.exceptions import ApiException

    query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
    if dry_run:
        query.append(("dryRun", "All"))
    what = f"{doc['kind']}/{doc['metadata']['name']}"
    host = api.configuration.host
    method, url, headers, body, _ = api.param_serialize(
        "PATCH",
        _path(doc, namespace),
        query_params=query,
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=doc,
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(method, url, header_params=headers, body=body)
        data: bytes = response.response.data
    except (urllib3.exceptions.HTTPError, ApiException) as exc:  # no answer, or TLS refused
        msg = f"no cluster answers at {host} ({type(exc).__name__})"
        raise DeployError(msg, hint="check the cluster is up and the kubeconfig's server") from exc
    if response.status >= 300:
        stage = "the server-side dry run of" if dry_run else "applying"
        msg = f"{stage} {what} failed: HTTP {response.status}: {_reason(data)}"
        raise DeployError(msg, hint="fix the manifest or the flags, then render again")
    return Applied(kind=doc["kind"], name=doc["metadata"]["name"], dry_run=dry_run)


def _reason(data: bytes) -> str:
    """The API server's ``Status.message``, else the raw body."""
    text = data.decode(errors="replace")
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text.strip() or "no details"
