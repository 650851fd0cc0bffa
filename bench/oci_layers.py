"""B9: mlpack's layer writer and applier against GNU tar + gzip/pigz/zstd.

Run: ``.venv/bin/python bench/oci_layers.py [--quick] [--tree DIR | --wheels WHL...]``.
See bench/README.md. The default tree is a copy of this venv's site-packages (many small files,
some large .so): B9s (the single stream vs ``tar | gzip -6``, apply vs ``tar -xzf``) and B9p.
``--wheels`` unpacks wheels (a torch-sized set: about 1 GB) into a cached tree and measures the
heavy-layer writers only: B9p (parallel gzip vs ``tar | pigz -6``) and B9z (zstd vs
``tar | zstd -3 -T0``), with CPU seconds and the machine's load beside the wall times.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from bench._stats import compare, format_line, interleave, median
from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_compression import zlib_ng, zstandard
from mlpack.oci.layer_writer import write_layer
from mlpack.oslib.fs import remove_tree

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from bench._stats import Arm, Comparison

SDE = 1_700_000_000
GOAL_WRITE = 1.0  # BENCHMARKS.md B9: gzip write <= 1.0x `gzip -6`
GOAL_APPLY = 1.0
GOAL_PARALLEL = 1.0  # issue 11: a heavy layer in <= 1.0x `tar | pigz -6` on the same cores
TAR = "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{sde} -cf - -C {tree} ."


def _site_packages() -> Path:
    for entry in sys.path:
        if entry.endswith("site-packages") and Path(entry).is_dir():
            return Path(entry)
    msg = "no site-packages on sys.path; pass --tree"
    raise SystemExit(msg)


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _wheel_tree(wheels: Sequence[Path]) -> Path:
    """The wheels unpacked into one tree, cached by their names and sizes between runs."""
    cache = Path(os.environ.get("MLPACK_CI_CACHE") or Path.home() / ".cache" / "mlpack") / "bench"
    key = hashlib.sha256(
        "\n".join(f"{w.name} {w.stat().st_size}" for w in sorted(wheels)).encode()
    ).hexdigest()[:16]
    tree = cache / f"wheels-{key}"
    if not tree.is_dir():
        partial = cache / f"wheels-{key}.partial"
        remove_tree(partial)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(partial)
        partial.rename(tree)
    return tree


class Meter:
    """CPU seconds per arm (this process's threads, or the children a pipeline ran), and how
    busy the whole machine was over the run (the other tenants' cores)."""

    def __init__(self) -> None:
        self.cpu: dict[str, list[float]] = {}
        self._start = (_machine_busy(), time.monotonic(), _own_cpu())

    def arm(self, name: str, fn: Callable[[], object], *, children: bool) -> Arm:
        who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF

        def run() -> float:
            before = _cpu(who)
            start = time.perf_counter()
            fn()
            wall = time.perf_counter() - start
            self.cpu.setdefault(name, []).append(_cpu(who) - before)
            return wall

        return run

    def kept(self, name: str, rounds: int) -> tuple[float, ...]:
        return tuple(self.cpu[name][-rounds:])

    def others(self) -> float:
        """Cores the rest of the machine kept busy, on average, since this meter started."""
        busy, start, own = self._start
        wall = time.monotonic() - start
        return (_machine_busy() - busy - (_own_cpu() - own)) / wall


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _own_cpu() -> float:
    return _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)


def _machine_busy() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def heavy(tree: Path, work: Path, *, rounds: int, warmups: int) -> list[Comparison]:
    """B9p and B9z on a heavy tree: the arms interleaved, wall and CPU seconds."""
    blocks, pigz_out = work / "mlpack-blocks.tar.gz", work / "pigz.tar.gz"
    zst, zstd_out = work / "mlpack.tar.zst", work / "zstd.tar.zst"
    meter = Meter()

    def ours(path: Path, **kw: object) -> Callable[[], object]:
        def run() -> None:
            with path.open("wb") as out:
                write_layer(tree, out, source_date_epoch=SDE, **kw)  # type: ignore[arg-type]

        return run

    def theirs(compressor: str, path: Path) -> Callable[[], object]:
        cmd = f"{TAR.format(sde=SDE, tree=tree)} | {compressor} > {path}"
        return lambda: subprocess.run(["bash", "-c", cmd], check=True)

    arms = {
        "blocks": meter.arm("blocks", ours(blocks, blocks=True), children=False),
        "pigz": meter.arm("pigz", theirs("pigz -6", pigz_out), children=True),
    }
    if shutil.which("zstd"):
        arms["zstd"] = meter.arm("zstd", ours(zst, compression="zstd"), children=False)
        arms["zstd-cli"] = meter.arm("zstd-cli", theirs("zstd -3 -T0 -q", zstd_out), children=True)
    print(_load(), "(start)")
    times = interleave(
        arms,
        rounds=rounds,
        warmups=warmups,
        on_round=lambda i, r: print(
            f"  round {i}: " + ", ".join(f"{k} {v:.1f} s" for k, v in r.items()) + f"  {_load()}",
            flush=True,
        ),
    )
    print(f"{_load()} (end); other tenants kept {meter.others():.1f} cores busy on average")
    sizes = [("mlpack blocks", blocks), ("tar|pigz", pigz_out)]
    if "zstd" in arms:
        sizes += [("mlpack zstd", zst), ("tar|zstd", zstd_out)]
    print("sizes: " + ", ".join(f"{n} {p.stat().st_size / 1e6:.1f} MB" for n, p in sizes))
    print(f"size blocks / tar|pigz -6: {blocks.stat().st_size / pigz_out.stat().st_size:.4f}")
    cpu = {name: meter.kept(name, rounds) for name in arms}
    print("CPU s (median): " + ", ".join(f"{n} {median(c):.1f}" for n, c in cpu.items()))
    lines = [
        compare(
            "B9p write, parallel / tar|pigz -6",
            "blocks",
            times["blocks"],
            "pigz",
            times["pigz"],
            goal=GOAL_PARALLEL,
        ),
        compare("B9p CPU s / tar|pigz -6", "blocks", cpu["blocks"], "pigz", cpu["pigz"], goal=None),
    ]
    if "zstd" in arms:
        lines += [
            compare(
                "B9z write, zstd / tar|zstd -3 -T0",
                "zstd",
                times["zstd"],
                "cli",
                times["zstd-cli"],
                goal=None,
            ),
            compare(
                "B9z write, zstd / tar|pigz -6",
                "zstd",
                times["zstd"],
                "pigz",
                times["pigz"],
                goal=None,
            ),
        ]
    return lines


def small(source: Path, work: Path, *, rounds: int, warmups: int) -> list[Comparison]:
    """B9s and B9p on a copy of ``source``: write against tar|gzip and pigz, apply vs tar -xzf."""
    tree = work / "tree"
    shutil.copytree(source, tree, symlinks=True)
    ours, theirs = work / "mlpack.tar.gz", work / "gnu.tar.gz"
    ours_blocks = work / "mlpack-blocks.tar.gz"
    pigz = shutil.which("pigz")

    def write_mlpack() -> float:
        with ours.open("wb") as out:
            start = time.perf_counter()
            write_layer(tree, out, source_date_epoch=SDE, level=6)
            return time.perf_counter() - start

    def write_blocks() -> float:
        with ours_blocks.open("wb") as out:
            start = time.perf_counter()
            write_layer(tree, out, source_date_epoch=SDE, level=6, blocks=True)
            return time.perf_counter() - start

    def write_gnu(compressor: str) -> float:
        cmd = f"{TAR.format(sde=SDE, tree=tree)} | {compressor} -6 > {theirs}"
        start = time.perf_counter()
        subprocess.run(["bash", "-c", cmd], check=True)
        return time.perf_counter() - start

    write_arms: dict[str, Arm] = {
        "mlpack": write_mlpack,
        "blocks": write_blocks,
        "gzip": lambda: write_gnu("gzip"),
    }
    if pigz:
        write_arms["pigz"] = lambda: write_gnu(pigz)

    def apply_mlpack() -> float:
        target = work / "apply-mlpack"
        remove_tree(target)
        target.mkdir()
        os.sync()  # the last run's deletes must not be charged to this one
        with ours.open("rb") as blob:
            start = time.perf_counter()
            apply_layer(blob, target, media_type=mediatypes.OCI_LAYER_GZIP)
            return time.perf_counter() - start

    def apply_gnu() -> float:
        target = work / "apply-gnu"
        remove_tree(target)
        target.mkdir()
        os.sync()
        start = time.perf_counter()
        subprocess.run(["tar", "-xzf", str(ours), "-C", str(target)], check=True)
        return time.perf_counter() - start

    writes = interleave(write_arms, rounds=rounds, warmups=warmups)
    print(
        f"sizes: mlpack {ours.stat().st_size / 1e6:.1f} MB, "
        f"mlpack blocks {ours_blocks.stat().st_size / 1e6:.1f} MB, "
        f"tar|{'pigz' if pigz else 'gzip'} {theirs.stat().st_size / 1e6:.1f} MB"
    )
    applies = interleave({"mlpack": apply_mlpack, "tar": apply_gnu}, rounds=rounds, warmups=warmups)
    lines = [
        compare("B9s write / tar|gzip -6", "mlpack", writes["mlpack"], "gzip", writes["gzip"],
                goal=GOAL_WRITE),
        compare("B9s apply / tar -xzf", "mlpack", applies["mlpack"], "tar", applies["tar"],
                goal=GOAL_APPLY),
    ]  # fmt: skip
    if pigz:
        lines[1:1] = [
            compare("B9s write / tar|pigz -6", "mlpack", writes["mlpack"], "pigz",
                    writes["pigz"], goal=None),
            compare("B9p write, parallel blocks / tar|pigz -6", "blocks", writes["blocks"],
                    "pigz", writes["pigz"], goal=GOAL_PARALLEL),
        ]  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 pairs")
    parser.add_argument("--tree", type=Path, help="the tree to pack (default: site-packages)")
    parser.add_argument(
        "--wheels", type=Path, nargs="+", help="unpack these wheels (cached) and time heavy layers"
    )
    args = parser.parse_args()
    warmups, rounds = (1, 3) if args.quick else (2, 7)
    zstd = zstandard()
    versions = (
        f"python {platform.python_version()}  zlib {zlib.ZLIB_RUNTIME_VERSION}  "
        f"zlib-ng {zlib_ng().ZLIBNG_RUNTIME_VERSION}  "
        f"zstd {'.'.join(map(str, zstd.ZSTD_VERSION))}  cores {len(os.sched_getaffinity(0))}"
    )
    work = Path(tempfile.mkdtemp(prefix="mlpack-bench-layers-"))
    try:
        if args.wheels:
            tree = _wheel_tree(args.wheels)
            print(f"{versions}  tree {tree} ({_du(tree) / 1e6:.0f} MB, "
                  f"{sum(1 for _ in tree.rglob('*'))} entries)")  # fmt: skip
            lines = heavy(tree, work, rounds=rounds, warmups=warmups)
        else:
            source = args.tree or _site_packages()
            print(f"{versions}  tree {source} ({_du(source) / 1e6:.0f} MB)")
            lines = small(source, work, rounds=rounds, warmups=warmups)
        for line in lines:
            print(format_line(line))
    finally:
        remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
