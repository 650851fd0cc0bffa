"""The user's word on analysis in mlpack.toml: groups, ignore-imports, import-map, exclude."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import tomllib

from mlpack.analyze import analyze
from mlpack.config import import_settings, load_config, write_config
from mlpack.errors import ConfigError
from tests.unit.analyze.repo_helpers import make_repo

if TYPE_CHECKING:
    from pathlib import Path

REPO: dict[str, str | bytes] = {
    "train.py": "import numpy\nimport cv2\nimport internal_thing\nif __name__ == '__main__':\n"
    "    pass\n",
    "tests/test_a.py": "import pytest\n",
}


def written(root: Path, tmp_path: Path) -> list[str]:
    result = analyze(root, cache_dir=tmp_path / "cache", settings=import_settings(root))
    write_config(root, result)
    data = tomllib.loads((root / "mlpack.toml").read_text(encoding="utf-8"))
    return sorted(p["requirement"] for p in data["dependencies"]["packages"])


def test_only_runtime_goes_into_the_image_by_default(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", REPO)
    assert written(root, tmp_path) == ["internal-thing", "numpy", "opencv-python"]


def test_groups_ignore_imports_import_map_and_exclude(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            **REPO,
            "mlpack.toml": 'python = "3.11"\n[dependencies]\n'
            'groups = ["runtime", "test"]\nignore-imports = ["internal_thing"]\n'
            'exclude = ["NumPy"]\n'
            '[dependencies.import-map]\ncv2 = "opencv-python-headless"\n',
        },
    )
    # numpy, deleted by the user and excluded, does not come back; pytest's group is wanted.
    assert written(root, tmp_path) == ["opencv-python-headless", "pytest"]
    config = load_config(root)
    assert config.groups == ("runtime", "test")
    assert config.exclude == ("numpy",)
    assert config.import_map == (("cv2", "opencv-python-headless"),)
    assert config.ignore_imports == ("internal_thing",)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ('groups = ["prod"]', "dependencies.groups"),
        ("ignore-imports = 3", "dependencies.ignore-imports"),
        ("import-map = 3", "dependencies.import-map"),
        ("exclude = [1]", "dependencies.exclude"),
    ],
)
def test_bad_settings_are_config_errors(tmp_path: Path, table: str, field: str) -> None:
    root = make_repo(
        tmp_path / "repo", {"mlpack.toml": f'python = "3.11"\n[dependencies]\n{table}\n'}
    )
    with pytest.raises(ConfigError, match=field):
        load_config(root)


def test_no_config_means_default_settings(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": ""})
    settings = import_settings(root)
    assert (settings.ignore_imports, dict(settings.import_map), settings.exclude) == (
        frozenset(),
        {},
        frozenset(),
    )
