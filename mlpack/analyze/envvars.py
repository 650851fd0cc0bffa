"""Environment variables the code reads, with literal defaults; secrets by name only.

Found in code: ``os.environ["X"]``, ``os.environ.get("X", d)``, ``os.getenv("X", d)``,
``os.environ.setdefault("X", d)``, ``"X" in os.environ``, and the same through
``from os import environ, getenv`` (aliases included). Assignments to ``os.environ`` are the
program setting a variable, not reading one, and are left out. Names also come from
``.env.example``, ``.env.sample`` and ``.env.template`` (their values become defaults when
non-empty). A real ``.env`` is never opened. Names containing KEY, TOKEN, SECRET, PASSWORD,
PASSWD, CREDENTIAL or AUTH are ``secret``: their defaults are never reported. The code's own
default wins over an example file's.

With a reachability walk (``mlpack.analyze.reach``), only the code the entrypoints run counts: a
variable read only in an example, a test or a script is not the project's, and a default set
there (``CUDA_VISIBLE_DEVICES="0"`` in one demo) is not a project default. Fields of pydantic
``BaseSettings`` classes are read as variables (``env_prefix`` + the field name, upper case).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from mlpack.analyze.analysis import EnvVar

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.reach import Reach
    from mlpack.analyze.walk import RepoTree

EXAMPLE_FILES: Final = (".env.example", ".env.sample", ".env.template")
# A word of the name (split at "_") that is one of these, or ends with one (APIKEY, HFTOKEN)...
SECRET_WORDS: Final = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS")
# ... or is one of these (BYPASS, AUTHOR and TOKENIZERS_PARALLELISM are no secrets).
SECRET_WHOLE_WORDS: Final = frozenset({"PASS", "AUTH"})
# A last word that says the variable describes a secret rather than holds one: a lifetime, a
# size, where it is kept (ACCESS_TOKEN_EXPIRE_MINUTES, SSH_KEY_PATH, MAX_TOKEN_LENGTH).
ABOUT_A_SECRET: Final = frozenset(
    {
        "MINUTES", "HOURS", "SECONDS", "DAYS", "TTL", "EXPIRE", "EXPIRES", "EXPIRY", "LIFETIME",
        "LENGTH", "LEN", "SIZE", "LIMIT", "COUNT", "PATH", "FILE", "DIR", "NAME", "ALGORITHM",
    }
)  # fmt: skip
_LINE: Final = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Variables that the platform sets at run time and that other software reads too: the GPU
# runtime (which devices a process sees), distributed launchers (torchrun, Slurm, MPI), thread
# pools, the OS and its compilers. A default that the code falls back to (generative-models'
# ``getenv("CUDA_VISIBLE_DEVICES", "?")`` for a log line) or that an example env file sets
# never becomes the image's: it would change what every process in the container sees (a
# CUDA_VISIBLE_DEVICES default hides GPUs).
PLATFORM_VARIABLES: Final = frozenset(
    {
        "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
        "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK",
        "MASTER_ADDR", "MASTER_PORT",
        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
        "PATH", "HOME", "USER", "SHELL", "PWD", "HOSTNAME", "TMPDIR", "TERM", "LANG", "TZ",
        "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV", "CC", "CXX",
    }
)  # fmt: skip
PLATFORM_PREFIXES: Final = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "KUBERNETES_", "LC_")


def is_platform(name: str) -> bool:
    """True for a variable the platform sets at run time (``PLATFORM_VARIABLES``)."""
    return name in PLATFORM_VARIABLES or name.startswith(PLATFORM_PREFIXES)


def is_secret(name: str) -> bool:
    """True when a variable's name says it holds a credential (its value is never shown,
    recorded or baked into an image), judged by the words of the name, not by substrings.
    """
    words = [w for w in name.upper().split("_") if w]
    if not words or words[-1] in ABOUT_A_SECRET:
        return False
    return any(w in SECRET_WHOLE_WORDS or any(w.endswith(s) for s in SECRET_WORDS) for w in words)


def analyze_env(
    tree: RepoTree,
    facts: Mapping[str, FileFacts],
    *,
    warnings: list[str],
    reach: Reach | None = None,
    library_outputs: Mapping[str, tuple[str, int]] | None = None,
) -> tuple[EnvVar, ...]:
    """Collect every variable read in code or listed in an example env file, sorted by name.

    ``library_outputs`` is ``layout.library_outputs`` of the same facts: the folders the
    libraries that the entrypoints import write, with where each is imported.
    """
    locations: dict[str, list[tuple[str, int]]] = {}
    code_defaults: dict[str, list[tuple[tuple[str, int], str]]] = {}
    example_defaults: dict[str, str] = {}
    for path, file_facts in facts.items():
        if reach is not None and path not in reach.runtime and path not in reach.optional:
            continue  # a variable only an example, a test or a script reads is not the project's
        for name, line, literal in file_facts.env:
            if not _NAME.match(name):
                continue
            locations.setdefault(name, []).append((path, line))
            if literal is not None:
                code_defaults.setdefault(name, []).append(((path, line), literal))
    files = tree.names()
    for example in EXAMPLE_FILES:
        for rel in sorted(f for f in files if f == example or f.endswith("/" + example)):
            for name, line, value in _read_example(tree.root / rel, rel, warnings):
                locations.setdefault(name, []).append((rel, line))
                if value and name not in example_defaults:
                    example_defaults[name] = value
    for name, (default, source) in library_env(library_outputs or {}).items():
        if name not in locations:  # the code reads it itself: its own default stands
            locations[name] = [source]
            example_defaults[name] = default
    return tuple(
        EnvVar(
            name=name,
            default=_default(name, code_defaults, example_defaults),
            secret=is_secret(name),
            locations=tuple(f"{p}:{n}" for p, n in sorted(set(locations[name]))),
        )
        for name in sorted(locations)
    )


def library_env(
    library_outputs: Mapping[str, tuple[str, int]],
) -> dict[str, tuple[str, tuple[str, int]]]:
    """Variables that point a library's store into its output folder: name -> (default, where
    the library is imported). mlflow keeps its tracking database in the working directory
    (``sqlite:///mlflow.db``), which the image's user cannot write; its artifacts go to
    ``mlruns/`` (an output, ``layout.LIBRARY_OUTPUTS``), and so does the database.
    """
    from mlpack.analyze.layout import LIBRARY_OUTPUTS

    folder = LIBRARY_OUTPUTS["mlflow"]
    imported = library_outputs.get(folder)
    if imported is None:
        return {}
    return {"MLFLOW_TRACKING_URI": (f"sqlite:///{folder}/mlflow.db", imported)}


def _default(
    name: str,
    code_defaults: Mapping[str, list[tuple[tuple[str, int], str]]],
    example_defaults: Mapping[str, str],
) -> str | None:
    """The code's first default beats an example file's; a secret or a variable of the
    platform never has one.
    """
    if is_secret(name) or is_platform(name):
        return None
    if name in code_defaults:
        return min(code_defaults[name])[1]
    return example_defaults.get(name)


def _read_example(path: Path, rel: str, warnings: list[str]) -> list[tuple[str, int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        warnings.append(f"{rel}: unreadable, skipped ({exc.strerror})")
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, value = match.group(1), match.group(2)
        if value[:1] in {'"', "'"} and value.endswith(value[0]) and len(value) >= 2:
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        found.append((name, number, value))
    return found
