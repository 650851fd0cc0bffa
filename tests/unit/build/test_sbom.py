"""The SBOM: CycloneDX 1.5 of the image's Python and Debian packages, attached as a referrer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from mlpack.build import sbom
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.build.sbom import (
    ARTIFACT_TYPE,
    COPYRIGHT_CAP,
    attach_sbom,
    dep5_licences,
    licenses_of,
    parse_dpkg_status,
    read_sbom,
    sbom_document,
)
from mlpack.errors import BuildError, ImageError
from mlpack.oci import jsonc
from mlpack.oci.store import Store
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import BuildResult
    from mlpack.spec import ImageSpec

TAG = "localhost/demo:sbom"
STATUS = (
    "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.36-9+deb12u4\n"
    "Description: GNU C Library\n shared libraries\n\n"
    "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"
    "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\n"
)


# A machine-readable (DEP-5) copyright file, as libc6 ships one: licences in Files paragraphs,
# their texts in standalone License paragraphs at the end.
LIBC6_COPYRIGHT = (
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    "Files: *\nCopyright: 1991-2023 Free Software Foundation, Inc.\nLicense: LGPL-2.1+\n\n"
    "Files: debian/*\nCopyright: 1998-2023 Debian\nLicense: GPL-2+\n\n"
    "License: LGPL-2.1+\n This library is free software...\n"
)
DOCS = {
    "usr/share/doc/libc6/copyright": LIBC6_COPYRIGHT,
    # tzdata's folder links to another package's, as Debian's multiarch libraries do.
    "usr/share/doc/tzdata-legal/copyright": "Format: x\n\nFiles: *\nLicense: public-domain\n",
}


def built(
    tmp: Path, *, files: dict[str, str] | None = None
) -> tuple[Store, BuildResult, ImageSpec, dict[str, Path]]:
    store = Store(tmp / "store")
    wheels_dir = tmp / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    pin = make_wheel(wheels_dir, metadata="License-Expression: MIT\n")
    path = wheels_dir / pin.filename
    base = make_base(
        store,
        tmp,
        files={"var/lib/dpkg/status": STATUS, **DOCS, **(files or {})},
        links={"usr/share/doc/tzdata": "tzdata-legal"},
    )
    wheels = {pin.sha256: path}
    spec = make_spec(base, (pin,))
    result = EmbeddedBuilder(store, wheels=wheels).build(
        spec, context=make_project(tmp / "proj"), tag=TAG
    )
    return store, result, spec, wheels


def test_the_sbom_lists_python_and_debian_packages_with_hashes_and_licences(
    tmp_path: Path,
) -> None:
    store, result, spec, wheels = built(tmp_path)
    attach_sbom(store, result, spec, wheels)
    doc = json.loads(read_sbom(store, TAG))
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.5"
    assert "serialNumber" not in doc
    assert "timestamp" not in doc["metadata"]
    assert doc["metadata"]["component"]["version"] == result.digest
    by_purl = {c["purl"]: c for c in doc["components"]}
    hello = by_purl["pkg:pypi/hello@1.0"]
    assert hello["hashes"] == [{"alg": "SHA-256", "content": spec.steps[1].wheels[0].sha256}]  # type: ignore[union-attr]
    assert hello["licenses"] == [{"expression": "MIT"}]
    libc6 = by_purl["pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64"]
    assert libc6["licenses"] == [
        {"license": {"name": "GPL-2+"}},
        {"license": {"name": "LGPL-2.1+"}},
    ]
    tzdata = by_purl["pkg:deb/debian/tzdata@2024a-0%2Bdeb12u1?arch=all"]
    assert tzdata["licenses"] == [{"license": {"name": "public-domain"}}]  # through the link
    assert not any("gone" in purl for purl in by_purl)  # deinstalled: not in the image


def test_the_artifact_refers_to_the_image_and_survives_prune(tmp_path: Path) -> None:
    store, result, spec, wheels = built(tmp_path)
    digest = attach_sbom(store, result, spec, wheels)
    manifest = jsonc.loads(store.read_blob(digest), what="manifest")
    assert manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["subject"]["digest"] == result.digest
    assert manifest["layers"][0]["mediaType"] == ARTIFACT_TYPE
    listed = {x.digest for x in store.images()}
    assert result.digest in listed
    assert digest not in listed  # a referrer, not an image
    store.prune()
    assert store.has_blob(digest)
    assert json.loads(read_sbom(store, result.digest))["components"]
    store.remove(TAG)
    store.prune()
    assert not store.has_blob(digest)  # it goes with its image
    assert store.check().ok


def test_the_sbom_is_deterministic(tmp_path: Path) -> None:
    store, result, spec, wheels = built(tmp_path / "a")
    one = attach_sbom(store, result, spec, wheels)
    store2, result2, spec2, wheels2 = built(tmp_path / "b")
    assert attach_sbom(store2, result2, spec2, wheels2) == one
    assert attach_sbom(store, result, spec, wheels) == one  # attaching again: no duplicate
    assert store.referrers(result.digest) == (one,)


def test_an_image_without_an_sbom_says_so(tmp_path: Path) -> None:
    store, _, _, _ = built(tmp_path)
    with pytest.raises(ImageError, match="no SBOM"):
        read_sbom(store, TAG)


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("License-Expression: Apache-2.0 OR MIT\n", [{"expression": "Apache-2.0 OR MIT"}]),
        ("License: BSD-3-Clause\n", [{"license": {"name": "BSD-3-Clause"}}]),
        (
            (
                "License: Copyright (c) ...\n        Permission is hereby granted\n"
                "Classifier: License :: OSI Approved :: MIT License\n"
            ),
            [{"license": {"name": "MIT License"}}],
        ),
        ("Classifier: Programming Language :: Python\n", []),
    ],
)
def test_licences_come_from_the_expression_the_field_or_the_classifiers(
    metadata: str, expected: list[dict[str, object]]
) -> None:
    assert licenses_of(f"Metadata-Version: 2.1\nName: x\n{metadata}") == expected


def test_dpkg_status_stanzas() -> None:
    packages = parse_dpkg_status(STATUS)
    assert [p["Package"] for p in packages] == ["libc6", "gone", "tzdata"]
    assert packages[0]["Description"] == "GNU C Library"


def test_only_the_head_of_a_copyright_file_is_read(tmp_path: Path) -> None:
    huge = "Files: *\nLicense: early\n\n" + "x" * (2 * COPYRIGHT_CAP) + "\nLicense: late\n"
    store, result, spec, wheels = built(tmp_path, files={"usr/share/doc/libc6/copyright": huge})
    doc = sbom_document(store, result, spec, wheels)
    libc6 = next(c for c in doc["components"] if c["name"] == "libc6")
    assert libc6["licenses"] == [{"license": {"name": "early"}}]


def test_a_dpkg_status_over_the_cap_is_an_error_not_a_partial_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, result, spec, wheels = built(tmp_path)
    monkeypatch.setattr(sbom, "STATUS_CAP", len(STATUS) - 1)
    with pytest.raises(BuildError, match="dpkg status file of layer sha256:"):
        sbom_document(store, result, spec, wheels)


def test_dep5_licence_fields() -> None:
    assert dep5_licences(LIBC6_COPYRIGHT) == ("GPL-2+", "LGPL-2.1+")
    assert dep5_licences("This package was debianized by ...\nSee /usr/share/common-licenses") == ()
    assert dep5_licences("License: " + "x" * 500 + "\n") == ()  # a name, not a text


def test_debian_facts_are_read_from_the_layers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild that keeps the base and system layers does not decompress them again."""
    store, result, spec, wheels = built(tmp_path)
    first = sbom_document(store, result, spec, wheels)
    reads: list[tuple[str, ...]] = []
    real = sbom.read_debian_facts

    def counting(store: Store, layers: tuple[str, ...]) -> sbom.DebianFacts:
        reads.append(layers)
        return real(store, layers)

    monkeypatch.setattr(sbom, "read_debian_facts", counting)
    assert sbom_document(store, result, spec, wheels) == first
    assert reads == []  # the cached facts, keyed by the layers' digests
    for entry in (store.root / "build-cache").glob("debian-facts-*"):
        entry.write_bytes(b"{not json")
    assert sbom_document(store, result, spec, wheels) == first  # a torn entry is re-read
    assert len(reads) == 1
