from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.analyze import analyze
from mlpack.analyze.analysis import Entrypoint
from mlpack.analyze.entrypoints import analyze_entrypoints
from mlpack.analyze.factcache import collect_facts
from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)

MAIN = 'if __name__ == "__main__":\n    main()\n'


def entrypoints_of(root: Path) -> tuple[Entrypoint, ...]:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=root.parent / "cache", warnings=warnings)
    return analyze_entrypoints(tree, facts, warnings=warnings)


def test_training_scripts_root_train_first(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "scripts/train.py": "def main(): ...\n" + MAIN,
            "evaluate.py": "def main(): ...\n" + MAIN,
            "train.py": "def main(): ...\n" + MAIN,
            "finetune_lora.py": "def main(): ...\n" + MAIN,
            "tests/test_x.py": MAIN,
            "modeling_test.py": MAIN,  # google-research/bert's test files sit at the root
            "setup.py": MAIN,
            "lib.py": "x = 1\n",
            "pkg/__init__.py": "",
            "pkg/__main__.py": "print('hi')\n",
        },
    )
    found = entrypoints_of(root)
    assert [(e.kind, e.command, e.source, e.name) for e in found] == [
        ("training", ("python", "train.py"), "train.py:2", "train"),
        ("training", ("python", "finetune_lora.py"), "finetune_lora.py:2", "finetune_lora"),
        ("training", ("python", "scripts/train.py"), "scripts/train.py:2", "train-2"),
        ("training", ("python", "-m", "pkg"), "pkg/__main__.py", "pkg"),
        ("training", ("python", "evaluate.py"), "evaluate.py:2", "evaluate"),  # a utility
    ]


def test_scripts_without_a_guard_and_inference_words(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            # nanoGPT: top-level code, no __main__ guard
            "train.py": "import torch\nmodel = 1\nwhile True:\n    break\n",
            "sample.py": "import torch\nprint(torch.zeros(1))\n",
            "prepare.py": "import numpy\nfor i in range(3):\n    pass\n",
            "model.py": "import torch\nclass GPT:\n    pass\n",
            "pkg/__init__.py": "",
            "pkg/registry.py": "register('x')\n",  # a package module's set-up call
            "detect.py": "def run(): ...\n" + MAIN,
            "transcribe.py": "def run(): ...\n" + MAIN,
            "example_text_completion.py": "def run(): ...\n" + MAIN,  # meta-llama/llama
            "generate/adapter.py": "def run(): ...\n" + MAIN,  # litgpt: the folder says
            "app/initial_data.py": "def run(): ...\n" + MAIN,  # the fastapi template: no
            "scripts/txt2img.py": "def run(): ...\n" + MAIN,  # stable-diffusion
        },
    )
    found = [(e.kind, e.command, e.source) for e in entrypoints_of(root)]
    assert found == [
        ("training", ("python", "train.py"), "train.py:3"),
        ("inference", ("python", "detect.py"), "detect.py:2"),
        ("inference", ("python", "example_text_completion.py"), "example_text_completion.py:2"),
        ("inference", ("python", "transcribe.py"), "transcribe.py:2"),
        ("inference", ("python", "sample.py"), "sample.py:2"),
        ("inference", ("python", "generate/adapter.py"), "generate/adapter.py:2"),
        ("inference", ("python", "scripts/txt2img.py"), "scripts/txt2img.py:2"),
        ("training", ("python", "app/initial_data.py"), "app/initial_data.py:2"),
        ("training", ("python", "prepare.py"), "prepare.py:2"),
    ]


def test_alembics_migration_environment_is_not_an_entrypoint(tmp_path: Path) -> None:
    """The fastapi template's backend/app/alembic/env.py: top-level code that alembic runs."""
    env = "from alembic import context\nconfig = context.config\nprint(config)\n"
    root = make_repo(
        tmp_path / "repo",
        {"app/alembic/env.py": env, "tools/env.py": "import os\nprint(os.environ)\n"},
    )
    assert [e.path for e in entrypoints_of(root)] == ["tools/env.py"]


def test_a_utility_name_ranks_last_whatever_else_it_says(tmp_path: Path) -> None:
    """dino: eval_copy_detection.py (eval + detect) and visualize_attention.py rank after
    main_dino.py, the training script with a plain name; so does a statistics script.
    """
    root = make_repo(
        tmp_path / "repo",
        {
            "main_dino.py": MAIN,
            "eval_copy_detection.py": MAIN,
            "visualize_attention.py": MAIN,
            "video_generation.py": MAIN,
            "genlip_caption_stats.py": MAIN,  # open_clip: statistics of captions
            "web-service/test.py": MAIN,  # mlops-zoomcamp: a client that tests the service
        },
    )
    found = [(e.path, e.kind) for e in entrypoints_of(root)]
    assert found == [
        ("video_generation.py", "inference"),
        ("main_dino.py", "training"),
        ("eval_copy_detection.py", "inference"),
        ("genlip_caption_stats.py", "inference"),
        ("visualize_attention.py", "training"),
        ("web-service/test.py", "inference"),
    ]


