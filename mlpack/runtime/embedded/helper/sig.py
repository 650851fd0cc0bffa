"""``signal`` for the helper: its C module, ``_signal``, the same functions and constants.

``signal.py`` only wraps them in enums, and importing it brings enum, functools and collections:
~3.5 ms of every container start.
"""

TYPE_CHECKING = False  # typing is not imported by the helper (mypy reads this as True)
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal

__all__ = ["signal"]
