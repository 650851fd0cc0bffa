"""The one JSON codec of the runtime and its helper: ``json``'s own C scanner and encoder.

Why not ``import json``: it imports ``re`` (and with it enum and functools), ~3 ms of every
container start in the ``python -I -S`` helper, which reads its OCI config with this codec. The
C accelerator ``_json`` is what ``json`` itself runs on, so the text is the same as
``json.dumps`` writes (a test compares them); NaN and Infinity are refused both ways.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any


class _Scan:
    """What ``_json.make_scanner`` reads from its context: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        """NaN and Infinity are refused, as by a strict parser."""
        msg = f"{name} is not valid JSON"
        raise ValueError(msg)


def _unknown(value: object) -> object:
    msg = f"Object of type {type(value).__name__} is not JSON serializable"
    raise TypeError(msg)


_SCAN = _json.make_scanner(_Scan())  # type: ignore[arg-type]
_ENCODERS = {
    key: _json.make_encoder(
        {}, _unknown, _json.encode_basestring_ascii, None, ": ", ", ", key, False, False
    )
    for key in (False, True)
}


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; ValueError when it is not one."""
    text = (data.decode() if isinstance(data, bytes) else data).strip(" \t\n\r")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        msg = "not a JSON document"
        raise ValueError(msg) from None
    if end != len(text):
        msg = f"extra data after the JSON document at {end}"
        raise ValueError(msg)
    return value


def dumps(value: object, *, sort_keys: bool = False) -> str:
    """The text ``json.dumps(value, sort_keys=...)`` writes, except that NaN is refused."""
    return "".join(_ENCODERS[sort_keys](value, 0))
