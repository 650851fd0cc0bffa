"""Bytecode for the installed packages: compiled by the image's own interpreter, deterministically.

Without ``.pyc`` files every container start compiles what it imports (the image's user cannot
write ``__pycache__`` under the prefix): importing examples/training's stack took a median of
3.2 s per start without them and 1.5 s with them (docs/build.md). So each wheel step's site-packages is compiled in
the image, by the base's interpreter (its magic number, marshal format and compiler are the
ones that will load the files; a host Python of the same minor version may still compile
differently), in ``unchecked-hash`` mode (PEP 552): the header holds the source's hash, never an
mtime, so the bytes depend on the sources alone and the layer stays reproducible. Unchecked is
safe because site-packages in an immutable image never changes under the files.

One fresh, single-process interpreter per layer, which re-executes itself with
``PYTHONHASHSEED=0`` (set and frozenset constants are marshalled in hash order); parallel workers would make the output depend on
which process compiled what (REPRODUCIBILITY.md §5). Files that do not compile (test data
written for another Python) are skipped, as pip does. The code layer is not compiled: it is
small, a user may bind-mount over it (unchecked bytecode would then be stale), and compiling it
would add a container start to every code-only rebuild.

The command is ``mlpack.spec.commands.compile_argv``: the Dockerfile runs the same one after
pip, so both builders ship the same ``.pyc`` bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.errors import MlpackError
from mlpack.oslib.fs import remove_tree
from mlpack.progress import reporter
from mlpack.spec.commands import compile_argv

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import StepRunner
    from mlpack.spec import WheelStep


def compile_step(
    step: WheelStep, runner: StepRunner, *, image: str, python: str, staging: Path
) -> bool:
    """Compile the step's staged site-packages in a container of ``image`` (no network).

    The staged folder is mounted where it will be in the image, so the code objects name the
    in-image paths. False, with a notice and no ``.pyc`` left behind, when the container did not
    start or the interpreter failed: bytecode only speeds up the start, the image is whole
    without it (and a full disk is reported by the layer write that follows).
    """
    site = staging / step.site_packages.strip("/")
    if not site.is_dir():
        return True
    before = set(site.rglob("__pycache__"))
    try:
        code = runner(
            image=image,
            argv=compile_argv(python, step.site_packages, step.site_packages),
            mounts=((step.site_packages, site),),
            readonly=(),
            network=False,
        )
    except MlpackError as exc:  # the container did not start (a full disk, a broken base)
        why = f"the container for {python} did not start: {exc.message}"
    else:
        if code == 0:
            return True
        why = f"{python} in the base exited with {code} while compiling it"
    for cache in set(site.rglob("__pycache__")) - before:
        remove_tree(cache)
    reporter().notice(
        f"no bytecode in the {step.name} layer: {why}; each container start compiles what it "
        "imports"
    )
    return False
