from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Callable

import pytest

from mlpack.analyze import chunks, pyfacts
from mlpack.analyze.pyfacts import FileFacts, facts_for
from tests.unit.analyze.repo_helpers import parse_mode  # noqa: F401  (fixture)


def facts(source: str, name: str = "m.py") -> FileFacts:
    return facts_for(name, textwrap.dedent(source).encode())


@pytest.mark.usefixtures("parse_mode")
def test_imports_and_their_context() -> None:
    found = facts(
        """
        import os, numpy as np
        import google.protobuf.message
        from sklearn.linear_model import LogisticRegression
        from . import sibling
        from .pkg import thing
        from typing import TYPE_CHECKING
        import typing
        if TYPE_CHECKING:
            import pandas
        if typing.TYPE_CHECKING:
            import polars
        else:
            import runtime_only_branch
        try:
            import wandb
        except ImportError:
            wandb = None
        try:
            import ujson as json
        except (ModuleNotFoundError, ValueError):
            import json
        try:
            import must_have
        except KeyError:
            pass
        def lazy():
            import torch
            mod = importlib.import_module("transformers")
            other = __import__("yaml")
            rel = importlib.import_module(".local", "pkg")
        """
    )
    lazy = pyfacts.LAZY
    assert [(m, f) for m, _, f, _ in found.imports] == [
        ("os", 0),
        ("numpy", 0),
        ("google.protobuf.message", 0),
        ("sklearn.linear_model", 0),
        (".", 0),  # relative imports keep their dots: the module graph follows them
        (".pkg", 0),
        ("typing", 0),
        ("typing", 0),
        ("runtime_only_branch", 0),
        ("wandb", pyfacts.OPTIONAL),
        ("ujson", pyfacts.OPTIONAL),
        ("json", 0),
        ("must_have", 0),
        ("torch", lazy),
        ("transformers", lazy),
        ("yaml", lazy),
    ]
    assert found.imports[4][3] == ("sibling",)  # what a from-import takes
    assert found.imports[0][1] == 2  # line numbers are the file's


@pytest.mark.usefixtures("parse_mode")
def test_docstrings_that_show_imports_are_not_imports() -> None:
    found = facts(
        '''
        """Usage:

        import not_a_dependency
        from fake import thing
        """
        import real

        def f():
            """
            import also_not_one
            """
            return os.environ["IN_CODE"]
        '''
    )
    assert [m for m, *_ in found.imports] == ["real"]
    assert found.env == (("IN_CODE", 13, None),)


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (b"print 'hello'\n", "syntax error at line 1 (Python 2 code?), not parsed"),
        (
            b"x = 1\n<<<<<<< HEAD\ny = 2\n=======\ny = 3\n>>>>>>> other\n",
            "syntax error at line 2 (merge-conflict markers), not parsed",
        ),
        (b"\x7fELF\x00\x01\x02binary", "binary content (null bytes), not parsed"),
        # CPython 3.11.7+ raises SyntaxError (line None) here, earlier ones ValueError.
        (b"import os\nx = 1\x00\n", "binary content (null bytes), not parsed"),
        (b"name = '\xff\xfe caf\xe9'\n", "not valid UTF-8 (nor its declared encoding), not parsed"),
    ],
)
@pytest.mark.usefixtures("parse_mode")
def test_bad_sources_give_an_error_not_an_exception(source: bytes, why: str) -> None:
    assert facts_for("bad.py", source).error == why


@pytest.mark.usefixtures("parse_mode")
def test_declared_encoding_is_honoured() -> None:
    source = "# -*- coding: latin-1 -*-\nimport café_lib\nname = 'café'\n".encode("latin-1")
    result = facts_for("latin.py", source)
    assert result.error is None
    assert [m for m, *_ in result.imports] == ["café_lib"]


def test_huge_source_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyfacts, "MAX_SOURCE_BYTES", 10)
    assert facts_for("big.py", b"import os\nimport sys\n").error == "larger than 0 MiB, not parsed"


