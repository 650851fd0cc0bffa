"""mlpack.oslib imports the standard library only: the helper imports it under python -I -S."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlpack.oslib

OSLIB = Path(mlpack.oslib.__file__).parent
PARENT = OSLIB.parent.parent

PROBE = """
import sys
before = set(sys.modules)
sys.path.append({parent!r})
import importlib
for name in {names!r}:
    importlib.import_module("mlpack.oslib." + name)
extra = sorted(
    m for m in set(sys.modules) - before
    if m.split(".")[0] not in sys.stdlib_module_names
    and m not in ("mlpack", "mlpack.oslib") and not m.startswith("mlpack.oslib.")
)
print(",".join(extra))
"""


def test_oslib_imports_only_the_standard_library() -> None:
    names = sorted(p.stem for p in OSLIB.glob("*.py") if p.stem != "__init__")
    assert {"fs", "inroot", "jsoncodec", "linux"} <= set(names)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(parent=str(PARENT), names=names)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == ""
