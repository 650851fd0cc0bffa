"""An OCI distribution API client: pull and push with auth, TLS, mirrors and verified blobs."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Final
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from mlpack.errors import ImageError
from mlpack.oci import auth, jsonc, mediatypes
from mlpack.oci.documents import (
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    parse_manifest_or_index,
)
from mlpack.oci.reference import Reference, host_only, is_loopback
from mlpack.oci.reference import parse as parse_reference
from mlpack.progress import Reporter, reporter

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mlpack.oci.store import Store

DEFAULT_PLATFORM: Final = Platform(os="linux", architecture="amd64")
MAX_MANIFEST: Final = 4 << 20
DEFAULT_MAX_BLOB: Final = 64 << 30
CHUNK: Final = 1 << 20
DOWNLOAD_CHUNK: Final = 256 << 10
DEFAULT_UPLOAD_CHUNK: Final = 64 << 20
_TIMEOUT: Final = (15, 120)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


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


def _with_mirror_trust(options: RegistryOptions) -> RegistryOptions:
    """An ``http://`` mirror URL is the user's explicit consent to plain HTTP for that host."""
    raw = os.environ.get("MLPACK_REGISTRY_MIRROR", "").strip()
    host = mirror()
    if host and raw.startswith("http://"):
        return replace(options, insecure=options.insecure | {host})
    return options


def _system_ca() -> str | bool:
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


class RegistryUnreachable(ImageError):
    """The registry could not be reached at all (connection, DNS or TLS failure)."""


class _Network(ImageError):
    """A transport failure mid-stream; the partial blob is kept for a Range resume."""


def _status_error(resp: requests.Response, what: str, registry: str) -> ImageError:
    code = resp.status_code
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        if errors:
            detail = f" ({errors[0].get('code', '')}: {errors[0].get('message', '')})"
    except (ValueError, AttributeError):
        pass
    if code == 401:
        return ImageError(
            f"{what}: the registry {registry} refused the credentials (401){detail}",
            hint=f"log in (docker login {registry}) or check {auth.docker_config_path()}",
        )
    if code == 403:
        return ImageError(
            f"{what}: access denied by {registry} (403){detail}",
            hint="check that your account may read (or push to) this repository",
        )
    if code == 404:
        return ImageError(
            f"{what}: not found on {registry} (404){detail}",
            hint="check the repository name and tag (mlpack images lists local images)",
        )
    if code == 429:
        return ImageError(
            f"{what}: {registry} is rate-limiting requests (429){detail}",
            hint="wait and retry, log in for a higher limit, or set MLPACK_REGISTRY_MIRROR",
        )
    if code >= 500:
        return ImageError(
            f"{what}: the registry {registry} failed with HTTP {code}{detail}",
            hint="the registry has a problem; retry later",
        )
    return ImageError(
        f"{what}: unexpected HTTP {code} from {registry}{detail}",
        hint="check the registry address; is it an OCI registry?",
    )