def notebook(*cells: tuple[str, str]) -> bytes:
    return json.dumps(
        {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {},
            "cells": [
                {"cell_type": kind, "source": source.splitlines(keepends=True), "metadata": {}}
                for kind, source in cells
            ],
        }
    ).encode()


def test_notebook_code_cells_magics_and_bad_cells() -> None:
    data = notebook(
        ("markdown", "import not_code\n"),
        ("code", "%matplotlib inline\n!pip install seaborn\nimport pandas as pd\n"),
        ("code", "%%bash\npython -c 'import not_python'\n"),
        ("code", "%%time\nimport seaborn\nif True:\n    !ls\n"),
        ("code", "df.head(\n"),  # broken cell: skipped, the rest analysed
        ("code", "import os\nkey = os.environ['API_TOKEN']\n"),
    )
    result = facts_for("nb.ipynb", data)
    assert [m for m, *_ in result.imports] == ["pandas", "seaborn", "os"]
    # Lines count through the code cells joined in order, one blank line between cells.
    assert result.env == (("API_TOKEN", 16, None),)
    assert result.error == "code cell 4 not valid Python, skipped (the rest was analysed)"


def test_invalid_notebook_json() -> None:
    assert facts_for("nb.ipynb", b"{not json").error == "invalid notebook JSON, not parsed"


def test_notebook_v3_worksheets() -> None:
    data = json.dumps(
        {"worksheets": [{"cells": [{"cell_type": "code", "input": ["import scipy\n"]}]}]}
    ).encode()
    assert [m for m, *_ in facts_for("old.ipynb", data).imports] == ["scipy"]


def test_facts_round_trip_through_json() -> None:
    original = facts(
        """
        import os, torch
        from fastapi import FastAPI
        app = FastAPI()
        x = os.getenv("A", 3)
        torch.save({}, "out/model.pt")
        model.cuda()
        if torch.cuda.is_available():
            y = torch.zeros(1).cuda()
        if __name__ == "__main__":
            import uvicorn
            uvicorn.run(app)
        """
    )
    again = FileFacts.from_json(json.loads(json.dumps(original.to_json())))
    assert again == original
    assert original.apps == (("app", "fastapi", 4),)
    assert original.main == 10
    assert original.serves == 12
    with pytest.raises(ValueError, match="malformed"):
        FileFacts.from_json([1, 2])


BIG_FILE = '''
"""A module docstring that mentions code:

import fake_in_docstring
os.environ["NOT_READ"]
"""
import os
import numpy as np

CONSTANT = {key!r}

@decorator(
    arg=1,
)
class Model:
    """Doc with a triple quote of the other kind: \'\'\' inside."""

    def forward(self, x):
{body}
        try:
            import apex
        except ImportError:
            apex = None
        if torch.cuda.is_available():
            x = x.cuda()
        return x.to("cuda")

    def save(self):
        torch.save(self.state_dict(), "checkpoints/last.pt")
        text = """
import also_fake
"""
        return os.getenv("SAVE_DIR", "outputs")


def helper(
    a,
    b,
):
    from scipy import stats
    return stats


if __name__ == "__main__":
    Model().forward(1)
'''


@pytest.mark.parametrize("key", ["value", 'with """ inside', "# not a comment"])
def test_chunked_parse_matches_whole_parse(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "\n".join(f"        x = x + {i}  # filler" for i in range(300))
    source = BIG_FILE.format(key=key, body=body).encode()
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 10**12)
    whole = facts_for("big.py", source)
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 0)
    chunked = facts_for("big.py", source)
    assert chunked == whole
    lines = source.decode().splitlines()

    def line(marker: str) -> int:
        return next(i for i, text in enumerate(lines, 1) if marker in text)

    assert [m for m, *_ in whole.imports] == ["os", "numpy", "apex", "scipy"]
    assert whole.imports[2][2] == pyfacts.OPTIONAL | pyfacts.LAZY
    assert whole.cuda == ((line('return x.to("cuda")'), 'x.to("cuda")'),)
    assert whole.cuda_optional == line("x = x.cuda()")
    assert whole.env == (("SAVE_DIR", line("SAVE_DIR"), "outputs"),)
    assert ("checkpoints/last.pt", line("checkpoints/last.pt"), "w") in whole.paths
    assert whole.main == line("__main__")