def test_a_file_that_another_reads_is_not_an_entrypoint(tmp_path: Path) -> None:
    """nanoGPT's configurator.py: top-level code that train.py runs with exec(open(...)); and
    CLIP's hubconf.py, which torch.hub.load reads.
    """
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": "import torch\nexec(open('configurator.py').read())\nfor i in range(3):\n"
            "    pass\n",
            "configurator.py": "import sys\nfor arg in sys.argv[1:]:\n    pass\n",
            "tools/run.py": "exec(open('helpers/conf.py').read())\n",
            "hubconf.py": "dependencies = ['torch']\nfor name in ['a']:\n    globals()[name] = 1\n",
            "tools/helpers/conf.py": "import sys\nprint(sys.argv)\n",
        },
    )
    found = [e.path for e in entrypoints_of(root)]
    assert found == ["train.py", "tools/run.py"]


def test_a_script_that_imports_a_trainer_beats_a_modules_demo(tmp_path: Path) -> None:
    """minGPT: no file is named train*; projects/adder/adder.py trains with mingpt.trainer,
    while mingpt/bpe.py only demonstrates the tokenizer under its __main__ guard.
    """
    guard = "if __name__ == '__main__':\n    main()\n"
    root = make_repo(
        tmp_path / "repo",
        {
            "mingpt/__init__.py": "",
            "mingpt/trainer.py": "import torch\n",
            "mingpt/bpe.py": "import regex\ndef main(): pass\n" + guard,
            "projects/adder/adder.py": "from mingpt.trainer import Trainer\ndef main(): pass\n"
            + guard,
            "tools/convert.py": "from mingpt.trainer import Trainer\ndef main(): pass\n" + guard,
            "scripts/fit_lightning.py": "import lightning as L\n" + guard,
        },
    )
    order = [e.command for e in entrypoints_of(root) if e.kind == "training"]
    assert order == [
        ("python", "scripts/fit_lightning.py"),  # named for training
        ("python", "projects/adder/adder.py"),  # imports a trainer
        ("python", "-m", "mingpt.bpe"),
        ("python", "tools/convert.py"),  # a utility, whatever it imports
    ]


def test_among_equal_training_scripts_the_plainer_name_first(tmp_path: Path) -> None:
    """detectron2's tools/: train_net.py is the one its README runs; the others are variants."""
    guard = "if __name__ == '__main__':\n    main()\n"
    root = make_repo(
        tmp_path / "repo",
        {
            f"tools/{name}.py": "def main(): pass\n" + guard
            for name in ("lazyconfig_train_net", "plain_train_net", "train_net")
        },
    )
    first = next(e for e in entrypoints_of(root) if e.kind == "training")
    assert first.command == ("python", "tools/train_net.py")


def test_streamlit_and_gradio_apps_are_inference(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "ui.py": "import streamlit as st\nst.title('x')\n",
            "demo_app.py": "import gradio as gr\ndemo = gr.Interface()\n" + MAIN,
        },
    )
    found = {e.path: (e.kind, e.command) for e in entrypoints_of(root)}
    assert found == {
        "ui.py": (
            "inference",
            ("streamlit", "run", "ui.py", "--server.address", "0.0.0.0", "--server.port", "8501"),
        ),
        "demo_app.py": (
            "inference",
            (
                "env",
                "GRADIO_SERVER_NAME=0.0.0.0",
                "GRADIO_SERVER_PORT=7860",
                "python",
                "demo_app.py",
            ),
        ),
    }


