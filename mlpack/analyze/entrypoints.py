"""Entrypoints: the ways to start training or inference, most likely first.

Found, without running anything:

- web app objects at module level (``app = FastAPI()``, ``Starlette()`` -> uvicorn;
  ``Flask(__name__)`` -> gunicorn), as ``module:variable`` from their import root: the folder
  above the outermost package (``--app-dir src``; ``--app-dir backend`` for
  ``backend/app/main.py`` that imports ``app.*``, as ``cd backend && uvicorn app.main:app``);
- scripts with ``if __name__ == "__main__":`` (training, or inference when they start a server
  with ``uvicorn.run``/``app.run``; ``python -m pkg.mod`` for a module inside a package, whose
  imports of its package would fail when run as a file) and packages with ``__main__.py``
  (``python -m pkg``); scripts outside packages that run code at the top level without a guard
  (nanoGPT's ``train.py``);
- Streamlit apps (``streamlit run app.py``) and Gradio apps (inference);
- the kind comes from the name: serving, predicting, sampling, inferring, generating or
  detecting is inference; preparing data, converting, exporting, downloading and evaluating
  are utilities, ranked after training;
  tests, docs, ``setup.py``, ``noxfile.py`` and ``conftest.py`` are left out;
- ``[project.scripts]`` console scripts;
- ``Procfile`` lines (``web:`` is inference), ``Makefile`` targets named like training
  (train, finetune, ...) or serving (serve, api, ...) or whose recipe launches ``torchrun``,
  ``accelerate launch``, ``deepspeed`` or a server; shell scripts that do the same.

Order: an app object first for inference, a root ``train.py`` first for training, then a
published console script, then by how specific the evidence is and how shallow the file lies
(examples and tutorials after the project's own scripts); names are unique. A command found twice
(an app object and a Procfile line that serves it) is listed once, where it ranks first, with
both sources (``"app/main.py:17, Procfile:1"``).
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Final

from mlpack.analyze.analysis import Entrypoint, EntrypointKind
from mlpack.analyze.reach import PREPARE_PREFIXES, ModuleIndex, area_of, module_index
from mlpack.vocabulary import DEFAULT_PORT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.walk import RepoTree

TRAIN_WORDS: Final = ("train", "finetune", "fine_tune", "fine-tune", "pretrain", "fit")
TRAINER_LIBRARIES: Final = frozenset({"lightning", "pytorch_lightning", "trl"})
SERVE_WORDS: Final = ("serve", "server", "api", "inference", "predict", "web", "app", "service")
# Word prefixes of scripts that use a model rather than train it.
INFER_PREFIXES: Final = (
    "predict", "infer", "sampl", "generat", "detect", "serve", "server", "transcrib", "translat",
    "caption", "chat", "demo", "inpaint", "complet",
)  # fmt: skip
# Words that name a conversion a model does (txt2img, img2img, speech2text): using a model.
_CONVERTS: Final = re.compile(r"2(?:img|image|video|audio|speech|text)$")
# Word prefixes of utility scripts: ranked after training and inference.
UTILITY_PREFIXES: Final = (
    "prepare", "prep", "convert", "export", "download", "preprocess", "eval", "bench", "config",
    "setup", "install", "check", "clean", "avg", "average", "util", "visualiz", "plot", "test",
)  # fmt: skip
# Words that make a script a utility wherever they stand (open_clip's genlip_caption_stats.py).
UTILITY_WORDS: Final = frozenset({"stats", "statistics", "profiler"})
_GENERIC_FOLDERS: Final = frozenset({"app", "api", "web", "service", "services"})
_HELPER_FOLDERS: Final = frozenset({"utils", "util", "helpers", "contrib", "extras", "misc"})
STREAMLIT_COMMAND: Final = ("--server.address", "0.0.0.0", "--server.port", "8501")
# Gradio listens on 127.0.0.1:7860 unless told: a Kubernetes Service could not reach it, and the
# port must be known to forward to it. launch() reads these when its own arguments are unset.
GRADIO_ENV: Final = ("GRADIO_SERVER_NAME=0.0.0.0", "GRADIO_SERVER_PORT=7860")
_EXCLUDED_PARTS: Final = ("tests/", "test/", "docs/", "doc/")
# Files that tools load, never run as programs (hubconf.py: torch.hub.load's entry table).
_EXCLUDED_NAMES: Final = frozenset(
    {"setup.py", "noxfile.py", "conftest.py", "fabfile.py", "hubconf.py"}
)
_LAUNCH: Final = re.compile(
    r"\b(torchrun|accelerate\s+launch|deepspeed|python3?\s+-m\s+torch\.distributed\.(?:run|launch))\b"
)
_SERVER: Final = re.compile(r"\b(uvicorn|gunicorn|hypercorn|streamlit\s+run|flask\s+run)\b")
_MAKE_TARGET: Final = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)")
_PROCFILE: Final = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+?)\s*$")
MAX_SCRIPT_BYTES: Final = 2**20  # Procfile, Makefile, shell scripts
HOST_PORT: Final = ("--host", "0.0.0.0", "--port", str(DEFAULT_PORT))
_BIND_ALL: Final = f"0.0.0.0:{DEFAULT_PORT}"  # gunicorn's --bind


def analyze_entrypoints(
    tree: RepoTree, facts: Mapping[str, FileFacts], *, warnings: list[str]
) -> tuple[Entrypoint, ...]:
    """Find every entrypoint and order them, most likely first."""
    found: list[tuple[int, Entrypoint]] = []
    files = tree.names()
    index = module_index(tree, facts)
    read = _read_as_source(facts, files)
    for path in sorted(facts):
        if path not in read:
            found.extend(_from_facts(path, facts, files, index))
    found.extend(_console_scripts(tree, files, warnings))
    found.extend(_procfile(tree, files, warnings))
    found.extend(_makefile(tree, files, warnings))
    for entry in tree.files:
        if entry.path.endswith(".sh") and not _excluded(entry.path):
            found.extend(_shell_script(tree, entry.path, warnings))
    found.sort(key=_rank)
    result: list[Entrypoint] = []
    names: set[str] = set()
    for ep in _merged(ep for _, ep in found):
        name, n = ep.name, 1
        while name in names:
            n += 1
            name = f"{ep.name}-{n}"
        names.add(name)
        result.append(
            Entrypoint(kind=ep.kind, command=ep.command, path=ep.path, source=ep.source, name=name)
        )
    return tuple(result)


def _read_as_source(facts: Mapping[str, FileFacts], files: frozenset[str]) -> set[str]:
    """The ``.py`` files another file opens for reading: code that a script runs itself
    (nanoGPT's ``exec(open('configurator.py').read())``) or reads as data, not an entrypoint.
    A literal path counts from the repository's root or from the reading file's folder.
    """
    read: set[str] = set()
    for path, file_facts in facts.items():
        folder = path.rpartition("/")[0]
        for literal, _, mode in file_facts.paths:
            if mode != "r" or not literal.endswith(".py"):
                continue
            rel = literal.removeprefix("./")
            read.update(p for p in (rel, f"{folder}/{rel}" if folder else rel) if p in files)
    return read


def _merged(ordered: Iterable[Entrypoint]) -> list[Entrypoint]:
    """One entry per command: the most specific (first) keeps its place, path and name.

    The same command found elsewhere (``app = FastAPI()`` and a Procfile line running it) only
    adds its source: ``"app/main.py:17, Procfile:1"``.
    """
    by_command: dict[tuple[str, ...], Entrypoint] = {}
    for ep in ordered:
        first = by_command.get(ep.command)
        if first is None:
            by_command[ep.command] = ep
        elif ep.source not in first.source.split(", "):
            by_command[ep.command] = replace(first, source=f"{first.source}, {ep.source}")
    return list(by_command.values())


def _excluded(path: str) -> bool:
    """Tooling and tests (``test_*.py``, ``*_test.py``, test folders) and docs never start
    training or inference.
    """
    return (
        area_of(path) in ("dev", "test")
        or path.startswith(_EXCLUDED_PARTS)
        or any(f"/{p}" in path for p in _EXCLUDED_PARTS)
        or path.rpartition("/")[2] in _EXCLUDED_NAMES
    )


def _depth(path: str) -> int:
    return path.count("/")


def _module_path(path: str, files: frozenset[str]) -> tuple[str, bool] | None:
    """Return (dotted module, under a ``src/`` layout) for a .py file, or None when not
    importable. A ``src/`` with an ``__init__.py`` is a package itself (``src.train``).
    """
    if not path.endswith(".py"):
        return None
    parts = path[:-3].split("/")
    in_src = parts[0] == "src" and len(parts) > 1 and "src/__init__.py" not in files
    if in_src:
        parts = parts[1:]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if not parts or not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts), in_src


def _rank(item: tuple[int, Entrypoint]) -> tuple[int, int, str, tuple[str, ...]]:
    """Score first; among equal training scripts the plainer name (detectron2's
    ``tools/train_net.py`` before its ``lazyconfig_train_net.py`` and ``plain_train_net.py``
    variants); then by path.
    """
    score, ep = item
    name = ep.path.rpartition("/")[2].rpartition(".")[0]
    words = len(_words(name)) if ep.kind == "training" else 0
    return -score, words, ep.path, ep.command


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _kind_of(*names: str) -> EntrypointKind:
    """Inference when a word of the first name that says anything says serving or using a
    model (and none says training), else training. A console script's own name comes first,
    then its target (``whisper = "whisper.transcribe:cli"``).
    """
    for name in names:
        words = _words(name)
        serving = any(
            w in SERVE_WORDS or w.startswith(INFER_PREFIXES) or _CONVERTS.search(w) for w in words
        )
        training = any(w.startswith(TRAIN_WORDS) for w in words)
        if serving or training:
            return "inference" if serving and not training else "training"
    return "training"


def main_entrypoints(entrypoints: Iterable[Entrypoint]) -> tuple[Entrypoint, ...]:
    """The entrypoints that say what the image is for: all but utilities (``test.py``,
    ``evaluate.py``, ``plot_*``...), unless utilities are all there is; data preparation
    (``prepare.py``) stays. Reachability starts from these, so a test client's imports
    (mlops-zoomcamp's ``test.py``: requests) are not the image's.
    """
    every = tuple(entrypoints)
    main = tuple(e for e in every if not _is_utility_entry(e))
    return main or every


def _is_utility_entry(entry: Entrypoint) -> bool:
    if entry.source.startswith("pyproject.toml"):  # a console script: by its name
        return _names_a_utility(entry.name)
    stem = entry.path.rpartition("/")[2].removesuffix(".py")
    return _is_utility(stem) and not stem.lower().startswith(PREPARE_PREFIXES)


def _names_a_utility(command: str) -> bool:
    """A console script named for a utility in any word (``litgpt-download``: the project's
    name often comes first).
    """
    return any(w.startswith(UTILITY_PREFIXES) for w in _words(command))


def _folder_word(folder: str) -> str:
    """The name of a script's folder when it can say the kind: ``generate/``, ``train/``,
    ``serve/``; not ``app/``, ``api/``, ``web/`` or ``service/``, which hold any kind of script
    (the fastapi template's ``app/initial_data.py``).
    """
    name = folder.rpartition("/")[2]
    return "" if name.lower() in _GENERIC_FOLDERS else name


def _is_utility(name: str) -> bool:
    words = _words(name)
    return bool(words) and (
        words[0].startswith(UTILITY_PREFIXES) or not UTILITY_WORDS.isdisjoint(words)
    )


def _import_root(path: str, facts: FileFacts, files: frozenset[str]) -> str:
    """The folder the app's imports resolve from: above its outermost package.

    ``backend/app/main.py`` (``backend/`` not a package) that imports ``app.*`` runs from
    ``backend/``; one that imports ``backend.app.*`` runs from the root.
    """
    folder = path.rpartition("/")[0]
    top = folder
    while top and f"{top}/__init__.py" in files:
        top = top.rpartition("/")[0]
    if not top or top == folder:
        return ""
    first = top.split("/", 1)[0]
    if any(m == first or m.startswith(f"{first}.") for m, *_ in facts.imports):
        return ""
    return top


def _ep(
    kind: EntrypointKind, command: tuple[str, ...], path: str, source: str, name: str
) -> Entrypoint:
    return Entrypoint(kind=kind, command=command, path=path, source=source, name=name)


def _from_facts(
    path: str, every: Mapping[str, FileFacts], files: frozenset[str], index: ModuleIndex
) -> list[tuple[int, Entrypoint]]:
    """The entrypoints one file defines, each with its score (a higher score ranks first):
    those under examples, tutorials, docs or benchmarks after the project's own (LoRA's
    ``examples/.../eli5_app.py``).
    """
    found = _file_entrypoints(path, every, files, index)
    if area_of(path) in (None, "script"):
        return found
    return [(score - 50, ep) for score, ep in found]


def _file_entrypoints(
    path: str, every: Mapping[str, FileFacts], files: frozenset[str], index: ModuleIndex
) -> list[tuple[int, Entrypoint]]:
    facts = every[path]
    folder = path.rpartition("/")[0]
    script = facts.script if not folder or f"{folder}/__init__.py" not in files else 0
    if not (facts.apps or facts.main or script or path.rpartition("/")[2] == "__main__.py"):
        return []  # most files: nothing that starts anything
    if _excluded(path) or path.endswith(".ipynb") or _alembic_env(path, facts):
        return []
    stem = path.rpartition("/")[2][:-3]
    module = _module_path(path, files)
    ui = _ui_framework(facts)
    if ui == "streamlit" or (ui is None and _star_streamlit(path, every, index)):
        command: tuple[str, ...] = ("streamlit", "run", path, *STREAMLIT_COMMAND)
        line = facts.main or script or 1
        # Evidence through a helper module is less specific: such an app ranks by its name.
        score = 185 - 5 * _depth(path)
        if ui is None:
            score = _script_score(path, stem, "inference", guarded=bool(facts.main))
        return [(score, _ep("inference", command, path, f"{path}:{line}", stem))]
    found = _apps(path, facts, files) if module is not None else []
    if stem == "__main__":
        return found + _package_main(path, facts, files)
    if facts.main or script:
        source = f"{path}:{facts.main or script}"
        run = _script_run(path, facts, files, module)
        if ui == "gradio":
            run = ("env", *GRADIO_ENV, *(run[1:] if run[0] == "env" else run))
        if facts.serves or ui == "gradio":
            found.append((_app_score(path) - 10, _ep("inference", run, path, source, stem)))
        else:
            kind = _kind_of(stem, _folder_word(folder))  # a neutral name: its folder says
            trains = kind == "training" and _imports_a_trainer(facts)
            score = _script_score(path, stem, kind, guarded=bool(facts.main), trains=trains)
            found.append((score, _ep(kind, run, path, source, stem)))
    return found


def _alembic_env(path: str, facts: FileFacts) -> bool:
    """Alembic's migration environment (``alembic/env.py``): ``alembic upgrade`` runs it."""
    return path.rpartition("/")[2] == "env.py" and any(
        module.partition(".")[0] == "alembic" for module, *_ in facts.imports
    )


def _imports_a_trainer(facts: FileFacts) -> bool:
    """The file imports a training loop: a module named ``train*`` (``mingpt.trainer``,
    ``utils.training``) or a trainer library (Lightning, TRL).
    """
    for module, *_ in facts.imports:
        if module.partition(".")[0] in TRAINER_LIBRARIES:
            return True
        if any(part.startswith("train") for part in module.split(".")):
            return True
    return False


def _apps(path: str, facts: FileFacts, files: frozenset[str]) -> list[tuple[int, Entrypoint]]:
    """Web apps defined at module level, served from their import root."""
    found = []
    for var, framework, line in facts.apps:
        app_dir = _import_root(path, facts, files)
        dotted = path[len(app_dir) + 1 if app_dir else 0 : -3].replace("/", ".")
        dotted = dotted.removesuffix(".__init__")
        target = f"{dotted}:{var}"
        command: tuple[str, ...]
        if framework == "flask":
            command = ("gunicorn", "--bind", _BIND_ALL, target)
            if app_dir:
                command = ("gunicorn", "--chdir", app_dir, "--bind", _BIND_ALL, target)
        else:
            command = ("uvicorn", target, *HOST_PORT)
            if app_dir:
                command = ("uvicorn", target, "--app-dir", app_dir, *HOST_PORT)
        found.append((_app_score(path), _ep("inference", command, path, f"{path}:{line}", "serve")))
    return found


def _package_main(
    path: str, facts: FileFacts, files: frozenset[str]
) -> list[tuple[int, Entrypoint]]:
    """A package's ``__main__.py``: ``python -m pkg``. Its kind is its package's name's, else
    that of the one module of its own it runs (whisper's ``from .transcribe import cli``).
    """
    package = _module_path(path.rpartition("/")[0] + "/__init__.py", files)
    if package is None or not package[0] or facts.error is not None:
        return []
    dotted, in_src = package
    name = dotted.rpartition(".")[2]
    own = {
        module.rpartition(".")[2]
        for module, *_ in facts.imports
        if module.startswith((".", f"{dotted}."))
    }
    kind = _kind_of(name, *own) if len(own) == 1 else _kind_of(name)
    command = _python_m(dotted, in_src=in_src)
    return [(120 - 5 * _depth(path), _ep(kind, command, path, path, name))]


def _script_run(
    path: str, facts: FileFacts, files: frozenset[str], module: tuple[str, bool] | None
) -> tuple[str, ...]:
    """The command that runs a script; a subproject's package runs from its own folder."""
    run = _script_command(path, module, files)
    app_dir = _import_root(path, facts, files) if run[-3:-1] == ("python", "-m") else ""
    own = path[len(app_dir) + 1 :].split("/", 1)[0]
    if app_dir not in {"", "src"} and any(
        m == own or m.startswith(f"{own}.") for m, *_ in facts.imports
    ):  # the package imports itself by its name: it runs from its subproject folder
        dotted = path[len(app_dir) + 1 : -3].replace("/", ".").removesuffix(".__init__")
        run = ("sh", "-c", f"cd {shlex.quote(app_dir)} && python -m {dotted}")
    return run


def _script_score(
    path: str, stem: str, kind: EntrypointKind, *, guarded: bool, trains: bool = False
) -> int:
    """Rank by name: a root ``train.py``, then training, a script that imports a trainer
    (``trains``: minGPT's ``projects/adder/adder.py`` over its library's ``bpe.py`` demo),
    inference, ``main``, other, utilities.
    """
    lowered = stem.lower()
    if path == "train.py":
        score = 200
    elif any(w.startswith(TRAIN_WORDS) for w in _words(stem)):
        score = 180
    elif _is_utility(stem):
        score = 100  # whatever else its name says (dino's eval_copy_detection.py)
    elif trains:
        score = 175
    elif kind == "inference":
        score = 170
    elif lowered in {"main", "run", "cli"}:
        # A root main.py is the project's program (detr's, over its d2/train_net.py wrapper).
        score = 175 if "/" not in path else 150
    else:
        score = 120
    if not guarded:
        score -= 5  # no guard: a little less sure it is meant to be run
    return score - 10 * _depth(path)


def _app_score(path: str) -> int:
    """Apps rank first, less so deeper down, and least in a helpers folder (``utils/``)."""
    helper = any(part in _HELPER_FOLDERS for part in path.split("/")[:-1])
    return 200 - 10 * _depth(path) - (30 if helper else 0)


def _ui_framework(facts: FileFacts) -> str | None:
    """``streamlit`` or ``gradio`` when the file imports one at module level."""
    for module, _, flags, _ in facts.imports:
        top = module.split(".", 1)[0]
        if top in {"streamlit", "gradio"} and not flags:
            return top
    return None


def _star_streamlit(path: str, every: Mapping[str, FileFacts], index: ModuleIndex) -> bool:
    """Whether a module-level star import of an own module brings in Streamlit's ``st``.

    ``from helpers import *`` of a module that does ``import streamlit as st``
    (Stability-AI/generative-models' demos).
    """
    for module, _, flags, names in every[path].imports:
        if flags or "*" not in names:
            continue
        for target in index.targets(path, module, ())[-1:]:
            star = every.get(target)
            if star is not None and target != path and _ui_framework(star) == "streamlit":
                return True
    return False


def _script_command(
    path: str, module: tuple[str, bool] | None, files: frozenset[str]
) -> tuple[str, ...]:
    """``python -m pkg.mod`` for a module inside a package, else ``python path.py``.

    Run as a file, a package's module gets its own folder as ``sys.path[0]``, so its absolute
    (``from app.model import ...``) and relative imports of the package fail.
    """
    folder = path.rpartition("/")[0]
    if module is not None and folder and f"{folder}/__init__.py" in files:
        return _python_m(module[0], in_src=module[1])
    return ("python", path)


def _python_m(dotted: str, *, in_src: bool) -> tuple[str, ...]:
    """``python -m dotted`` from the repository's root (the image's workdir); a ``src/`` layout's
    package is importable there only with ``src`` on the path, which nothing else puts there
    (the image does not install the project).
    """
    if in_src:
        return ("env", "PYTHONPATH=src", "python", "-m", dotted)
    return ("python", "-m", dotted)


def _read(tree: RepoTree, rel: str, warnings: list[str]) -> str | None:
    path = tree.root / rel
    try:
        if path.stat().st_size > MAX_SCRIPT_BYTES:
            warnings.append(f"{rel}: larger than {MAX_SCRIPT_BYTES // 2**20} MiB, not read")
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        warnings.append(f"{rel}: unreadable, skipped ({exc.strerror})")
        return None


def _console_scripts(
    tree: RepoTree, files: frozenset[str], warnings: list[str]
) -> list[tuple[int, Entrypoint]]:
    if "pyproject.toml" not in files:
        return []
    text = _read(tree, "pyproject.toml", warnings)
    if text is None:
        return []
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []  # the requirements reader reports a broken pyproject.toml
    project = data.get("project")
    scripts = project.get("scripts") if isinstance(project, dict) else None
    if not isinstance(scripts, dict):
        return []
    lines = text.splitlines()
    found = []
    for name, target in sorted(scripts.items()):
        if not isinstance(target, str):
            continue
        number = next(
            (
                i
                for i, ln in enumerate(lines, 1)
                if re.match(rf"""\s*["']?{re.escape(name)}["']?\s*=""", ln)
            ),
            1,
        )
        module = target.partition(":")[0].strip().replace(".", "/")
        path = next(
            (
                p
                for p in (
                    f"{module}.py",
                    f"{module}/__init__.py",
                    f"src/{module}.py",
                    f"src/{module}/__init__.py",
                )
                if p in files
            ),
            "pyproject.toml",
        )
        kind = _kind_of(name, target)
        # The command the project publishes: before its scripts, unless it is a utility.
        score = 100 if _names_a_utility(name) else 185
        found.append((score, _ep(kind, (name,), path, f"pyproject.toml:{number}", name)))
    return found


def _command(text: str) -> tuple[str, ...]:
    if "$" in text or any(c in text for c in "|&;<>`"):
        return ("sh", "-c", text)
    try:
        return tuple(shlex.split(text))
    except ValueError:
        return ("sh", "-c", text)


def _procfile(
    tree: RepoTree, files: frozenset[str], warnings: list[str]
) -> list[tuple[int, Entrypoint]]:
    if "Procfile" not in files:
        return []
    text = _read(tree, "Procfile", warnings) or ""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _PROCFILE.match(line)
        if not match or line.lstrip().startswith("#"):
            continue
        ptype, cmd = match.groups()
        if ptype == "release":
            continue  # runs once per deploy (migrations), not a way to start the project
        if ptype == "web" or _SERVER.search(cmd):
            found.append(
                (185, _ep("inference", _command(cmd), "Procfile", f"Procfile:{number}", ptype))
            )
        else:
            kind = "training" if _LAUNCH.search(cmd) or "train" in cmd else _kind_of(ptype)
            found.append((130, _ep(kind, _command(cmd), "Procfile", f"Procfile:{number}", ptype)))
    return found


def _makefile(
    tree: RepoTree, files: frozenset[str], warnings: list[str]
) -> list[tuple[int, Entrypoint]]:
    name = next((n for n in ("Makefile", "makefile", "GNUmakefile") if n in files), None)
    if name is None:
        return []
    text = _read(tree, name, warnings) or ""
    targets: list[tuple[str, int, list[str]]] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _MAKE_TARGET.match(line)
        if match and not line.startswith((".", "\t")):
            targets.append((match.group(1), number, []))
        elif line.startswith("\t") and targets:
            targets[-1][2].append(line.strip())
    found = []
    for target, number, recipe in targets:
        body = "\n".join(recipe)
        lowered = target.lower()
        if _SERVER.search(body) or (lowered in SERVE_WORDS or lowered.startswith(("serve", "api"))):
            kind: EntrypointKind = "inference"
        elif _LAUNCH.search(body) or lowered.startswith(TRAIN_WORDS):
            kind = "training"
        else:
            continue
        found.append((145, _ep(kind, ("make", target), name, f"{name}:{number}", target)))
    return found


def _shell_script(tree: RepoTree, rel: str, warnings: list[str]) -> list[tuple[int, Entrypoint]]:
    text = _read(tree, rel, warnings)
    if text is None:
        return []
    stem = rel.rpartition("/")[2][:-3]
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        if _LAUNCH.search(line):
            return [
                (
                    160 - 5 * _depth(rel),
                    _ep("training", ("bash", rel), rel, f"{rel}:{number}", stem),
                )
            ]
        if _SERVER.search(line):
            return [
                (
                    150 - 5 * _depth(rel),
                    _ep("inference", ("bash", rel), rel, f"{rel}:{number}", stem),
                )
            ]
    return []
