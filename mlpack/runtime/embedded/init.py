"""``--init``: a tiny static reaper as the container's pid 1, never the helper (§1).

The supervisor cannot be pid 1 (it stays outside the container's mount namespace) and the
helper must not stay inside the container, so pid 1 is a static program of under 900 bytes, for
x86_64 and aarch64, assembled from ``init_<machine>.S`` beside this file (``as`` + ``ld -static
-s --build-id=none -z noexecstack -z noseparate-code``; a test reassembles both and compares).
It blocks all signals, forks the payload, forwards every signal to it, reaps every zombie, and
exits with the payload's status. It is written once to the cache and bind-mounted read-only at
/dev/init, so the container cannot rewrite it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import TYPE_CHECKING

from mlpack.errors import ContainerError
from mlpack.oslib.fs import atomic_write

if TYPE_CHECKING:
    from pathlib import Path

_X86_64 = (
    "f0VMRgIBAQAAAAAAAAAAAAIAPgABAAAA6ABAAAAAAABAAAAAAAAAABACAAAAAAAAAAAAAEAAOAADAEAABQAEAAEA"
    "AAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAA8AEAAAAAAADwAQAAAAAAAAAQAAAAAAAAAQAAAAYAAADwAQAA"
    "AAAAAPARQAAAAAAA8BFAAAAAAAAAAAAAAAAAAIgAAAAAAAAAABAAAAAAAABR5XRkBgAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAEiJ5bgOAAAAMf9IjTXnAAAAMdJBuggAAAAPBbg5AAAA"
    "DwVIhcB4OXVDuA4AAAC/AgAAAEiNNcYAAAAx0kG6CAAAAA8FSItNAEiNdRBIjVTNEEiLPkiF/3QHuDsAAAAPBbjn"
    "AAAAv38AAAAPBUmJxLiAAAAASI09fQAAAEiNNY4QAAAx0kG6CAAAAA8FSIP4/HTdSIXAeNhIg/gRdA9IicZMiee4"
    "PgAAAA8F68O4PQAAAEjHx/////9IjTVJEAAAugEAAABFMdIPBUiFwH6hTDngddmLPS8QAACJ+IPgf3QIjbiAAAAA"
    "6wnB7wiB5/8AAAC45wAAAA8F//////////8AAAAAAAAAAAAuc2hzdHJ0YWIALnRleHQALnJvZGF0YQAuYnNzAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAsA"
    "AAABAAAABgAAAAAAAADoAEAAAAAAAOgAAAAAAAAA+AAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAARAAAA"
    "AQAAAAIAAAAAAAAA4AFAAAAAAADgAQAAAAAAABAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAGQAAAAgA"
    "AAADAAAAAAAAAPARQAAAAAAA8AEAAAAAAACIAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAEAAAADAAAA"
    "AAAAAAAAAAAAAAAAAAAAAPABAAAAAAAAHgAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAA="
)
_AARCH64 = (
    "f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAA6ABAAAAAAABAAAAAAAAAADgCAAAAAAAAAAAAAEAAOAADAEAABQAEAAEA"
    "AAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAGAIAAAAAAAAYAgAAAAAAAAAAAQAAAAAAAQAAAAYAAAAYAgAA"
    "AAAAABgCQQAAAAAAGAJBAAAAAAAAAAAAAAAAAIgAAAAAAAAAAAABAAAAAABR5XRkBgAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAAPMDAJEAAIDSwQgAEAIAgNIDAYDS6BCA0gEAANQgAoDS"
    "AQCA0gIAgNIDAIDSBACA0ogbgNIBAADUHwAA8QsCAFRBAgBUQACA0gEHABACAIDSAwGA0ugQgNIBAADUaQJA+WFC"
    "AJFiDgmLQkAAkSAAQPlgAAC0qBuA0gEAANTgD4DSyAuA0gEAANT0AwCqoAQAEEEFCBACAIDSAwGA0igRgNIBAADU"
    "HxAAsSD//1QfAADx6/7/VB9EAPHAAABU4QMAquADFKooEIDSAQAA1PD//xcAAICS4QIIECIAgNIDAIDSiCCA0gEA"
    "ANQfAADxDf3/VB8AFOvh/v9UyQEIECABQLkBGAASYQAANCAAAhECAAAUADwIU8gLgNIBAADUAAAAAP//////////"
    "AAAAAAAAAAAALnNoc3RydGFiAC50ZXh0AC5yb2RhdGEALmJzcwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAALAAAAAQAAAAYAAAAAAAAA6ABAAAAAAADoAAAA"
    "AAAAABwBAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAEQAAAAEAAAACAAAAAAAAAAgCQAAAAAAACAIAAAAA"
    "AAAQAAAAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAABkAAAAIAAAAAwAAAAAAAAAYAkEAAAAAABgCAAAAAAAA"
    "iAAAAAAAAAAAAAAAAAAAAAgAAAAAAAAAAAAAAAAAAAABAAAAAwAAAAAAAAAAAAAAAAAAAAAAAAAYAgAAAAAAAB4A"
    "AAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAA"
)
# machine (os.uname) -> (the program, its sha256)
BINARIES = {
    "x86_64": (_X86_64, "1875bf6437b06cec4eba32a15e13e669d32d95c64529b752cade667251008f7b"),
    "aarch64": (_AARCH64, "48ba95171a3e8e60e4cf1970d75da0ef4c742d3c8e07117b0d9d2d7d30d39dd0"),
}


def init_binary(cache: Path) -> Path:
    """The reaper for this machine, materialised (mode 0555) under ``cache``."""
    machine = os.uname().machine
    if machine not in BINARIES:
        known = " and ".join(BINARIES)
        msg = f"--init is available on {known}, not on {machine}"
        raise ContainerError(msg, hint="run without --init, or use an image that has tini")
    code = program(machine)
    path = cache / f"init-{BINARIES[machine][1][:16]}"
    if path.is_file() and path.stat().st_size == len(code):
        return path
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(path, code, mode=0o555)
    return path


def program(machine: str) -> bytes:
    """The embedded reaper for ``machine``, checked against its recorded sha256."""
    chunks, sha = BINARIES[machine]
    code = base64.b64decode("".join(chunks))
    if hashlib.sha256(code).hexdigest() != sha:  # pragma: no cover - a corrupted install
        msg = "the embedded init binary does not match its checksum"
        raise ContainerError(msg, hint="reinstall mlpack-env")
    return code
