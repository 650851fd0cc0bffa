"""Registry settings from the environment: insecure hosts, the blob size cap, the mirror, TLS trust."""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from mlpack.errors import ImageError
from mlpack.oci.documents import Platform

DEFAULT_PLATFORM: Final = Platform(os="linux", architecture="amd64")
DEFAULT_MAX_BLOB: Final = 64 << 30
DEFAULT_UPLOAD_CHUNK: Final = 64 << 20


def insecure_hosts() -> frozenset[str]:
    """Hosts listed in ``MLPACK_INSECURE_REGISTRIES`` (comma or space separated)."""
    raw = os.environ.get("MLPACK_INSECURE_REGISTRIES", "")
    return frozenset(h.strip() for h in re.split(r"[,\s]+", raw) if h.strip())


def blob_size_cap() -> int:
    """The blob size cap: ``MLPACK_MAX_BLOB_SIZE`` bytes, else 64 GiB."""
    raw = os.environ.get("MLPACK_MAX_BLOB_SIZE", "").strip()
    if not raw:
        return DEFAULT_MAX_BLOB
    if not raw.isdigit():
        msg = f"MLPACK_MAX_BLOB_SIZE={raw!r} is not a number of bytes"
        raise ImageError(msg, hint="set it to an integer, e.g. 68719476736 for 64 GiB")
    return int(raw)


def mirror() -> str | None:
    """The Docker Hub mirror from ``MLPACK_REGISTRY_MIRROR`` (``host[:port]``), if set."""
    raw = os.environ.get("MLPACK_REGISTRY_MIRROR", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw if "://" in raw else f"//{raw}")
    return parts.netloc or None


def with_mirror_trust(options: RegistryOptions) -> RegistryOptions:
    """An ``http://`` mirror URL is the user's explicit consent to plain HTTP for that host."""
    raw = os.environ.get("MLPACK_REGISTRY_MIRROR", "").strip()
    host = mirror()
    if host and raw.startswith("http://"):
        return replace(options, insecure=options.insecure | {host})
    return options


def system_ca() -> str | bool:
    """The CA bundle to verify registries with: the system's, not certifi's."""
    # requests defaults to certifi; use the system bundle (where the proxy's CA lives) instead.
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and Path(cafile).is_file():
        return cafile
    debian = Path("/etc/ssl/certs/ca-certificates.crt")
    return str(debian) if debian.is_file() else True


@dataclass(frozen=True, kw_only=True)
class RegistryOptions:
    """How to reach registries: TLS trust, insecure hosts, size cap, platform, chunking."""

    ca_cert: Path | None = None
    insecure: frozenset[str] = field(default_factory=insecure_hosts)
    max_blob_size: int = field(default_factory=blob_size_cap)
    platform: Platform = DEFAULT_PLATFORM
    upload_chunk_size: int = DEFAULT_UPLOAD_CHUNK
    docker_config: Path | None = None
    workers: int = 4