def test_chunks_only_cover_interesting_statements() -> None:
    body = "\n".join(f"    y{i} = {i}" for i in range(200))
    text = f"import os\n\n\ndef big():\n{body}\n    return os.environ.get('X')\n\n\nz = 1\n"
    found = chunks.chunks(text)
    # "z = 1" holds nothing; in the long def only the statement with the fact is parsed, under
    # a stand-in def line that keeps its scope.
    assert [(c.start, c.end, c.indent, c.wrapped) for c in found] == [
        (0, 3, 0, False),
        (204, 207, 4, True),
    ]
    assert found[1].text.startswith("def _():\n    return os.environ.get('X')")
    assert found[1].offset == 203
    short = chunks.chunks("import os\n\n\ndef f():\n    return os.environ.get('X')\n")
    # Adjacent top-level statements are parsed together.
    assert [(c.start, c.end, c.indent) for c in short] == [(0, 5, 0)]
    method = "\n".join(f"        y{i} = {i}" for i in range(200))
    text = (
        "class Big:\n    def quiet(self):\n"
        f"{method}\n\n    def loud(self):\n        return self.cuda()\n\n\nz = 1\n"
    )
    found = chunks.chunks(text)
    # Inside a long statement only the innermost def is parsed, dedented.
    assert [(c.start, c.end, c.indent) for c in found] == [(203, 207, 4)]
    assert found[0].text.startswith("def loud(self):\n    return self.cuda()")
    small = chunks.chunks("x = 1\ny = 2\n")
    assert small == []


def test_chunks_are_unsure_about_odd_quoting() -> None:
    with pytest.raises(chunks.Unsure):
        chunks.chunks('x = 1  # a stray """ in a comment\nimport os\n')
    with pytest.raises(chunks.Unsure):
        chunks.chunks('s = """never closed\nimport os\n')


@pytest.mark.usefixtures("parse_mode")
def test_deep_expressions_are_skipped_not_fatal() -> None:
    # Parses (the parser is iterative enough) but is deeper than a recursive visitor may go.
    source = ("import os\nx = os.getenv('A')" + "+1" * 1500 + "\n").encode()
    assert facts_for("deep.py", source).error == "too deeply nested to parse, skipped"
    # One frame per level: 800 levels still fit under the default recursion limit.
    fits = ("import os\nx = os.getenv('A')" + "+1" * 800 + "\n").encode()
    assert facts_for("fits.py", fits).env == (("A", 2, None),)
    deeper = ("x = 1" + "+1" * 5000 + "\n").encode()
    assert facts_for("deeper.py", deeper).error in {"too deeply nested to parse, skipped", None}


