"""The few ctypes pieces ``oslib.linux`` uses, made from ``_ctypes`` as ``ctypes/__init__.py``
makes them, with the same names and behaviour.

Why not ``import ctypes``: it is ~2 ms of every container start in the ``python -I -S`` helper
(``python -I -S -c 'import ctypes'`` 9.4 ms, ``import _ctypes`` 7.3 ms, ``pass`` 6.8 ms here).
"""

from __future__ import annotations

import _ctypes
import os


def _simple(name: str, code: str) -> type:
    return type(name, (_ctypes._SimpleCData,), {"_type_": code})


c_int = _simple("c_int", "i")
c_uint = _simple("c_uint", "I")
c_long = _simple("c_long", "l")
c_ulong = _simple("c_ulong", "L")
c_char = _simple("c_char", "c")
c_char_p = _simple("c_char_p", "z")
c_size_t = c_ulong  # LP64, as on every machine oslib.linux has syscall numbers for
addressof = _ctypes.addressof
get_errno = _ctypes.get_errno


def create_string_buffer(init: bytes | int) -> object:
    """A char array holding ``init`` and a NUL (or ``init`` zero bytes)."""
    if isinstance(init, int):
        return (c_char * init)()  # type: ignore[operator]
    buf = (c_char * (len(init) + 1))()  # type: ignore[operator]
    buf.value = init
    return buf


class CDLL:
    """Functions of a loaded library by name, returning int, errno saved when asked."""

    def __init__(self, name: str | None, use_errno: bool = False) -> None:
        flags = _ctypes.FUNCFLAG_CDECL | (_ctypes.FUNCFLAG_USE_ERRNO if use_errno else 0)

        class Function(_ctypes.CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._function = Function
        self._handle = _ctypes.dlopen(name, _ctypes.RTLD_LOCAL | os.RTLD_NOW)  # type: ignore[arg-type]  # None: the program itself

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        function = self._function((name, self))  # type: ignore[arg-type]  # CFuncPtr takes any library with _handle
        setattr(self, name, function)
        return function
