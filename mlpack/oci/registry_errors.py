"""Registry failures as ImageErrors: HTTP statuses, transport reasons, an unreachable registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.errors import ImageError
from mlpack.oci import auth

if TYPE_CHECKING:
    import requests


class RegistryUnreachable(ImageError):
    """The registry could not be reached at all (connection, DNS or TLS failure)."""


class TransferInterrupted(ImageError):
    """A transport failure mid-stream; the partial blob is kept for a Range resume."""


def status_error(resp: requests.Response, what: str, registry: str) -> ImageError:
    """The ImageError (message and hint) for an HTTP error status from ``registry``."""
    code = resp.status_code
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            detail = f" ({errors[0].get('code', '')}: {errors[0].get('message', '')})"
    except (ValueError, AttributeError):
        pass
    if code == 401:
        return ImageError(
            f"{what}: the registry {registry} refused the credentials (401){detail}",
            hint=f"log in (docker login {registry}) or check {auth.docker_config_path()}",
        )
    if code == 403:
        return ImageError(
            f"{what}: access denied by {registry} (403){detail}",
            hint="check that your account may read (or push to) this repository",
        )
    if code == 404:
        return ImageError(
            f"{what}: not found on {registry} (404){detail}",
            hint="check the repository name and tag (mlpack images lists local images)",
        )
    if code == 429:
        return ImageError(
            f"{what}: {registry} is rate-limiting requests (429){detail}",
            hint="wait and retry, log in for a higher limit, or set MLPACK_REGISTRY_MIRROR",
        )
    if code >= 500:
        return ImageError(
            f"{what}: the registry {registry} failed with HTTP {code}{detail}",
            hint="the registry has a problem; retry later",
        )
    return ImageError(
        f"{what}: unexpected HTTP {code} from {registry}{detail}",
        hint="check the registry address; is it an OCI registry?",
    )


def why(exc: Exception) -> str:
    """A short reason for a transport failure (requests' messages nest three exceptions deep)."""
    text = str(exc)
    for needle, reason in (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed (unknown CA?)"),
        ("WRONG_VERSION_NUMBER", "the server does not speak TLS"),
        ("Name or service not known", "the host name does not resolve"),
        ("Temporary failure in name resolution", "the host name does not resolve"),
        ("NameResolutionError", "the host name does not resolve"),
        ("Connection refused", "connection refused"),
        ("ProxyError", "the proxy refused the connection"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return reason
    return text if len(text) <= 200 else text[:200] + "..."
