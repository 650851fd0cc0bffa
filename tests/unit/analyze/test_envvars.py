from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.analyze.analysis import EnvVar
from mlpack.analyze.envvars import analyze_env, is_secret
from mlpack.analyze.factcache import collect_facts
from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)


def env_of(root: Path) -> tuple[EnvVar, ...]:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=root.parent / "cache", warnings=warnings)
    return analyze_env(tree, facts, warnings=warnings)


@pytest.mark.usefixtures("parse_mode")
def test_every_read_form_with_literal_defaults(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "app.py": """
                import os
                import os as system
                from os import environ, getenv
                from os import environ as E, getenv as ge

                a = os.environ["A"]
                b = os.environ.get("B", "bee")
                c = os.getenv("C", 3)
                d = os.environ.setdefault("D", 1.5)
                e = environ["E_VAR"]
                f = getenv("F", True)
                g = E.get("G")
                h = ge("H", default="aitch")
                i = system.getenv("I")
                if "J" in os.environ:
                    pass
                os.environ["SET_NOT_READ"] = "1"
                dyn = os.getenv(f"DYN_{a}")
                j = os.getenv("B", "other")
            """,
        },
    )
    found = {v.name: v for v in env_of(root)}
    assert list(found) == ["A", "B", "C", "D", "E_VAR", "F", "G", "H", "I", "J"]
    defaults = {k: v.default for k, v in found.items()}
    assert defaults == {
        "A": None,
        "B": "bee",  # the first location's default
        "C": "3",
        "D": "1.5",
        "E_VAR": None,
        "F": "True",
        "G": None,
        "H": "aitch",
        "I": None,
        "J": None,
    }
    assert found["B"].locations == ("app.py:8", "app.py:20")


def test_example_files_secrets_and_dotenv_never_read(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": """
                import os
                token = os.getenv("HF_TOKEN", "hf_live_default")
                epochs = os.getenv("EPOCHS", "10")
            """,
            ".env.example": "# comment\nexport EPOCHS=5\nDB_PASSWORD=changeme\nEMPTY=\n"
            "QUOTED='a b'  \nMODEL_NAME=bert # trailing\n",
            "svc/.env.template": "SVC_URL=http://localhost\n",
            ".env.sample": "SAMPLE_ONLY=1\n",
            ".env": "REAL_SECRET_ONLY_IN_DOTENV=hunter2\n",
        },
    )
    found = {v.name: v for v in env_of(root)}
    assert "REAL_SECRET_ONLY_IN_DOTENV" not in found
    assert found["HF_TOKEN"] == EnvVar(
        name="HF_TOKEN", default=None, secret=True, locations=("train.py:3",)
    )
    assert found["DB_PASSWORD"].default is None
    assert found["DB_PASSWORD"].secret
    assert found["EPOCHS"].default == "10"  # code's default wins over the example's
    assert found["EPOCHS"].locations == (".env.example:2", "train.py:4")
    assert found["EMPTY"].default is None
    assert found["QUOTED"].default == "a b"
    assert found["MODEL_NAME"].default == "bert"
    assert found["SVC_URL"].locations == ("svc/.env.template:1",)
    assert found["SAMPLE_ONLY"].default == "1"
    assert list(found) == sorted(found)


def test_platform_variables_never_get_a_default(tmp_path: Path) -> None:
    """generative-models reads CUDA_VISIBLE_DEVICES with "?" for a log line: an image default
    of "?" would hide every GPU. The variables stay listed, with where they are read.
    """
    root = make_repo(
        tmp_path / "repo",
        {
            "main.py": """
                import os
                device = os.environ.get("CUDA_VISIBLE_DEVICES", "?")
                rank = int(os.getenv("RANK", "0"))
                task = os.getenv("SLURM_PROCID", "0")
                epochs = os.getenv("EPOCHS", "10")
            """,
            ".env.example": "CUDA_VISIBLE_DEVICES=0\nOMP_NUM_THREADS=4\n",
        },
    )
    found = {v.name: v for v in env_of(root)}
    for name in ("CUDA_VISIBLE_DEVICES", "RANK", "SLURM_PROCID", "OMP_NUM_THREADS"):
        assert found[name].default is None, name
        assert not found[name].secret
    assert found["CUDA_VISIBLE_DEVICES"].locations == (".env.example:1", "main.py:3")
    assert found["EPOCHS"].default == "10"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OPENAI_API_KEY", True),
        ("HF_TOKEN", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("DB_PASSWORD", True),
        ("SMTP_PASSWD", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("BASIC_AUTH", True),
        ("OPENAI_APIKEY", True),
        ("JWT_SECRET_KEY", True),
        ("DB_PASS", True),
        ("EPOCHS", False),
        ("MODEL_PATH", False),
        # Words, not substrings: Hugging Face's tokenizers switch and an author's name.
        ("TOKENIZERS_PARALLELISM", False),
        ("AUTHOR", False),
        ("MAX_TOKENS", False),
        # What describes a secret, not the secret: a lifetime, a path.
        ("ACCESS_TOKEN_EXPIRE_MINUTES", False),
        ("SSH_KEY_PATH", False),
        ("", False),
    ],
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret(name) is secret
