"""Image references: ``[registry/]repository[:tag][@digest]`` with Docker's defaults."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from mlpack.errors import ImageError
from mlpack.oci.documents import check_digest

DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?)(?::\d+)?$")
_HINT = "use [registry/]name[:tag][@sha256:<digest>], e.g. python:3.11-slim or 127.0.0.1:5000/app:1"


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A parsed, normalised image reference."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, the store's and the registry's key for the repository."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host (and port) to talk to; Docker Hub's API lives on a different host."""
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        """Whether the registry is on this machine (plain HTTP is allowed there)."""
        return is_loopback(self.registry)

    def with_tag(self, tag: str | None) -> Reference:
        """Return a copy with ``tag`` and no digest."""
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """Return a copy pinned to ``digest`` (the tag kept for display)."""
        return replace(self, digest=digest)

    def with_registry(self, registry: str) -> Reference:
        """Return the same repository on another registry (for mirrors and mounts)."""
        return replace(self, registry=registry)

    @property
    def selector(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def familiar(self) -> str:
        """The short form users type: ``python:3.11-slim`` for Docker Hub's library images."""
        name = self.name
        if self.registry == DOCKER_HUB:
            name = self.repository.removeprefix("library/")
        return (
            name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        )

    def __str__(self) -> str:
        return (
            self.name
            + (f":{self.tag}" if self.tag else "")
            + (f"@{self.digest}" if self.digest else "")
        )


def host_only(registry: str) -> str:
    """Strip the port (and IPv6 brackets) from ``host[:port]``."""
    if registry.startswith("["):
        return registry[1 : registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def is_loopback(registry: str) -> bool:
    """Whether ``host[:port]`` names this machine."""
    host = host_only(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _looks_like_registry(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.startswith("[")


def parse(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse ``text`` into a normalised Reference; ImageError on anything malformed."""
    raw = text.strip()
    if not raw or any(c.isspace() for c in raw):
        msg = f"invalid image reference {text!r}"
        raise ImageError(msg, hint=_HINT)
    digest = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
        check_digest(digest, what=f"digest in {text!r}")
    registry = DOCKER_HUB
    first, sep, rest = raw.partition("/")
    if sep and _looks_like_registry(first):
        if not _HOST.match(first):
            msg = f"invalid registry {first!r} in {text!r}"
            raise ImageError(msg, hint=_HINT)
        registry, raw = first, rest
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
    tag = None
    last_slash = raw.rfind("/")
    colon = raw.rfind(":")
    if colon > last_slash:
        raw, tag = raw[:colon], raw[colon + 1 :]
        if not _TAG.match(tag):
            msg = f"invalid tag {tag!r} in {text!r}"
            raise ImageError(
                msg, hint="tags are up to 128 of [A-Za-z0-9_.-], not starting with . or -"
            )
    components = raw.split("/")
    if not raw or not all(_COMPONENT.match(c) for c in components):
        msg = f"invalid repository name {raw!r} in {text!r}"
        raise ImageError(msg, hint="repository names are lowercase: [a-z0-9] separated by . _ __ -")
    if registry == DOCKER_HUB and len(components) == 1:
        raw = f"library/{raw}"
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=registry, repository=raw, tag=tag, digest=digest)


def normalize(text: str) -> str:
    """Return the canonical string form of ``text`` (what the store records as a name)."""
    return str(parse(text))
