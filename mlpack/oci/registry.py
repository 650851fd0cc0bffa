"""Pull and push: copy an image between a registry and the store, blobs verified and resumed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlpack.errors import ImageError
from mlpack.oci.documents import ImageConfig, Index, Manifest, parse_manifest_or_index
from mlpack.oci.origins import origins, record_origin
from mlpack.oci.reference import parse as parse_reference
from mlpack.oci.registry_client import RegistryClient
from mlpack.oci.registry_config import RegistryOptions, mirror, with_mirror_trust
from mlpack.progress import reporter

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlpack.oci.documents import Descriptor
    from mlpack.oci.reference import Reference
    from mlpack.oci.store import Store
    from mlpack.progress import Reporter


@dataclass(frozen=True, kw_only=True)
class PullResult:
    """What ``pull`` stored: the manifest digest and, for multi-platform images, the index's."""

    reference: str
    digest: str
    index_digest: str | None
    layers_fetched: int
    bytes_fetched: int


@dataclass(frozen=True, kw_only=True)
class PushResult:
    """What ``push`` did: the manifest digest and how many bytes went over the wire."""

    reference: str
    digest: str
    blobs_uploaded: int
    blobs_skipped: int
    blobs_mounted: int
    bytes_sent: int


def _pull_from(
    ref: Reference, name: Reference, store: Store, options: RegistryOptions, rep: Reporter
) -> tuple[str, str | None, int, int]:
    client = RegistryClient(ref.registry, options=options)
    repo = ref.repository
    data, media_type, digest = client.get_manifest(repo, ref.selector)
    document = parse_manifest_or_index(data, media_type or None)
    index_digest = index_data = None
    if isinstance(document, Index):
        index_digest, index_data = digest, data
        entry = document.select(options.platform)
        data, media_type, digest = client.get_manifest(repo, entry.digest)
        document = parse_manifest_or_index(data, media_type or None)
        if not isinstance(document, Manifest):
            msg = f"{ref}: the index entry for {options.platform} is itself an index"
            raise ImageError(msg, hint="nested indexes are not supported")
    manifest = document
    fetched = layers = 0
    with store.writing():
        blobs = [manifest.config, *manifest.layers]
        todo = [d for d in blobs if not store.has_blob(d.digest)]
        with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
            futures = [
                pool.submit(client.fetch_blob, repo, d, store, rep, task=d.digest[7:19])
                for d in todo
            ]
            for future in futures:
                fetched += future.result()
        layers = len(todo)
        # Refuse a config that cannot describe these layers before the image gets a name.
        config = ImageConfig.parse(store.read_blob(manifest.config.digest))
        if len(config.diff_ids) != len(manifest.layers):
            msg = f"{ref}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"
            raise ImageError(msg, hint="the image is malformed; report it to its publisher")
        if not options.platform.matches(config.platform):
            rep.notice(f"{ref} is for {config.platform}, not {options.platform}")
        for d in blobs:
            record_origin(store, d.digest, ref.name)
        store.ingest((data,), digest=digest, size=len(data))
        if index_digest is not None and index_data is not None:
            store.ingest((index_data,), digest=index_digest, size=len(index_data))
            store.record_index(index_digest, digest)
        if name.tag is not None:
            store.tag(str(name.with_tag(name.tag)), digest)
        else:
            store.add_untagged(digest)
    return digest, index_digest, layers, fetched


def pull(text: str, store: Store, *, options: RegistryOptions | None = None) -> PullResult:
    """Pull ``text`` into ``store`` (via ``MLPACK_REGISTRY_MIRROR`` for Docker Hub images)."""
    options = options or RegistryOptions()
    ref = parse_reference(text)
    rep = reporter()
    mirror_host = mirror()
    if ref.registry == "docker.io" and mirror_host:
        options = with_mirror_trust(options)
        try:
            digest, index_digest, layers, fetched = _pull_from(
                ref.with_registry(mirror_host), ref, store, options, rep
            )
        except ImageError as first:
            rep.notice(f"mirror {mirror_host} failed ({first.message}); trying Docker Hub")
            try:
                digest, index_digest, layers, fetched = _pull_from(ref, ref, store, options, rep)
            except ImageError:
                raise first from None
    else:
        digest, index_digest, layers, fetched = _pull_from(ref, ref, store, options, rep)
    if ref.digest is not None and ref.digest not in (digest, index_digest):
        msg = f"{text} resolved to {digest}, not the digest asked for"
        raise ImageError(msg, hint="the registry served different content; check the reference")
    return PullResult(
        reference=str(ref),
        digest=digest,
        index_digest=index_digest,
        layers_fetched=layers,
        bytes_fetched=fetched,
    )


def push(
    store: Store, image: str, target: str, *, options: RegistryOptions | None = None
) -> PushResult:
    """Push the stored ``image`` to ``target``, skipping and mounting blobs the registry has."""
    stored = store.image(image)
    blobs = (*stored.manifest.layers, stored.manifest.config)
    return push_manifest(
        store, stored.digest, target, blobs, media_type=stored.manifest.media_type, options=options
    )


def push_manifest(
    store: Store,
    digest: str,
    target: str,
    blobs: Sequence[Descriptor],
    *,
    media_type: str,
    options: RegistryOptions | None = None,
    by_digest: bool = False,
) -> PushResult:
    """Push the stored manifest ``digest`` and the ``blobs`` it names to ``target``'s repository,
    under ``target``'s tag, or with ``by_digest`` under its digest alone (an artifact, e.g. an
    SBOM, that a registry lists by its ``subject``).
    """
    options = options or RegistryOptions()
    ref = parse_reference(target)
    client = RegistryClient(ref.registry, options=options)
    repo = ref.repository
    rep = reporter()
    uploaded = skipped = mounted = 0
    for desc in blobs:
        if client.blob_exists(repo, desc.digest):
            skipped += 1
            continue
        location = None
        for origin in origins(store, desc.digest):
            origin_ref = parse_reference(origin, default_tag=None)
            if origin_ref.registry != ref.registry or origin_ref.repository == repo:
                continue
            location = client.start_upload(repo, mount=desc.digest, source=origin_ref.repository)
            break
        else:
            location = client.start_upload(repo)
        if location is None:
            mounted += 1
        else:
            client.upload_blob(
                repo,
                location,
                store.blob_path(desc.digest),
                digest=desc.digest,
                size=desc.size,
                rep=rep,
            )
            uploaded += 1
        record_origin(store, desc.digest, ref.name)
    selector = digest if by_digest else ref.digest or ref.selector
    pushed = client.put_manifest(repo, selector, store.read_blob(digest), media_type)
    return PushResult(
        reference=str(ref),
        digest=pushed,
        blobs_uploaded=uploaded,
        blobs_skipped=skipped,
        blobs_mounted=mounted,
        bytes_sent=client.bytes_sent,
    )
