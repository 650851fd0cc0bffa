"""linux.namespaces: each type is created (``unshare``) or, with a ``path``, joined (``setns``).

As runc: every path is opened before any namespace changes (a path such as /proc/PID/ns/net
may no longer be reachable after), its type is checked against the entry's (a path of the
wrong type is an error, not a silent new namespace), and the user namespace is entered first.
"""

from __future__ import annotations

import os

from mlpack.oslib import linux
from mlpack.runtime.embedded.helper.channel import Failure

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

_NAMES = {flag: name for name, flag in linux.NAMESPACES.items()}


class Namespaces:
    """The config's namespaces: type -> an fd to join, or -1 to create a new one."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fds: dict[str, int] = {}
        try:
            for entry in (config.get("linux") or {}).get("namespaces") or ():
                self._add(str(entry.get("type")), entry.get("path"))
        except BaseException:
            self.close()
            raise

    def _add(self, kind: str, path: object) -> None:
        if kind not in linux.NAMESPACES:
            raise Failure(f"unknown namespace type {kind!r}")
        if kind in self.fds:
            raise Failure(f"namespace {kind} is listed twice")
        if not path:
            self.fds[kind] = -1
            return
        try:
            fd = os.open(str(path), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise Failure(f"namespace path {path}: {exc.strerror}") from exc
        self.fds[kind] = fd
        try:
            actual = linux.namespace_type(fd)
        except OSError as exc:
            raise Failure(f"namespace path {path} is not a namespace ({exc.strerror})") from exc
        if actual != linux.NAMESPACES[kind]:
            found = _NAMES.get(actual, hex(actual))
            raise Failure(f"namespace path {path} is a {found} namespace, not {kind}")

    def __contains__(self, kind: str) -> bool:
        return kind in self.fds

    def new(self, kind: str) -> bool:
        """Whether ``kind`` is a namespace of our own (created, not joined)."""
        return self.fds.get(kind) == -1

    def enter(self, *kinds: str) -> None:
        """Join those of ``kinds`` given by path, then create the others in one unshare."""
        flags = 0
        for kind in kinds:
            fd = self.fds.get(kind)
            if fd is None:
                continue
            if fd < 0:
                flags |= linux.NAMESPACES[kind]
                continue
            try:
                linux.setns(fd, linux.NAMESPACES[kind])
            except OSError as exc:
                raise Failure(f"joining the {kind} namespace: {exc.strerror}") from exc
        if flags:
            linux.unshare(flags)

    def close(self) -> None:
        """Close the fds of the joined namespaces."""
        for kind, fd in self.fds.items():
            if fd >= 0:
                os.close(fd)
                self.fds[kind] = -2
