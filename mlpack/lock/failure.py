"""A failed resolve, read: which package is missing, has no wheels, failed to build, or which host.

The locker acts on the kind (drops an inferred name the index lacks, tries an older Python when
packages have no wheels for this one), so the reading is a value, not only a message.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Final, Literal

from packaging.utils import canonicalize_name

from mlpack.errors import LockError
from mlpack.lock.indexes import redact

if TYPE_CHECKING:
    from mlpack.lock.resolvers import ResolveRequest
    from mlpack.vocabulary import PackageSpec

FailureKind = Literal["missing", "unreachable", "conflict", "build", "other"]


class ResolveFailure(LockError):
    """A resolve that failed, with what the locker needs to recover from it."""

    def __init__(
        self,
        message: str,
        *,
        hint: str,
        kind: FailureKind,
        package: str | None = None,
        involved: tuple[str, ...] = (),
        no_wheels: tuple[str, ...] = (),
        needed_by: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.kind: FailureKind = kind
        self.package = package  # the missing or failing distribution (canonical)
        self.involved = involved  # canonical names of the requirements the message names
        self.no_wheels = no_wheels  # "torch 2.0.1": releases without a wheel for this Python
        self.needed_by = needed_by  # the direct requirement that pulled ``package`` in


_MISSING: Final = (
    re.compile(r"Because ([A-Za-z0-9._-]+) was not found in the package registry"),
    re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)"),
    re.compile(r"Because there are no versions of ([A-Za-z0-9._-]+) and"),
)
_NO_WHEELS: Final = re.compile(
    r"(?<![A-Za-z0-9._-])([A-Za-z][A-Za-z0-9._-]*)((?:[=<>!~]=?[^\s,]+,?)*) (?:has|have) no wheels "
    r"with a matching Python (?:ABI|version) tag"
)
_BUILD: Final = re.compile(r"Failed to (?:download and )?build `([^`]+)`")
_INCLUDED: Final = re.compile(r"was included because `([^`]+)`(?: \(v[^)]*\))? depends on")
_URL: Final = re.compile(r"(?:git\+)?https?://[^\s`'\"]+")
_HOST_ERROR: Final = re.compile(r"Could not resolve host: ([A-Za-z0-9.-]+)")
_UNREACHABLE: Final = (
    "Failed to fetch",
    "error sending request",
    "Max retries exceeded",
    "NewConnectionError",
    "Connection refused",
    "Name or service not known",
    "Temporary failure in name resolution",
    "No route to host",
    "Could not resolve host",
)
_CONFLICT: Final = ("No solution found", "ResolutionImpossible", "conflict", "unsatisfiable")
# uv's advice for its own configuration, which an mlpack user cannot set.
_UV_ONLY: Final = ("tool.uv", "--no-build-isolation", "uv pip install")


def read_failure(request: ResolveRequest, stderr: str, *, tool: str) -> ResolveFailure:
    """Turn a failed resolve into one ResolveFailure (missing, unreachable, conflict, build)."""
    text = redact(stderr).strip()
    for reader in (_missing, _unreachable, _conflict, _build):
        found = reader(request, text, tool)
        if found is not None:
            return found
    msg = f"{tool} failed:\n{_tail(text)}"
    return ResolveFailure(
        msg, hint="read the resolver's message above; --debug shows more", kind="other"
    )


def _by_name(request: ResolveRequest) -> dict[str, list[PackageSpec]]:
    by_name: dict[str, list[PackageSpec]] = {}
    for r in request.requirements:
        by_name.setdefault(r.name, []).append(r)
    return by_name


def _missing(request: ResolveRequest, text: str, _tool: str) -> ResolveFailure | None:
    for pattern in _MISSING:
        found = pattern.search(text)
        if found is None:
            continue
        name = canonicalize_name(found.group(1))
        where = ", ".join(r.source for r in _by_name(request).get(name, [])) or "a dependency"
        msg = f"package {name!r} (asked for by {where}) does not exist on the index"
        return ResolveFailure(msg, hint=missing_hint(name), kind="missing", package=name)
    return None


def missing_hint(name: str) -> str:
    """The likely distribution when ``name`` is an import name the map knows, else spelling."""
    from mlpack.analyze.imports import import_map

    known = import_map()
    guesses = known.get(name) or known.get(name.replace("-", "_")) or ()
    guess = next((g for g in guesses if g != name), None)
    if guess is None:
        return (
            "check the spelling, or the index that should provide it; if it is an import name, "
            "declare the distribution that provides it (mlpack.toml [dependencies] import-map)"
        )
    return (
        f"`{name}` is an import name; its distribution is probably `{guess}`: declare "
        f'"{guess}" instead (or map it: [dependencies.import-map] {name.replace("-", "_")} = '
        f'"{guess}")'
    )


def _unreachable(request: ResolveRequest, text: str, tool: str) -> ResolveFailure | None:
    if not any(marker in text for marker in _UNREACHABLE) or "No solution" in text:
        return None
    host = _failing_host(text)
    indexes = request.indexes.public().all
    index_hosts = {urllib.parse.urlsplit(u).hostname for u in indexes}
    last = _tail(text).splitlines()[-1] if text else ""
    if host is not None and host not in index_hosts:
        asking = [
            f"{r.requirement} ({r.source})" for r in request.requirements if host in r.requirement
        ]
        where = f" for {'; '.join(asking)}" if asking else ""
        msg = f"{tool} could not reach {host}{where}: {last.strip()}"
        hint = f"check the network and the proxy (HTTPS_PROXY) for {host}, or the URL"
    else:
        msg = f"{tool} could not reach the package index ({', '.join(indexes)}): {last}"
        hint = "check the network, the proxy (HTTPS_PROXY) and --ca-cert, or the URL"
    return ResolveFailure(msg, hint=hint, kind="unreachable", package=host)


def _failing_host(text: str) -> str | None:
    named = _HOST_ERROR.search(text)
    if named is not None:
        return named.group(1)
    for line in text.splitlines():
        if any(marker in line for marker in _UNREACHABLE):
            url = _URL.search(line)
            if url is not None:
                return urllib.parse.urlsplit(url.group(0).removeprefix("git+")).hostname
    url = _URL.search(text)
    return None if url is None else urllib.parse.urlsplit(url.group(0)).hostname


def _conflict(request: ResolveRequest, text: str, _tool: str) -> ResolveFailure | None:
    if not any(marker in text for marker in _CONFLICT):
        return None
    lowered = text.lower().replace("_", "-")
    # Ordered by where the message first names them: the resolver names the culprit first.
    found = {
        r: m.start()
        for r in request.requirements
        if (m := re.search(rf"(?<![a-z0-9-]){re.escape(r.name)}(?![a-z0-9])", lowered))
    }
    involved = sorted(found, key=found.__getitem__)
    no_wheels = tuple(dict.fromkeys(_release(m) for m in _NO_WHEELS.finditer(text)))
    explanation = " ".join(
        line.strip().removeprefix("cause:").strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith(("error:", "ERROR:", "Traceback"))
    )
    if len(explanation) > 1200:
        explanation = "..." + explanation[-1200:]
    msg = f"the requirements conflict: {explanation}"
    if involved:
        msg += f"\ninputs involved: {'; '.join(f'{r.requirement} ({r.source})' for r in involved)}"
    hint = "relax one of the constraints named above in its input file"
    if no_wheels:
        hint = f"pick an older Python (python in mlpack.toml): {request.python_minor} has no wheels for {', '.join(no_wheels)}"
    return ResolveFailure(
        msg,
        hint=hint,
        kind="conflict",
        involved=tuple(dict.fromkeys(r.name for r in involved)),
        no_wheels=no_wheels,
    )


def _release(found: re.Match[str]) -> str:
    """``torch 2.0.1`` for ``torch==2.0.1``; ``tensorflow>=2.0,<=2.19`` as uv wrote it."""
    name, spec = canonicalize_name(found.group(1)), found.group(2)
    if spec.startswith("==") and "," not in spec:
        return f"{name} {spec[2:]}"
    return name + spec


def _build(_request: ResolveRequest, text: str, tool: str) -> ResolveFailure | None:
    found = _BUILD.search(text)
    if found is None:
        return None
    failing = found.group(1)
    name = canonicalize_name(re.split(r"[=@<>!~ ]", failing, maxsplit=1)[0])
    lines = [line for line in without_uv_advice(text).splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if found.group(0) in line)
    # The package and uv's causes, then the end of the build's output, where its error is.
    head = lines[start : start + 3]
    rest = lines[start + 3 :]
    body = "\n".join([*head, *(["..."] if len(rest) > 8 else []), *rest[-8:]])
    root = _INCLUDED.search(text)
    needed_by = None
    if root is not None and not root.group(1).startswith("-"):
        needed_by = canonicalize_name(root.group(1))
    by = f" (needed by {needed_by})" if needed_by else ""
    msg = f"{tool} failed: {failing}{by} could not be built from source:\n{body}"
    hint = (
        f"{name} has no wheel for this target and its build failed: pin a version that has "
        "wheels, add the build's system libraries ([dependencies] system), or pick another Python"
    )
    return ResolveFailure(msg, hint=hint, kind="build", package=name, needed_by=needed_by)


def without_uv_advice(text: str) -> str:
    """``text`` without uv's advice on uv's own settings, which an mlpack user cannot apply.

    (``[tool.uv.extra-build-dependencies]``, ``--no-build-isolation``); the hint's first
    sentence, which says what the build lacks, stays.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("hint:") and any(m in "\n".join(lines[i:]) for m in _UV_ONLY):
            first = line.split(". ", 1)[0].rstrip(".")
            return "\n".join([*lines[:i], f"{first}."])
    return text


def _tail(text: str) -> str:
    """The first line (what failed) and the last ones (why), without uv's own advice."""
    lines = [line for line in without_uv_advice(text).splitlines() if line.strip()]
    if len(lines) <= 12:
        return "\n".join(lines)
    return "\n".join([lines[0], "...", *lines[-11:]])
