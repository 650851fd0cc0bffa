"""Registry client against a tiny local HTTP server: odd statuses, auth flows, resume, bad data."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from mlpack.errors import ImageError
from mlpack.oci import jsonc, mediatypes
from mlpack.oci.documents import Platform
from mlpack.oci.registry import pull
from mlpack.oci.registry_config import RegistryOptions
from mlpack.oci.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Serves one image; tests tweak ``status``, ``blobs``, ``manifests`` and ``hooks``."""

    def __init__(self) -> None:
        self.layer = b"layer-bytes-" * 100_000
        self.config = jsonc.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [_digest(b"x")]},
            }
        )
        self.manifest = jsonc.dumps(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {
                    "mediaType": mediatypes.OCI_CONFIG,
                    "digest": _digest(self.config),
                    "size": len(self.config),
                },
                "layers": [
                    {
                        "mediaType": mediatypes.OCI_LAYER_GZIP,
                        "digest": _digest(self.layer),
                        "size": len(self.layer),
                    }
                ],
            }
        )
        self.blobs: dict[str, bytes] = {
            _digest(self.layer): self.layer,
            _digest(self.config): self.config,
        }
        self.manifests: dict[str, tuple[bytes, str]] = {
            "1": (self.manifest, mediatypes.OCI_MANIFEST),
            _digest(self.manifest): (self.manifest, mediatypes.OCI_MANIFEST),
        }
        self.status: int | None = None
        self.probe_status = 200  # of GET /v2/
        self.auth: Callable[[BaseHTTPRequestHandler], bool] | None = None
        self.challenge = ""
        self.drop_first_blob_at: int | None = None
        self.ranges: list[str] = []
        self.requests: list[str] = []
        self.tokens: list[str] = []
        self.issue: list[str] = []


def _handler(reg: FakeRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(
            self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            reg.requests.append(self.path)
            if self.path.startswith("/token"):
                reg.tokens.append(self.path)
                # Hand out the queued tokens in turn; the last one keeps being issued.
                token = reg.issue.pop(0) if len(reg.issue) > 1 else (reg.issue or ["tok"])[0]
                self._send(200, json.dumps({"token": token}).encode())
                return
            if reg.auth is not None and not reg.auth(self):
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}',
                           {"WWW-Authenticate": reg.challenge})  # fmt: skip
                return
            if self.path == "/v2/":
                self._send(reg.probe_status, b"{}")
                return
            if reg.status is not None:
                self._send(reg.status, b'{"errors":[{"code":"X","message":"nope"}]}')
                return
            _, _, repo_rest = self.path.partition("/v2/")
            if "/manifests/" in repo_rest:
                ref = repo_rest.rsplit("/manifests/", 1)[1]
                if ref not in reg.manifests:
                    self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}')
                    return
                body, kind = reg.manifests[ref]
                self._send(200, body, {"Content-Type": kind})
                return
            digest = repo_rest.rsplit("/blobs/", 1)[1]
            data = reg.blobs.get(digest)
            if data is None:
                self._send(404)
                return
            start = 0
            rng = self.headers.get("Range")
            if rng:
                reg.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").rstrip("-"))
            if reg.drop_first_blob_at is not None and digest == _digest(reg.layer):
                cut = reg.drop_first_blob_at
                reg.drop_first_blob_at = None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            if start:
                self._send(
                    206,
                    data[start:],
                    {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"},
                )
            else:
                self._send(200, data)

        do_HEAD = do_GET

    return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeRegistry, str]]:
    reg = FakeRegistry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(reg))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield reg, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def _consistent(store: Store) -> None:
    assert store.check().ok
    assert not list((store.root / "blobs" / "sha256").glob("*.partial"))


def test_pull_happy_path_verifies_digests(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    result = pull(f"{addr}/lib/app:1", store)
    assert result.digest == _digest(reg.manifest)
    assert store.blob_path(_digest(reg.layer)).read_bytes() == reg.layer
    assert store.resolve(f"{addr}/lib/app:1") == _digest(reg.manifest)
    _consistent(store)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "refused the credentials"),
        (403, "access denied"),
        (404, "not found"),
        (429, "rate-limiting"),
        (500, "failed with HTTP 500"),
        (503, "failed with HTTP 503"),
    ],
)
def test_odd_statuses_give_one_clear_error(
    fake: tuple[FakeRegistry, str], store: Store, status: int, words: str
) -> None:
    reg, addr = fake
    reg.status = status
    with pytest.raises(ImageError) as info:
        pull(f"{addr}/lib/app:1", store)
    assert words in info.value.message
    assert info.value.hint
    _consistent(store)
    assert store.images() == ()


def test_unknown_tag(fake: tuple[FakeRegistry, str], store: Store) -> None:
    _, addr = fake
    with pytest.raises(ImageError, match="not found") as info:
        pull(f"{addr}/lib/app:missing", store)
    assert "manifest lib/app:missing:" in info.value.message


