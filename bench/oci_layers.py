"""B9 (small): mlpack's layer writer and applier against GNU tar + gzip on a ~200 MB tree.

Run: ``.venv/bin/python bench/oci_layers.py [--quick] [--tree DIR]``. See bench/README.md.
The default tree is a copy of this venv's site-packages (many small files, some large .so).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from bench._stats import compare, format_line, interleave, timed
from mlpack.oci import mediatypes
from mlpack.oci.layer_applier import apply_layer
from mlpack.oci.layer_writer import write_layer
from mlpack.oslib.fs import remove_tree

SDE = 1_700_000_000
GOAL_WRITE = 1.0  # BENCHMARKS.md B9: gzip write <= 1.0x `gzip -6`
GOAL_APPLY = 1.0
GOAL_PARALLEL = 1.0  # issue 11: a heavy layer in <= 1.0x `tar | pigz -6` on the same cores


def _site_packages() -> Path:
    for entry in sys.path:
        if entry.endswith("site-packages") and Path(entry).is_dir():
            return Path(entry)
    msg = "no site-packages on sys.path; pass --tree"
    raise SystemExit(msg)


def _du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 pairs")
    parser.add_argument("--tree", type=Path, help="the tree to pack (default: site-packages)")
    args = parser.parse_args()
    warmups, rounds = (1, 3) if args.quick else (2, 7)
    source = args.tree or _site_packages()

    work = Path(tempfile.mkdtemp(prefix="mlpack-bench-layers-"))
    try:
        tree = work / "tree"
        shutil.copytree(source, tree, symlinks=True)
        ours, theirs = work / "mlpack.tar.gz", work / "gnu.tar.gz"
        ours_blocks = work / "mlpack-blocks.tar.gz"
        pigz = shutil.which("pigz")

        def write_mlpack() -> float:
            with ours.open("wb") as out:
                return timed(lambda: write_layer(tree, out, source_date_epoch=SDE, level=6))

        def write_blocks() -> float:
            with ours_blocks.open("wb") as out:
                return timed(
                    lambda: write_layer(tree, out, source_date_epoch=SDE, level=6, blocks=True)
                )

        def write_gnu(compressor: str) -> float:
            cmd = (
                f"tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@{SDE} "
                f"-cf - -C {tree} . | {compressor} -6 > {theirs}"
            )
            return timed(lambda: subprocess.run(["bash", "-c", cmd], check=True))

        write_arms = {
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
                return timed(
                    lambda: apply_layer(blob, target, media_type=mediatypes.OCI_LAYER_GZIP)
                )

        def apply_gnu() -> float:
            target = work / "apply-gnu"
            remove_tree(target)
            target.mkdir()
            os.sync()
            return timed(
                lambda: subprocess.run(["tar", "-xzf", str(ours), "-C", str(target)], check=True)
            )

        print(
            f"python {platform.python_version()}  zlib {zlib.ZLIB_RUNTIME_VERSION}  "
            f"cpus {os.cpu_count()}  tree {source} ({_du(tree) / 1e6:.0f} MB, "
            f"{sum(1 for _ in tree.rglob('*'))} entries)"
        )
        writes = interleave(write_arms, rounds=rounds, warmups=warmups)
        print(
            f"sizes: mlpack {ours.stat().st_size / 1e6:.1f} MB, "
            f"mlpack blocks {ours_blocks.stat().st_size / 1e6:.1f} MB, "
            f"tar|{'pigz' if pigz else 'gzip'} {theirs.stat().st_size / 1e6:.1f} MB"
        )
        applies = interleave(
            {"mlpack": apply_mlpack, "tar": apply_gnu}, rounds=rounds, warmups=warmups
        )
        lines = [
            compare(
                "B9s write / tar|gzip -6",
                "mlpack",
                writes["mlpack"],
                "gzip",
                writes["gzip"],
                goal=GOAL_WRITE,
            ),
            compare(
                "B9s apply / tar -xzf",
                "mlpack",
                applies["mlpack"],
                "tar",
                applies["tar"],
                goal=GOAL_APPLY,
            ),
        ]
        if pigz:
            lines.insert(
                1,
                compare(
                    "B9p write, parallel blocks / tar|pigz -6",
                    "blocks",
                    writes["blocks"],
                    "pigz",
                    writes["pigz"],
                    goal=GOAL_PARALLEL,
                ),
            )
            lines.insert(
                1,
                compare(
                    "B9s write / tar|pigz -6",
                    "mlpack",
                    writes["mlpack"],
                    "pigz",
                    writes["pigz"],
                    goal=None,
                ),
            )
        for line in lines:
            print(format_line(line))
    finally:
        remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
