"""Package indexes: which URLs, credentials kept out of the lock, and per-release file listings."""

from __future__ import annotations

import configparser
import functools
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlpack.errors import LockError
from mlpack.lock.stamp import pip_config_files

if TYPE_CHECKING:
    import ssl
    from pathlib import Path
    from urllib.request import Request

# ssl, urllib.request (http.client, email) and html.parser are imported where used: a lock
# whose file names come from uv never lists an index, and `mlpack lock` starts ~10 ms sooner.

PYPI: Final = "https://pypi.org/simple"
_USERINFO: Final = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_ACCEPT: Final = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


@dataclass(frozen=True, kw_only=True)
class Indexes:
    """The index URLs a resolve uses; they may carry credentials and never reach the lock."""

    index_url: str = PYPI
    extra_index_urls: tuple[str, ...] = ()
    source: str = "default"  # "mlpack.toml", "pip configuration", "PIP_INDEX_URL", "default"

    @property
    def all(self) -> tuple[str, ...]:
        """Every URL, the primary first."""
        return (self.index_url, *self.extra_index_urls)

    @property
    def machine_local(self) -> tuple[str, ...]:
        """Extra ``file://`` indexes from this machine's pip configuration (not the project's).

        They serve the resolve (a local mirror, a wheel cache) but mean nothing on another
        machine, so the lock neither records them nor goes stale when they change.
        """
        if self.source == "mlpack.toml":
            return ()
        return tuple(u for u in self.extra_index_urls if u.startswith("file:"))

    def public(self) -> Indexes:
        """The project's indexes without userinfo: what the lock and logs may show."""
        local = self.machine_local
        return Indexes(
            index_url=strip_userinfo(self.index_url),
            extra_index_urls=tuple(
                strip_userinfo(u) for u in self.extra_index_urls if u not in local
            ),
            source=self.source,
        )


