"""CUDA need: whether the image needs CUDA wheels, and which evidence says so.

Rule: CUDA is *needed* when code outside tests uses a GPU unconditionally: ``.cuda()``,
``torch.device("cuda")``, ``.to("cuda")``, ``device="cuda"``/``device_map="cuda"``, a
``torch.cuda.*`` call other than queries and no-ops (``is_available``, ``device_count``,
``manual_seed*``, ``empty_cache``...), ``tf.device("/GPU:0")``, ``tf.config`` GPU calls,
``jax.devices("gpu")``, an NCCL process group, ``add_argument("--device", default="cuda")``;
or when a package needs it by name (``nvidia-*``, ``*-cuda*``, ``cupy-cuda*``, ``*-gpu``, a
``cuda``/``gpu`` extra) or the code imports ``cupy``/``pycuda``. A use under a
GPU-availability check (``if torch.cuda.is_available():``, ``"cuda" if
torch.cuda.is_available() else "cpu"``) only means the GPU is optional: level ``optional``,
with its source, and ``cuda`` False, so a CPU image works. With a reachability walk, only the
code the entrypoints run (and optional paths) counts; without one, all code outside tests.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from mlpack.analyze.analysis import Accelerator, Package

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mlpack.analyze.pyfacts import FileFacts
    from mlpack.analyze.reach import Reach

_CUDA_PACKAGE: Final = re.compile(r"^nvidia-|cuda|-gpu$|^pycuda$")
_CUDA_EXTRA: Final = re.compile(r"cuda|gpu")
_CUDA_IMPORTS: Final = frozenset({"cupy", "pycuda"})
_TEST_PARTS: Final = ("tests/", "test/")


def analyze_accelerator(
    facts: Mapping[str, FileFacts], packages: Iterable[Package], *, reach: Reach | None = None
) -> Accelerator:
    """Decide the GPU level, citing the first piece of evidence."""
    evidence: list[tuple[str, int]] = []
    guarded: list[tuple[str, int]] = []
    for path, file_facts in facts.items():
        if reach is not None:
            if path not in reach.runtime and path not in reach.optional:
                continue
        elif path.startswith(_TEST_PARTS) or any(f"/{p}" in path for p in _TEST_PARTS):
            continue
        evidence.extend((path, line) for line, _ in file_facts.cuda)
        if file_facts.cuda_optional:
            guarded.append((path, file_facts.cuda_optional))
    if evidence:
        path, line = min(evidence)
        return Accelerator(cuda=True, source=f"{path}:{line}", level="required")
    for package in sorted(packages, key=lambda p: p.name):
        if package.group is not None and package.optional:
            continue
        if _CUDA_PACKAGE.search(package.name) or any(_CUDA_EXTRA.search(e) for e in package.extras):
            return Accelerator(cuda=True, source=package.source, level="required")
        if package.used and _CUDA_IMPORTS.intersection(package.imports):
            return Accelerator(cuda=True, source=package.source, level="required")
    if guarded:
        path, line = min(guarded)
        return Accelerator(cuda=False, source=f"{path}:{line}", level="optional")
    return Accelerator(cuda=False, source=None)
