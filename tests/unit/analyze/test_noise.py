"""Layout and environment without noise: what only runtime code says, nothing that is no folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mlpack.analyze import analyze
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)

if TYPE_CHECKING:
    from pathlib import Path

MAIN = "\nif __name__ == '__main__':\n    pass\n"


@pytest.mark.usefixtures("parse_mode")
def test_modes_hub_ids_versions_and_shipped_files_are_not_folders(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "README.md": "# x\n",
            "train.py": (
                "from pathlib import Path\n"
                "from datasets import load_dataset\n"
                "from transformers import AutoModel\n"
                "def report(path):\n"
                "    with Path(path).open('w') as f:\n        f.write('x')\n"
                "ds = load_dataset('Abirate/english_quotes')\n"
                "m = AutoModel.from_pretrained('google/flan-t5-base')\n"
                "v = open('1.0.2')\n"
                "open('README.md', 'w').write('generated')\n"
                "x = open('data/train.csv')\n"
                "m.save_pretrained('outputs/model')\n" + MAIN
            ),
        },
    )
    layout = analyze(root, cache_dir=tmp_path / "cache").layout
    assert [u.path for u in layout.inputs] == ["data"]
    assert [u.path for u in layout.outputs] == ["outputs"]


@pytest.mark.usefixtures("parse_mode")
def test_env_defaults_only_from_runtime_code(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import os\nimport lib\nseed = os.getenv('SEED', '1')\n" + MAIN,
            "lib.py": "import os\nbatch = os.environ.get('BATCH', '8')\n",
            "examples/demo.py": (
                "import os\nos.environ.setdefault('CUDA_VISIBLE_DEVICES', '0')\n"
                "open('demo_out/x.txt', 'w')\n" + MAIN
            ),
            "tests/test_x.py": "import os\nos.getenv('SEED', '99')\n",
        },
    )
    result = analyze(root, cache_dir=tmp_path / "cache")
    assert {v.name: v.default for v in result.env} == {"SEED": "1", "BATCH": "8"}
    assert result.layout.outputs == ()  # an example's output folder is not the project's


@pytest.mark.usefixtures("parse_mode")
def test_pydantic_settings_fields_are_environment_variables(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "app/__init__.py": "",
            "app/main.py": "from fastapi import FastAPI\nfrom app.config import settings\n"
            "app = FastAPI()\n",
            "app/config.py": (
                "from typing import ClassVar\n"
                "from pydantic_settings import BaseSettings, SettingsConfigDict\n"
                "class Settings(BaseSettings):\n"
                "    model_config = SettingsConfigDict(env_file='.env', env_prefix='APP_')\n"
                "    PROJECT_NAME: str = 'demo'\n"
                "    SECRET_KEY: str\n"
                "    postgres_port: int = 5432\n"
                "    registry: ClassVar[dict] = {}\n"
                "settings = Settings()\n"
            ),
        },
    )
    env = {v.name: (v.default, v.secret) for v in analyze(root, cache_dir=tmp_path / "c").env}
    assert env == {
        "APP_PROJECT_NAME": ("demo", False),
        "APP_SECRET_KEY": (None, True),
        "APP_POSTGRES_PORT": ("5432", False),
    }
