"""B5/B6/B8/B11 (small): `mlpack build` (embedded) vs `docker build` of the rendered Dockerfile
and of a naive one (`COPY . .` then `pip install`), on examples/inference.

Run as root, with a Docker engine: ``.venv/bin/python bench/build.py [--quick] [--project DIR]``.
The project needs its mlpack.toml and mlpack.lock (``mlpack analyze --write && mlpack lock``);
every contender gets the same base image (loaded into the engine from the store by digest), the
same wheels (served from the context with ``--no-index``) and the same .deb files, and builds
with no network. The embedded builder runs its in-image steps (dpkg, the bytecode compile) on
the embedded runtime, as ``mlpack build`` does. Cold docker builds use ``--no-cache``; the
engine's cache is never pruned (it is shared).

B11: how often a repeated cold build of the same inputs gives the same digest: the embedded
image's manifest digest, and docker's image ID (its config digest) and layer diff_ids.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from bench._stats import compare, format_line, interleave, timed
from mlpack.build.docker import DOCKERFILE, DockerBuilder, write_context
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.config import load_config
from mlpack.lock.lockfile import read_lock
from mlpack.oci.store import Store
from mlpack.oslib.fs import remove_tree
from mlpack.pipeline import copy_image, embedded_step_runner, ensure_base, fetch_lock
from mlpack.spec import plan

REPO = Path(__file__).resolve().parents[1]
# The engine is shared: another run of this benchmark must not untag this one's images.
REPO_TAG = f"mlpack-bench/build-{os.getpid()}"
GOAL_COLD = 0.8  # BENCHMARKS.md B5
GOAL_CODE = 0.2  # B6, against the rendered Dockerfile
GOAL_NAIVE = 0.02  # B6, against the naive Dockerfile
GOAL_SIZE = 0.95  # B8, against the naive image
NAIVE = """ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /app
COPY . .
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --no-index \\
    --find-links .mlpack/wheels/packages -r .mlpack/requirements/packages.txt
ENV PATH=/opt/venv/bin:$PATH
"""


def docker_build(context: bytes, tag: str, base_id: str, *, dockerfile: str, cache: bool) -> None:
    cmd = ["docker", "build", "-q", "--network", "none", "-f", dockerfile, "-t", tag, "--build-arg",
           f"BASE_IMAGE={base_id}", *([] if cache else ["--no-cache"]), "-"]  # fmt: skip
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, as docker-py drives it
    subprocess.run(cmd, input=context, check=True, capture_output=True, env=env)


def docker_identity(tag: str) -> tuple[str, tuple[str, ...]]:
    """The engine's image ID (the config digest) and the layer diff_ids of ``tag``."""
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{json .Id}} {{json .RootFS.Layers}}", tag],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    image, layers = out.stdout.split(" ", 1)
    return json.loads(image), tuple(json.loads(layers))


def repeats(values: list[object]) -> str:
    """How many of the repeated results equal the first, as "k/n (p%)"."""
    same = sum(v == values[0] for v in values[1:])
    n = len(values) - 1
    return f"{same}/{n} ({100 * same / n:.0f}%)" if n else "n/a"


def layer_repeats(builds: list[tuple[str, ...]], skip: int) -> str:
    """How many built layers (after the ``skip`` base layers) repeat the first build's, in place."""
    first = builds[0][skip:]
    same = sum(a == b for other in builds[1:] for a, b in zip(first, other[skip:], strict=False))
    n = len(first) * (len(builds) - 1)
    return f"{same}/{n} ({100 * same / n:.0f}%)" if n else "n/a"


