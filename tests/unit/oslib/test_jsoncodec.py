"""mlpack.oslib.jsoncodec writes and reads what json does (it is json's own C accelerator)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlpack.oslib import jsoncodec

_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
DOCS: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), _FLOATS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(DOCS, st.booleans())
def test_same_text_as_json_and_round_trip(doc: Any, sort_keys: bool) -> None:
    text = jsoncodec.dumps(doc, sort_keys=sort_keys)
    assert text == json.dumps(doc, sort_keys=sort_keys)
    assert jsoncodec.loads(text) == json.loads(text)
    assert jsoncodec.loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("bad", ["", " ", "[1,", "NaN", "[1] 2", "{'a': 1}", "[Infinity]"])
def test_invalid_documents_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(bad)


def test_nan_and_unknown_types_are_refused() -> None:
    with pytest.raises(ValueError):
        jsoncodec.dumps([math.nan])
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps({"a": object()})
