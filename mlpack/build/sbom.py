"""The image's SBOM: CycloneDX 1.5 JSON of its Python and Debian packages, as an OCI artifact.

CycloneDX rather than SPDX: one JSON document carries purls, hashes and licences per
component, and registries and scanners (Trivy, Grype, Harbor) read it as a referrer. The Python
components come from the plan's pins (name, version, the wheel's sha256) and each wheel's own
METADATA (the file installer copies into the image unchanged); the Debian components from the
image's dpkg status (the system layer's, else the base's). The document is a function of the
image alone: no timestamp and no serial number, components sorted, canonical JSON, so two
builds of one image have one SBOM digest.

It is attached as an OCI 1.1 artifact: a manifest with ``artifactType``, the empty config and
``subject`` naming the image, kept in the store as the image's referrer (see
``Store.add_referrer``).
"""

from __future__ import annotations

import email.parser
import hashlib
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from mlpack import __version__
from mlpack.build.cache import BuildCache
from mlpack.errors import BuildError, ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.layer_stream import stored_layer
from mlpack.oslib.fs import atomic_write
from mlpack.spec import WheelStep

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlpack.build.protocol import BuildResult
    from mlpack.oci.store import Store
    from mlpack.oci.tar_reader import TarReader
    from mlpack.spec import ImageSpec, WheelPin

ARTIFACT_TYPE: Final = "application/vnd.cyclonedx+json"
EMPTY_CONFIG: Final = b"{}"
EMPTY_MEDIA_TYPE: Final = "application/vnd.oci.empty.v1+json"
_DPKG_STATUS: Final = "var/lib/dpkg/status"
_DOC: Final = "usr/share/doc/"
STATUS_CAP: Final = 64 << 20  # a large desktop system's status is a few MiB
COPYRIGHT_CAP: Final = 64 << 10
_MAX_LICENCES: Final = 64  # per package
_MAX_LICENCE_NAME: Final = 200
_LICENSE_CLASSIFIER: Final = "License :: "
_FACTS_RECIPE: Final = "1"  # bumped when what debian_facts reads from a layer changes
_PURL_SAFE: Final = ".-_~"  # purl percent-encodes the rest of a version (":" of an epoch, "+")


def attach_sbom(
    store: Store, result: BuildResult, spec: ImageSpec, wheels: Mapping[str, Path]
) -> str:
    """Write the SBOM of the built image into ``store`` as its referrer; the artifact digest."""
    document = jsonc.dumps(sbom_document(store, result, spec, wheels))
    layer = {"mediaType": ARTIFACT_TYPE, "digest": store.put_bytes(document), "size": len(document)}
    config = {
        "mediaType": EMPTY_MEDIA_TYPE,
        "digest": store.put_bytes(EMPTY_CONFIG),
        "size": len(EMPTY_CONFIG),
    }
    subject = store.manifest_descriptor(result.digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config,
        "layers": [layer],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
    }
    digest = store.put_bytes(jsonc.dumps(manifest))
    store.add_referrer(result.digest, digest)
    return digest


def push_sbom(store: Store, artifact: str, target: str) -> str:
    """Push the stored SBOM artifact next to the image pushed to ``target``; its digest.

    The artifact goes by digest into the image's repository, so a registry with the OCI 1.1
    referrers API lists it under the image's ``subject``; one that refuses the manifest raises
    the registry client's error (the caller says the image itself was pushed).
    """
    from mlpack.oci.documents import Descriptor
    from mlpack.oci.registry import push_manifest

    manifest = jsonc.loads(store.read_blob(artifact), what="manifest")
    blobs = [Descriptor.from_json(d) for d in (manifest["config"], *manifest["layers"])]
    pushed = push_manifest(
        store, artifact, target, blobs, media_type=mediatypes.OCI_MANIFEST, by_digest=True
    )
    return pushed.digest


def read_sbom(store: Store, image: str) -> bytes:
    """The CycloneDX document attached to ``image`` (a reference or digest) in ``store``."""
    digest = store.resolve(image)
    for referrer in store.referrers(digest):
        doc = jsonc.loads(store.read_blob(referrer), what="manifest")
        if doc.get("artifactType") == ARTIFACT_TYPE:
            return store.read_blob(doc["layers"][0]["digest"])
    msg = f"{image} has no SBOM in the store"
    raise ImageError(msg, hint="images built by `mlpack build` carry one: rebuild it")


