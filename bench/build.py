"""B5/B6/B8 (small): `mlpack build` (embedded) vs `docker build` of the rendered Dockerfile and of
a naive one (`COPY . .` then `pip install`), on examples/inference.

Run as root, with a Docker engine: ``.venv/bin/python bench/build.py [--quick] [--project DIR]``.
The project needs its mlpack.toml and mlpack.lock (``mlpack analyze --write && mlpack lock``);
every contender gets the same base image (loaded into the engine from the store by digest) and
the same wheels, served from the context with ``--no-index``. examples/inference is the default
because it has no system packages: the embedded builder does not run apt yet, the Dockerfile
does. Cold docker builds use ``--no-cache``; the engine's cache is never pruned (it is shared).
"""

from __future__ import annotations

import argparse
import gzip
import io
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
from mlpack.pipeline import copy_image, ensure_base, fetch_lock
from mlpack.spec import plan

REPO = Path(__file__).resolve().parents[1]
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
    cmd = ["docker", "build", "-q", "-f", dockerfile, "-t", tag, "--build-arg",
           f"BASE_IMAGE={base_id}", *([] if cache else ["--no-cache"]), "-"]  # fmt: skip
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder, as docker-py drives it
    subprocess.run(cmd, input=context, check=True, capture_output=True, env=env)


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
    docker_builder = DockerBuilder(store, client=client, wheels=wheels)
    base_id = docker_builder.load_base(spec)
    debs = docker_builder.fetch_debs(spec)
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

        def embedded_cold() -> float:
            scratch = Store(Path(tmp) / f"cold-{next(counter)}")
            copy_image(store, scratch, spec.base_digest)
            return timed(lambda: EmbeddedBuilder(scratch, wheels=wheels).build(
                spec, context=root, tag="localhost/bench:cold"))  # fmt: skip

        def docker_cold(dockerfile: str) -> float:
            data = context()
            return timed(lambda: docker_build(data, "mlpack-bench/build:cold", base_id,
                                              dockerfile=dockerfile, cache=False))  # fmt: skip

        warm = Store(Path(tmp) / "warm")
        copy_image(store, warm, spec.base_digest)

        def embedded_code() -> float:
            edit.write_text(f"X = {next(counter)}\n")
            return timed(lambda: EmbeddedBuilder(warm, wheels=wheels).build(
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
                    "rendered": lambda: docker_code(DOCKERFILE, "mlpack-bench/build:rendered"),
                    "naive": lambda: docker_code(".mlpack/Dockerfile.naive", "mlpack-bench/build:naive"),
                },
                rounds=rounds, warmups=warmups,
            )  # fmt: skip
            ours = warm.image("localhost/bench:warm")
            compressed = sum(x.size for x in ours.manifest.layers)
            ours_raw = sum(
                len(gzip.decompress(warm.blob_path(x.digest).read_bytes()))
                for x in ours.manifest.layers
            )
            sizes = {t: docker_size(f"mlpack-bench/build:{t}") for t in ("rendered", "naive")}
            print(
                f"B8 image size (uncompressed tars vs docker Size): mlpack {ours_raw / 1e6:.1f} MB "
                f"({compressed / 1e6:.1f} MB compressed), rendered {sizes['rendered'] / 1e6:.1f} MB, "
                f"naive {sizes['naive'] / 1e6:.1f} MB; ratio to naive {ours_raw / sizes['naive']:.3f} "
                f"(goal <= {GOAL_SIZE})"
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
                subprocess.run(["docker", "rmi", "-f", f"mlpack-bench/build:{tag}"],
                               capture_output=True, check=False)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
