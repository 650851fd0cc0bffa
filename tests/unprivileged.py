"""Run a Python snippet as ``nobody`` (65534) against a world-readable copy of the mlpack package.

The checkout (and its venv) may sit under a 0700 home directory in CI, so the child gets its
own copy of ``mlpack/`` in a temporary directory and the system interpreter behind
``sys.executable``; the snippet may only use the standard library besides mlpack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``python -c`` as uid/gid 65534 and return the finished process."""
    # pytest's tmp_path is 0700: make a world-traversable directory of our own.
    site = Path(tempfile.mkdtemp(prefix="mlpack-nobody-"))
    try:
        shutil.copytree(
            REPO / "mlpack", site / "mlpack", ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in (site, *site.rglob("*")):
            path.chmod(0o755 if path.is_dir() else 0o644)
        python = os.path.realpath(sys.executable)
        return subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        )
    finally:
        shutil.rmtree(site, ignore_errors=True)
