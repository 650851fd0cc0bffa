"""Registry credentials from Docker's config file and ``docker-credential-*`` helpers."""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpack.errors import ImageError

# Docker keys Docker Hub's credentials by its v1 index URL, not by a host name.
_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<hidden>)"


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _load_config(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"cannot read the Docker config file {path}: {exc}"
        raise ImageError(
            msg, hint="fix or remove the file (or point DOCKER_CONFIG elsewhere)"
        ) from exc
    return doc if isinstance(doc, dict) else {}


def _keys(registry: str) -> tuple[str, ...]:
    if registry == "docker.io":
        return _HUB_KEYS
    return (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/")


def _from_helper(helper: str, server: str) -> Credentials | None:
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        msg = f"the Docker credential helper docker-credential-{helper} is not installed"
        raise ImageError(msg, hint=f"install it, or remove it from {docker_config_path()}")
    try:
        proc = subprocess.run(
            [exe, "get"], input=server, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"docker-credential-{helper} failed: {exc}"
        raise ImageError(msg, hint="check the credential helper's setup") from exc
    if proc.returncode != 0:
        # Helpers answer "credentials not found in native keychain" with a non-zero status.
        return None
    try:
        doc = json.loads(proc.stdout)
        return Credentials(username=str(doc["Username"]), password=str(doc["Secret"]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        msg = f"docker-credential-{helper} printed something that is not credentials"
        raise ImageError(msg, hint="check the credential helper's version") from exc


def lookup(registry: str, *, config: Path | None = None) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``, ``docker.io`` for Docker Hub), or None."""
    path = config or docker_config_path()
    doc = _load_config(path)
    keys = _keys(registry)
    helpers = doc.get("credHelpers") or {}
    for key in keys:
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return _from_helper(helpers[key], key)
    auths = doc.get("auths") or {}
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        if not isinstance(entry, dict):
            continue
        if entry.get("identitytoken"):
            return Credentials(username="<token>", password=str(entry["identitytoken"]))
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
                msg = f"the credentials for {registry} in {path} are not valid base64"
                raise ImageError(msg, hint="log in again (docker login) to rewrite them") from exc
            return Credentials(username=user, password=password)
        if entry.get("username") and entry.get("password"):
            return Credentials(username=str(entry["username"]), password=str(entry["password"]))
    store = doc.get("credsStore")
    if isinstance(store, str) and store:
        return _from_helper(store, keys[0])
    return None
