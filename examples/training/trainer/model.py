"""The model: feature scaling plus a linear classifier trained epoch by epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler


class FlowerClassifier:
    """Standardise features, then fit a linear model with mini-batch SGD."""

    def __init__(self, *, loss: str, alpha: float, learning_rate: str, seed: int) -> None:
        self.scaler = StandardScaler()
        self.clf = SGDClassifier(
            loss=loss, alpha=alpha, learning_rate=learning_rate, random_state=seed
        )
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int) -> list[float]:
        """Train for ``epochs`` passes; return the training accuracy after each one."""
        xs = self.scaler.fit_transform(x)
        classes = np.unique(y)
        rng = np.random.default_rng(self.seed)
        history = []
        for _ in range(epochs):
            order = rng.permutation(len(xs))
            for start in range(0, len(xs), batch_size):
                batch = order[start : start + batch_size]
                self.clf.partial_fit(xs[batch], y[batch], classes=classes)
            history.append(float(self.clf.score(xs, y)))
        return history

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on held-out data."""
        return float(self.clf.score(self.scaler.transform(x), y))

    def export(self) -> dict[str, Any]:
        """A framework-free description the inference service can load with numpy alone."""
        return {
            "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
            "classes": [str(c) for c in self.clf.classes_],
            "mean": self.scaler.mean_.tolist(),
            "scale": self.scaler.scale_.tolist(),
            "coef": self.clf.coef_.tolist(),
            "intercept": self.clf.intercept_.tolist(),
        }
