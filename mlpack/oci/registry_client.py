"""An HTTP session with one registry (OCI distribution API): scheme, auth challenges, calls."""

from __future__ import annotations

import functools
import re
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Final
from urllib.parse import urlencode, urljoin

import requests
import requests.adapters

from mlpack.errors import ImageError
from mlpack.oci import auth, mediatypes
from mlpack.oci.digest import sha256_digest
from mlpack.oci.reference import host_only, is_loopback
from mlpack.oci.registry_config import system_ca
from mlpack.oci.registry_errors import RegistryUnreachable, TransferInterrupted, status_error, why

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from requests.adapters import _HostParams, _PoolKwargs

    from mlpack.oci.documents import Descriptor
    from mlpack.oci.registry_config import RegistryOptions
    from mlpack.oci.store import Store
    from mlpack.progress import Reporter

MAX_MANIFEST: Final = 4 << 20
CHUNK: Final = 1 << 20
DOWNLOAD_CHUNK: Final = 256 << 10
_TIMEOUT: Final = (15, 120)
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class _TrustAdapter(requests.adapters.HTTPAdapter):
    """HTTPS with one SSLContext per CA bundle: requests loads a ``verify=`` bundle again for
    every new connection (about 30 ms of CPU for Debian's 150 roots), and a pull opens one per
    parallel layer download. ``build_connection_pool_key_attributes`` is requests' hook for it.
    """

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[_HostParams, _PoolKwargs]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if isinstance(verify, str) and "ca_certs" in pool:
            pool["ssl_context"] = _trust(pool.pop("ca_certs"))
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        """As requests does, but a bundle file stays in the shared context: the pool would
        load it into that context again for each of its connections.
        """
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]  # untyped stub
        if isinstance(verify, str) and getattr(conn, "ca_certs", None) == verify:
            conn.ca_certs = None


@functools.lru_cache(maxsize=4)
def _trust(cafile: str) -> ssl.SSLContext:
    """The context that trusts ``cafile`` only, made as requests makes its default one."""
    from urllib3.util.ssl_ import create_urllib3_context

    context = create_urllib3_context()
    context.load_verify_locations(cafile=cafile)
    return context


def manifest_ref(repo: str, selector: str) -> str:
    """``repo@sha256:...`` for a digest, ``repo:tag`` for a tag (a tag never holds a colon)."""
    return f"{repo}@{selector}" if ":" in selector else f"{repo}:{selector}"


class RegistryClient:
    """A session with one registry: scheme detection, auth challenges, and the API calls."""

    def __init__(self, registry: str, *, options: RegistryOptions) -> None:
        self.registry = registry
        self.options = options
        self.api_host = "registry-1.docker.io" if registry == "docker.io" else registry
        self._session = requests.Session()
        self._session.mount("https://", _TrustAdapter())
        # Passed on every request: a session-level `verify` loses to REQUESTS_CA_BUNDLE
        # (psf/requests#3829), which would silently drop --ca-cert.
        self._verify: str | bool = str(options.ca_cert) if options.ca_cert else system_ca()
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
                f"TLS handshake with {self.api_host} failed: {why(exc)}",
                hint="pass the registry's CA with --ca-cert, or list a plain-HTTP registry "
                "with --insecure-registry / MLPACK_INSECURE_REGISTRIES",
            )
        return RegistryUnreachable(
            f"cannot reach the registry {self.api_host}: {why(exc)}",
            hint="check the address and that the registry is running (or set a mirror)",
        )

    def base(self) -> str:
        """``https://host`` or, for loopback and listed insecure hosts that speak it, ``http://host``.

        A loopback registry is asked in plain HTTP first: a port speaks TLS or not, so the
        order only changes the cost (no CA bundle is loaded for a local plain registry, ~30 ms)
        and nothing leaves the host. Any other host is asked in HTTPS first, so that no one on
        the way can answer the plain request of a listed insecure host that speaks TLS.
        """
        if self._base is not None:
            return self._base
        loopback = is_loopback(self.api_host)
        schemes = ("http", "https") if loopback else ("https", "http")
        failure: requests.exceptions.RequestException | None = None
        for scheme in schemes if self._allow_http() else ("https",):
            try:
                resp = self._session.get(
                    f"{scheme}://{self.api_host}/v2/", timeout=_TIMEOUT, verify=self._verify
                )
            except requests.exceptions.RequestException as exc:
                failure = exc if scheme == "https" or failure is None else failure
                continue
            # Plain HTTP counts only from a registry (a TLS port answers it with a 400).
            if scheme == "https" or resp.status_code in (200, 401):
                self._base = f"{scheme}://{self.api_host}"
                self._note_challenge(resp)
                return self._base
        assert failure is not None  # HTTPS was asked and failed, else it returned
        raise self._connect_error(failure) from failure

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
            raise status_error(resp, "token request", self.api_host)
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
            error = status_error(resp, what, self.api_host)
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
            what=f"manifest {manifest_ref(repo, selector)}",
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
            stream=True,
        )
        data = b""
        for chunk in resp.iter_content(64 << 10):
            data += chunk
            if len(data) > MAX_MANIFEST:
                msg = f"the manifest of {repo}:{selector} is larger than {MAX_MANIFEST} bytes"
                raise ImageError(msg, hint="the registry served something that is not a manifest")
        digest = sha256_digest(data)
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
        # desc.urls is never fetched (foreign URLs are ignored, CVE-2021-41190): the registry serves it
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
                    raise TransferInterrupted(
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
                except TransferInterrupted:
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
            what=f"manifest {manifest_ref(repo, tag)}",
            ok=(201, 200),
            data=data,
            headers={"Content-Type": media_type},
        )
        self._sent(len(data))
        digest = sha256_digest(data)
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