def sbom_document(
    store: Store, result: BuildResult, spec: ImageSpec, wheels: Mapping[str, Path]
) -> dict[str, Any]:
    """The CycloneDX 1.5 document of the image ``result`` (no time, no serial: deterministic)."""
    pins = [pin for step in spec.steps if isinstance(step, WheelStep) for pin in step.wheels]
    components = [_python_component(pin, wheels.get(pin.sha256)) for pin in pins]
    components += [
        _debian_component(fields, licences) for fields, licences in _dpkg_packages(store, result)
    ]
    components.sort(key=lambda c: (c["purl"], c["bom-ref"]))
    name, _, _ = result.reference.rpartition(":")
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "tools": {"components": [{"type": "application", "name": "mlpack",
                                      "version": __version__}]},
            "component": {
                "type": "container",
                "bom-ref": result.digest,
                "name": name or result.reference,
                "version": result.digest,
                "properties": [
                    {"name": "org.mlpack.platform", "value": result.platform},
                    {"name": "org.mlpack.base", "value": result.base},
                ],
            },
        },
        "components": components,
    }  # fmt: skip


def _python_component(pin: WheelPin, wheel: Path | None) -> dict[str, Any]:
    purl = f"pkg:pypi/{pin.name}@{quote(pin.version, safe=_PURL_SAFE)}"
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": purl,
        "name": pin.name,
        "version": pin.version,
        "purl": purl,
        "hashes": [{"alg": "SHA-256", "content": pin.sha256}],
    }
    licenses = licenses_of(_wheel_metadata(wheel)) if wheel is not None else []
    if licenses:
        component["licenses"] = licenses
    return component


def _wheel_metadata(wheel: Path) -> str:
    """The wheel's ``*.dist-info/METADATA`` text ("" when it has none)."""
    with zipfile.ZipFile(wheel) as zf:
        for member in zf.namelist():
            parts = member.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return zf.read(member).decode("utf-8", errors="replace")
    return ""


def licenses_of(metadata: str) -> list[dict[str, Any]]:
    """CycloneDX licences from core metadata.

    The SPDX expression, else the License field when it is a name, else the classifiers;
    [] when the metadata says nothing.
    """
    message = email.parser.Parser().parsestr(metadata, headersonly=True)
    expression = (message.get("License-Expression") or "").strip()
    if expression:
        return [{"expression": expression}]
    text = (message.get("License") or "").strip()
    if text and "\n" not in text and len(text) <= 100:  # a name, not the licence's full text
        return [{"license": {"name": text}}]
    names = sorted(
        {
            c.rsplit(" :: ", 1)[-1].strip()
            for c in message.get_all("Classifier") or ()
            if c.startswith(_LICENSE_CLASSIFIER) and c.count(" :: ") >= 1
        }
        - {"OSI Approved"}
    )
    return [{"license": {"name": n}} for n in names]


@dataclass(frozen=True, kw_only=True)
class DebianFacts:
    """What the image's layers say about its Debian packages: dpkg's status, and the licences
    named in each doc folder's copyright file (a folder may link to another package's).
    """

    status: str | None
    licences: Mapping[str, tuple[str, ...]]  # doc folder name -> licence names
    links: Mapping[str, str]  # doc folder name -> the folder it links to

    def licences_of(self, package: str) -> tuple[str, ...]:
        """The licences of ``package``'s copyright file, through one doc-folder link."""
        if package in self.licences:
            return self.licences[package]
        target = self.links.get(package, "").removeprefix("/" + _DOC).strip("/")
        return self.licences.get(target, ()) if "/" not in target else ()


def _dpkg_packages(
    store: Store, result: BuildResult
) -> list[tuple[dict[str, str], tuple[str, ...]]]:
    """The installed packages of the topmost dpkg status in the system or base layers, each
    with the licences its copyright file names.
    """
    facts = debian_facts(store, result)
    packages = parse_dpkg_status(facts.status or "")
    return [
        (p, facts.licences_of(p["Package"])) for p in packages if "installed" in p.get("Status", "")
    ]


