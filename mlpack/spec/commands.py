"""The commands that plan steps execute in the image, one text shared by both builders.

The embedded builder runs them in a container of the base on the embedded runtime
(``mlpack.build.system``, ``mlpack.build.bytecode``); the rendered Dockerfile runs the same text
in its ``RUN`` lines. So both backends install one Debian pin the same way, offline, and ship the
same ``.pyc`` bytes. They are part of the plan: a change to one changes its layers' cache keys.
"""

from __future__ import annotations

import shlex
from typing import Final

from mlpack.base.debian import SCRUB

# The system packages: the lock's .deb files under DEBS (read-only), dpkg's log and the file
# lists under LOG, the tar of what dpkg created or changed under OUT.
DEBS: Final = "/mlpack-debs"
OUT: Final = "/mlpack-out"
LOG: Final = "/mlpack-log"
INSTALL: Final = "install.sh"  # SYSTEM_SCRIPT, as the Dockerfile's system stage runs it
CHECKSUMS: Final = "SHA256SUMS"
DELETED: Final = "deleted"  # under LOG: the paths dpkg deleted, one a line


def _ere(pattern: str) -> str:
    """A SCRUB glob (relative to /, ``*`` within one name) as an anchored ERE for ``grep -E``:
    the path and everything under it.
    """
    return "^/" + pattern.replace(".", r"\.").replace("*", "[^/]*") + "(/|$)"


# What the step leaves that varies between runs (REPRODUCIBILITY.md §4): the base rootfs's
# SCRUB list, the __pycache__ written during the step, /etc/machine-id (left absent, or the
# base's). The script keeps them out of changes.tar, so both builders get a clean tree.
HYGIENE: Final = "|".join((*map(_ere, SCRUB), "/__pycache__(/|$)", "^/etc/machine-id$"))

# Mount targets, the kernel's filesystems and scratch space are never content.
SYSTEM_SCRIPT: Final = rf"""set -eu
skip='^/$|^/(proc|sys|dev|run|tmp|mlpack-debs|mlpack-out|mlpack-log)(/|$)|^/etc/(hosts|hostname|resolv\.conf)$'
find / -xdev 2>/dev/null | grep -Ev "$skip" | LC_ALL=C sort > {LOG}/before
touch /tmp/.mlpack-stamp
sleep 1
DEBIAN_FRONTEND=noninteractive dpkg --install "$@" > {LOG}/dpkg.log 2>&1
find / -xdev 2>/dev/null | grep -Ev "$skip" | LC_ALL=C sort > {LOG}/after
LC_ALL=C comm -23 {LOG}/before {LOG}/after > {LOG}/{DELETED}
find / -xdev -cnewer /tmp/.mlpack-stamp 2>/dev/null | grep -Ev "$skip" | grep -Ev '{HYGIENE}' \
  | LC_ALL=C sort > {LOG}/changed
tar --no-recursion --numeric-owner -cf {OUT}/changes.tar -T {LOG}/changed 2>> {LOG}/dpkg.log
"""

# Bytecode (PEP 552 unchecked-hash: the source's hash in the header, never an mtime). argv: the
# folder to compile, then the folder it will be at in the image (co_filename's prefix). Set and
# frozenset constants are marshalled in hash order, so the script re-executes itself with
# PYTHONHASHSEED=0 (a distroless base has no `env` to set it); one line, for a Dockerfile RUN.
BYTECODE_MODE: Final = "unchecked-hash"
HASH_SEED: Final = "0"
COMPILE_SCRIPT: Final = (
    "import os,sys;"
    f'os.environ.get("PYTHONHASHSEED")=="{HASH_SEED}" or os.execve(sys.executable,sys.orig_argv,'
    f'{{**os.environ,"PYTHONHASHSEED":"{HASH_SEED}"}});'
    "import compileall,py_compile;"
    "compileall.compile_dir(sys.argv[1],ddir=sys.argv[2],quiet=1,workers=1,"
    "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)"
)
# In a .pyc header, the flags word after the magic number: bit 0 "hash-based", bit 1
# "check the source". Unchecked-hash is 1.
UNCHECKED_HASH_FLAGS: Final = 1


def system_files(debs: tuple[tuple[str, str], ...]) -> dict[str, bytes]:
    """What the Dockerfile's system stage reads beside the .deb files (``(filename, sha256)``
    each): the install script, and the checksums it verifies them against before dpkg.
    """
    sums = "".join(f"{sha256}  {filename}\n" for filename, sha256 in debs)
    return {INSTALL: SYSTEM_SCRIPT.encode(), CHECKSUMS: sums.encode()}


def compile_argv(
    python: str, folder: str, in_image: str, *, pycache_prefix: str | None = None
) -> tuple[str, ...]:
    """The command that compiles ``folder`` as if at ``in_image`` with the interpreter ``python``.

    ``-s``: no user site; ``-B``: the stdlib modules it imports write no bytecode of their own.
    One process, files in sorted order: parallel workers would make the bytes depend on which
    process compiled what (REPRODUCIBILITY.md §5). ``pycache_prefix`` (``sys.pycache_prefix``,
    kept by the script's re-execution through ``sys.orig_argv``) writes each ``.pyc`` under that
    folder, at ``<prefix>/<source's folder>/<name>.<tag>.pyc``, instead of in ``__pycache__``
    beside its source: the bytes are the same (the header holds the source's hash, the code
    objects name ``in_image``), so a second compile can run beside the first and be compared.
    """
    prefix = () if pycache_prefix is None else ("-X", f"pycache_prefix={pycache_prefix}")
    return (python, "-s", "-B", *prefix, "-c", COMPILE_SCRIPT, folder, in_image)


def compile_command(python: str, folder: str, in_image: str) -> str:
    """``compile_argv`` as one shell command line (the Dockerfile's)."""
    return shlex.join(compile_argv(python, folder, in_image))