def _why(exc: Exception) -> str:
    """A short reason for a transport failure (requests' messages nest three exceptions deep)."""
    text = str(exc)
    for needle, reason in (
        ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed (unknown CA?)"),
        ("WRONG_VERSION_NUMBER", "the server does not speak TLS"),
        ("Name or service not known", "the host name does not resolve"),
        ("Temporary failure in name resolution", "the host name does not resolve"),
        ("NameResolutionError", "the host name does not resolve"),
        ("Connection refused", "connection refused"),
        ("ProxyError", "the proxy refused the connection"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return reason
    return text if len(text) <= 200 else text[:200] + "..."


class RegistryClient:
    """A session with one registry: scheme detection, auth challenges, and the API calls."""

    def __init__(self, registry: str, *, options: RegistryOptions) -> None:
        self.registry = registry
        self.options = options
        self.api_host = "registry-1.docker.io" if registry == "docker.io" else registry
        self._session = requests.Session()
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE
        # (psf/requests#3829), which would silently drop --ca-cert.
        self._verify: str | bool = str(options.ca_cert) if options.ca_cert else _system_ca()
        self._session.headers["User-Agent"] = "mlpack"
        self._base: str | None = None
        self._challenge: tuple[str, dict[str, str]] | None = None
        self._tokens: dict[str, str] = {}
        self._creds: auth.Credentials | None = None
        self._creds_loaded = False
        self._lock = threading.Lock()
        self.bytes_sent = 0

    # -- connection ---------------------------------------------------------------------------

    def _allow_http(self) -> bool:
        host = host_only(self.api_host)
        return (
            is_loopback(self.api_host)
            or self.api_host in self.options.insecure
            or host in self.options.insecure
        )

    def _connect_error(self, exc: Exception) -> ImageError:
        if isinstance(exc, requests.exceptions.SSLError):
            return RegistryUnreachable(
                f"TLS handshake with {self.api_host} failed: {_why(exc)}",
                hint="pass the registry's CA with --ca-cert, or list a plain-HTTP registry "
                "with --insecure-registry / MLPACK_INSECURE_REGISTRIES",
            )
        return RegistryUnreachable(
            f"cannot reach the registry {self.api_host}: {_why(exc)}",
            hint="check the address and that the registry is running (or set a mirror)",
        )

    def base(self) -> str:
        """``https://host`` or, for loopback and listed insecure hosts that speak it, ``http://host``."""
        if self._base is not None:
            return self._base
        try:
            resp = self._session.get(
                f"https://{self.api_host}/v2/", timeout=_TIMEOUT, verify=self._verify
            )
        except requests.exceptions.RequestException as exc:
            if not self._allow_http():
                raise self._connect_error(exc) from exc
            try:
                resp = self._session.get(f"http://{self.api_host}/v2/", timeout=_TIMEOUT)
            except requests.exceptions.RequestException as exc2:
                raise self._connect_error(exc) from exc2
            if resp.status_code not in (200, 401):
                raise self._connect_error(exc) from None
            self._base = f"http://{self.api_host}"
        else:
            self._base = f"https://{self.api_host}"
        self._note_challenge(resp)
        return self._base

    def _note_challenge(self, resp: requests.Response) -> tuple[str, dict[str, str]] | None:
        header = resp.headers.get("WWW-Authenticate", "")
        if resp.status_code == 401 and header:
            scheme, _, params = header.partition(" ")
            self._challenge = (scheme.lower(), dict(_CHALLENGE.findall(params)))
        return self._challenge

    def _credentials(self) -> auth.Credentials | None:
        if not self._creds_loaded:
            self._creds = auth.lookup(self.registry, config=self.options.docker_config)
            self._creds_loaded = True
        return self._creds

    def _token(self, scope: str) -> str:
        with self._lock:
            if scope in self._tokens:
                return self._tokens[scope]
        assert self._challenge is not None
        params = self._challenge[1]
        realm = params.get("realm")
        if not realm:
            msg = f"{self.api_host} asked for a bearer token without a realm"
            raise ImageError(msg, hint="the registry's auth setup is broken")
        query = {"scope": scope} if scope else {}
        if params.get("service"):
            query["service"] = params["service"]
        creds = self._credentials()
        try:
            resp = self._session.get(
                realm,
                params=query,
                auth=(creds.username, creds.password) if creds else None,
                timeout=_TIMEOUT,
                verify=self._verify,
            )
        except requests.exceptions.RequestException as exc:
            msg = f"cannot fetch a token from {realm}: {exc}"
            raise ImageError(
                msg, hint="check network access to the registry's auth service"
            ) from exc
        if resp.status_code != 200:
            raise _status_error(resp, "token request", self.api_host)
        try:
            doc = resp.json()
            token = str(doc.get("token") or doc["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"the token service {realm} answered without a token"
            raise ImageError(msg, hint="the registry's auth setup is broken") from exc
        with self._lock:
            self._tokens[scope] = token
        return token

    def _auth_headers(self, scope: str) -> dict[str, str]:
        if self._challenge is None:
            return {}
        scheme, _ = self._challenge
        if scheme == "bearer":
            return {"Authorization": f"Bearer {self._token(scope)}"}
        creds = self._credentials()
        if scheme == "basic" and creds is not None:
            import base64

            pair = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        what: str,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> requests.Response:
        """Send a request, answering one auth challenge; ImageError for unexpected statuses."""
        if not url.startswith("http"):
            url = self.base() + url
        else:
            self.base()
        for attempt in range(2):
            headers = {**kwargs.pop("headers", {}), **self._auth_headers(scope)}
            try:
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    timeout=_TIMEOUT,
                    allow_redirects=True,
                    verify=self._verify,
                    **kwargs,
                )
            except requests.exceptions.RequestException as exc:
                raise self._connect_error(exc) from exc
            if resp.status_code == 401 and attempt == 0:
                known = self._challenge is not None
                challenge = self._note_challenge(resp)
                # A bearer token may have expired mid-pull (they last minutes): fetch a new one.
                retry = challenge is not None and (
                    challenge[0] == "bearer" or (not known and self._credentials() is not None)
                )
                if retry:
                    with self._lock:
                        self._tokens.pop(scope, None)
                    kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                    resp.close()
                    continue
            if resp.status_code in ok:
                return resp
            error = _status_error(resp, what, self.api_host)
            resp.close()
            if resp.status_code == 401 and self._credentials() is None:
                error.hint = f"the registry needs credentials: docker login {self.registry}, or add them to {auth.docker_config_path()}"
            raise error
        raise AssertionError  # pragma: no cover

    # -- reading --------------------------------------------------------------------------------

    def get_manifest(self, repo: str, selector: str) -> tuple[bytes, str, str]:
        """Return (bytes, media type, digest) of a manifest or index, verified when pinned."""
        resp = self.request(
            "GET",
            f"/v2/{repo}/manifests/{selector}",
            scope=f"repository:{repo}:pull",
            what=f"manifest {repo}:{selector}",
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
            stream=True,
        )
        data = b""
        for chunk in resp.iter_content(64 << 10):
            data += chunk
            if len(data) > MAX_MANIFEST:
                msg = f"the manifest of {repo}:{selector} is larger than {MAX_MANIFEST} bytes"
                raise ImageError(msg, hint="the registry served something that is not a manifest")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if selector.startswith("sha256:") and digest != selector:
            msg = f"the registry served manifest {digest} when asked for {selector}"
            raise ImageError(msg, hint="the registry or a proxy corrupted the data; retry")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type, digest

    def fetch_blob(
        self, repo: str, desc: Descriptor, store: Store, rep: Reporter, *, task: str
    ) -> int:
        """Stream a blob into the store, resuming with Range after a dropped connection."""
        if desc.size > self.options.max_blob_size:
            msg = f"blob {desc.digest} is {desc.size} bytes, over the {self.options.max_blob_size} cap"
            raise ImageError(
                msg, hint="raise the cap with MLPACK_MAX_BLOB_SIZE if the image is trusted"
            )
        if desc.urls:
            pass  # never fetched: foreign URLs are ignored (CVE-2021-41190); the registry must serve it
        fetched = 0

        def fetch(offset: int) -> tuple[int, Iterable[bytes]]:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            resp = self.request(
                "GET",
                f"/v2/{repo}/blobs/{desc.digest}",
                scope=f"repository:{repo}:pull",
                what=f"blob {desc.digest}",
                ok=(200, 206),
                headers=headers,
                stream=True,
            )
            start = offset if resp.status_code == 206 else 0
            if start:
                rep.advance(task, start)

            def chunks() -> Iterator[bytes]:
                nonlocal fetched
                try:
                    for chunk in resp.iter_content(DOWNLOAD_CHUNK):
                        fetched += len(chunk)
                        rep.advance(task, len(chunk))
                        yield chunk
                except requests.exceptions.RequestException as exc:
                    msg = f"the download of {desc.digest} broke off: {exc}"
                    raise _Network(
                        msg, hint="retry; the partial download is kept and resumed"
                    ) from exc
                finally:
                    resp.close()

            return start, chunks()

        rep.start(task, desc.size)
        try:
            for attempt in range(3):
                try:
                    store.ingest_resumable(fetch, digest=desc.digest, size=desc.size)
                    break
                except _Network:
                    if attempt == 2:
                        raise
        finally:
            rep.finish(task)
        return fetched

    # -- writing --------------------------------------------------------------------------------

    def blob_exists(self, repo: str, digest: str) -> bool:
        """HEAD the blob: never re-send what the registry has."""
        resp = self.request(
            "HEAD",
            f"/v2/{repo}/blobs/{digest}",
            scope=f"repository:{repo}:pull,push",
            what=f"blob {digest}",
            ok=(200, 404),
        )
        return resp.status_code == 200

    def start_upload(
        self, repo: str, *, mount: str | None = None, source: str | None = None
    ) -> str | None:
        """Open an upload session (or mount from ``source``); None when the mount succeeded."""
        query = f"?{urlencode({'mount': mount, 'from': source})}" if mount and source else ""
        scope = f"repository:{repo}:pull,push"
        if source:
            scope += f" repository:{source}:pull"
        resp = self.request(
            "POST",
            f"/v2/{repo}/blobs/uploads/{query}",
            scope=scope,
            what=f"upload to {repo}",
            ok=(201, 202),
        )
        if resp.status_code == 201:
            return None
        location = resp.headers.get("Location")
        if not location:
            msg = f"{self.api_host} opened an upload without a Location"
            raise ImageError(msg, hint="the registry does not follow the distribution API")
        return urljoin(self.base() + "/", location)

    def upload_blob(
        self, repo: str, location: str, path: Path, *, digest: str, size: int, rep: Reporter
    ) -> None:
        """Upload one blob monolithically, or in chunks when it is larger than the chunk size."""
        scope = f"repository:{repo}:pull,push"
        chunk_size = self.options.upload_chunk_size
        task = f"push {digest[7:19]}"
        rep.start(task, size)
        try:
            with path.open("rb") as fh:
                if size > chunk_size:
                    offset = 0
                    while offset < size:
                        data = fh.read(chunk_size)
                        resp = self.request(
                            "PATCH",
                            location,
                            scope=scope,
                            what=f"chunk of {digest}",
                            ok=(202,),
                            data=data,
                            headers={
                                "Content-Type": "application/octet-stream",
                                "Content-Range": f"{offset}-{offset + len(data) - 1}",
                                "Content-Length": str(len(data)),
                            },
                        )
                        offset += len(data)
                        self._sent(len(data))
                        rep.advance(task, len(data))
                        location = urljoin(
                            self.base() + "/", resp.headers.get("Location", location)
                        )
                    body: bytes | _Counting = b""
                else:
                    body = _Counting(fh, self, rep, task, size)
                sep = "&" if "?" in location else "?"
                self.request(
                    "PUT",
                    f"{location}{sep}{urlencode({'digest': digest})}",
                    scope=scope,
                    what=f"upload of {digest}",
                    ok=(201,),
                    data=body,
                    headers={
                        "Content-Type": "application/octet-stream",
                    },
                )
        finally:
            rep.finish(task)

    def _sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

    def put_manifest(self, repo: str, tag: str, data: bytes, media_type: str) -> str:
        """Upload a manifest under ``tag``; return the digest the registry computed."""
        resp = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            scope=f"repository:{repo}:pull,push",
            what=f"manifest {repo}:{tag}",
            ok=(201, 200),
            data=data,
            headers={"Content-Type": media_type},
        )
        self._sent(len(data))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != digest:
            msg = f"the registry stored the manifest as {served}, expected {digest}"
            raise ImageError(msg, hint="the registry rewrote the manifest; try another registry")
        return digest


class _Counting:
    """A file wrapper that counts what requests reads (to report progress and bytes sent)."""

    def __init__(
        self, fh: BinaryIO, client: RegistryClient, rep: Reporter, task: str, size: int
    ) -> None:
        self._fh = fh
        self._size = size
        self._client = client
        self._rep = rep
        self._task = task

    def read(self, n: int = -1) -> bytes:
        # http.client asks for 8 KiB blocks; larger reads cut syscalls and progress callbacks,
        # and it sends whatever a read returns.
        data = self._fh.read(max(n, CHUNK))
        if data:
            self._client._sent(len(data))
            self._rep.advance(self._task, len(data))
        return data

    def __len__(self) -> int:
        # requests takes Content-Length from len(); without it it would send chunked encoding.
        return self._size

    def __iter__(self) -> Iterator[bytes]:
        while data := self.read(CHUNK):
            yield data


def _origins_path(store: Store, digest: str) -> Path:
    return store.root / "origins" / digest.removeprefix("sha256:")


def _record_origin(store: Store, digest: str, repo_name: str) -> None:
    """Remember which repositories hold a blob, for cross-repository mounts on push."""
    path = _origins_path(store, digest)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = set(path.read_text().split()) if path.exists() else set()
        if repo_name not in known:
            with path.open("a") as fh:
                fh.write(repo_name + "\n")
    except OSError:
        pass  # only an optimisation


def _origins(store: Store, digest: str) -> tuple[str, ...]:
    try:
        return tuple(_origins_path(store, digest).read_text().split())
    except OSError:
        return ()


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
            _record_origin(store, d.digest, ref.name)
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
        options = _with_mirror_trust(options)
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
    options = options or RegistryOptions()
    ref = parse_reference(target)
    stored = store.image(image)
    client = RegistryClient(ref.registry, options=options)
    repo = ref.repository
    rep = reporter()
    uploaded = skipped = mounted = 0
    for desc in (*stored.manifest.layers, stored.manifest.config):
        if client.blob_exists(repo, desc.digest):
            skipped += 1
            continue
        location = None
        for origin in _origins(store, desc.digest):
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
        _record_origin(store, desc.digest, ref.name)
    data = store.read_blob(stored.digest)
    digest = client.put_manifest(
        repo, ref.selector if ref.digest is None else ref.digest, data, stored.manifest.media_type
    )
    return PushResult(
        reference=str(ref),
        digest=digest,
        blobs_uploaded=uploaded,
        blobs_skipped=skipped,
        blobs_mounted=mounted,
        bytes_sent=client.bytes_sent,
    )


def resolve_digest(text: str, *, options: RegistryOptions | None = None) -> str:
    """Resolve a reference to its platform manifest digest without pulling any blob."""
    options = options or RegistryOptions()
    ref = parse_reference(text)
    mirror_host = mirror()
    if ref.registry == "docker.io" and mirror_host:
        options = _with_mirror_trust(options)
        ref = ref.with_registry(mirror_host)
    client = RegistryClient(ref.registry, options=options)
    data, media_type, digest = client.get_manifest(ref.repository, ref.selector)
    document = parse_manifest_or_index(data, media_type or None)
    if isinstance(document, Index):
        return document.select(options.platform).digest
    return digest


def manifest_json(data: bytes) -> dict[str, Any]:
    """Parse manifest bytes as a JSON object (for callers that need raw fields)."""
    doc = jsonc.loads(data, what="manifest")
    return doc if isinstance(doc, dict) else {}