def strip_userinfo(url: str) -> str:
    """``https://user:token@host/simple`` -> ``https://host/simple``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


def redact(text: str) -> str:
    """Remove userinfo from every URL in a message (tool output may echo index URLs)."""
    return _USERINFO.sub(r"\g<scheme>", text)


def pip_indexes() -> Indexes | None:
    """The indexes pip would use (environment, then pip.conf files), or None when unset."""
    env_index = os.environ.get("PIP_INDEX_URL")
    env_extra = os.environ.get("PIP_EXTRA_INDEX_URL")
    index: str | None = env_index or None
    extra: tuple[str, ...] | None = tuple(env_extra.split()) if env_extra else None
    source = "PIP_INDEX_URL" if env_index or env_extra else "pip configuration"
    if index is None or extra is None:
        parser = configparser.ConfigParser(interpolation=None)
        for path in pip_config_files():
            try:
                parser.read(path, encoding="utf-8")
            except (OSError, configparser.Error):
                continue
        for section in ("global", "install"):
            if not parser.has_section(section):
                continue
            if index is None and parser.has_option(section, "index-url"):
                index = parser.get(section, "index-url").strip() or None
            if extra is None and parser.has_option(section, "extra-index-url"):
                extra = tuple(parser.get(section, "extra-index-url").split())
    if index is None and not extra:
        return None
    return Indexes(index_url=index or PYPI, extra_index_urls=extra or (), source=source)


def choose_indexes(index_url: str | None, extra_index_urls: tuple[str, ...]) -> Indexes:
    """mlpack.toml's indexes when it names any, else pip's configuration, else PyPI."""
    if index_url or extra_index_urls:
        return Indexes(
            index_url=index_url or PYPI, extra_index_urls=extra_index_urls, source="mlpack.toml"
        )
    return pip_indexes() or Indexes()


@dataclass(frozen=True, kw_only=True)
class IndexFile:
    """One file an index lists for a project."""

    filename: str
    url: str
    sha256: str | None
    upload_time: str | None = None  # PEP 700 (JSON listings only)


def _auth_header(url: str) -> tuple[str, dict[str, str]]:
    """Split credentials off ``url`` (userinfo, else ~/.netrc) into an Authorization header."""
    parts = urllib.parse.urlsplit(url)
    clean = strip_userinfo(url)
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else ""
    if user is None and parts.hostname:
        import netrc

        try:
            entry = netrc.netrc().authenticators(parts.hostname)
        except (OSError, netrc.NetrcParseError):
            entry = None
        if entry is not None:
            user, password = entry[0], entry[2] or ""
    if user is None:
        return clean, {}
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return clean, {"Authorization": f"Basic {token}"}


@functools.lru_cache(maxsize=4)
def ssl_context(ca_cert: Path | None = None) -> ssl.SSLContext:
    """The host's trust store, plus ``ca_cert`` for a TLS-intercepting proxy: made once per
    process (loading the store costs about 30 ms of CPU; a wheelhouse fetch opens a connection
    per file) and never changed by its users.
    """
    import ssl

    context = ssl.create_default_context()
    if ca_cert is not None:
        context.load_verify_locations(cafile=str(ca_cert))
    return context


def make_request(url: str, *, accept: str = "*/*", auth_from: str | None = None) -> Request:
    """A request for ``url`` with credentials moved into a header (never left in the URL).

    ``auth_from`` (an index URL) lends its credentials to a file URL on the same host.
    """
    clean, headers = _auth_header(url)
    if not headers and auth_from is not None:
        same_host = urllib.parse.urlsplit(auth_from).hostname == urllib.parse.urlsplit(url).hostname
        if same_host:
            headers = _auth_header(auth_from)[1]
    headers["Accept"] = accept
    headers["User-Agent"] = "mlpack"
    from urllib.request import Request

    return Request(clean, headers=headers)


def _parse_listing(body: bytes, content_type: str, base_url: str) -> tuple[IndexFile, ...]:
    files: list[IndexFile] = []
    if "json" in content_type:
        import json

        data = json.loads(body)
        for f in data.get("files", []):
            url = urllib.parse.urljoin(base_url, f["url"])
            files.append(
                IndexFile(
                    filename=f["filename"],
                    url=url,
                    sha256=f.get("hashes", {}).get("sha256"),
                    upload_time=f.get("upload-time"),
                )
            )
        return tuple(files)
    from html.parser import HTMLParser

    class _Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.links: list[tuple[str, str]] = []
            self._href: str | None = None
            self._text: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self._href = dict(attrs).get("href") or None
                self._text = []

        def handle_data(self, data: str) -> None:
            if self._href is not None:
                self._text.append(data)

        def handle_endtag(self, tag: str) -> None:
            if tag == "a" and self._href is not None:
                self.links.append((self._href, "".join(self._text).strip()))
                self._href = None

    parser = _Links()
    parser.feed(body.decode("utf-8", errors="replace"))
    for href, text in parser.links:
        url = urllib.parse.urljoin(base_url, href)
        path, _, fragment = url.partition("#")
        name = text or urllib.parse.unquote(path.rsplit("/", 1)[-1])
        sha = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files.append(IndexFile(filename=name, url=path, sha256=sha))
    return tuple(files)


def list_files(
    index_url: str, project: str, *, ca_cert: Path | None = None, timeout: float = 60
) -> tuple[IndexFile, ...]:
    """The files ``index_url`` lists for ``project`` (PEP 691 JSON or PEP 503 HTML).

    An index that does not know the project gives an empty tuple; an unreachable one LockError.
    """
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    base = index_url.rstrip("/") + f"/{project}/"
    request = make_request(base, accept=_ACCEPT)
    try:
        with urlopen(request, timeout=timeout, context=ssl_context(ca_cert)) as response:
            body = response.read()
            content_type = response.headers.get("Content-Type", "")
            final = response.geturl()
    except HTTPError as exc:
        if exc.code == 404:
            return ()
        msg = f"the index {strip_userinfo(index_url)} answered HTTP {exc.code} for {project}"
        raise LockError(msg, hint="check the index URL and its credentials") from exc
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        msg = f"the index {strip_userinfo(index_url)} is unreachable: {redact(str(reason))}"
        raise LockError(
            msg, hint="check the network, the proxy settings and the index URL"
        ) from exc
    return _parse_listing(body, content_type, strip_userinfo(final))
