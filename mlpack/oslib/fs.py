"""Atomic replacement and tree removal: the one copy of each that every part of mlpack uses."""

from __future__ import annotations

import contextlib
import errno
import os
import stat

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from os import PathLike

    StrPath = str | PathLike[str]

# The errnos of a full disk (or quota): callers report them as such, never as a bad input.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RACE_RETRIES = 20  # walks restarted when another remover took a directory from under this one


def atomic_write(
    path: StrPath, data: bytes | str, *, mode: int | None = None, durable: bool = True
) -> None:
    """Write ``data`` beside ``path``, fsync it, then rename it over ``path``.

    A reader sees the old file or the new one, never half of either. The mode is kept from an
    existing file, else ``mode`` or 0o644 (never the umask's choice). ``durable=False`` skips
    the fsync, for a file that only describes live processes (a crash of the machine ends them
    anyway): ~1.5 ms each on a container's start path.
    """
    target = os.fspath(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    head, tail = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for attempt in range(1000):
        tmp = os.path.join(head, f".{tail}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, flags, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - a thousand stale names from this very pid
        raise FileExistsError(target)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
            try:
                keep: int | None = os.stat(target).st_mode & 0o777
            except FileNotFoundError:
                keep = None
            os.fchmod(fd, keep if keep is not None else (0o644 if mode is None else mode))
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def remove_tree(path: StrPath, *, dir_fd: int | None = None) -> None:
    """Remove ``path`` and everything under it, however deep, without following symlinks.

    With ``dir_fd``, ``path`` is a name under that directory fd (the layer applier's parents).

    Why not ``shutil.rmtree``: it recurses on the Python stack (a container or an image controls
    the depth; 1,000 levels end in RecursionError) and gives up on mode-000 directories such as
    overlayfs' ``work/work``. This walk keeps one directory fd open at a time (so the fd limit
    does not bound the depth either), makes each directory listable before reading it, and goes
    back up through ``..`` after checking that it is the directory it came from.
    """
    target = os.fspath(path)
    try:
        st = os.lstat(target, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(target, dir_fd=dir_fd)
        return
    if dir_fd is not None:
        _remove_racing(dir_fd, target)
        return
    head, name = os.path.split(os.path.normpath(os.path.abspath(target)))
    top = os.open(head or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _remove_racing(top, name)
    finally:
        os.close(top)


def _remove_racing(top: int, name: str) -> None:
    """``_remove_dir``, where a tree another process removes meanwhile counts as removed.

    Two removers of one tree are normal (``mlpack stop`` and the ``mlpack run`` it stops both
    remove the container's state): the one that loses a race finds a directory gone under it,
    possibly the one it stands in, so it starts the walk again from the top until the tree is
    gone. A FileNotFoundError with the tree still there after every retry is raised.
    """
    for _ in range(_RACE_RETRIES):
        try:
            _remove_dir(top, name)
        except FileNotFoundError:
            try:
                os.lstat(name, dir_fd=top)
            except FileNotFoundError:
                return
        else:
            return
    _remove_dir(top, name)


def _open_dir(parent: int, name: str) -> int:
    """Open the directory ``name`` under ``parent`` after making it readable and searchable."""
    try:
        return os.open(name, _DIR_OPEN, dir_fd=parent)
    except PermissionError:
        pass
    pfd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent)
    try:
        os.chmod(f"/proc/self/fd/{pfd}", 0o700)  # fchmod refuses O_PATH fds
    finally:
        os.close(pfd)
    return os.open(name, _DIR_OPEN, dir_fd=parent)


def _children(fd: int) -> list[str]:
    """Unlink the non-directories under ``fd`` and return its subdirectories' names."""
    subdirs: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
                continue
            try:
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except PermissionError:  # a directory without write permission: open it up, retry
                os.fchmod(fd, 0o700)
                os.unlink(entry.name, dir_fd=fd)
    if subdirs:
        os.fchmod(fd, 0o700)
    return subdirs


def _remove_dir(top: int, name: str) -> None:
    """Empty and remove ``top``/``name`` depth first, iteratively."""
    fd = _open_dir(top, name)
    # One frame per level above ``fd``: that directory's identity, the subdirectories it still
    # has to visit, and the name under it of the directory being emptied now.
    stack: list[tuple[tuple[int, int], list[str], str]] = []
    current = os.fstat(fd)
    pending = _children(fd)
    while True:
        if pending:
            child = pending.pop()
            try:
                child_fd = _open_dir(fd, child)
            except FileNotFoundError:
                continue
            stack.append(((current.st_dev, current.st_ino), pending, child))
            os.close(fd)
            fd = child_fd
            current = os.fstat(fd)
            pending = _children(fd)
            continue
        # ``fd`` is empty now: go up one level and remove it there.
        if not stack:
            os.close(fd)
            os.rmdir(name, dir_fd=top)
            return
        identity, pending, emptied = stack.pop()
        up = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        os.close(fd)
        fd = up
        current = os.fstat(fd)
        if (current.st_dev, current.st_ino) != identity:
            os.close(fd)
            msg = f"directory moved while it was being removed: {name!r}"
            raise OSError(msg)
        with contextlib.suppress(FileNotFoundError):  # the other remover took it
            os.rmdir(emptied, dir_fd=fd)
