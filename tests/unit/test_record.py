"""mlpack.record: dataclasses' frozen keyword-only semantics, checked against dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mlpack.record import FrozenInstanceError, asdict, field, fields, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DPoint:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def test_init_defaults_and_factories() -> None:
    a, b = Point(x=1), Point(x=1)
    assert (a.x, a.y, a.tags, a.extra) == (1, 0, (), {})
    assert a.extra is not b.extra  # a new dict per instance
    assert fields(Point) == ("x", "y", "tags", "extra")
    assert "extra" not in Point.__dict__  # the factory marker is not left as a class default


def test_keyword_only_required_and_unknown() -> None:
    with pytest.raises(TypeError):
        Point(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing required keyword argument 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        Point(x=1, z=2)  # type: ignore[call-arg]


def test_frozen() -> None:
    p = Point(x=1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.y


def test_eq_hash_repr_replace_asdict_match_dataclasses() -> None:
    p = Point(x=1, y=2, tags=("a",))
    d = DPoint(x=1, y=2, tags=("a",))
    assert p == Point(x=1, y=2, tags=("a",))
    assert p != Point(x=1, y=3, tags=("a",))
    assert p != d  # type: ignore[comparison-overlap]  # another class is never equal
    assert repr(p).removeprefix("Point") == repr(d).removeprefix("DPoint")
    assert replace(p, y=5) == Point(x=1, y=5, tags=("a",))
    assert asdict(p) == dataclasses.asdict(d)
    q = Point(x=1, extra={"k": [Point(x=2)]})
    assert asdict(q)["extra"] == {"k": [{"x": 2, "y": 0, "tags": (), "extra": {}}]}
    with pytest.raises(TypeError):  # a dict field makes it unhashable, as with dataclasses
        hash(q)
    assert hash(Pair(a=1, b="x")) == hash(Pair(a=1, b="x"))


@record
class Pair:
    a: int
    b: str