def test_unknown_digest_is_named_with_an_at_sign(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    _, addr = fake
    digest = "sha256:" + "0" * 64
    with pytest.raises(ImageError, match="not found") as info:
        pull(f"{addr}/lib/app@{digest}", store)
    assert f"manifest lib/app@{digest}:" in info.value.message


def test_corrupted_blob_is_rejected_and_not_kept(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    reg, addr = fake
    reg.blobs[_digest(reg.layer)] = b"X" + reg.layer[1:]
    with pytest.raises(ImageError, match="failed verification"):
        pull(f"{addr}/lib/app:1", store)
    assert not store.has_blob(_digest(reg.layer))
    assert not store.partial_path(_digest(reg.layer)).exists()
    _consistent(store)


def test_truncated_blob_is_rejected(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    reg.blobs[_digest(reg.layer)] = reg.layer[:-10]
    with pytest.raises(ImageError):
        pull(f"{addr}/lib/app:1", store)
    assert not store.has_blob(_digest(reg.layer))
    _consistent(store)


def test_oversized_blob_stops_at_declared_size(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    reg, addr = fake
    reg.blobs[_digest(reg.layer)] = reg.layer + b"more" * 1000
    with pytest.raises(ImageError, match="larger than"):
        pull(f"{addr}/lib/app:1", store)
    _consistent(store)


def test_size_cap(fake: tuple[FakeRegistry, str], store: Store) -> None:
    _, addr = fake
    with pytest.raises(ImageError, match="cap"):
        pull(f"{addr}/lib/app:1", store, options=RegistryOptions(max_blob_size=100))


def test_wrong_digest_reference(fake: tuple[FakeRegistry, str], store: Store) -> None:
    _, addr = fake
    with pytest.raises(ImageError, match="not found"):
        pull(f"{addr}/lib/app@sha256:{'0' * 64}", store)


def test_manifest_digest_mismatch(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    wrong = f"sha256:{'1' * 64}"
    reg.manifests[wrong] = (reg.manifest, mediatypes.OCI_MANIFEST)
    with pytest.raises(ImageError, match="served manifest"):
        pull(f"{addr}/lib/app@{wrong}", store)


def test_unsupported_media_type(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    doc = json.loads(reg.manifest)
    doc["layers"][0]["mediaType"] = "application/vnd.example.weird"
    reg.manifests["1"] = (jsonc.dumps(doc), mediatypes.OCI_MANIFEST)
    with pytest.raises(ImageError, match="unsupported layer media type"):
        pull(f"{addr}/lib/app:1", store)
    _consistent(store)


def test_index_platform_selection_and_missing_platform(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    reg, addr = fake
    index = jsonc.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": f"sha256:{'2' * 64}",
                    "size": 10,
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                },
                {
                    "mediaType": mediatypes.OCI_MANIFEST,
                    "digest": _digest(reg.manifest),
                    "size": len(reg.manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    )
    reg.manifests["multi"] = (index, mediatypes.OCI_INDEX)
    result = pull(f"{addr}/lib/app:multi", store)
    assert result.digest == _digest(reg.manifest)
    assert result.index_digest == _digest(index)
    with pytest.raises(ImageError, match="no manifest for platform linux/s390x") as info:
        pull(
            f"{addr}/lib/app:multi",
            store,
            options=RegistryOptions(platform=Platform.parse("linux/s390x")),
        )
    assert "linux/arm64/v8" in info.value.hint


def test_range_resume_after_dropped_connection(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    reg, addr = fake
    reg.drop_first_blob_at = 900_000
    pull(f"{addr}/lib/app:1", store)
    assert reg.ranges, "the second attempt must resume with a Range request"
    assert reg.ranges[0].startswith("bytes=")
    assert int(reg.ranges[0][6:-1]) > 0
    assert store.blob_path(_digest(reg.layer)).read_bytes() == reg.layer
    _consistent(store)


def test_bearer_token_flow(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    reg.challenge = f'Bearer realm="http://{addr}/token",service="fake",scope="x"'
    reg.auth = lambda h: h.headers.get("Authorization") == "Bearer tok"
    pull(f"{addr}/lib/app:1", store)
    assert any("scope=repository%3Alib%2Fapp%3Apull" in t for t in reg.tokens)
    assert any("service=fake" in t for t in reg.tokens)


def test_basic_auth_from_docker_config(
    fake: tuple[FakeRegistry, str], store: Store, tmp_path: Path
) -> None:
    import base64

    reg, addr = fake
    reg.challenge = 'Basic realm="fake"'
    pair = base64.b64encode(b"u:p").decode()
    reg.auth = lambda h: h.headers.get("Authorization") == f"Basic {pair}"
    with pytest.raises(ImageError, match="401") as info:
        pull(
            f"{addr}/lib/app:1",
            store,
            options=RegistryOptions(docker_config=tmp_path / "none.json"),
        )
    assert "docker login" in info.value.hint
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {addr: {"auth": pair}}}))
    pull(f"{addr}/lib/app:1", store, options=RegistryOptions(docker_config=config))


def test_plain_http_only_for_loopback_or_listed_hosts() -> None:
    from mlpack.oci.registry_client import RegistryClient

    def allowed(host: str, insecure: frozenset[str] = frozenset()) -> bool:
        return RegistryClient(host, options=RegistryOptions(insecure=insecure))._allow_http()

    assert allowed("127.0.0.1:5000")
    assert allowed("localhost:5000")
    assert allowed("[::1]:5000")
    assert not allowed("registry.example.com:5000")
    assert allowed("registry.example.com:5000", frozenset({"registry.example.com:5000"}))
    assert allowed("registry.example.com", frozenset({"registry.example.com"}))


def test_a_loopback_registry_is_asked_in_plain_http_first(
    fake: tuple[FakeRegistry, str], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No TLS attempt (and no CA bundle loaded, ~30 ms) for a local plain registry."""
    from mlpack.oci import registry_client

    def no_tls(cafile: str) -> None:
        raise AssertionError(f"a TLS context was made for {cafile}")

    monkeypatch.setattr(registry_client, "_trust", no_tls)
    reg, addr = fake
    assert pull(f"{addr}/lib/app:1", store).digest == _digest(reg.manifest)
    assert reg.requests.count("/v2/") == 1


def test_a_tls_port_answering_plain_http_is_asked_in_https(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    """A TLS server answers a plain request with a 400: that is no registry, so HTTPS is asked
    (here it fails: the fake speaks no TLS) and its error is the one reported.
    """
    reg, addr = fake
    reg.probe_status = 400
    with pytest.raises(ImageError, match=f"TLS handshake with {addr} failed"):
        pull(f"{addr}/lib/app:1", store)
    assert reg.requests == ["/v2/"]


def test_config_that_does_not_match_the_layers(
    fake: tuple[FakeRegistry, str], store: Store
) -> None:
    reg, addr = fake
    bad_config = jsonc.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    doc = json.loads(reg.manifest)
    doc["config"] = {
        "mediaType": mediatypes.OCI_CONFIG,
        "digest": _digest(bad_config),
        "size": len(bad_config),
    }
    reg.blobs[_digest(bad_config)] = bad_config
    reg.manifests["1"] = (jsonc.dumps(doc), mediatypes.OCI_MANIFEST)
    with pytest.raises(ImageError, match="diff_ids"):
        pull(f"{addr}/lib/app:1", store)
    assert store.images() == ()
    _consistent(store)


def test_docker_schema2_manifest_list(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    doc = json.loads(reg.manifest)
    doc["mediaType"] = mediatypes.DOCKER_MANIFEST
    doc["config"]["mediaType"] = mediatypes.DOCKER_CONFIG
    doc["layers"][0]["mediaType"] = mediatypes.DOCKER_LAYER_GZIP
    manifest = jsonc.dumps(doc)
    reg.manifests[_digest(manifest)] = (manifest, mediatypes.DOCKER_MANIFEST)
    listing = jsonc.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.DOCKER_MANIFEST_LIST,
            "manifests": [
                {
                    "mediaType": mediatypes.DOCKER_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        }
    )
    reg.manifests["docker"] = (listing, mediatypes.DOCKER_MANIFEST_LIST)
    result = pull(f"{addr}/lib/app:docker", store)
    assert result.digest == _digest(manifest)
    assert store.image(f"{addr}/lib/app:docker").manifest.media_type == mediatypes.DOCKER_MANIFEST
    _consistent(store)


def test_foreign_layers_are_refused(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    doc = json.loads(reg.manifest)
    doc["layers"][0]["mediaType"] = mediatypes.DOCKER_LAYER_FOREIGN
    doc["layers"][0]["urls"] = ["http://evil.example/layer"]
    reg.manifests["1"] = (jsonc.dumps(doc), mediatypes.OCI_MANIFEST)
    with pytest.raises(ImageError, match="unsupported layer media type"):
        pull(f"{addr}/lib/app:1", store)
    assert not any("evil" in r for r in reg.requests)


def test_expired_bearer_token_is_renewed(fake: tuple[FakeRegistry, str], store: Store) -> None:
    reg, addr = fake
    reg.challenge = f'Bearer realm="http://{addr}/token",service="fake"'
    reg.issue = ["old", "new"]
    seen: list[str] = []

    def check(h: BaseHTTPRequestHandler) -> bool:
        value = h.headers.get("Authorization", "")
        seen.append(value)
        # The first token works for two requests, then "expires".
        return value == "Bearer new" or (value == "Bearer old" and len(seen) <= 2)

    reg.auth = check
    pull(f"{addr}/lib/app:1", store)
    assert "Bearer new" in seen
    _consistent(store)


def test_size_cap_from_environment(
    fake: tuple[FakeRegistry, str], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, addr = fake
    monkeypatch.setenv("MLPACK_MAX_BLOB_SIZE", "100")
    with pytest.raises(ImageError, match="cap"):
        pull(f"{addr}/lib/app:1", store)
    monkeypatch.setenv("MLPACK_MAX_BLOB_SIZE", "lots")
    with pytest.raises(ImageError, match="MLPACK_MAX_BLOB_SIZE"):
        pull(f"{addr}/lib/app:1", store)
