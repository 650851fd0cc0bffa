"""In-root path resolution: open and create paths under a root directory fd, never outside it.

The one resolver of the layer applier and the container helper (SECURITY-AND-ISOLATION.md §9).

**The symlink rule** (runc's ``securejoin.SecureJoin`` + ``MkdirAll``, Docker's, chroot
semantics): every symlink met on the way, and the last component too unless ``follow=False``,
resolves as if the root were ``/``: an absolute target starts again from the root, ``..`` stops
at the root, magic links (``/proc/self/fd/N``) are refused. A *dangling* symlink resolves to
where its target would be, so the creating calls (``mkdirs``, ``make``) create that target,
inside the root. Merged-usr ``lib -> usr/lib`` therefore resolves, an image's
``/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`` gets its target made in the root,
and ``etc -> /`` or ``x -> ../../..`` never leave it.

**How**: ``openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`` (Linux >= 5.6), where the kernel
guarantees it; else (an old kernel, a seccomp filter that refuses openat2, or a path to create)
a walk one component at a time with ``O_PATH | O_NOFOLLOW``, ``..`` taken lexically from the
stack of directories already opened, never by opening ``..``. ``xdev=False`` additionally
refuses to cross a mount point (``RESOLVE_NO_XDEV``), for unpacking into a plain tree.

API (every returned fd is the caller's to close; errors are ``OSError`` with ``errno``):

* ``resolve(rootfd, path, flags=O_PATH, *, follow=True, xdev=True) -> fd`` of an existing path;
* ``mkdirs(rootfd, path, *, mode=0o755, xdev=True) -> fd`` ``mkdir -p`` in the root, an
  ``O_PATH`` fd of the directory;
* ``make(rootfd, path, *, directory, follow=True, mode) -> fd``: the path as a directory or an
  empty file, created if missing (parents with ``mkdirs``), an ``O_PATH`` fd; with
  ``follow=False`` an existing symlink leaf is refused (``ELOOP``) instead of followed.

``kernel=False`` (on each) skips openat2 and always walks: the same answers, for tests of the
fallback and for callers that must not depend on the kernel's resolution.
"""

from __future__ import annotations

import errno
import os
import stat

from mlpack.oslib import linux

MAX_SYMLINKS = 40  # as the kernel's own limit (ELOOP)
_RESOLVE = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
_STEP = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_openat2 = [True]  # cleared once openat2 is found unusable in this process


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _kernel(rootfd: int, path: str, flags: int, xdev: bool, *, kernel: bool) -> int | None:
    """openat2 in-root, or None where this kernel or a seccomp filter refuses it."""
    if not (kernel and _openat2[0]):
        return None
    rel = "/".join(_parts(path)) or "."
    resolve = _RESOLVE | (0 if xdev else linux.RESOLVE_NO_XDEV)
    try:
        return linux.openat2(rootfd, rel, flags, resolve)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EPERM, errno.E2BIG):
            _openat2[0] = False
            return None
        raise


def resolve(
    rootfd: int,
    path: str,
    flags: int = os.O_PATH,
    *,
    follow: bool = True,
    xdev: bool = True,
    kernel: bool = True,
) -> int:
    """Open the existing ``path`` under ``rootfd`` with ``flags``, by the module's rule."""
    if not follow:
        flags |= os.O_NOFOLLOW
    fd = _kernel(rootfd, path, flags, xdev, kernel=kernel)
    if fd is not None:
        return fd
    fd = _walk(rootfd, path, follow=follow, create=None, xdev=xdev)
    if flags & ~(os.O_NOFOLLOW | os.O_CLOEXEC) == os.O_PATH:
        return fd
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC)  # reopen, as runc does
    finally:
        os.close(fd)


def mkdirs(
    rootfd: int, path: str, *, mode: int = 0o755, xdev: bool = True, kernel: bool = True
) -> int:
    """``mkdir -p path`` under ``rootfd`` (dangling symlinks get their targets made)."""
    try:
        fd = _kernel(rootfd, path, os.O_PATH | os.O_DIRECTORY, xdev, kernel=kernel)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        return fd
    return _walk(rootfd, path, follow=True, create=mode, xdev=xdev)


def make(
    rootfd: int,
    path: str,
    *,
    directory: bool,
    follow: bool = True,
    mode: int = 0o755,
    kernel: bool = True,
) -> int:
    """``path`` as a directory or an empty file (``mode``), created where missing."""
    for _ in range(MAX_SYMLINKS):
        head, _, leaf = path.rstrip("/").rpartition("/")
        if leaf in ("", "."):
            return mkdirs(rootfd, head, kernel=kernel)
        pfd = mkdirs(rootfd, head, kernel=kernel)
        try:
            try:
                _create(pfd, leaf, directory=directory, mode=mode)
            except FileExistsError:
                if not stat.S_ISLNK(os.stat(leaf, dir_fd=pfd, follow_symlinks=False).st_mode):
                    return os.open(leaf, _STEP, dir_fd=pfd)
                if not follow:
                    raise OSError(errno.ELOOP, "a symlink; refusing to follow it", path) from None
                target = os.readlink(leaf, dir_fd=pfd)
                path = target if target.startswith("/") else f"{head}/{target}"
                continue
            return os.open(leaf, _STEP, dir_fd=pfd)
        finally:
            os.close(pfd)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


def _create(pfd: int, leaf: str, *, directory: bool, mode: int) -> None:
    if leaf == "..":
        raise OSError(errno.EINVAL, "'..' as the last component", leaf)
    if directory:
        os.mkdir(leaf, mode, dir_fd=pfd)
        _chmod(pfd, leaf, mode)
        return
    flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC
    os.close(os.open(leaf, flags, mode & 0o666, dir_fd=pfd))


def _chmod(pfd: int, name: str, mode: int) -> None:
    """Give a new directory ``mode`` whatever the umask (fchmod; no path is followed)."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _walk(rootfd: int, path: str, *, follow: bool, create: int | None, xdev: bool) -> int:
    """The fallback: one component at a time; ``create`` is the mode of missing directories."""
    dev = os.fstat(rootfd).st_dev
    stack = [os.dup(rootfd)]
    todo = _parts(path)[::-1]  # a stack: the next component last
    links = 0
    try:
        while todo:
            comp = todo.pop()
            if comp == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            fd = _step(stack[-1], comp, create)
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode) and (todo or follow):
                os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo.extend(reversed(_parts(target)))
                continue
            stack.append(fd)
            if (todo or create is not None) and not stat.S_ISDIR(st.st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), comp)
            if not xdev and st.st_dev != dev:
                raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), comp)
        return stack.pop()
    finally:
        for fd in stack:
            os.close(fd)


def _step(dirfd: int, comp: str, create: int | None) -> int:
    try:
        return os.open(comp, _STEP, dir_fd=dirfd)
    except FileNotFoundError:
        if create is None:
            raise
    try:
        os.mkdir(comp, create, dir_fd=dirfd)
        _chmod(dirfd, comp, create)
    except FileExistsError:  # made meanwhile (or a dangling symlink, followed on the retry)
        pass
    return os.open(comp, _STEP, dir_fd=dirfd)
