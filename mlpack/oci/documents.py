"""OCI documents as frozen dataclasses: descriptors, platforms, manifests, indexes, configs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlpack.errors import ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.digest import sha256_digest

if TYPE_CHECKING:
    from collections.abc import Iterable

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HINT = "the image is malformed; re-pull or rebuild it, or report the registry that served it"


def check_digest(digest: object, *, what: str = "digest") -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise ImageError."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        msg = f"{what} {digest!r} is not a sha256 digest (sha256:<64 hex digits>)"
        raise ImageError(msg, hint="check the reference; only sha256 digests are supported")
    return digest


def _bad(*, what: str, why: str) -> ImageError:
    return ImageError(f"invalid {what}: {why}", hint=_HINT)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(what=what, why="expected a JSON object")
    return value


def _str_map(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    items = _obj(value, what)
    if not all(isinstance(v, str) for v in items.values()):
        raise _bad(what=what, why="annotations and labels must map strings to strings")
    return tuple(sorted(items.items()))


@dataclass(frozen=True, kw_only=True)
class Platform:
    """The platform an index entry or config is for (``linux/amd64``, ``linux/arm64/v8``)."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]``."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            msg = f"invalid platform {text!r}"
            raise ImageError(msg, hint="use os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8")
        return cls(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else "")

    @classmethod
    def from_json(cls, value: Any) -> Platform:
        """Read a descriptor's ``platform`` object."""
        doc = _obj(value, "platform")
        os_, arch = doc.get("os"), doc.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise _bad(what="platform", why="os and architecture must be strings")
        variant = doc.get("variant", "")
        return cls(os=os_, architecture=arch, variant=variant if isinstance(variant, str) else "")

    def matches(self, other: Platform) -> bool:
        """Whether ``other`` (an index entry) satisfies this wanted platform."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        # arm64 entries usually carry variant v8; an unspecified wanted variant accepts any.
        return not self.variant or self.variant == other.variant

    def to_json(self) -> dict[str, str]:
        """Return the JSON object form."""
        doc = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            doc["variant"] = self.variant
        return doc

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """A typed pointer to a blob: media type, digest and size, plus optional metadata."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Any, *, what: str = "descriptor") -> Descriptor:
        """Validate a descriptor object: mediaType, digest and a non-negative size are required."""
        doc = _obj(value, what)
        media_type = doc.get("mediaType")
        if not isinstance(media_type, str) or not media_type:
            raise _bad(what=what, why="mediaType is missing")
        size = doc.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(what=what, why=f"size {size!r} is not a non-negative integer")
        urls = doc.get("urls") or ()
        return cls(
            media_type=media_type,
            digest=check_digest(doc.get("digest"), what=f"{what} digest"),
            size=size,
            platform=Platform.from_json(doc["platform"]) if "platform" in doc else None,
            annotations=_str_map(doc.get("annotations"), f"{what} annotations"),
            urls=tuple(str(u) for u in urls),
        )

    def annotation(self, key: str) -> str | None:
        """Return one annotation's value, if present."""
        return dict(self.annotations).get(key)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object form."""
        doc: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.platform is not None:
            doc["platform"] = self.platform.to_json()
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.urls:
            doc["urls"] = list(self.urls)
        return doc


def _schema(doc: dict[str, Any], what: str) -> None:
    if doc.get("schemaVersion") != 2:
        raise _bad(what=what, why=f"schemaVersion is {doc.get('schemaVersion')!r}, expected 2")


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """An image manifest (OCI or Docker schema 2): one config and ordered layers."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: bytes, *, media_type: str | None = None) -> Manifest:
        """Parse and validate manifest bytes; ``media_type`` is the transport's Content-Type."""
        doc = _obj(jsonc.loads(data, what="image manifest"), "image manifest")
        _schema(doc, "image manifest")
        kind = doc.get("mediaType") or media_type
        if kind in mediatypes.INDEXES:
            raise _bad(what="image manifest", why="it is an index, not a manifest")
        if kind is None and "config" in doc:
            kind = mediatypes.OCI_MANIFEST  # OCI allows omitting it in manifests; CVE-2021-41190
        if kind not in mediatypes.MANIFESTS:
            msg = f"unsupported manifest media type {kind!r}"
            raise ImageError(msg, hint="mlpack reads OCI and Docker schema-2 images only")
        config = Descriptor.from_json(doc.get("config"), what="manifest config")
        if config.media_type not in mediatypes.CONFIGS:
            msg = f"unsupported config media type {config.media_type!r}"
            raise ImageError(msg, hint="this is not a container image (artifact?)")
        layers_raw = doc.get("layers")
        if not isinstance(layers_raw, list):
            raise _bad(what="image manifest", why="layers must be a list")
        layers = tuple(Descriptor.from_json(x, what=f"layer {i}") for i, x in enumerate(layers_raw))
        for layer in layers:
            if layer.media_type not in mediatypes.LAYERS:
                msg = f"unsupported layer media type {layer.media_type!r} ({layer.digest})"
                raise ImageError(msg, hint="mlpack applies tar, tar+gzip and tar+zstd layers only")
        return cls(
            media_type=kind,
            config=config,
            layers=layers,
            annotations=_str_map(doc.get("annotations"), "manifest annotations"),
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object form (canonicalise with jsonc.dumps)."""
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@dataclass(frozen=True, kw_only=True)
class Index:
    """An image index or Docker manifest list: manifests per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, data: bytes, *, media_type: str | None = None) -> Index:
        """Parse and validate index bytes."""
        doc = _obj(jsonc.loads(data, what="image index"), "image index")
        _schema(doc, "image index")
        kind = doc.get("mediaType") or media_type or mediatypes.OCI_INDEX
        if kind not in mediatypes.INDEXES:
            msg = f"unsupported index media type {kind!r}"
            raise ImageError(msg, hint="mlpack reads OCI indexes and Docker manifest lists")
        raw = doc.get("manifests")
        if not isinstance(raw, list):
            raise _bad(what="image index", why="manifests must be a list")
        manifests = tuple(
            Descriptor.from_json(x, what=f"index entry {i}") for i, x in enumerate(raw)
        )
        return cls(
            media_type=kind,
            manifests=manifests,
            annotations=_str_map(doc.get("annotations"), "index annotations"),
        )

    def select(self, wanted: Platform) -> Descriptor:
        """Return the first manifest for ``wanted``; ImageError listing what exists otherwise."""
        for entry in self.manifests:
            if (
                entry.platform is not None
                and entry.media_type in mediatypes.MANIFESTS
                and wanted.matches(entry.platform)
            ):
                return entry
        have = sorted({str(e.platform) for e in self.manifests if e.platform is not None})
        msg = f"the image has no manifest for platform {wanted}"
        raise ImageError(msg, hint=f"available: {', '.join(have) or 'none'}; use --platform")

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object form."""
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_json() for m in self.manifests],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """The parts of an image config mlpack uses; ``raw`` keeps the whole parsed document."""

    architecture: str
    os: str
    variant: str = ""
    created: str = ""
    diff_ids: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        """Parse and validate config bytes."""
        doc = _obj(jsonc.loads(data, what="image config"), "image config")
        arch, os_ = doc.get("architecture"), doc.get("os")
        if not isinstance(arch, str) or not isinstance(os_, str):
            raise _bad(what="image config", why="architecture and os must be strings")
        rootfs = _obj(doc.get("rootfs"), "image config rootfs")
        if rootfs.get("type") != "layers" or not isinstance(rootfs.get("diff_ids"), list):
            raise _bad(what="image config", why="rootfs must be {type: layers, diff_ids: [...]}")
        diff_ids = tuple(check_digest(d, what="diff_id") for d in rootfs["diff_ids"])
        conf = doc.get("config") or {}
        env = conf.get("Env") or [] if isinstance(conf, dict) else []
        created = doc.get("created", "")
        return cls(
            architecture=arch,
            os=os_,
            variant=str(doc.get("variant", "")),
            created=created if isinstance(created, str) else "",
            diff_ids=diff_ids,
            env=tuple(str(e) for e in env),
            labels=_str_map(conf.get("Labels") if isinstance(conf, dict) else None, "labels"),
            raw=doc,
        )

    @property
    def platform(self) -> Platform:
        """The platform this config declares."""
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)

    def label(self, key: str) -> str | None:
        """Return one label's value, if present."""
        return dict(self.labels).get(key)


def parse_manifest_or_index(data: bytes, media_type: str | None) -> Manifest | Index:
    """Parse a document that may be either kind, deciding by mediaType then by shape."""
    doc = _obj(jsonc.loads(data, what="manifest"), "manifest")
    kind = doc.get("mediaType") or media_type
    if kind in mediatypes.INDEXES or (kind is None and "manifests" in doc):
        return Index.parse(data, media_type=kind)
    if kind is not None and kind not in mediatypes.MANIFESTS:
        msg = f"unsupported manifest media type {kind!r}"
        raise ImageError(msg, hint="mlpack reads OCI and Docker schema-2 images only")
    return Manifest.parse(data, media_type=kind)


def chain_id(diff_ids: Iterable[str]) -> str:
    """The OCI ChainID of layers ``diff_ids`` (image-spec config.md, "Layer ChainID")."""
    chain = ""
    for diff_id in diff_ids:
        chain = sha256_digest(f"{chain} {diff_id}".encode()) if chain else diff_id
    return chain
