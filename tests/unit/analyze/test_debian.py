"""Debian packages the distributions need, named as the default base's release (Debian 13)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from packaging.utils import canonicalize_name

from mlpack.analyze import debian
from mlpack.analyze.analysis import Package, SystemPackage
from mlpack.analyze.debian import analyze_system_packages, debian13_name, spellings, system_libs


def pkg(name: str) -> Package:
    return Package(
        name=name, specifier="", source="requirements.txt:1", imports=(), optional=False,
        declared=True, used=False,
    )  # fmt: skip


def test_system_packages_are_named_as_debian_13_names_them() -> None:
    packages = (pkg("opencv-python"), pkg("scikit-learn"), pkg("lightgbm"), pkg("soundfile"))
    assert analyze_system_packages(packages) == (
        SystemPackage(name="libgl1", required_by="opencv-python"),
        SystemPackage(name="libglib2.0-0t64", required_by="opencv-python"),
        SystemPackage(name="libgomp1", required_by="lightgbm"),
        SystemPackage(name="libsndfile1", required_by="soundfile"),
    )
    assert analyze_system_packages((pkg("python-ldap"),))[0].name == "libldap2"
    assert analyze_system_packages((pkg("requests"),)) == ()


def test_a_renamed_package_has_both_spellings_either_way_round() -> None:
    assert spellings("libglib2.0-0t64") == ("libglib2.0-0t64", "libglib2.0-0")
    assert spellings("libglib2.0-0") == ("libglib2.0-0", "libglib2.0-0t64")
    assert spellings("libldap-2.5-0") == ("libldap-2.5-0", "libldap2")
    assert spellings("libgomp1") == ("libgomp1",)


def test_either_spelling_compares_as_the_debian_13_name() -> None:
    assert debian13_name("libglib2.0-0") == "libglib2.0-0t64"
    assert debian13_name("libglib2.0-0t64") == "libglib2.0-0t64"
    assert debian13_name("libgomp1") == "libgomp1"


def test_no_debian_12_name_is_left_in_the_table_of_needs() -> None:
    old_names = {spellings(new)[1] for new in ("libglib2.0-0t64", "libcurl4t64", "libldap2")}
    needed = {deb for debs in system_libs().values() for deb in debs}
    assert not needed & old_names
    assert all(debian13_name(deb) == deb for deb in needed)


def test_the_table_is_well_formed() -> None:
    """Names a Debian package may have; every rename is of a package some distribution needs.

    (That the names exist in trixie and bookworm was checked against the mirror's Packages
    indexes, see the data file's header; unit tests stay offline.)
    """
    deb_name = re.compile(r"[a-z0-9][a-z0-9+.-]+")
    table = system_libs()
    needed = {deb for debs in table.values() for deb in debs}
    assert all(canonicalize_name(dist) == dist for dist in table)
    assert all(debs and len(set(debs)) == len(debs) for debs in table.values())
    assert all(deb_name.fullmatch(deb) for deb in needed)
    renamed = {new for new in needed if spellings(new) != (new,)}
    for new in renamed:
        assert deb_name.fullmatch(spellings(new)[1])
        assert spellings(new)[1] not in needed  # the old name is never the need itself
    assert {"libaio1t64", "libzbar0t64", "libvips42t64", "libgdal36"} <= renamed
    data = tomllib.loads((Path(debian.__file__).parent / "data" / "system_libs.toml").read_text())
    assert set(data) == {"packages", "debian12"}
    assert set(data["debian12"]) == renamed  # no rename of a package nothing needs
