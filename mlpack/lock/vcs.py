"""Direct references: VCS requirements pinned to a commit, local paths made project-relative."""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Final

from packaging.requirements import Requirement

from mlpack.errors import LockError
from mlpack.lock.indexes import redact, strip_userinfo

_SHA: Final = re.compile(r"^[0-9a-f]{40}$")


def is_vcs(url: str) -> bool:
    """True for ``git+https://...`` style references."""
    return url.startswith("git+")


def pin_vcs_url(url: str, *, source: str) -> tuple[str, str]:
    """Return (url pinned to a commit, commit) for ``git+URL[@REF][#fragment]``.

    A ref that already is a full SHA is kept; otherwise ``git ls-remote`` resolves it (HEAD
    when no ref is given), so the lock names an immutable commit (pain point 14).
    """
    base, _, fragment = url.partition("#")
    repo = base[len("git+") :]
    ref = ""
    path_part = urllib.parse.urlsplit(repo).path
    if "@" in path_part:
        repo, _, ref = repo.rpartition("@")
    if _SHA.match(ref):
        commit = ref
    else:
        commit = _ls_remote(repo, ref or "HEAD", source=source)
    pinned = f"git+{repo}@{commit}" + (f"#{fragment}" if fragment else "")
    return pinned, commit


def _ls_remote(repo: str, ref: str, *, source: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "ls-remote", repo, ref],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        msg = f"cannot run git ls-remote for {strip_userinfo(repo)} ({source}): {exc}"
        raise LockError(msg, hint="install git and check that the repository is reachable") from exc
    if proc.returncode != 0:
        msg = f"git cannot read {strip_userinfo(repo)} ({source}): {redact(proc.stderr.strip())}"
        raise LockError(msg, hint="check the URL, the network and your git credentials")
    wanted = {ref, f"refs/heads/{ref}", f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"}
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        sha, _, name = line.partition("\t")
        if name in wanted:
            found[name] = sha
    for key in (f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}", ref):
        if key in found:
            return found[key]
    msg = f"{strip_userinfo(repo)} has no branch or tag {ref!r} ({source})"
    raise LockError(msg, hint="use an existing branch, tag or a full commit SHA")


def normalize(requirement: str, *, source: str, root: Path) -> tuple[str, str | None]:
    """Pin a VCS reference and make a local path absolute for the tools; return (req, commit)."""
    req = Requirement(requirement)
    if req.url is None:
        return requirement, None
    if is_vcs(req.url):
        pinned, commit = pin_vcs_url(req.url, source=source)
        req.url = pinned
        return str(req), commit
    if req.url.startswith("file:"):
        local = req.url[len("file:") :]
        local = local.removeprefix("//")
        path = Path(urllib.parse.unquote(local))
        if not path.is_absolute():
            path = (root / path).resolve()
        req.url = path.as_uri()
        return str(req), None
    return requirement, None


def relative_file_url(url: str, root: Path) -> str:
    """``file:///abs/project/libs/x`` -> ``file:libs/x`` when inside the project (portable)."""
    if not url.startswith("file://"):
        return strip_userinfo(url)
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
    try:
        return f"file:{path.relative_to(root.resolve()).as_posix()}"
    except ValueError:
        return url
