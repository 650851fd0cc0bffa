"""SHA-256 from the interpreter's builtin module, for the fast paths.

``hashlib`` loads OpenSSL (~2-5 ms) on first import: too much for ``mlpack run`` (BENCHMARKS
B1) or an unchanged ``mlpack lock`` (B4-noop), which only hash a few small inputs.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the fast paths (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from typing_extensions import Buffer

    class _Hash(Protocol):
        """The part of hashlib's hash objects used here."""

        def hexdigest(self) -> str:
            """The digest in hex."""
            ...


def _find_sha256() -> Callable[[Buffer], _Hash]:
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # 3.12+
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:  # pragma: no cover - a Python built without it
            from hashlib import sha256
    return sha256  # type: ignore[no-any-return,unused-ignore]


_sha256 = _find_sha256()


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (as ``hashlib.sha256(data).hexdigest()``)."""
    return _sha256(data).hexdigest()