@pytest.mark.usefixtures("parse_mode")
def test_streamlit_reached_through_a_star_import_of_an_own_module(tmp_path: Path) -> None:
    """``from helpers import *`` of a module that does ``import streamlit as st`` is an app."""
    helpers = "import streamlit as st\nimport torch\n\ndef show(x):\n    st.write(x)\n"
    root = make_repo(
        tmp_path / "repo",
        {
            "scripts/__init__.py": "",
            "scripts/demo/__init__.py": "",
            "scripts/demo/streamlit_helpers.py": helpers,
            "scripts/demo/sampling.py": "from scripts.demo.streamlit_helpers import *\n"
            + 'if __name__ == "__main__":\n    st.title("x")\n',
            "scripts/demo/video.py": "from .streamlit_helpers import *\n" + MAIN,
            # A plain import, or a star import under a guard, brings no ``st``.
            "train.py": "import scripts.demo.streamlit_helpers\n" + MAIN,
            "guarded.py": "try:\n    from scripts.demo.streamlit_helpers import *\n"
            "except ImportError:\n    pass\n" + MAIN,
        },
    )
    found = {e.path: e.command[:2] for e in entrypoints_of(root)}
    assert found["scripts/demo/sampling.py"] == ("streamlit", "run")
    assert found["scripts/demo/video.py"] == ("streamlit", "run")
    assert found["train.py"] == ("python", "train.py")
    assert found["guarded.py"] == ("python", "guarded.py")


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        ("from app.core import db\n", ("uvicorn", "app.main:app", "--app-dir", "backend")),
        ("from backend.app.core import db\n", ("uvicorn", "backend.app.main:app")),
    ],
)
def test_web_app_import_root(tmp_path: Path, imports: str, expected: tuple[str, ...]) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "backend/app/__init__.py": "",
            "backend/app/core/__init__.py": "",
            "backend/app/core/db.py": "",
            "backend/app/main.py": "from fastapi import FastAPI\n" + imports + "app = FastAPI()\n",
            "backend/app/pre_start.py": imports + MAIN,
        },
    )
    (first, second) = entrypoints_of(root)
    assert first.command == (*expected, "--host", "0.0.0.0", "--port", "8000")
    if "--app-dir" in expected:
        assert second.command == ("sh", "-c", "cd backend && python -m app.pre_start")
    else:
        assert second.command == ("python", "-m", "backend.app.pre_start")


def test_web_apps_first_for_inference(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "app/__init__.py": "",
            "app/main.py": """
                import uvicorn
                from fastapi import FastAPI

                app = FastAPI(title="x")

                def factory():
                    inner = FastAPI()  # not module level: not an entrypoint
                    return inner

                if __name__ == "__main__":
                    uvicorn.run(app, host="0.0.0.0")
            """,
            "web.py": "from flask import Flask\napplication = Flask(__name__)\n",
            "src/svc/__init__.py": "",
            "src/svc/api.py": "from starlette.applications import Starlette\napi: Starlette = Starlette()\n",
            "serve_model.py": "from flask import Flask\napp = Flask(__name__)\n"
            + 'if __name__ == "__main__":\n    app.run(port=8000)\n',
        },
    )
    found = entrypoints_of(root)
    commands = [(e.kind, e.command, e.source) for e in found]
    assert commands[:2] == [
        (
            "inference",
            ("gunicorn", "--bind", "0.0.0.0:8000", "serve_model:app"),
            "serve_model.py:2",
        ),
        ("inference", ("gunicorn", "--bind", "0.0.0.0:8000", "web:application"), "web.py:2"),
    ]
    assert (
        "inference",
        ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"),
        "app/main.py:5",
    ) in commands
    assert (
        "inference",
        ("uvicorn", "svc.api:api", "--app-dir", "src", "--host", "0.0.0.0", "--port", "8000"),
        "src/svc/api.py:2",
    ) in commands
    # scripts that start a server themselves are inference, after the app objects
    # app/ is a package: run as a file, main.py could not import it (python -m app.main can)
    assert ("inference", ("python", "-m", "app.main"), "app/main.py:11") in commands
    assert ("inference", ("python", "serve_model.py"), "serve_model.py:3") in commands
    assert all(e.kind == "inference" for e in found)
    assert len({e.name for e in found}) == len(found)


