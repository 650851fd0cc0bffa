"""The container's root filesystem, built in its new mount namespace (SECURITY §4, §5).

Mount targets are created with ``mlpack.oslib.inroot`` (one symlink rule: in-root, dangling
targets created, as runc and Docker) and mounted through ``/proc/self/fd/N`` of an ``O_PATH`` fd,
so nothing an image plants makes a mount land outside the root. /dev is built fresh.
"""

from __future__ import annotations

import errno
import os

from mlpack.oslib import inroot, linux
from mlpack.oslib.linux import (
    MS_BIND,
    MS_DIRSYNC,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)
from mlpack.runtime.embedded.helper.channel import Failure

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

# mount(8) option -> (clear, flag); as runc's libcontainer/specconv mountPropagationMapping.
FLAG_OPTS = {
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "nosuid": (False, MS_NOSUID),
    "suid": (True, MS_NOSUID),
    "nodev": (False, MS_NODEV),
    "dev": (True, MS_NODEV),
    "noexec": (False, MS_NOEXEC),
    "exec": (True, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "atime": (True, MS_NOATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "diratime": (True, MS_NODIRATIME),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "remount": (False, MS_REMOUNT),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
}
PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}
_LOCKABLE = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME
# (name, major, minor) of the devices every container gets (OCI runtime-spec, "Default Devices").
DEFAULT_DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
)
_FILE_TYPES = {"c": 0o020000, "u": 0o020000, "b": 0o060000, "p": 0o010000}


