"""``--init``: a tiny static reaper as the container's pid 1, never the helper (§1).

The supervisor cannot be pid 1 (it stays outside the container's mount namespace) and the
helper must not stay inside the container, so pid 1 is this 848-byte static x86_64 program,
assembled from ``init_x86_64.S`` beside this file (``as`` + ``ld -static -s --build-id=none
-z noexecstack -z noseparate-code``). It blocks all signals, forks the payload, forwards every
signal to it, reaps every zombie, and exits with the payload's status. It is written once to
the cache and bind-mounted read-only at /dev/init, so the container cannot rewrite it.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import TYPE_CHECKING

from mlpack.errors import ContainerError

if TYPE_CHECKING:
    from pathlib import Path

INIT_PATH = "/dev/init"
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
SHA256 = "1875bf6437b06cec4eba32a15e13e669d32d95c64529b752cade667251008f7b"


def init_binary(cache: Path) -> Path:
    """The reaper for this machine, materialised (mode 0555) under ``cache``."""
    if os.uname().machine != "x86_64":
        msg = f"--init is only available on x86_64 (this machine is {os.uname().machine})"
        raise ContainerError(msg, hint="run without --init, or use an image that has tini")
    code = base64.b64decode("".join(_X86_64))
    if hashlib.sha256(code).hexdigest() != SHA256:  # pragma: no cover - a corrupted install
        msg = "the embedded init binary does not match its checksum"
        raise ContainerError(msg, hint="reinstall mlpack-env")
    path = cache / f"init-{SHA256[:16]}"
    if path.is_file() and path.stat().st_size == len(code):
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(code)
        f.flush()
        os.fsync(f.fileno())
    tmp.chmod(0o555)
    tmp.replace(path)
    return path
