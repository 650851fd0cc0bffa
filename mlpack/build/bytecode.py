"""Bytecode for the installed packages: compiled by the image's own interpreter, deterministically.

Without ``.pyc`` files every container start compiles what it imports (the image's user cannot
write ``__pycache__`` under the prefix): importing examples/training's stack took a median of
3.2 s per start without them and 1.5 s with them (docs/build.md). So each wheel step's
site-packages is compiled in the image, by the base's interpreter (its magic number, marshal
format and compiler are the ones that will load the files; a host Python of the same minor
version may still compile differently), in ``unchecked-hash`` mode (PEP 552): the header holds
the source's hash, never an mtime, so the bytes depend on the sources alone and the layer stays
reproducible. Unchecked is safe because site-packages in an immutable image never changes under
the files.

One fresh, single-process interpreter per compile, which re-executes itself with
``PYTHONHASHSEED=0`` (set and frozenset constants are marshalled in hash order); parallel
workers would make the output depend on which process compiled what (REPRODUCIBILITY.md §5).
marshal may still choose ``FLAG_REF`` by reference counts (python/cpython#98819,
astral-sh/uv#10619), so every layer is compiled twice, each time by a fresh interpreter, and a
``.pyc`` whose bytes differ between the two is left out (that module compiles at each start) and
reported: the layer keeps the bytecode both compiles agree on. The two run at the same time, each
single-process in its own container, so a multi-core host pays about one compile of wall time:
the first writes beside the sources, the second reads them through a read-only mount and writes
under a scratch folder (``sys.pycache_prefix``), which changes where a ``.pyc`` goes, not its
bytes (the same header, the same in-image ``co_filename``). Files that do not compile (test
data written for another Python) are skipped, as pip does. The code layer is not compiled: it is
small, a user may bind-mount over it (unchecked bytecode would then be stale), and compiling it
would add a container start to every code-only rebuild.

The ``.pyc`` kept are added to their distribution's RECORD with an empty hash and size, as pip
lists what it compiles, so ``pip uninstall`` and RECORD readers see them; sorted, so RECORD's
bytes depend on the files alone.

The command is ``mlpack.spec.commands.compile_argv``: the Dockerfile runs the same one after
pip, so both builders ship the same ``.pyc`` bytes.
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import posixpath
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from mlpack.errors import MlpackError
from mlpack.oslib.fs import remove_tree
from mlpack.progress import reporter
from mlpack.spec.commands import compile_argv

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlpack.build.protocol import StepRunner
    from mlpack.spec import WheelStep

# How a compiled layer is made beyond the script: part of its cache key.
RULES: Final = "compiled twice, differing .pyc left out; RECORD lists the .pyc"
NAMED: Final = 3  # unstable files named in the notice
# Where the second compile's container sees its scratch folder (its sys.pycache_prefix).
SCRATCH: Final = "/tmp/mlpack-pycache"


@dataclass(frozen=True, kw_only=True)
class Bytecode:
    """What compiling a layer left in it."""

    compiled: bool  # False: no .pyc at all (the interpreter did not run)
    dropped: tuple[str, ...] = ()  # in-image paths of the .pyc the two compiles disagreed on


def compile_step(
    step: WheelStep, runner: StepRunner, *, image: str, python: str, staging: Path
) -> Bytecode:
    """Compile the step's staged site-packages twice, at once, in containers of ``image``.

    The staged folder is mounted where it will be in the image, so the code objects name the
    in-image paths. Not compiled, with a notice and no ``.pyc`` left behind, when a container
    did not start or the interpreter failed: bytecode only speeds up the start, the image is
    whole without it (and a full disk is reported by the layer write that follows).
    """
    site = staging / step.site_packages.strip("/")
    if not site.is_dir():
        return Bytecode(compiled=True)
    shipped = _pycs(site)  # what the wheels brought: their RECORD lists them already
    folders = set(site.rglob("__pycache__"))
    scratch = Path(tempfile.mkdtemp(prefix=f"{staging.name}-pycache-", dir=staging.parent))
    try:
        why = _compile_twice(step, runner, image=image, python=python, site=site, scratch=scratch)
        runs = None if why is not None else (
            {path: _digest(path) for path in _pycs(site) - shipped},
            _beside_sources(scratch / step.site_packages.strip("/"), site, shipped),
        )  # fmt: skip
    finally:
        remove_tree(scratch)
    if runs is None:
        _remove(_pycs(site) - shipped, folders, site)
        reporter().notice(
            f"no bytecode in the {step.name} layer: {why}; each container start compiles "
            "what it imports"
        )
        return Bytecode(compiled=False)
    first, second = runs
    unstable = sorted(p for p in first.keys() | second.keys() if first.get(p) != second.get(p))
    _remove(unstable, folders, site)
    record_bytecode(site, sorted(first.keys() - set(unstable)))
    dropped = tuple(f"{step.site_packages}/{p.relative_to(site).as_posix()}" for p in unstable)
    if dropped:
        names = ", ".join(dropped[:NAMED]) + (", ..." if len(dropped) > NAMED else "")
        reporter().notice(
            f"{len(dropped)} .pyc left out of the {step.name} layer: two compiles by {python} "
            f"gave different bytes (marshal, python/cpython#98819): {names}; those modules "
            "compile at each container start"
        )
    return Bytecode(compiled=True, dropped=dropped)


def _compile_twice(
    step: WheelStep, runner: StepRunner, *, image: str, python: str, site: Path, scratch: Path
) -> str | None:
    """Run both compiles at the same time; why one failed (the first's reason first), or None.

    The first writes beside the sources, as the layer ships them. The second, on another
    thread, sees the same sources read-only and writes under ``scratch`` (``pycache_prefix``):
    it cannot touch the layer, and a source folder's new ``__pycache__`` is never compiled
    (compileall skips the name). Its own container, its own interpreter: nothing is shared but
    the sources. Only the main thread relays signals (``relaying``): Ctrl-C stops the first,
    and the block waits for the second to finish (its container removes itself).
    """
    folder = step.site_packages
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compile") as pool:
        # The worker sees this context: the caller's reporter gets the runtime's notices.
        again = pool.submit(
            contextvars.copy_context().run,
            _compile,
            runner,
            image=image,
            python=python,
            argv=compile_argv(python, folder, folder, pycache_prefix=SCRATCH),
            mounts=((SCRATCH, scratch),),
            readonly=((folder, site),),
        )
        why = _compile(runner, image=image, python=python,
                       argv=compile_argv(python, folder, folder), mounts=((folder, site),),
                       readonly=())  # fmt: skip
        return why if why is not None else again.result()


def _compile(
    runner: StepRunner,
    *,
    image: str,
    python: str,
    argv: tuple[str, ...],
    mounts: tuple[tuple[str, Path], ...],
    readonly: tuple[tuple[str, Path], ...],
) -> str | None:
    """Run one compile in a fresh container; why it failed, or None."""
    try:
        code = runner(image=image, argv=argv, mounts=mounts, readonly=readonly, network=False)
    except MlpackError as exc:  # the container did not start (a full disk, a broken base)
        return f"the container for {python} did not start: {exc.message}"
    return None if code == 0 else f"{python} in the base exited with {code} while compiling it"


def _beside_sources(prefix: Path, site: Path, shipped: set[Path]) -> dict[Path, bytes]:
    """The digests of the ``.pyc`` a ``pycache_prefix`` compile wrote under ``prefix``, each
    keyed by the path it has beside its source (``<folder>/__pycache__/<name>.<tag>.pyc``).
    """
    found = {}
    for pyc in _pycs(prefix):
        rel = pyc.relative_to(prefix)
        path = site / rel.parent / "__pycache__" / rel.name
        if path not in shipped:
            found[path] = _digest(pyc)
    return found


def _pycs(site: Path) -> set[Path]:
    return {p for p in site.rglob("*.pyc") if p.is_file() and not p.is_symlink()}


def _digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _remove(pycs: Iterable[Path], folders: set[Path], site: Path) -> None:
    """Delete ``pycs``, then the ``__pycache__`` folders the compile made that are left empty."""
    for path in pycs:
        path.unlink(missing_ok=True)
    for folder in sorted(set(site.rglob("__pycache__")) - folders, reverse=True):
        if not any(folder.iterdir()):
            remove_tree(folder)


def record_bytecode(site: Path, pycs: Iterable[Path]) -> None:
    """Add each ``.pyc`` under ``site`` to the RECORD that lists its source, as ``path,,``.

    The rows go after installer's, sorted; a ``.pyc`` whose source no RECORD lists is left
    out of all of them.
    """
    by_source: dict[str, list[str]] = {}
    for pyc in pycs:
        rel = pyc.relative_to(site)
        if rel.parent.name != "__pycache__":
            continue
        source = rel.parent.parent / f"{rel.name.partition('.')[0]}.py"
        by_source.setdefault(source.as_posix(), []).append(rel.as_posix())
    for record in sorted(site.glob("*.dist-info/RECORD")):
        data = record.read_bytes()
        rows = csv.reader(io.StringIO(data.decode("utf-8")))
        added = sorted(
            p for row in rows if row for p in by_source.get(posixpath.normpath(row[0]), ())
        )
        if not added:
            continue
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows((path, "", "") for path in added)
        newline = b"" if data.endswith(b"\n") or not data else b"\n"
        record.write_bytes(data + newline + text.getvalue().encode("utf-8"))
