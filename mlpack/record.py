"""Frozen, keyword-only records: the dataclasses mlpack uses, without their start-up cost.

``@dataclass(frozen=True, kw_only=True)`` imports ``inspect`` (~4 ms) and compiles each generated
method with ``exec`` (~0.4 ms per class). ``mlpack run`` defines a dozen such classes on a path
whose whole budget is ~25 ms (BENCHMARKS B1), so the runtime's records use ``@record``: the same
meaning for what mlpack relies on (keyword-only ``__init__`` with defaults and factories, frozen
instances, field-wise ``__eq__``/``__hash__``/``__repr__``, ``replace``, ``asdict``), with
methods shared by every class. Type checkers treat it as a dataclass (PEP 681).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a record (as dataclasses.FrozenInstanceError)."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """Give a field a default made anew for each instance (``default_factory=dict``)."""
    return _Factory(default_factory)  # type: ignore[return-value]


def _init(self: Any, **kwargs: Any) -> None:
    cls = type(self)
    for name in cls.__record_fields__:
        if name in kwargs:
            value = kwargs.pop(name)
        elif name in cls.__record_defaults__:
            value = cls.__record_defaults__[name]
            if isinstance(value, _Factory):
                value = value.make()
        else:
            msg = f"{cls.__name__}() missing required keyword argument {name!r}"
            raise TypeError(msg)
        object.__setattr__(self, name, value)
    if kwargs:
        msg = f"{cls.__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}"
        raise TypeError(msg)


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__record_fields__)


def _eq(self: Any, other: object) -> object:
    if other.__class__ is not self.__class__:
        return NotImplemented
    same: bool = _values(self) == _values(other)
    return same


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_fields__)
    return f"{type(self).__qualname__}({inner})"


def _frozen(self: Any, name: str, *_: object) -> None:
    msg = f"cannot assign to field {name!r}"
    raise FrozenInstanceError(msg)


def make_record(cls: type[T]) -> type[T]:
    """Turn ``cls`` (annotated fields, optional defaults) into a frozen keyword-only record."""
    names: list[str] = []
    defaults: dict[str, object] = {}
    for base in reversed(cls.__mro__[1:]):
        names += [n for n in getattr(base, "__record_fields__", ()) if n not in names]
        defaults.update(getattr(base, "__record_defaults__", {}))
    own = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 - inspect is what we avoid
    for name, annotation in own.items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        if name not in names:
            names.append(name)
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            if isinstance(defaults[name], _Factory):
                delattr(cls, name)
    attrs: dict[str, object] = {
        "__record_fields__": tuple(names),
        "__record_defaults__": defaults,
        "__init__": _init,
        "__eq__": _eq,
        "__hash__": _hash,
        "__repr__": _repr,
        "__setattr__": _frozen,
        "__delattr__": _frozen,
    }
    for key, value in attrs.items():
        setattr(cls, key, value)
    return cls


if TYPE_CHECKING:

    @dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
    def record(cls: type[T]) -> type[T]:
        """A frozen, keyword-only record (see the module docstring)."""
        return cls

else:
    record = make_record


def fields(obj: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in declaration order."""
    names: tuple[str, ...] = getattr(obj, "__record_fields__", ())
    return names


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (as dataclasses.replace)."""
    values = {name: getattr(obj, name) for name in fields(obj)}
    values.update(changes)
    return type(obj)(**values)


def asdict(obj: object) -> Any:
    """Records (nested in lists, tuples and dicts too) as dicts, as dataclasses.asdict."""
    if fields(obj) and not isinstance(obj, type):
        return {name: asdict(getattr(obj, name)) for name in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(asdict(v) for v in obj)
    if isinstance(obj, dict):
        return {asdict(k): asdict(v) for k, v in obj.items()}
    return obj
