"""Load the numpy-only model export and score feature rows with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LinearModel:
    features: list[str]
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    @classmethod
    def load(cls, path: Path) -> "LinearModel":
        data = json.loads(path.read_text())
        return cls(
            features=data["features"],
            classes=data["classes"],
            mean=np.asarray(data["mean"]),
            scale=np.asarray(data["scale"]),
            coef=np.asarray(data["coef"]),
            intercept=np.asarray(data["intercept"]),
        )

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        scores = ((rows - self.mean) / self.scale) @ self.coef.T + self.intercept
        scores -= scores.max(axis=1, keepdims=True)
        exp = np.exp(scores)
        return exp / exp.sum(axis=1, keepdims=True)