FILLER = "\n".join(f"    y{i} = {i}  # filler" for i in range(120))
# Each snippet sits in a large file among long functions, so the chunked parse has to find it.
CHUNK_CASES: dict[str, tuple[str, Callable[[FileFacts], bool]]] = {
    "tensorflow device": (
        (
            "import tensorflow\n\ndef f():\n{filler}\n    with tensorflow.device('/GPU:0'):\n"
            "        pass\n"
        ),
        lambda f: [w for _, w in f.cuda] == ["tensorflow.device"],
    ),
    "tf config": (
        (
            "import tensorflow as tf\n\ndef f():\n{filler}\n    x = tf.zeros(1)\n"
            "    tf.config.experimental.set_memory_growth(x, True)\n"
        ),
        lambda f: [w for _, w in f.cuda] == ["tf.config.experimental.set_memory_growth"],
    ),
    "device_map keyword": (
        (
            "def f():\n{filler}\n    m = AutoModel.from_pretrained(\n        name,\n"
            "        device_map='cuda:0',\n    )\n"
        ),
        lambda f: [w for _, w in f.cuda] == ['device_map="cuda"'],
    ),
    "guard ends with its if": (
        (
            "import torch\n\ndef f(x):\n{filler}\n    if torch.cuda.is_available():\n"
            "        x = x.cuda()\n    y = x.cuda() if torch.cuda.is_available() else x\n"
            "    return x.cuda()\n"
        ),
        lambda f: [w for _, w in f.cuda] == [".cuda()"] and f.cuda_optional > 0,
    ),
    "quotes of both kinds": (
        (
            "def f():\n    '''a \"\"\" b\n    import fake1\n    '''\n{filler}\n"
            '    s = """x \'\'\' y\nimport fake2\n"""\n    import real\n    return s\n'
        ),
        lambda f: [m for m, *_ in f.imports] == ["real"],
    ),
    "server start in a script": (
        (
            "import uvicorn\n\ndef f():\n{filler}\n\nif __name__ == '__main__':\n"
            "    uvicorn.run('app:app')\n"
        ),
        lambda f: f.main > 0 and f.serves == f.main + 1,
    ),
    "environ alias": (
        (
            "from os import environ as E, getenv as g\n\ndef f():\n{filler}\n"
            "    a = E['A']\n    return g('B', 'b')\n"
        ),
        lambda f: f.env[0][0] == "A" and f.env[1] == ("B", f.env[1][1], "b"),
    ),
}


@pytest.mark.parametrize("case", sorted(CHUNK_CASES))
def test_chunked_parse_matches_whole_parse_on_narrowed_triggers(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, check = CHUNK_CASES[case]
    source = template.replace("{filler}", FILLER).encode()
    assert chunks.chunks(source.decode())  # the shortcut is taken, not the whole-file fallback
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 10**12)
    whole = facts_for("big.py", source)
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 0)
    chunked = facts_for("big.py", source)
    assert chunked == whole
    assert whole.error is None
    assert check(whole)


def test_plain_tf_calls_are_not_parsed() -> None:
    # TensorFlow model files hold thousands of tf.* calls; only tf.device/tf.config matter.
    text = "x = 1\n" + "\n".join(f"y{i} = tf.zeros({i})" for i in range(50)) + "\n"
    assert chunks.chunks(text) == []
    assert len(chunks.chunks(text + "tf.config.list_physical_devices('GPU')\n")) == 1


BODY_CASES: dict[str, tuple[str, Callable[[FileFacts], bool]]] = {
    "class body keeps its scope": (
        (
            "class Settings:\n    app = Flask(__name__)\n{filler}\n"
            "    device: str = field(default='cuda', metadata={'help': 'cuda'})\n"
            "    import json\n"
        ),
        lambda f: f.apps == () and [m for m, *_ in f.imports] == ["json"],
    ),
    "function body keeps its scope": (
        (
            "def main(\n    a: str = 'x(',  # a bracket in a string\n    b: int = 1,\n) -> None:\n"
            "{filler}\n    app = FastAPI()\n    if __name__ == '__main__':\n        import uvicorn\n"
            "    else:\n        import os\n        os.environ['A']\n"
        ),
        lambda f: f.apps == () and f.main == 0 and [e for e, _, _ in f.env] == ["A"],
    ),
    "guards of the body come along": (
        (
            "async def run(x):\n{filler}\n    try:\n        import apex\n"
            "    except ImportError:\n        apex = None\n    if torch.cuda.is_available():\n"
            "        x = await x.cuda()\n    return x\n"
        ),
        lambda f: bool(f.imports[0][2] & pyfacts.OPTIONAL) and f.cuda == () and f.cuda_optional > 0,
    ),
    "decorated methods": (
        (
            "class T:\n{filler}\n    @mock.patch.dict(os.environ, {'A': '1'})\n    @other\n"
            "    def test(self):\n        return os.getenv('B')\n\n    x = 1\n"
        ),
        lambda f: [e for e, _, _ in f.env] == ["B"],
    ),
}


