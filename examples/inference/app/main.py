"""FastAPI app: /health and /predict over the model in MODEL_PATH (default models/model.json)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from app.model import LinearModel

MODEL_PATH = Path(os.environ.get("MODEL_PATH", "models/model.json"))
LOG_LEVEL = os.getenv("LOG_LEVEL", "info")

app = FastAPI(title="flower-service")
_model: LinearModel | None = None


def model() -> LinearModel:
    global _model
    if _model is None:
        if not MODEL_PATH.is_file():
            raise HTTPException(status_code=503, detail=f"model not found at {MODEL_PATH}")
        _model = LinearModel.load(MODEL_PATH)
    return _model


class Flower(BaseModel):
    sepal_length: float = Field(gt=0)
    sepal_width: float = Field(gt=0)
    petal_length: float = Field(gt=0)
    petal_width: float = Field(gt=0)


class PredictRequest(BaseModel):
    instances: list[Flower] = Field(min_length=1, max_length=1024)


@app.get("/health")
def health() -> dict[str, str]:
    model()
    return {"status": "ok", "model": str(MODEL_PATH)}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, list[dict[str, object]]]:
    m = model()
    rows = np.array([[getattr(item, name) for name in m.features] for item in request.instances])
    probs = m.predict_proba(rows)
    return {
        "predictions": [
            {"label": m.classes[int(row.argmax())], "probability": float(row.max())}
            for row in probs
        ]
    }


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8000")), log_level=LOG_LEVEL)
