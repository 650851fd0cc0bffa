from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.analyze.analysis import LargeFile, Layout, PathUse
from mlpack.analyze.factcache import collect_facts
from mlpack.analyze.layout import analyze_layout
from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)


def layout_of(root: Path) -> Layout:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=root.parent / "cache", warnings=warnings)
    return analyze_layout(tree, facts)


def test_folders_by_name(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "data/train.csv": "a,b\n",
            "data/download.py": "",  # a script beside the data: still an input folder
            "configs/base.yaml": "",
            "models/__init__.py": "",  # a code package, not an input
            "models/net.py": "",
            "checkpoints/.keep": "",
            "wandb/.keep": "",
            "mlruns/.keep": "",
            "train.py": "",
        },
    )
    layout = layout_of(root)
    rule = "rule: folder exists"
    assert layout.inputs == (
        PathUse(path="configs", kind="configs", source=rule, exists=True),
        PathUse(path="data", kind="data", source=rule, exists=True),
    )
    assert layout.outputs == (
        PathUse(path="checkpoints", kind="checkpoints", source=rule, exists=True),
        PathUse(path="mlruns", kind="runs", source=rule, exists=True),
        PathUse(path="wandb", kind="logs", source=rule, exists=True),
    )
    assert layout.code == ("data", "models", "train.py")


@pytest.mark.usefixtures("parse_mode")
def test_paths_read_and_written_by_code(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": """
                import os, json, torch, joblib
                import numpy as np
                import pandas as pd
                from pathlib import Path
                from transformers import AutoModel, TrainingArguments

                df = pd.read_csv("datasets/train.csv")
                cfg = json.load(open("settings.json"))
                extra = np.load(os.path.join("features", "x.npy"))
                model = AutoModel.from_pretrained("bert-base-uncased")
                tuned = AutoModel.from_pretrained("org/model-name")
                local = AutoModel.from_pretrained("./weights/finetuned")
                torch.save(model.state_dict(), "checkpoints/model.pt")
                joblib.dump(model, "artifacts/model.joblib")
                df.to_csv(f"results/preds_{1}.csv")
                Path("outputs").mkdir(exist_ok=True)
                os.makedirs("logs/tb", exist_ok=True)
                with open("report.txt", "w") as fh:
                    fh.write("x")
                with Path("exports/out.json").open("w") as fh:
                    pass
                args = TrainingArguments(output_dir="runs/exp1")
                OUTPUT_DIR = os.getenv("OUTPUT_DIR", "saved")
                DATA_DIR = os.getenv("DATA_DIR", "corpus")
                open("/etc/hosts").read()
                open("../outside.txt").read()
                open("https://example.com/x").read()
                spaced = open ("spaced/out.txt", "w")
                # open_clip: the file's name on the hub, not a file written here
                got = hf_hub_download("org/m", filename="open_clip_config.json", cache_dir="cache/hub")
                logging.basicConfig(filename="train.log")
            """,
            "settings.json": "{}",
        },
    )
    layout = layout_of(root)
    inputs = {u.path: (u.kind, u.source, u.exists) for u in layout.inputs}
    outputs = {u.path: (u.kind, u.source, u.exists) for u in layout.outputs}
    assert inputs == {
        "corpus": ("data", "train.py:25", False),
        "datasets": ("data", "train.py:8", False),
        "features": ("data", "train.py:10", False),
        "weights": ("models", "train.py:13", False),
    }
    assert outputs == {
        "artifacts": ("outputs", "train.py:15", False),
        "checkpoints": ("checkpoints", "train.py:14", False),
        "exports": ("outputs", "train.py:21", False),
        "logs": ("logs", "train.py:18", False),
        "outputs": ("outputs", "train.py:17", False),
        "report.txt": ("outputs", "train.py:19", False),
        "results": ("outputs", "train.py:16", False),
        "runs": ("runs", "train.py:23", False),
        "saved": ("outputs", "train.py:24", False),
        "spaced": ("outputs", "train.py:29", False),
        "cache": ("outputs", "train.py:31", False),
        "train.log": ("outputs", "train.py:32", False),
    }


def test_large_files(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "weights/model.safetensors": b"\0" * (2 * 2**20),
            "small.pt": b"\0" * 1000,
            "notes.txt": b"x" * (2 * 2**20),  # not a weights type and under 10 MiB
            "blob.dat": b"\0" * (10 * 2**20),
        },
    )
    layout = layout_of(root)
    assert layout.large_files == (
        LargeFile(path="blob.dat", size=10 * 2**20),
        LargeFile(path="weights/model.safetensors", size=2 * 2**20),
    )


def test_a_library_that_writes_beside_the_code_makes_its_folder_an_output(tmp_path: Path) -> None:
    """mlflow's store, TensorBoard's runs/...: the image's user cannot write to the code's
    folder, so what the entrypoints' imports write there becomes an output (mlflow's database
    with it); a guarded import, or one only a test makes, does not.
    """
    from mlpack.analyze import analyze

    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": (
                "import mlflow\n"
                "import mlflow.sklearn\n"
                "from torch.utils.tensorboard import SummaryWriter\n"
                "try:\n    import wandb\nexcept ImportError:\n    wandb = None\n"
                "\nif __name__ == '__main__':\n    mlflow.start_run()\n"
            ),
            "tests/test_train.py": "import pytorch_lightning\n",
        },
    )
    analysis = analyze(root, cache_dir=tmp_path / "cache")
    outputs = {u.path: u for u in analysis.layout.outputs}
    assert outputs["mlruns"] == PathUse(
        path="mlruns", kind="runs", source="train.py:1", exists=False
    )
    assert outputs["runs"].source == "train.py:3"
    assert "wandb" not in outputs  # guarded
    assert "lightning_logs" not in outputs  # only a test imports it
    env = {v.name: v for v in analysis.env}
    tracking = env["MLFLOW_TRACKING_URI"]
    assert (tracking.default, tracking.locations, tracking.secret) == (
        "sqlite:///mlruns/mlflow.db",
        ("train.py:1",),
        False,
    )


def test_code_that_reads_the_tracking_uri_keeps_its_own_default(tmp_path: Path) -> None:
    from mlpack.analyze import analyze

    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": (
                "import os\nimport mlflow\n"
                "uri = os.environ.get('MLFLOW_TRACKING_URI', 'http://tracking:5000')\n"
                "\nif __name__ == '__main__':\n    mlflow.set_tracking_uri(uri)\n"
            )
        },
    )
    env = {v.name: v for v in analyze(root, cache_dir=tmp_path / "cache").env}
    assert env["MLFLOW_TRACKING_URI"].default == "http://tracking:5000"
    assert env["MLFLOW_TRACKING_URI"].locations == ("train.py:3",)