def debian_facts(store: Store, result: BuildResult) -> DebianFacts:
    """The Debian facts of the base and system layers, read once per set of layer digests.

    Layers are content-addressed, so what was read from them stays true: a rebuild that keeps
    them (a code or dependency change, an unchanged image) takes the facts from the build
    cache instead of decompressing the base again (~1.3 s for a Debian base).
    """
    layers = tuple(x.digest for x in result.layers if x.role in (None, "system"))
    key = hashlib.sha256(jsonc.dumps([_FACTS_RECIPE, *layers])).hexdigest()
    path = BuildCache(store).root / f"debian-facts-{key}"
    try:
        doc = jsonc.loads(path.read_bytes(), what="cached Debian facts")
        return DebianFacts(
            status=doc["status"],
            licences={k: tuple(v) for k, v in doc["licences"].items()},
            links=dict(doc["links"]),
        )
    except (OSError, ImageError, KeyError, TypeError, AttributeError):
        pass  # not cached yet, or unreadable: read the layers
    facts = read_debian_facts(store, layers)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, jsonc.dumps(
        {"status": facts.status, "licences": dict(facts.licences), "links": dict(facts.links)}
    ), durable=False)  # fmt: skip
    return facts


def read_debian_facts(store: Store, layers: tuple[str, ...]) -> DebianFacts:
    """Read ``layers`` (base and system), bottom to top (an upper layer's file wins), once each.

    Every read is capped: the status file by ``STATUS_CAP`` (an error beyond it: a partial
    list would be a wrong SBOM), each copyright file's head by ``COPYRIGHT_CAP`` (DEP-5's
    ``Files`` paragraphs, which name the licences, come before the licence texts).
    """
    status: str | None = None
    licences: dict[str, tuple[str, ...]] = {}
    links: dict[str, str] = {}
    for digest in layers:
        with store.blob_path(digest).open("rb") as raw:
            reader = stored_layer(raw)
            for member in reader:
                name = member.name.removeprefix("./")
                folder, _, leaf = name.removeprefix(_DOC).partition("/")
                if name == _DPKG_STATUS and member.type == "file":
                    if member.size > STATUS_CAP:
                        msg = (
                            f"the dpkg status file of layer {digest} is {member.size} "
                            f"bytes, over the SBOM's limit of {STATUS_CAP}"
                        )
                        raise BuildError(msg, hint="check the base image's /var/lib/dpkg/status")
                    status = _head(reader, STATUS_CAP)
                elif not name.startswith(_DOC) or "/" in leaf:
                    continue
                elif leaf == "copyright" and member.type == "file":
                    licences[folder] = dep5_licences(_head(reader, COPYRIGHT_CAP))
                elif not leaf and member.type == "symlink":
                    links[folder] = member.linkname
    return DebianFacts(status=status, licences=licences, links=links)


def _head(reader: TarReader, cap: int) -> str:
    """The current member's first ``cap`` bytes as text; the reader skips the rest."""
    parts: list[bytes] = []
    size = 0
    for chunk in reader.read_data():
        parts.append(chunk)
        size += len(chunk)
        if size >= cap:
            break
    return b"".join(parts)[:cap].decode("utf-8", errors="replace")


def dep5_licences(text: str) -> tuple[str, ...]:
    """The licence names of a machine-readable (DEP-5) copyright file's ``License:`` fields,
    sorted and deduplicated; () when it has none (a free-form file).
    """
    names = set()
    for line in text.splitlines():
        if line[:8].lower() == "license:":
            name = line[8:].strip()
            if name and len(name) <= _MAX_LICENCE_NAME:
                names.add(name)
    return tuple(sorted(names))[:_MAX_LICENCES]


def parse_dpkg_status(text: str) -> list[dict[str, str]]:
    """The stanzas of dpkg's status file, one dict each (continuation lines dropped)."""
    packages = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            packages.append(fields)
    return packages


def _debian_component(fields: Mapping[str, str], licences: tuple[str, ...]) -> dict[str, Any]:
    name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture")
    purl = f"pkg:deb/debian/{name}@{quote(version, safe=_PURL_SAFE)}"
    purl += f"?arch={arch}" if arch else ""
    component: dict[str, Any] = {
        "type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl,
    }  # fmt: skip
    if licences:
        component["licenses"] = [{"license": {"name": n}} for n in licences]
    return component
