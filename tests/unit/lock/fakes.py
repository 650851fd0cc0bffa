"""Fakes against the lock's Protocols, tiny wheels and a local PEP 503 index for lock tests."""

from __future__ import annotations

import base64
import hashlib
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlpack.errors import ImageError
from mlpack.lock.resolvers import Pin, ResolveRequest
from mlpack.lock.runner import Completed
from mlpack.vocabulary import BaseImage, Platform, ResolverName

PY_FULL = {"3.9": "3.9.2", "3.10": "3.10.13", "3.11": "3.11.2", "3.12": "3.12.8", "3.13": "3.13.1"}


class FakeBase:
    """A base resolver that knows a few Python versions and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.platforms: list[Platform] = []

    def resolve(
        self, python: str, *, explicit: str | None, platform: Platform = "linux/amd64"
    ) -> BaseImage:
        self.calls += 1
        self.platforms.append(platform)
        if python not in PY_FULL:
            raise ImageError(f"no base image provides Python {python}", hint="use 3.9-3.13")
        return BaseImage(
            reference=explicit or f"python:{python}-slim",
            digest="sha256:" + "ab" * 32,
            provider="registry",
            python_full=PY_FULL[python],
        )


@dataclass
class FakeResolver:
    """Returns fixed pins; records requests."""

    pins: tuple[Pin, ...]
    name: ResolverName = "uv"
    requests: list[ResolveRequest] = field(default_factory=list)

    def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
        self.requests.append(request)
        return self.pins


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    requires: tuple[str, ...] = (),
) -> Path:
    """Build a minimal valid wheel (one module, METADATA, WHEEL, RECORD)."""
    dist = name.replace("-", "_")
    filename = f"{dist}-{version}-{tag}.whl"
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / filename
    with zipfile.ZipFile(out, "w") as zf:
        for path, text in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return out


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_simple_index(root: Path, files: list[Path]) -> None:
    """A PEP 503 layout: root/<project>/index.html linking files in root/files/ with #sha256."""
    (root / "files").mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for f in files:
        target = root / "files" / f.name
        if not target.exists():
            target.write_bytes(f.read_bytes())
        project = f.name.split("-")[0].replace("_", "-").lower()
        projects.setdefault(project, []).append(target)
    for project, items in projects.items():
        (root / project).mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../files/{p.name}#sha256={sha256_of(p)}">{p.name}</a>\n' for p in items
        )
        (root / project / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    index = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "index.html").write_text(f"<html><body>\n{index}</body></html>\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` with the real ``python -m http.server`` on 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory",
         str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(url + "/", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10):
            return True
    except OSError:
        return False


# What `apt-get install --print-uris` printed in the bookworm base for libgomp1 (SHA256 forced).
PRINT_URIS = (
    "'http://deb.debian.org/debian/pool/main/g/gcc-12/libgomp1_12.2.0-14%2bdeb12u1_amd64.deb' "
    "libgomp1_12.2.0-14+deb12u1_amd64.deb 115772 "
    "SHA256:48fec46bda7f5b1638b9e959889bfbc20491247d402d120bb152687eb48143d7\n"
)


@dataclass
class FakeAptImage:
    """An image runner factory whose container answers the system-pin script like apt would."""

    stdout: str = PRINT_URIS + "--- installed ---\n"
    returncode: int = 0
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def __call__(self, image: str, tools: Path) -> FakeAptImage:
        self.calls.append((image, ()))
        return self

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Completed:
        self.calls[-1] = (self.calls[-1][0], tuple(argv[4:]))
        return Completed(returncode=self.returncode, stdout=self.stdout, stderr="E: no such pkg\n")