def test_console_scripts_procfile_makefile_shell(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "x"\n\n[project.scripts]\n'
            'x-train = "pkg.cli:train"\nx-serve = "pkg.cli:serve"\nasr = "pkg.transcribe:cli"\n',
            "pkg/__init__.py": "",
            "pkg/cli.py": "def train(): ...\ndef serve(): ...\n",
            "Procfile": "web: uvicorn pkg.api:app --port $PORT\nworker: python train.py\n"
            "release: python manage.py migrate\n",
            "Makefile": ".PHONY: train\ntrain:\n\tpython train.py\nserve:\n\tuvicorn a:b\n"
            "lint:\n\truff check .\nmulti:\n\ttorchrun --nproc_per_node 2 train.py\n",
            "scripts/launch.sh": "#!/bin/sh\n# torchrun in a comment\nNGPU=4\ntorchrun --nproc_per_node $NGPU train.py\n",
            "scripts/notes.sh": "echo hi\n",
        },
    )
    found = {e.source: e for e in entrypoints_of(root)}
    assert found["pyproject.toml:5"] == Entrypoint(
        kind="training",
        command=("x-train",),
        path="pkg/cli.py",
        source="pyproject.toml:5",
        name="x-train",
    )
    assert found["pyproject.toml:6"].kind == "inference"
    assert found["pyproject.toml:7"].kind == "inference"  # a neutral name: its target says
    assert found["Procfile:1"] == Entrypoint(
        kind="inference",
        command=("sh", "-c", "uvicorn pkg.api:app --port $PORT"),
        path="Procfile",
        source="Procfile:1",
        name="web",
    )
    assert found["Procfile:2"].command == ("python", "train.py")
    assert found["Procfile:2"].kind == "training"
    assert "Procfile:3" not in found
    assert found["Makefile:2"].command == ("make", "train")
    assert found["Makefile:4"].kind == "inference"
    assert found["Makefile:8"].kind == "training"  # its recipe launches torchrun
    assert "Makefile:6" not in found  # lint is neither
    assert found["scripts/launch.sh:4"] == Entrypoint(
        kind="training",
        command=("bash", "scripts/launch.sh"),
        path="scripts/launch.sh",
        source="scripts/launch.sh:4",
        name="launch",
    )
    assert not [s for s in found if s.startswith("scripts/notes.sh")]


def test_a_published_command_comes_before_scripts_and_examples_after(tmp_path: Path) -> None:
    """litgpt: its console script ``litgpt`` is what a user runs, before the scripts of its
    extensions/ and after no tutorial; a utility command still ranks last."""
    root = make_repo(
        tmp_path / "repo",
        {
            "pyproject.toml": '[project]\nname = "litgpt"\n\n[project.scripts]\n'
            'litgpt = "litgpt.__main__:main"\nlitgpt-download = "litgpt.scripts:download"\n',
            "litgpt/__init__.py": "",
            "litgpt/__main__.py": "def main(): ...\n" + MAIN,
            "extensions/__init__.py": "",
            "extensions/thunder/__init__.py": "",
            "extensions/thunder/pretrain.py": "def setup(): ...\n" + MAIN,
            "tutorials/full_finetune_example.py": "def main(): ...\n" + MAIN,
            "examples/qa/app.py": "import streamlit as st\nst.title('x')\n",  # LoRA's eli5_app
        },
    )
    found = [e.command for e in entrypoints_of(root)]
    assert found == [
        ("litgpt",),
        ("python", "-m", "extensions.thunder.pretrain"),
        (
            "streamlit",
            "run",
            "examples/qa/app.py",
            "--server.address",
            "0.0.0.0",
            "--server.port",
            "8501",
        ),
        ("python", "tutorials/full_finetune_example.py"),
        ("python", "-m", "litgpt"),
        ("litgpt-download",),
    ]


def test_a_root_main_py_is_the_projects_program(tmp_path: Path) -> None:
    """detr: ``python main.py`` trains; ``d2/train_net.py`` is its Detectron2 wrapper."""
    root = make_repo(
        tmp_path / "repo",
        {
            "main.py": "def main(): ...\n" + MAIN,
            "d2/train_net.py": "def main(): ...\n" + MAIN,
            "run_with_submitit.py": "def main(): ...\n" + MAIN,
            "tools/main.py": "def main(): ...\n" + MAIN,
        },
    )
    assert [e.path for e in entrypoints_of(root)] == [
        "main.py",
        "d2/train_net.py",
        "tools/main.py",
        "run_with_submitit.py",
    ]


def test_nothing_to_start(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"lib.py": "def f(): ...\n"})
    assert entrypoints_of(root) == ()


def test_kind_from_words_not_substrings(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {"mapping.py": MAIN, "serve_model.py": MAIN, "predict.py": MAIN, "api_train.py": MAIN},
    )
    kinds = {e.path: e.kind for e in entrypoints_of(root)}
    assert kinds == {
        "mapping.py": "training",
        "serve_model.py": "inference",
        "predict.py": "inference",
        "api_train.py": "training",
    }


