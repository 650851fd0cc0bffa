"""OCI store and registry: pull vs skopeo copy, unpack vs umoci unpack, push bytes after a change.

Run: ``.venv/bin/python bench/oci.py [--quick] [--registry 127.0.0.1:5000]`` (root, with a
registry on loopback; ``MLPACK_TEST_REGISTRY`` is used when set). The image is THE test base
(Debian bookworm + python3, built with the debian provider and cached under MLPACK_CI_CACHE)
plus one layer holding a copy of /usr/lib/python3.11, so it has two sizeable layers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bench._stats import compare, format_line, interleave, timed
from mlpack.base.debian import base_reference, build_debian_base, configured_mirror
from mlpack.oci import mediatypes
from mlpack.oci.documents import Descriptor
from mlpack.oci.layer_writer import write_layer
from mlpack.oci.registry import pull, push
from mlpack.oci.snapshots import rootfs, unpack
from mlpack.oci.store import Store
from mlpack.oslib.fs import remove_tree

SDE = 1_700_000_000
GOAL_PULL = 1.0  # BENCHMARKS.md / issue: pull into an empty store <= 1.0x skopeo copy
GOAL_UNPACK = 1.0  # unpack <= 1.0x umoci unpack
GOAL_PUSH_BYTES = 1.05  # bytes sent <= 1.05x the changed layer


def _add_layer(store: Store, base: str, tree: Path, ref: str, work: Path) -> str:
    image = store.image(base)
    blob = work / "layer.tar.gz"
    with blob.open("wb") as fh:
        digests = write_layer(tree, fh, source_date_epoch=SDE)
    store.put_file(blob, digest=digests.digest)
    config = dict(image.config.raw)
    config["rootfs"] = {"type": "layers", "diff_ids": [*image.config.diff_ids, digests.diff_id]}
    config["history"] = [*config.get("history", []), {"created": image.config.created}]
    layer = Descriptor(
        media_type=mediatypes.OCI_LAYER_GZIP, digest=digests.digest, size=digests.size
    )
    return store.add_image(config=config, layers=(*image.manifest.layers, layer), ref=ref)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 pairs")
    parser.add_argument(
        "--registry", default=os.environ.get("MLPACK_TEST_REGISTRY", "127.0.0.1:5000")
    )
    parser.add_argument("--tree", type=Path, default=Path("/usr/lib/python3.11"))
    args = parser.parse_args()
    warmups, rounds = (1, 3) if args.quick else (2, 7)
    for tool in ("skopeo", "umoci"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required")

    work = Path(tempfile.mkdtemp(prefix="mlpack-bench-oci-"))
    cache = Path(os.environ.get("MLPACK_CI_CACHE", "/var/cache/mlpack-ci"))
    try:
        src = Store(cache / "bench-oci-store")
        base = base_reference("3.11")
        build_debian_base("3.11", src, mirror=configured_mirror(), sde=SDE)
        tree = work / "tree"
        shutil.copytree(
            args.tree, tree, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
        _add_layer(src, base, tree, "bench/oci:1", work)
        repo = f"{args.registry}/mlpack-bench/{uuid.uuid4().hex[:8]}"
        push(src, "bench/oci:1", f"{repo}:1")
        image = src.image("bench/oci:1")
        total = image.size
        print(
            f"python {platform.python_version()}  cpus {os.cpu_count()}  image "
            f"{len(image.manifest.layers)} layers, {total / 1e6:.0f} MB compressed  registry {args.registry}"
        )

        def pull_api() -> float:
            store = Store(work / "pull-api")
            remove_tree(store.root)
            os.sync()  # the last run's deletes must not be charged to this one
            return timed(lambda: pull(f"{repo}:1", store))

        def pull_cli() -> float:
            # The console script users run, output captured as in scripts and CI.
            env = {**os.environ, "MLPACK_HOME": str(work / "pull-cli")}
            remove_tree(work / "pull-cli")
            os.sync()
            mlpack = str(Path(sys.executable).with_name("mlpack"))
            return timed(
                lambda: subprocess.run(
                    [mlpack, "pull", f"{repo}:1"], env=env, check=True, capture_output=True
                )
            )

        def skopeo() -> float:
            remove_tree(work / "skopeo")
            os.sync()
            cmd = [
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                f"docker://{repo}:1",
                f"oci:{work / 'skopeo'}:1",
            ]
            return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))

        pulls = interleave(
            {"api": pull_api, "cli": pull_cli, "skopeo": skopeo},
            rounds=rounds,
            warmups=warmups,
        )

        store = Store(work / "pull-api")

        def unpack_mlpack() -> float:
            for sub in ("layers", "rootfs"):
                remove_tree(store.root / sub)
                (store.root / sub).mkdir()
            os.sync()
            return timed(lambda: unpack(store, f"{repo}:1"))

        def rootfs_mlpack() -> float:
            for sub in ("layers", "rootfs"):
                remove_tree(store.root / sub)
                (store.root / sub).mkdir()
            os.sync()
            return timed(lambda: rootfs(store, f"{repo}:1"))

        def umoci() -> float:
            remove_tree(work / "bundle")
            os.sync()
            cmd = ["umoci", "unpack", "--image", f"{work / 'skopeo'}:1", str(work / "bundle")]
            return timed(lambda: subprocess.run(cmd, check=True, capture_output=True))

        unpacks = interleave(
            {"unpack": unpack_mlpack, "rootfs": rootfs_mlpack, "umoci": umoci},
            rounds=rounds,
            warmups=warmups,
        )

        # Push after a change to one layer: only that layer (plus config and manifest) goes out.
        (tree / "mlpack_bench_marker.py").write_text(uuid.uuid4().hex)
        _add_layer(src, base, tree, "bench/oci:2", work)
        changed = src.image("bench/oci:2").manifest.layers[-1]
        result = push(src, "bench/oci:2", f"{repo}:2")
        ratio = result.bytes_sent / changed.size

        lines = [
            compare("oci pull (API) / skopeo copy", "mlpack", pulls["api"], "skopeo", pulls["skopeo"], goal=None),
            compare("oci pull (CLI) / skopeo copy", "mlpack", pulls["cli"], "skopeo", pulls["skopeo"], goal=GOAL_PULL),
            compare("oci unpack / umoci unpack", "mlpack", unpacks["unpack"], "umoci", unpacks["umoci"], goal=GOAL_UNPACK),
            compare("oci rootfs / umoci unpack", "mlpack", unpacks["rootfs"], "umoci", unpacks["umoci"], goal=None),
        ]  # fmt: skip
        for line in lines:
            print(format_line(line))
        verdict = "PASS" if ratio <= GOAL_PUSH_BYTES else "FAIL"
        print(
            f"{'oci push bytes / changed layer':<34} sent {result.bytes_sent} B  layer "
            f"{changed.size} B  ratio {ratio:6.3f}  goal <= {GOAL_PUSH_BYTES}  {verdict}"
        )
    finally:
        remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
