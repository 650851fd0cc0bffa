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
import zipfile
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from mlpack import __version__
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.layer_stream import stored_layer
from mlpack.spec import WheelStep

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlpack.build.protocol import BuildResult
    from mlpack.oci.store import Store
    from mlpack.spec import ImageSpec, WheelPin

ARTIFACT_TYPE: Final = "application/vnd.cyclonedx+json"
EMPTY_CONFIG: Final = b"{}"
EMPTY_MEDIA_TYPE: Final = "application/vnd.oci.empty.v1+json"
_DPKG_STATUS: Final = "var/lib/dpkg/status"
_LICENSE_CLASSIFIER: Final = "License :: "
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
    from mlpack.oci.reference import parse as parse_reference
    from mlpack.oci.registry_client import RegistryClient
    from mlpack.oci.registry_config import RegistryOptions
    from mlpack.progress import reporter

    ref = parse_reference(target)
    client = RegistryClient(ref.registry, options=RegistryOptions())
    manifest = jsonc.loads(store.read_blob(artifact), what="manifest")
    for desc in (manifest["config"], *manifest["layers"]):
        digest, size = str(desc["digest"]), int(desc["size"])
        if client.blob_exists(ref.repository, digest):
            continue
        location = client.start_upload(ref.repository)
        if location is not None:
            client.upload_blob(ref.repository, location, store.blob_path(digest),
                               digest=digest, size=size, rep=reporter())  # fmt: skip
    return client.put_manifest(
        ref.repository, artifact, store.read_blob(artifact), mediatypes.OCI_MANIFEST
    )


def read_sbom(store: Store, image: str) -> bytes:
    """The CycloneDX document attached to ``image`` (a reference or digest) in ``store``."""
    from mlpack.errors import ImageError

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
    components += [_debian_component(fields) for fields in _dpkg_packages(store, result)]
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


def _dpkg_packages(store: Store, result: BuildResult) -> list[dict[str, str]]:
    """The installed packages of the topmost dpkg status in the system or base layers."""
    candidates = [x for x in result.layers if x.role in (None, "system")]
    for layer in reversed(candidates):
        text = _member_text(store.blob_path(layer.digest), _DPKG_STATUS)
        if text is not None:
            return [p for p in parse_dpkg_status(text) if "installed" in p.get("Status", "")]
    return []


def _member_text(blob: Path, name: str) -> str | None:
    """One regular file's text from a stored layer, streamed by mlpack's tar reader (None if absent)."""
    with blob.open("rb") as raw:
        reader = stored_layer(raw)
        for member in reader:
            if member.name.removeprefix("./") == name and member.type == "file":
                return b"".join(reader.read_data()).decode("utf-8", errors="replace")
    return None


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


def _debian_component(fields: Mapping[str, str]) -> dict[str, Any]:
    name, version, arch = fields["Package"], fields.get("Version", ""), fields.get("Architecture")
    purl = f"pkg:deb/debian/{name}@{quote(version, safe=_PURL_SAFE)}"
    purl += f"?arch={arch}" if arch else ""
    return {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}
