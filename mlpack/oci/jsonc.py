"""The one canonical JSON serialiser for configs, manifests, indexes and manifest.json."""

from __future__ import annotations

import json
import math
from typing import Any

from mlpack.errors import ImageError


def _check(value: Any) -> None:
    # Floats make digests depend on the float formatter; the spec documents use integers only.
    if isinstance(value, float):
        msg = f"refusing to serialise a float ({value!r}) into an image document"
        raise ImageError(msg, hint="use integers in OCI documents" if math.isfinite(value) else "")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"image document keys must be strings, got {key!r}"
                raise ImageError(msg, hint="this is a bug in the caller")
            _check(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check(item)


def dumps(document: Any) -> bytes:
    """Serialise ``document`` canonically: sorted keys, compact, UTF-8, ints only, no newline."""
    _check(document)
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def loads(data: bytes, *, what: str) -> Any:
    """Parse a JSON document, turning syntax errors into an ImageError naming ``what``."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"{what} is not valid JSON: {exc}"
        raise ImageError(msg, hint="the image or registry returned a corrupt document") from exc
