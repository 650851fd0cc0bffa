"""Lock assembly: pins, their files and why each is there, the base and the target -> ``Lock``."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mlpack.lock import torch as torch_mod
from mlpack.lock.files import choose_file, is_sdist, name_files
from mlpack.lock.indexes import redact, strip_userinfo
from mlpack.lock.lockdata import (
    BuildWhere,
    Lock,
    LockedFile,
    LockedPackage,
    PackageKind,
    SystemPackagePin,
    Target,
)
from mlpack.lock.vcs import is_vcs, relative_file_url
from mlpack.paths import CONFIG_FILE, cache_folder
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlpack.lock.inputs import LockInputs
    from mlpack.lock.lockdata import DroppedPackage
    from mlpack.lock.resolvers import Pin
    from mlpack.vocabulary import BaseImage, PackageSpec, ResolverName


def assemble(
    inputs: LockInputs,
    *,
    resolver: ResolverName,
    base: BaseImage,
    packages: tuple[LockedPackage, ...],
    pins: tuple[Pin, ...],
    system: tuple[SystemPackagePin, ...] = (),
    notes: tuple[str, ...] = (),
    dropped: tuple[DroppedPackage, ...] = (),
) -> Lock:
    """The lock for ``inputs``: secrets keep no default, the torch build is decided here."""
    decision = torch_mod.decide(
        pins,
        cuda=inputs.cuda,
        variant=inputs.torch_variant,
        indexes=inputs.indexes,
        platform=inputs.platform,
    )
    if decision is not None and decision.variant != "cpu" and not inputs.cuda:
        reporter().notice(f"torch: {decision.reason}")
    public = inputs.indexes.public()
    return Lock(
        input_hash=inputs.digest(),
        resolver=resolver,
        target=Target(python=base.python_full, platform=inputs.platform),
        base=base,
        index_url=public.index_url,
        extra_index_urls=public.extra_index_urls,
        packages=packages,
        system_packages=system,
        env=tuple(replace(e, default=None) if e.secret else e for e in inputs.env),
        torch=decision,
        notes=notes,
        dropped=dropped,
    )


def _sources(requirements: tuple[PackageSpec, ...]) -> Mapping[str, tuple[str, ...]]:
    by_name: dict[str, list[str]] = {}
    for r in requirements:
        by_name.setdefault(r.name, [])
        if r.source not in by_name[r.name]:
            by_name[r.name].append(r.source)
    return {k: tuple(v) for k, v in by_name.items()}


def _via(pin: Pin, sources: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The inputs that asked for ``pin`` first, then ``pkg:`` the packages that pulled it in."""
    via: list[str] = []
    for item in pin.via:
        if item == "-r":
            via.extend(sources.get(pin.name, (CONFIG_FILE,)))
        elif f"pkg:{item}" not in via:
            via.append(f"pkg:{item}")
    if pin.name in sources and not any(v in via for v in sources[pin.name]):
        via[:0] = sources[pin.name]
    return tuple(via)


def _direct(
    pin: Pin, url: str, via: tuple[str, ...], *, commit: str | None, root: Path
) -> LockedPackage:
    """A VCS, path or URL requirement: built in the image, never from the index."""
    kind: PackageKind = "vcs" if is_vcs(url) else ("path" if url.startswith("file:") else "url")
    return LockedPackage(
        name=pin.name,
        version=pin.version,
        kind=kind,
        hashes=pin.hashes,
        via=via,
        url=relative_file_url(url, root) if kind == "path" else strip_userinfo(url),
        commit=commit,
        build="image",
    )


def locked_packages(
    pins: tuple[Pin, ...],
    *,
    requirements: tuple[PackageSpec, ...],
    commits: Mapping[str, str],
    inputs: LockInputs,
    base: BaseImage,
    root: Path,
    home: Path,
    ca_cert: Path | None,
) -> tuple[LockedPackage, ...]:
    """Each pin with its files (named by the resolver, else by the index) and where it builds."""
    sources = _sources(requirements)
    listed = name_files(
        tuple(
            (p.name, p.version, p.hashes)
            for p in pins
            if p.url is None and p.hashes and not p.files
        ),
        indexes=inputs.indexes,
        cache_root=cache_folder("index-files", home=home),
        ca_cert=ca_cert,
    )
    packages = []
    for pin in pins:
        via = _via(pin, sources)
        if pin.url is not None:
            packages.append(
                _direct(pin, redact(pin.url), via, commit=commits.get(pin.name), root=root)
            )
            continue
        files = tuple(LockedFile(name=n, sha256=h) for n, h in pin.files) or tuple(
            LockedFile(name=f.filename, sha256=f.sha256)
            for f in listed.get(pin.name, ("", ()))[1]
            if f.sha256
        )
        chosen = choose_file(tuple(f.name for f in files), base.python_full, inputs.platform)
        build: BuildWhere = "image" if chosen is not None and is_sdist(chosen) else "wheel"
        packages.append(
            LockedPackage(
                name=pin.name,
                version=pin.version,
                hashes=pin.hashes,
                files=files,
                via=via,
                build=build,
            )
        )
    return tuple(packages)
