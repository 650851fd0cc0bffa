"""``json.loads`` and ``json.dumps`` on the C accelerator, without importing ``json``.

``json`` imports ``re`` (and with it enum and functools): ~3 ms of every ``mlpack run``, whose
whole budget is ~25 ms (BENCHMARKS B1). The container helper, which cannot import mlpack, has
its own copy of these few lines.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - an interpreter without the C accelerator
    _json = None  # type: ignore[assignment]


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


if _json is not None:
    _SCAN = _json.make_scanner(_Scan())  # type: ignore[arg-type]
    _ENCODERS = {
        key: _json.make_encoder(
            {}, _unknown, _json.encode_basestring_ascii, None, ": ", ", ", key, False, False
        )
        for key in (False, True)
    }


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; ValueError when it is not one."""
    text = data.decode() if isinstance(data, bytes) else data
    if _json is None:  # pragma: no cover
        import json  # type: ignore[unreachable]

        return json.loads(text)
    text = text.strip(" \t\n\r")
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
    """The text json.dumps(value, sort_keys=...) writes, except that NaN is refused."""
    if _json is None:  # pragma: no cover
        import json  # type: ignore[unreachable]

        return json.dumps(value, sort_keys=sort_keys, allow_nan=False)
    return "".join(_ENCODERS[sort_keys](value, 0))
