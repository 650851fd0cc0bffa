"""Load the measurements table and split it reproducibly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def load_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Return (features, labels) from a CSV with a header row."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{path} has no rows")
    x = np.array([[float(row[name]) for name in FEATURES] for row in rows], dtype=np.float64)
    y = np.array([row["species"] for row in rows])
    return x, y


def split(
    x: np.ndarray, y: np.ndarray, *, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``seed`` and hold out ``test_fraction`` of the rows."""
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1.0 - test_fraction))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]