def test_module_inside_a_package_runs_with_dash_m(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "app/__init__.py": "",
            "app/model.py": "class M: ...\n",
            "app/main.py": "from app.model import M\n" + MAIN,
            "pkg/sub/__init__.py": "",
            "pkg/sub/train.py": "from . import x\n" + MAIN,
            "scripts/prepare.py": "import helpers\n" + MAIN,  # no __init__.py: a script folder
            "src/svc/__init__.py": "",
            "src/svc/cli.py": MAIN,
            "my-tools/__init__.py": "",
            "my-tools/run.py": MAIN,  # not importable: stays a file
            # whisper: python -m whisper runs its transcribe module: inference
            "whisper/__init__.py": "",
            "whisper/__main__.py": "from .transcribe import cli\n\ncli()\n",
            "whisper/transcribe.py": "def cli(): ...\n",
            "bark/__init__.py": "",
            "bark/__main__.py": "from .cli import cli\n\ncli()\n",
            "bark/cli.py": "def cli(): ...\n",
        },
    )
    kinds = {e.path: e.kind for e in entrypoints_of(root)}
    assert (kinds["whisper/__main__.py"], kinds["bark/__main__.py"]) == ("inference", "training")
    commands = {e.path: e.command for e in entrypoints_of(root)}
    assert commands == {
        "app/main.py": ("python", "-m", "app.main"),
        "pkg/sub/train.py": ("python", "-m", "pkg.sub.train"),
        "scripts/prepare.py": ("python", "scripts/prepare.py"),
        # a src/ layout: the image's workdir is the root, where svc imports only from src/
        "src/svc/cli.py": ("env", "PYTHONPATH=src", "python", "-m", "svc.cli"),
        "my-tools/run.py": ("python", "my-tools/run.py"),
        "whisper/__main__.py": ("python", "-m", "whisper"),
        "bark/__main__.py": ("python", "-m", "bark"),
    }


def test_a_src_layouts_command_runs_from_the_root(tmp_path: Path) -> None:
    """The command found for src/svc/cli.py works where the image runs it: the root."""
    root = make_repo(
        tmp_path / "repo",
        {
            "src/svc/__init__.py": "",
            "src/svc/util.py": "WORD = 'ran'\n",
            "src/svc/cli.py": "from svc.util import WORD\n\nif __name__ == '__main__':\n"
            "    print(WORD)\n",
        },
    )
    (command,) = [e.command for e in entrypoints_of(root)]
    argv = [sys.executable if word == "python" else word for word in command]
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "ran\n"), done.stderr


def test_a_src_folder_with_an_init_is_a_package_not_a_layout(tmp_path: Path) -> None:
    """lightning-hydra-template: src/__init__.py, and src/train.py imports src.models."""
    root = make_repo(
        tmp_path / "repo",
        {
            "src/__init__.py": "",
            "src/train.py": "from src.models import net\n" + MAIN,
            "src/models/__init__.py": "",
            "src/models/net.py": "import torch\n",
            "src/svc/__init__.py": "",
            "src/svc/__main__.py": "print('hi')\n",
        },
    )
    commands = {e.path: e.command for e in entrypoints_of(root)}
    assert commands == {
        "src/train.py": ("python", "-m", "src.train"),
        "src/svc/__main__.py": ("python", "-m", "src.svc"),
    }
    result = analyze(root, cache_dir=tmp_path / "cache")
    assert {p.name for p in result.packages} == {"torch"}  # `src` is the repository's own
    assert not [w for w in result.warnings if w.startswith("guessed")]


def test_same_command_listed_once_with_both_sources(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "app/__init__.py": "",
            "app/main.py": "from fastapi import FastAPI\n\napp = FastAPI()\n",
            "Procfile": "web: uvicorn app.main:app --host 0.0.0.0 --port 8000\n"
            "worker: python train.py\n",
            "Makefile": "train:\n\tpython train.py\n",
            "train.py": MAIN,
        },
    )
    found = entrypoints_of(root)
    assert [(e.command, e.path, e.source, e.name) for e in found] == [
        (("python", "train.py"), "train.py", "train.py:1, Procfile:2", "train"),
        (
            ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"),
            "app/main.py",
            "app/main.py:3, Procfile:1",
            "serve",
        ),
        (("make", "train"), "Makefile", "Makefile:1", "train-2"),
    ]


def test_inference_example_lists_each_command_once(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3] / "examples" / "inference"
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=tmp_path / "cache", warnings=warnings)
    found = analyze_entrypoints(tree, facts, warnings=warnings)
    assert [(e.command, e.source) for e in found] == [
        (
            ("uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"),
            "app/main.py:17, Procfile:1",
        ),
        (("python", "-m", "app.main"), "app/main.py:60"),
    ]


def test_an_app_in_a_helpers_folder_ranks_after_the_inference_script(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "detect.py": "def run(): ...\n" + MAIN,
            "utils/__init__.py": "",
            "utils/rest/api.py": "from flask import Flask\napp = Flask(__name__)\n"
            "if __name__ == '__main__':\n    app.run()\n",
        },
    )
    kinds = [(e.kind, e.path) for e in entrypoints_of(root)]
    assert kinds[0] == ("inference", "detect.py")
    assert ("inference", "utils/rest/api.py") in kinds[1:]