def test_several_decorators_belong_to_their_statement() -> None:
    text = "import os\n\n@mock.patch.dict(os.environ, {'A': '1'})\n@other\nclass T:\n" + FILLER
    parts = chunks.chunks(text)
    assert [(c.start, c.end) for c in parts] == [(0, len(text.splitlines()))]
    ast.parse(parts[0].text)  # not the first decorator alone (which would not parse)


@pytest.mark.parametrize("case", sorted(BODY_CASES))
def test_long_bodies_are_narrowed_to_one_statement(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    template, check = BODY_CASES[case]
    source = template.replace("{filler}", FILLER).encode()
    parts = chunks.chunks(source.decode())
    assert parts
    assert all(c.end - c.start < 20 for c in parts)  # never the whole long def/class
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 10**12)
    whole = facts_for("big.py", source)
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", 0)
    chunked = facts_for("big.py", source)
    assert chunked == whole
    assert whole.error is None
    assert check(whole)


EARLY_EXIT = """import torch


def autobatch(model, batch_size=16):
    device = next(model.parameters()).device
    if device.type == "cpu":
        print("no CUDA: the default batch size")
        return batch_size
{filler}
    return torch.cuda.get_device_properties(device).total_memory


def step(batches):
    for batch in batches:
        if not batch.is_cuda:
            continue
        batch.cuda()


def needs_a_gpu(x):
    if not torch.cuda.is_available():
        raise RuntimeError("this model needs a GPU")
    return x.cuda()


def after_the_block(x):
    return x.cuda()


def nested(x):
    if torch.cuda.is_available():
        if x.device.type == "cpu":
            return x
        x = x + 1
    return x.cuda()
"""


@pytest.mark.parametrize("threshold", [10**12, 0], ids=["whole", "chunked"])
def test_gpu_use_after_an_early_exit_on_the_device_is_guarded(
    threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """yolov5's autobatch: `if device.type == "cpu": return` makes the CUDA calls after it
    optional; a `raise` there says the GPU is needed; the guard ends with its block.
    """
    filler = "\n".join(f"    x{i} = {i}" for i in range(60))  # a long def: chunked by statement
    source = EARLY_EXIT.format(filler=filler).encode()
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", threshold)
    facts = facts_for("autobatch.py", source)
    lines = source.decode().splitlines()
    needs = next(i for i, text in enumerate(lines, 1) if "def needs_a_gpu" in text)
    nested = next(i for i, text in enumerate(lines, 1) if "def nested" in text)
    # needs_a_gpu, after_the_block, and nested's last line: the inner exit ends with its block
    assert [n for n, _ in facts.cuda] == [needs + 3, needs + 7, nested + 5]
    assert facts.cuda_optional == next(
        i for i, text in enumerate(lines, 1) if "get_device_properties" in text
    )


@pytest.mark.parametrize(
    "condition", ["not ddp", "dist.get_backend() != 'nccl'", "world_size == 1", "x.is_cuda"]
)
@pytest.mark.parametrize("threshold", [10**12, 0], ids=["whole", "chunked"])
def test_every_gpu_check_makes_an_early_exit_in_both_parses(
    condition: str, threshold: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any condition the GPU check accepts guards the use after its early exit, also when a
    long function is parsed statement by statement (the whole-parse trigger knows every word).
    """
    filler = "\n".join(f"    x{i} = {i}" for i in range(60))
    source = (
        f"def step(x, ddp, dist, world_size):\n    if {condition}:\n        return x\n"
        f"{filler}\n    return x.cuda()\n"
    ).encode()
    monkeypatch.setattr(pyfacts, "FAST_MIN_BYTES", threshold)
    facts = facts_for("step.py", source)
    assert (facts.cuda, facts.cuda_optional) == ((), source.count(b"\n"))
