"""Folder layout: what the code reads (inputs), writes (outputs), the code itself, large files.

- Folders by name, when they exist at the root: inputs ``data/``, ``datasets/``, ``models/``,
  ``weights/``, ``configs/``, ``conf/``...; outputs ``outputs/``, ``output/``, ``checkpoints/``,
  ``runs/``, ``logs/``, ``wandb/``, ``mlruns/``, ``lightning_logs/``... An input-named folder that
  is a Python package (``models/__init__.py``) is code, not an input.
- The folder a library writes beside the code when the code the entrypoints run imports it
  (``LIBRARY_OUTPUTS``): ``mlruns/`` for mlflow, ``lightning_logs/``, ``wandb/``, ``runs/`` for
  TensorBoard.
- Literal paths in code: reads (``open(p)``, ``read_csv``, ``np.load``, ``torch.load``,
  ``Path(p).read_text``, ``from_pretrained("./local")``...) and writes (``open(p, "w")``,
  ``to_csv``, ``torch.save``, ``joblib.dump``, ``savefig``, ``save_pretrained``, ``os.makedirs``,
  ``Path(p).mkdir``, ``output_dir=``/``log_dir=`` arguments...). The first folder of the path is
  reported; a bare file name is reported as itself. Literal defaults of variables named
  ``*_DIR``/``*_PATH``/``*_ROOT``/``*_FOLDER``/``*_FILE`` count too (``OUTPUT_DIR``,
  ``CHECKPOINT_DIR``, ``LOG_DIR``... as writes; others as reads). Absolute paths, URLs, ``~`` and ``..`` are
  left out, and so are reads of files shipped in the repository (they are code, not inputs).
- Not folders: a file of the repository (``README.md``, written by a docs script), a version
  string (``1.0``, ``v2.1.3``), a file mode (``Path(p).open("w")``), a download call's
  ``filename=`` and, for reads, a hub id (``google/flan-t5``: two parts, no extension, no such
  folder in the repository and not a usual input name).
- With a reachability walk (``mlpack.analyze.reach``), only the code the entrypoints run counts:
  the folders an example or a test writes are not the project's.
- ``PathUse.kind`` comes from the folder's name, else "data" for reads and "outputs" for writes.
- Large files: >= 10 MiB, or > 1 MiB with a weights/data extension.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from mlpack.analyze.analysis import LargeFile, Layout, PathUse
from mlpack.analyze.pyfacts import GUARDED, OPTIONAL

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.reach import Reach
    from mlpack.analyze.walk import RepoTree

INPUT_FOLDERS: Final = {
    "data": "data",
    "datasets": "data",
    "dataset": "data",
    "models": "models",
    "model": "models",
    "weights": "models",
    "pretrained": "models",
    "configs": "configs",
    "config": "configs",
    "conf": "configs",
}
OUTPUT_FOLDERS: Final = {
    "outputs": "outputs",
    "output": "outputs",
    "results": "outputs",
    "artifacts": "outputs",
    "checkpoints": "checkpoints",
    "checkpoint": "checkpoints",
    "ckpt": "checkpoints",
    "ckpts": "checkpoints",
    "runs": "runs",
    "mlruns": "runs",
    "logs": "logs",
    "log": "logs",
    "wandb": "logs",
    "lightning_logs": "logs",
    "tb_logs": "logs",
}
# Libraries that write beside the code unless told otherwise, and the folder they write: an
# import of one in the code the entrypoints run makes that folder an output (the image's user
# cannot write to the code's folder). mlflow's store goes there too (envvars.library_env).
LIBRARY_OUTPUTS: Final = {
    "mlflow": "mlruns",
    "lightning": "lightning_logs",
    "pytorch_lightning": "lightning_logs",
    "wandb": "wandb",
    "torch.utils.tensorboard": "runs",
    "tensorboardX": "runs",
}
# Variables such as OUTPUT_DIR="outputs" or DATA_PATH="data/train.csv" name folders too.
_PATH_VARS: Final = ("_DIR", "_PATH", "_ROOT", "_FOLDER", "_FILE")
_OUTPUT_VARS: Final = ("OUT", "SAVE", "CKPT", "CHECKPOINT", "LOG", "RUN", "ARTIFACT", "EXPORT")
_VERSION: Final = re.compile(r"^v?\d+(\.\d+)+[\w.+-]*$")
_FILE_SUFFIX: Final = re.compile(r"\.[A-Za-z0-9]{1,10}$")
LARGE_FILE_BYTES: Final = 10 * 2**20
WEIGHT_FILE_BYTES: Final = 2**20
WEIGHT_SUFFIXES: Final = (
    ".pt",
    ".pth",
    ".ckpt",
    ".safetensors",
    ".bin",
    ".onnx",
    ".h5",
    ".hdf5",
    ".keras",
    ".pb",
    ".tflite",
    ".pkl",
    ".pickle",
    ".joblib",
    ".npy",
    ".npz",
    ".parquet",
    ".arrow",
    ".feather",
    ".tfrecord",
    ".tfrecords",
    ".gguf",
    ".ggml",
    ".msgpack",
    ".model",
    ".csv",
    ".tsv",
    ".jsonl",
    ".zip",
    ".tar",
    ".gz",
    ".zst",
    ".lmdb",
    ".mdb",
)


def analyze_layout(
    tree: RepoTree,
    facts: Mapping[str, FileFacts],
    *,
    reach: Reach | None = None,
    library_outputs: Mapping[str, tuple[str, int]] | None = None,
) -> Layout:
    """Derive inputs, outputs, code and large files from folder names, code and file sizes;
    ``library_outputs`` (see ``library_outputs``) adds the folders libraries write.
    """
    files = tree.names()
    # Python packages at the root (and src/) are code; a data/ folder that merely holds a
    # download script is still data.
    code_dirs = {
        p.split("/", 1)[0] for p in files if p.count("/") == 1 and p.endswith("/__init__.py")
    }
    code_dirs.add("src")
    inputs: dict[str, PathUse] = {}
    outputs: dict[str, PathUse] = {}
    for raw, line, file, mode in _path_uses(facts, reach):
        top = _local_folder(raw, mode, tree, files)
        if top is None or top in code_dirs:
            continue
        exists = top in tree.dirs or top in files or (tree.root / top).exists()
        source = f"{file}:{line}"
        if mode == "w" or top in OUTPUT_FOLDERS:
            kind = OUTPUT_FOLDERS.get(top) or INPUT_FOLDERS.get(top) or "outputs"
            outputs.setdefault(top, PathUse(path=top, kind=kind, source=source, exists=exists))
        else:
            kind = INPUT_FOLDERS.get(top, "data")
            inputs.setdefault(top, PathUse(path=top, kind=kind, source=source, exists=exists))
    for folder, (file, line) in (library_outputs or {}).items():
        use = PathUse(
            path=folder,
            kind=OUTPUT_FOLDERS[folder],
            source=f"{file}:{line}",
            exists=folder in tree.dirs,
        )
        outputs.setdefault(folder, use)
    _add_existing_folders(tree, inputs, outputs, code_dirs)
    large = [
        LargeFile(path=f.path, size=f.size)
        for f in tree.files
        if f.size >= LARGE_FILE_BYTES
        or (f.size > WEIGHT_FILE_BYTES and f.path.lower().endswith(WEIGHT_SUFFIXES))
    ]
    return Layout(
        inputs=tuple(inputs[k] for k in sorted(inputs)),
        outputs=tuple(outputs[k] for k in sorted(outputs)),
        code=code_paths(tree),
        large_files=tuple(large),
    )


def _path_uses(
    facts: Mapping[str, FileFacts], reach: Reach | None
) -> list[tuple[str, int, str, str]]:
    """(path, line, file, mode) of each literal path and ``DATA_DIR``-style default.

    Only the code the entrypoints run counts; sorted, so a folder's source is its first use.
    """
    uses: list[tuple[str, int, str, str]] = []
    for file, file_facts in facts.items():
        if reach is not None and file not in reach.runtime and file not in reach.optional:
            continue
        for raw, line, mode in file_facts.paths:
            uses.append((raw, line, file, mode))
        for name, line, default in file_facts.env:
            upper = name.upper()
            if default and upper.endswith(_PATH_VARS):
                mode = "w" if any(w in upper for w in _OUTPUT_VARS) else "r"
                uses.append((default, line, file, mode))
    return sorted(uses, key=lambda u: (u[2], u[1], u[0]))


def is_file_output(path: str) -> bool:
    """An output that is a file beside the code (``model.pkl``: a bare file name the code
    writes, reported as itself), not a folder: it is mounted as that file, never made a folder.
    """
    return "/" not in path.strip("/") and _FILE_SUFFIX.search(path) is not None


def library_outputs(
    facts: Mapping[str, FileFacts], reach: Reach | None
) -> dict[str, tuple[str, int]]:
    """The folder each library of ``LIBRARY_OUTPUTS`` writes -> its first import (file, line)
    in the code the entrypoints always run (not an optional or guarded import).
    """
    found: dict[str, tuple[str, int]] = {}
    for file in sorted(facts):
        if reach is not None and file not in reach.runtime:
            continue
        for module, line, flags, _ in sorted(facts[file].imports, key=lambda i: i[1]):
            if flags & (OPTIONAL | GUARDED):
                continue
            for library, folder in LIBRARY_OUTPUTS.items():
                if module == library or module.startswith(library + "."):
                    found.setdefault(folder, (file, line))
    return found


def _local_folder(raw: str, mode: str, tree: RepoTree, files: frozenset[str]) -> str | None:
    """The top folder of a path the code uses.

    None for a version string, a file shipped in the repository (README.md) or a hub id.
    """
    path = _normalize(raw)
    if path is None:
        return None
    top, slash, _ = path.partition("/")
    if _VERSION.match(path) or (not slash and top in files):
        return None
    if (
        mode != "w"
        and path.count("/") == 1
        and not _FILE_SUFFIX.search(path)
        and top not in tree.dirs
        and top not in INPUT_FOLDERS
        and top not in OUTPUT_FOLDERS
    ):
        return None  # a hub id such as "google/flan-t5", not a local folder
    if mode == "p" and not (
        raw.startswith(("./", "../")) or top in tree.dirs or top in INPUT_FOLDERS
    ):
        return None  # a hub id such as "org/model", not a local folder
    return top


def _add_existing_folders(
    tree: RepoTree,
    inputs: dict[str, PathUse],
    outputs: dict[str, PathUse],
    code_dirs: set[str],
) -> None:
    """Conventional folders (``data/``, ``outputs/``...) count when they exist, used or not."""
    for name, kind in INPUT_FOLDERS.items():
        if name not in inputs and name not in code_dirs and (tree.root / name).is_dir():
            inputs[name] = PathUse(path=name, kind=kind, source="rule: folder exists", exists=True)
    for name, kind in OUTPUT_FOLDERS.items():
        if name not in outputs and (tree.root / name).is_dir():
            outputs[name] = PathUse(path=name, kind=kind, source="rule: folder exists", exists=True)


def code_paths(tree: RepoTree) -> tuple[str, ...]:
    """Return packages, root modules, script folders and notebooks (relative posix paths)."""
    files = tree.names()
    found: set[str] = set()
    for path in files:
        parts = path.split("/")
        if path.endswith(".ipynb"):
            found.add(path)
            continue
        if not path.endswith(".py"):
            continue
        if len(parts) == 1:
            found.add(path)
        elif parts[0] == "src" and len(parts) > 2 and f"src/{parts[1]}/__init__.py" in files:
            found.add(f"src/{parts[1]}")
        elif parts[0] == "src" and len(parts) == 2:
            found.add(path)
        else:
            found.add(parts[0])
    return tuple(sorted(found))


def _normalize(raw: str) -> str | None:
    path = raw.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    path = path.rstrip("/")
    if (
        not path
        or path.startswith(("/", "~", "$", "{", "."))
        or "://" in path
        or ".." in path.split("/")
        or any(c in path for c in "*?{}<>|\n\t")
    ):
        return None
    return path
