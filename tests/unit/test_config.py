"""mlpack.toml: validation with one clear error per bad field, and an additive --write."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from mlpack.analyze.analysis import (
    Accelerator,
    Entrypoint,
    EnvVar,
    Layout,
    Package,
    PathUse,
    ProjectAnalysis,
    PythonDecision,
)
from mlpack.config import load_config, merge_into, write_config
from mlpack.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

GOOD = """
name = "flowers"
python = "3.11"
python-source = ".python-version:1"
platform = "linux/amd64"

[dependencies]
packages = [
  { requirement = "numpy>=1.24", source = "requirements.txt:2" },
  "pyyaml",
]
system = ["libgomp1"]

[env]
SEED = { default = "42" }
WANDB_API_KEY = { secret = true }

[layout]
inputs = ["data", "configs"]
outputs = ["outputs"]

[entrypoints.train]
kind = "training"
command = ["python", "train.py"]

[entrypoints.serve]
kind = "inference"
command = ["uvicorn", "app.main:app"]
port = 8000

[accelerator]
cuda = false
"""


def _write(tmp_path: Path, text: str, name: str = "mlpack.toml") -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_good_config_loads(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.name == "flowers"
    assert cfg.python == "3.11"
    assert [p.name for p in cfg.packages] == ["numpy", "pyyaml"]
    assert cfg.packages[0].source == "requirements.txt:2"
    assert cfg.packages[1].source == "mlpack.toml"
    assert [(e.name, e.default, e.secret) for e in cfg.env] == [
        ("SEED", "42", False),
        ("WANDB_API_KEY", None, True),
    ]
    assert [(e.name, e.kind, e.port) for e in cfg.entrypoints] == [
        ("train", "training", None),
        ("serve", "inference", 8000),
    ]
    assert cfg.inputs == ("data", "configs")
    assert cfg.system_packages == ("libgomp1",)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("python = \"3.11\"", "python = \"3\""), "`python`"),
        (("python = \"3.11\"", "python = 3.11"), "`python`"),
        (("platform = \"linux/amd64\"", "platform = \"windows/amd64\""), "`platform`"),
        (("name = \"flowers\"", "name = \"Flowers App\""), "`name`"),
        (("\"pyyaml\",", "\"pyyaml>>1\","), "`dependencies.packages[1]`"),
        (("SEED = { default = \"42\" }", "SEED = { default = 42 }"), "`env.SEED.default`"),
        (("WANDB_API_KEY = { secret = true }", "WANDB_API_KEY = { secret = true, default = \"x\" }"),
         "`env.WANDB_API_KEY.default`"),
        (("kind = \"training\"", "kind = \"batch\""), "`entrypoints.train.kind`"),
        (("port = 8000", "port = 99999"), "`entrypoints.serve.port`"),
        (("cuda = false", "cuda = \"no\""), "`accelerator.cuda`"),
        (("inputs = [\"data\", \"configs\"]", "inputs = [\"../secrets\"]"), "`layout`"),
        (("[accelerator]", "colour = \"blue\"\n[accelerator]"), "`entrypoints.serve.colour`"),
    ],
)  # fmt: skip
def test_each_bad_field_gives_one_clear_error(
    tmp_path: Path, edit: tuple[str, str], field: str
) -> None:
    old, new = edit
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert field in info.value.message
    assert info.value.message.startswith("mlpack.toml: ")
    assert info.value.hint


def test_unknown_top_level_key_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, 'pyhton = "3.11"\n' + GOOD))
    assert "`pyhton`" in info.value.message
    assert "python" in info.value.hint


def test_invalid_toml_and_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "name = \n"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no mlpack\.toml") as info:
        load_config(empty)
    assert "analyze --write" in info.value.hint


def test_tool_mlpack_table_in_pyproject(tmp_path: Path) -> None:
    body = GOOD.replace("[dependencies]", "[tool.mlpack.dependencies]")
    body = body.replace("[env]", "[tool.mlpack.env]").replace("[layout]", "[tool.mlpack.layout]")
    body = body.replace("[entrypoints.", "[tool.mlpack.entrypoints.")
    body = body.replace("[accelerator]", "[tool.mlpack.accelerator]")
    head, rest = body.split("[tool.mlpack.dependencies]", 1)
    text = '[project]\nname = "x"\n\n[tool.mlpack]\n' + head + "[tool.mlpack.dependencies]" + rest
    cfg = load_config(_write(tmp_path, text, "pyproject.toml"))
    assert cfg.config_path.name == "pyproject.toml"
    assert cfg.name == "flowers"
    assert len(cfg.entrypoints) == 2


def _analysis(tmp_path: Path, *, python: str = "3.11") -> ProjectAnalysis:
    def pkg(name: str, **kw: object) -> Package:
        base: dict[str, object] = {
            "name": name, "specifier": "", "source": "requirements.txt:1", "imports": (name,),
            "optional": False, "declared": True, "used": True,
        }  # fmt: skip
        base.update(kw)
        return Package(**base)  # type: ignore[arg-type]

    return ProjectAnalysis(
        root=str(tmp_path),
        python=PythonDecision(version=python, source=".python-version:1"),
        packages=(
            pkg("numpy", specifier=">=1.24"),
            pkg("scikit-learn", imports=("sklearn",)),
            pkg("pytest", group="dev"),
            pkg("rich", declared=False, source="train.py:3"),
            pkg("ujson", declared=False, optional=True, usage="optional", source="train.py:5"),
        ),
        ambiguous=(),
        env=(
            EnvVar(name="SEED", default="42", secret=False, locations=("train.py:9",)),
            EnvVar(name="HF_TOKEN", default="hf_abc", secret=True, locations=("train.py:10",)),
        ),
        layout=Layout(
            inputs=(PathUse(path="data", kind="data", source="rule", exists=True),),
            outputs=(PathUse(path="outputs", kind="outputs", source="train.py:30", exists=False),),
            code=("train.py",),
            large_files=(),
        ),
        entrypoints=(
            Entrypoint(
                kind="training",
                command=("python", "train.py"),
                path="train.py",
                source="train.py:40",
                name="train",
            ),
        ),
        accelerator=Accelerator(cuda=False, source=None),
        system_packages=(),
    )


def test_write_creates_a_valid_config_without_secret_values(tmp_path: Path) -> None:
    path, notes = write_config(tmp_path, _analysis(tmp_path))
    assert path == tmp_path / "mlpack.toml"
    assert notes == []
    text = path.read_text()
    assert "hf_abc" not in text
    cfg = load_config(tmp_path)
    # Main deps and runtime undeclared imports go in; dev groups and optional imports do not.
    assert [p.name for p in cfg.packages] == ["numpy", "scikit-learn", "rich"]
    assert cfg.packages[2].source == "train.py:3"
    assert {e.name: e.secret for e in cfg.env} == {"SEED": False, "HF_TOKEN": True}
    assert cfg.entrypoints[0].command == ("python", "train.py")


@pytest.mark.parametrize(
    ("command", "port"),
    [
        (("uvicorn", "app:app", "--host", "0.0.0.0", "--port", "8000"), 8000),
        (("uvicorn", "app:app", "--port=8080"), 8080),
        (("gunicorn", "--bind", "0.0.0.0:5000", "app:app"), 5000),
        # streamlit/demo-uber-nyc-pickups: the app listens on 8501, not the default 8000
        (
            ("streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"),
            8501,
        ),
        (("python", "serve.py"), 8000),
        (
            ("env", "GRADIO_SERVER_NAME=0.0.0.0", "GRADIO_SERVER_PORT=7860", "python", "app.py"),
            7860,
        ),
    ],
)
def test_an_inference_entrypoints_port_is_where_its_server_listens(
    tmp_path: Path, command: tuple[str, ...], port: int
) -> None:
    entry = Entrypoint(
        kind="inference", command=command, path="app.py", source="app.py:1", name="app"
    )
    analysis = dataclasses.replace(_analysis(tmp_path), entrypoints=(entry,))
    write_config(tmp_path, analysis)
    assert [(e.name, e.port) for e in load_config(tmp_path).entrypoints] == [("app", port)]


def test_write_keeps_user_edits_and_comments(tmp_path: Path) -> None:
    write_config(tmp_path, _analysis(tmp_path))
    path = tmp_path / "mlpack.toml"
    text = path.read_text().replace('python = "3.11"', 'python = "3.10"  # pinned by hand')
    text = text.replace('"numpy>=1.24"', '"numpy==1.26.4"')
    path.write_text(text)
    _, notes = write_config(tmp_path, _analysis(tmp_path, python="3.12"))
    after = path.read_text()
    assert 'python = "3.10"  # pinned by hand' in after
    assert '"numpy==1.26.4"' in after
    assert after.count("numpy") == 1
    assert any("python" in n and "3.12" in n for n in notes)
    assert load_config(tmp_path).python == "3.10"


def test_write_refuses_to_replace_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "mlpack.toml"
    path.write_text("name = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        write_config(tmp_path, _analysis(tmp_path))
    assert path.read_text() == "name = [\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlpack.toml"]


def test_merge_adds_only_missing_items() -> None:
    existing: dict[str, object] = {"env": {"A": {}}, "layout": {"inputs": ["data"]}}
    generated: dict[str, object] = {
        "env": {"A": {"default": "1"}, "B": {}},
        "layout": {"inputs": ["data", "configs"]},
    }
    assert merge_into(existing, generated) == []
    assert existing == {"env": {"A": {}, "B": {}}, "layout": {"inputs": ["data", "configs"]}}
    assert tomllib.loads("a = 1")["a"] == 1


def test_merge_keeps_a_debian_package_written_in_the_other_releases_name() -> None:
    existing: dict[str, object] = {"dependencies": {"system": ["libglib2.0-0"]}}
    generated: dict[str, object] = {"dependencies": {"system": ["libgl1", "libglib2.0-0t64"]}}
    merge_into(existing, generated)
    assert existing == {"dependencies": {"system": ["libglib2.0-0", "libgl1"]}}


def test_indexes_the_requirements_name_go_into_the_config_and_the_lock(tmp_path: Path) -> None:
    """``--index-url`` replaces PyPI and ``--extra-index-url`` adds an index, as pip reads them;
    the lock's inputs then use them (a CPU torch index is recognised as the torch variant's).
    """
    from mlpack.analyze import analyze
    from mlpack.config import config_from_analysis
    from mlpack.lock.inputs import inputs_from_config

    (tmp_path / "requirements.txt").write_text(
        "--index-url https://${USER}:${TOKEN}@mirror.example/simple\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "torch\n"
    )
    (tmp_path / "train.py").write_text("import torch\n")
    analysis = analyze(tmp_path, cache_dir=tmp_path / ".cache")
    config = config_from_analysis(tmp_path, analysis)
    assert config.index_url == "https://mirror.example/simple"  # no credentials, not even ${VAR}
    assert config.extra_index_urls == ("https://download.pytorch.org/whl/cpu",)
    indexes = inputs_from_config(config).indexes
    assert indexes.all == ("https://mirror.example/simple", "https://download.pytorch.org/whl/cpu")
    assert indexes.source == "mlpack.toml"

    path, _ = write_config(tmp_path, analysis)
    written = tomllib.loads(path.read_text())["dependencies"]
    assert written["index-url"] == "https://mirror.example/simple"
    assert written["extra-index-urls"] == ["https://download.pytorch.org/whl/cpu"]
    assert "TOKEN" not in path.read_text()


def test_write_keeps_the_users_index_and_adds_a_new_extra_one(tmp_path: Path) -> None:
    from mlpack.analyze import analyze

    (tmp_path / "requirements.txt").write_text(
        "-i https://other.example/simple\n--extra-index-url https://extra.example/simple\nnumpy\n"
    )
    (tmp_path / "mlpack.toml").write_text(
        'name = "x"\n[dependencies]\nindex-url = "https://mine.example/simple"\n'
    )
    path, notes = write_config(tmp_path, analyze(tmp_path, cache_dir=tmp_path / ".cache"))
    written = tomllib.loads(path.read_text())["dependencies"]
    assert written["index-url"] == "https://mine.example/simple"
    assert written["extra-index-urls"] == ["https://extra.example/simple"]
    assert any("index-url" in n for n in notes)
