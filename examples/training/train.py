"""Train the flower classifier and write the model and its metrics to the output folder.

Environment: SEED, EPOCHS, DATA_DIR, OUTPUT_DIR, CONFIG_PATH (all optional), WANDB_API_KEY
(optional; only reported, never logged).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import joblib
import yaml

from trainer.data import load_table, split
from trainer.model import FlowerClassifier


def main() -> int:
    seed = int(os.environ.get("SEED", "42"))
    data_dir = Path(os.getenv("DATA_DIR", "data"))
    output_dir = Path(os.environ.get("OUTPUT_DIR", "outputs"))
    config_path = Path(os.environ.get("CONFIG_PATH", "configs/train.yaml"))

    with config_path.open() as handle:
        config = yaml.safe_load(handle)
    epochs = int(os.environ.get("EPOCHS", config["training"]["epochs"]))

    x, y = load_table(data_dir / "flowers.csv")
    x_train, y_train, x_test, y_test = split(
        x, y, test_fraction=config["training"]["test_fraction"], seed=seed
    )
    model = FlowerClassifier(seed=seed, **config["model"])
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=config["training"]["batch_size"])
    accuracy = model.score(x_test, y_test)

    output_dir.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, output_dir / "model.joblib")
    (output_dir / "model.json").write_text(json.dumps(model.export(), indent=2))
    metrics = {
        "seed": seed,
        "epochs": epochs,
        "train_accuracy": history[-1],
        "test_accuracy": accuracy,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "tracking": "wandb" if os.getenv("WANDB_API_KEY") else "none",
    }
    with open(output_dir / "metrics.json", "w") as handle:
        json.dump(metrics, handle, indent=2)
    print(json.dumps(metrics))
    return 0 if accuracy > 0.8 else 1


if __name__ == "__main__":
    sys.exit(main())