def docker_size(tag: str) -> int:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", tag], check=True, capture_output=True
    )
    return int(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 warm-up, 3 pairs")
    parser.add_argument("--project", type=Path, default=REPO / "examples" / "inference")
    args = parser.parse_args()
    warmups, rounds = (1, 3) if args.quick else (1, 5)
    root = args.project.resolve()
    config, lock = load_config(root), read_lock(root / "mlpack.lock")
    spec = plan(lock, config)
    wheels = {f.sha256: f.path for f in fetch_lock(root, lock).files}
    store = Store.default()
    ensure_base(lock, config, store)
    import docker

    client = docker.from_env()
    runner = embedded_step_runner()
    docker_builder = DockerBuilder(store, client=client, wheels=wheels)
    base_id = docker_builder.load_base(spec)
    debs = docker_builder.fetch_debs(spec)
    base_layers = len(store.image(spec.base_digest).config.diff_ids)
    client.close()
    edit = root / "bench_edit.py"

    def context() -> bytes:
        buf = io.BytesIO()
        write_context(spec, root, wheels, buf, debs=debs)
        data = buf.getvalue()
        naive = io.BytesIO()
        with (
            tarfile.open(fileobj=io.BytesIO(data)) as src,
            tarfile.open(fileobj=naive, mode="w") as dst,
        ):
            for member in src.getmembers():
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
            info = tarfile.TarInfo(".mlpack/Dockerfile.naive")
            info.size = len(NAIVE)
            dst.addfile(info, io.BytesIO(NAIVE.encode()))
        return naive.getvalue()

    with store.staging("bench-build") as tmp:
        counter = iter(range(1_000_000))

        embedded_digests: list[object] = []
        docker_ids: list[object] = []
        docker_layers: list[tuple[str, ...]] = []

        def embedded_cold() -> float:
            scratch = Store(Path(tmp) / f"cold-{next(counter)}")
            copy_image(store, scratch, spec.base_digest)
            builder = EmbeddedBuilder(scratch, wheels=wheels, runner=runner)
            seconds = timed(lambda: embedded_digests.append(
                builder.build(spec, context=root, tag="localhost/bench:cold").digest))  # fmt: skip
            remove_tree(scratch.root)
            return seconds

        def docker_cold(dockerfile: str) -> float:
            data = context()
            seconds = timed(lambda: docker_build(data, f"{REPO_TAG}:cold", base_id,
                                                 dockerfile=dockerfile, cache=False))  # fmt: skip
            image, layers = docker_identity(f"{REPO_TAG}:cold")
            docker_ids.append(image)
            docker_layers.append(layers)
            return seconds

        warm = Store(Path(tmp) / "warm")
        copy_image(store, warm, spec.base_digest)

        def embedded_code() -> float:
            edit.write_text(f"X = {next(counter)}\n")
            return timed(lambda: EmbeddedBuilder(warm, wheels=wheels, runner=runner).build(
                spec, context=root, tag="localhost/bench:warm"))  # fmt: skip

        def docker_code(dockerfile: str, tag: str) -> float:
            edit.write_text(f"X = {next(counter)}\n")
            return timed(lambda: docker_build(context(), tag, base_id,
                                              dockerfile=dockerfile, cache=True))  # fmt: skip

        try:
            print(f"project {root}  cpus {os.cpu_count()}  python {sys.version.split()[0]}")
            cold = interleave(
                {"mlpack": embedded_cold, "rendered": lambda: docker_cold(DOCKERFILE)},
                rounds=rounds, warmups=warmups,
            )  # fmt: skip
            code = interleave(
                {
                    "mlpack": embedded_code,
                    "rendered": lambda: docker_code(DOCKERFILE, f"{REPO_TAG}:rendered"),
                    "naive": lambda: docker_code(".mlpack/Dockerfile.naive", f"{REPO_TAG}:naive"),
                },
                rounds=rounds, warmups=warmups,
            )  # fmt: skip
            ours = warm.image("localhost/bench:warm")
            compressed = sum(x.size for x in ours.manifest.layers)
            ours_raw = sum(
                len(gzip.decompress(warm.blob_path(x.digest).read_bytes()))
                for x in ours.manifest.layers
            )
            sizes = {t: docker_size(f"{REPO_TAG}:{t}") for t in ("rendered", "naive")}
            print(
                f"B8 image size (uncompressed tars vs docker Size): mlpack {ours_raw / 1e6:.1f} MB "
                f"({compressed / 1e6:.1f} MB compressed), rendered {sizes['rendered'] / 1e6:.1f} MB, "
                f"naive {sizes['naive'] / 1e6:.1f} MB; ratio to naive {ours_raw / sizes['naive']:.3f} "
                f"(goal <= {GOAL_SIZE})"
            )
            print(
                f"B11 repeated cold builds giving the first one's digest: mlpack image "
                f"{repeats(embedded_digests)}; docker rendered image ID {repeats(docker_ids)}, "
                f"its built layers' diff_ids {layer_repeats(docker_layers, base_layers)}"
            )
            for line in (
                compare("B5s cold / docker rendered", "mlpack", cold["mlpack"], "docker",
                        cold["rendered"], goal=GOAL_COLD),
                compare("B6s code edit / docker rendered", "mlpack", code["mlpack"], "docker",
                        code["rendered"], goal=GOAL_CODE),
                compare("B6s code edit / docker naive", "mlpack", code["mlpack"], "naive",
                        code["naive"], goal=GOAL_NAIVE),
            ):  # fmt: skip
                print(format_line(line))
        finally:
            edit.unlink(missing_ok=True)
            for tag in ("cold", "rendered", "naive"):
                subprocess.run(["docker", "rmi", "-f", f"{REPO_TAG}:{tag}"],
                               capture_output=True, check=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