def fdpath(fd: int) -> str:
    """The magic link through which mount(2) reaches an O_PATH fd."""
    return f"/proc/self/fd/{fd}"


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Split OCI mount options into (flags, propagation, data)."""
    flags = 0
    prop = 0
    data = []
    for opt in options:
        if opt in FLAG_OPTS:
            clear, bit = FLAG_OPTS[opt]
            flags = flags & ~bit if clear else flags | bit
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        elif opt in ("idmap", "ridmap", "tmpcopyup"):
            raise Failure(f"mount option {opt!r} is not supported")
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def remount(path: str, flags: int) -> None:
    """Bind-remount ``path`` with ``flags`` plus the locked ones (else EPERM in a userns)."""
    f_flag = os.statvfs(path).f_flag
    keep = sum(ms for st, ms in linux.ST_TO_MS if f_flag & st) & _LOCKABLE
    linux.mount(None, path, None, MS_BIND | MS_REMOUNT | flags | keep, None)


def _unmapped_owner(rootfd: int, path: str) -> str | None:
    """Why creating ``path`` failed in a user namespace: a parent owned by an unmapped id."""
    head = path.rstrip("/").rpartition("/")[0] or "/"
    try:
        fd = inroot.resolve(rootfd, head)
    except OSError:
        return None
    try:
        owner = os.fstat(fd).st_uid
    finally:
        os.close(fd)
    try:
        with open("/proc/sys/kernel/overflowuid") as f:
            overflow = int(f.read())
    except (OSError, ValueError):
        overflow = 65534
    if owner != overflow:
        return None
    return (
        f"cannot create {path} in the root filesystem: {head} belongs to a user that is not "
        "mapped in this rootless container (the root filesystem is owned by another user, "
        "such as root)"
    )


class Rootfs:
    """Builds the container's root filesystem inside the new mount namespace."""

    def __init__(self, req: dict[str, Any], config: dict[str, Any], userns: bool) -> None:
        self.req = req
        self.config = config
        self.userns = userns
        self.root = str(req["rootfs"])
        self.linux: dict[str, Any] = config.get("linux") or {}
        self.types = {str(n["type"]) for n in self.linux.get("namespaces") or ()}
        self.rootfd = -1

    def build(self) -> None:
        """Run §5's sequence up to, not including, pivot_root."""
        prop = PROPAGATION.get(str(self.linux.get("rootfsPropagation") or "rslave"), MS_SLAVE)
        linux.mount(None, "/", None, prop | MS_REC, None)
        overlay = self.req.get("overlay")
        if isinstance(overlay, dict):
            self.overlay(overlay)
        linux.mount(self.root, self.root, None, MS_BIND | MS_REC, None)
        self.rootfd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        for m in self.config.get("mounts") or ():
            self.mount_one(m)
        self.devices()
        for key, value in (self.linux.get("sysctl") or {}).items():
            self.sysctl(str(key), str(value))
        for path in self.linux.get("maskedPaths") or ():
            self.mask(str(path))
        for path in self.linux.get("readonlyPaths") or ():
            self.readonly(str(path))
        cwd = str((self.config.get("process") or {}).get("cwd") or "/")
        os.close(self.make(cwd, directory=True))  # as Docker: a missing workdir is created

    def overlay(self, overlay: dict[str, Any]) -> None:
        """Mount the image's layers and the writable layer at the root."""
        lower = ":".join(reversed(overlay["lower"]))  # overlayfs lists the top layer first
        data = f"lowerdir={lower},upperdir={overlay['upper']},workdir={overlay['work']}"
        if self.userns:
            data += ",userxattr"
        flags = MS_NOSUID | MS_NODEV  # nothing the layers hold is setuid or a device (§6)
        try:
            if overlay.get("volatile"):
                # The upper dir is removed after the run: skip the sync of the host filesystem
                # at unmount (Linux >= 5.10; older kernels mount without it).
                try:
                    linux.mount("overlay", self.root, "overlay", flags, data + ",volatile")
                    return
                except OSError:
                    pass
            linux.mount("overlay", self.root, "overlay", flags, data)
        except OSError as exc:
            msg = f"overlay: {exc.strerror}"  # the runtime falls back to a copy of the image
            raise Failure(msg) from exc

    def make(self, path: str, *, directory: bool, follow: bool = True) -> int:
        """A mount target in-root (``inroot.make``); an O_PATH fd of it."""
        if ".." in path.split("/"):
            raise Failure(f"path {path!r} contains '..'")
        try:
            return inroot.make(self.rootfd, path, directory=directory, follow=follow)
        except OSError as exc:
            if exc.errno == errno.ELOOP and not follow:
                msg = f"{path} is a symlink in the image; refusing to mount over it"
                raise Failure(msg) from exc
            why = _unmapped_owner(self.rootfd, path) if exc.errno in (13, 1) else None
            if self.userns and why:
                raise Failure(why) from exc
            raise Failure(f"cannot create {path} in the root filesystem: {exc.strerror}") from exc

    def mount_one(self, m: dict[str, Any]) -> None:
        """Mount one OCI mount entry at its in-root destination."""
        try:
            self._mount_one(m)
        except Failure as exc:
            raise Failure(f"{exc} (mounting {m.get('type')} on {m.get('destination')})") from exc

    def _mount_one(self, m: dict[str, Any]) -> None:
        dest = str(m["destination"])
        mtype = str(m.get("type") or "")
        src = m.get("source")
        flags, prop, data = parse_options([str(o) for o in m.get("options") or ()])
        is_bind = bool(flags & MS_BIND) or mtype == "bind"
        if is_bind:
            flags |= MS_BIND
            src = str(src)
        if mtype in {"cgroup", "cgroup2"}:
            self.cgroup_mount(dest, flags)
            return
        directory = os.path.isdir(str(src)) if is_bind else True
        fd = self.make(dest, directory=directory, follow=is_bind)
        try:
            target = fdpath(fd)
            if is_bind:
                linux.mount(str(src), target, None, flags & (MS_BIND | MS_REC), None)
                rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
                if rest:
                    self.remount_at(dest, rest)
            elif mtype == "sysfs" and self.userns and "network" not in self.types:
                self.host_sysfs(target, dest)  # sysfs needs a netns we own, as runc rootless
            else:
                if mtype == "devpts" and "gid=5" in data and not self.gid_mapped(5):
                    data = ",".join(o for o in data.split(",") if o != "gid=5")
                try:
                    linux.mount(str(src or mtype), target, mtype, flags & ~MS_REMOUNT, data or None)
                except OSError:
                    if mtype != "sysfs":
                        raise
                    self.host_sysfs(target, dest)
            if prop:
                top = inroot.resolve(self.rootfd, dest)
                try:
                    linux.mount(None, fdpath(top), None, prop, None)
                finally:
                    os.close(top)
        finally:
            os.close(fd)

    def host_sysfs(self, target: str, dest: str) -> None:
        """A read-only bind of the host's /sys, where a sysfs of our own is not allowed."""
        linux.mount("/sys", target, None, MS_BIND | MS_REC, None)
        self.remount_at(dest, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)

    def sysctl(self, key: str, value: str) -> None:
        """Write one sysctl through the container's /proc, before /proc/sys turns read-only;
        the file must be on procfs (CVE-2024-45310: a mount over /proc redirects writes).
        """
        rel = "proc/sys/" + key.replace(".", "/")
        resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS | linux.RESOLVE_NO_SYMLINKS
        try:
            fd = linux.openat2(self.rootfd, rel, os.O_WRONLY, resolve)
        except OSError as exc:
            raise Failure(f"sysctl {key}: {exc.strerror}") from exc
        try:
            if linux.fstatfs_type(fd) != linux.PROC_SUPER_MAGIC:
                raise Failure(f"sysctl {key}: /{rel} is not on procfs")
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def remount_at(self, dest: str, flags: int) -> None:
        """Remount the mount now on top of ``dest`` (an fd taken before it was mounted over
        still names the covered directory).
        """
        fd = inroot.resolve(self.rootfd, dest)
        try:
            remount(fdpath(fd), flags)
        finally:
            os.close(fd)

    def cgroup_mount(self, dest: str, flags: int) -> None:
        """Mount the container's cgroup view: cgroup2 in its cgroupns, else an empty tmpfs."""
        fd = self.make(dest, directory=True, follow=False)
        try:
            base = MS_NOSUID | MS_NODEV | MS_NOEXEC
            if self.req.get("cgroup_version") == 2 and "cgroup" in self.types:
                linux.mount("cgroup2", fdpath(fd), "cgroup2", base | (flags & MS_RDONLY), None)
            else:
                # v1/hybrid: the host hierarchy is not shown; an empty read-only tmpfs is.
                linux.mount("tmpfs", fdpath(fd), "tmpfs", base, "mode=755,size=64k")
                self.remount_at(dest, MS_RDONLY)
        finally:
            os.close(fd)

    def gid_mapped(self, gid: int) -> bool:
        """Whether ``gid`` is mapped in the user namespace (always true without one)."""
        if not self.userns:
            return True
        with open("/proc/self/gid_map") as f:
            for line in f.read().splitlines():
                inside, _, count = (int(x) for x in line.split())
                if inside <= gid < inside + count:
                    return True
        return False

    def devices(self) -> None:
        """Populate /dev: default and configured nodes (mknod, or host binds in a userns)."""
        devfd = inroot.resolve(self.rootfd, "/dev")
        try:
            wanted = [(n, "c", ma, mi, 0o666, 0, 0) for n, ma, mi in DEFAULT_DEVICES]
            for d in self.linux.get("devices") or ():
                path = str(d["path"])
                if not path.startswith("/dev/"):
                    raise Failure(f"device {path} is outside /dev")
                kind, major, minor = str(d["type"]), int(d["major"]), int(d["minor"])
                mode, uid, gid = (
                    int(d.get("fileMode", 0o666)),
                    int(d.get("uid", 0)),
                    int(d.get("gid", 0)),
                )
                wanted.append((path[5:], kind, major, minor, mode, uid, gid))
            for name, kind, major, minor, mode, uid, gid in wanted:
                self.device(name, kind, os.makedev(major, minor), mode, (uid, gid))
            for name, target in DEV_LINKS:
                try:
                    os.symlink(target, name, dir_fd=devfd)
                except FileExistsError:
                    pass
            console = self.req.get("console_fd")
            if isinstance(console, int):
                # By path: the pts mount must be the copy in this mount namespace (an fd
                # names the parent namespace's mount, which mount(2) refuses to bind).
                fd = self.make("/dev/console", directory=False)
                try:
                    linux.mount(os.ttyname(console), fdpath(fd), None, MS_BIND, None)
                finally:
                    os.close(fd)
        finally:
            os.close(devfd)

    def device(self, name: str, kind: str, dev: int, mode: int, owner: tuple[int, int]) -> None:
        """Create one device node in-root; the image's /dev is never trusted (CVE-2026-41579)."""
        parent, _, leaf = name.rpartition("/")
        pfd = inroot.mkdirs(self.rootfd, "/dev/" + parent)
        try:
            try:
                os.unlink(leaf, dir_fd=pfd)
            except FileNotFoundError:
                pass
            if self.userns:
                flags = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_WRONLY | os.O_CLOEXEC
                os.close(os.open(leaf, flags, 0o600, dir_fd=pfd))
                tfd = os.open(leaf, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
                try:
                    linux.mount("/dev/" + name, fdpath(tfd), None, MS_BIND, None)
                finally:
                    os.close(tfd)
                return
            os.mknod(leaf, _FILE_TYPES[kind] | (mode & 0o7777), dev, dir_fd=pfd)
            os.chown(leaf, *owner, dir_fd=pfd, follow_symlinks=False)
            os.chmod(leaf, mode & 0o7777, dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(pfd)

    def mask(self, path: str) -> None:
        """Hide ``path``: /dev/null over a file, an empty read-only tmpfs over a directory."""
        try:
            fd = inroot.resolve(self.rootfd, path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if os.path.isdir(fdpath(fd)):
                linux.mount("tmpfs", fdpath(fd), "tmpfs", MS_RDONLY, "size=0k")
                return
            null = inroot.resolve(self.rootfd, "/dev/null")
            try:
                st = os.fstat(null)
                # CVE-2025-31133: never bind anything but the real null device over a file.
                if not (st.st_mode & 0o170000 == 0o020000 and st.st_rdev == os.makedev(1, 3)):
                    msg = "/dev/null is not the null device; refusing to mask with it"
                    raise Failure(msg)
                linux.mount(fdpath(null), fdpath(fd), None, MS_BIND, None)
            finally:
                os.close(null)
        finally:
            os.close(fd)

    def readonly(self, path: str) -> None:
        """Bind ``path`` onto itself read-only."""
        try:
            fd = inroot.resolve(self.rootfd, path)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            linux.mount(fdpath(fd), fdpath(fd), None, MS_BIND | MS_REC, None)
            self.remount_at(path, MS_RDONLY)
        finally:
            os.close(fd)

    def pivot(self) -> None:
        """pivot_root as runc's rootfs_linux.go does, then detach the old root."""
        oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        newroot = os.open(self.root, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        os.fchdir(newroot)
        linux.pivot_root(".", ".")
        os.fchdir(oldroot)
        linux.mount(None, ".", None, MS_SLAVE | MS_REC, None)
        linux.umount2(".", linux.MNT_DETACH)
        os.chdir("/")
        os.close(oldroot)
        os.close(newroot)
        os.close(self.rootfd)
        root = self.config.get("root") or {}
        if isinstance(root, dict) and root.get("readonly"):
            remount("/", MS_RDONLY)
