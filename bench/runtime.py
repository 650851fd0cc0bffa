"""B1: start and exit ``true`` in an image already unpacked, mlpack against runc, crun, docker, podman.

Run: ``.venv/bin/python -m bench.runtime [--rounds 20] [--warmups 3]`` as root, from the repo root.
Contenders, interleaved round by round (bench/_stats.py):

- ``mlpack run --network none IMAGE true``: the CLI (a fresh interpreter each time);
- ``runc run``, ``crun run`` and ``mlpack-runtime run`` (the OCI runtime CLI) on one OCI bundle
  (busybox rootfs + ``runc spec``, args ``true``);
- ``docker run --rm --network none IMAGE true`` and ``podman run --rm --network none IMAGE true``;
- the floor ``python -I -S -c pass`` with the real interpreter (``sys.executable``);
- the library: ``EmbeddedRuntime().run`` in a loop in this (warm) process.

Every contender gets a new network namespace holding only loopback (runc's default spec has one,
as ``--network none`` does), a seccomp filter (runc and crun get mlpack's default profile, which
``runc spec`` lacks), no cgroup limits. A contender that cannot run here (crun
and podman refuse a hybrid cgroup layout) is reported as unavailable, never as a time.
The image is the busybox-static rootfs from tests/busybox.py, in each contender's own store.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from bench._stats import compare, format_line, format_seconds, interleave, timed
from tests import busybox

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[1]
MLPACK = REPO / ".venv" / "bin" / "mlpack"
MLPACK_RUNTIME = REPO / ".venv" / "bin" / "mlpack-runtime"
# BENCHMARKS.md B1: the CLI <= 0.5x docker and podman (it pays typer's start); the OCI runtime
# CLI <= 1.5x runc on the same bundle.
GOAL_CLI_DOCKER = 0.5
GOAL_OCI_CLI_RUNC = 1.5
GOAL_CLI_MINUS_FLOOR_CRUN = 1.0
GOAL_LIBRARY_P50 = 0.030


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _children_cpu() -> float:
    """CPU seconds of every child this process has reaped (and of their reaped children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _quiet(
    argv: list[str], env: dict[str, str] | None = None, cpu: list[float] | None = None
) -> Callable[[], float]:
    """An arm running ``argv`` with its output discarded; ``cpu`` gets each run's CPU seconds
    (the command, its helpers and its container, as wait4 reports them).
    """

    def arm() -> float:
        def once() -> None:
            before = _children_cpu()
            proc = subprocess.run(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False
            )
            if cpu is not None:
                cpu.append(_children_cpu() - before)
            if proc.returncode != 0:
                msg = f"{argv[0]} failed ({proc.returncode}): {proc.stderr.decode()[-300:]}"
                raise RuntimeError(msg)

        return timed(once)

    return arm


def _bundle(work: Path, *, filtered: bool = True) -> Path:
    """busybox + ``runc spec`` running ``true``; ``filtered``: with mlpack's seccomp profile.

    `runc spec` has no seccomp filter, while mlpack and docker load one by default: the same
    profile mlpack loads (moby's semantics) keeps the comparison like for like. The bundle
    without it is measured too, for information.
    """
    bundle = work / ("bundle" if filtered else "bundle-nofilter")
    bundle.mkdir()
    shutil.copytree(busybox.rootfs(), bundle / "rootfs", symlinks=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["true"]
    config["process"]["terminal"] = False
    if filtered:
        from mlpack.runtime.seccomp_profile import default_profile

        bounding = config["process"]["capabilities"]["bounding"]
        config["linux"]["seccomp"] = default_profile(bounding)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def _oci_arm(tool: str, bundle: Path, cpu: list[float]) -> Callable[[], float] | str:
    """A runc/crun arm (its CPU seconds into ``cpu``), or the reason it cannot run here."""
    path = shutil.which(tool)
    if path is None:
        return "not installed"

    def argv() -> list[str]:
        return [path, "run", "--bundle", str(bundle), f"b1-{uuid.uuid4().hex[:12]}"]

    probe = subprocess.run(argv(), capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["failed"])[-1][:120]

    def arm() -> float:
        return _quiet(argv(), cpu=cpu)()

    return arm


def _docker_arm(kind: str) -> Callable[[], float] | str:
    path = shutil.which(kind)
    if path is None:
        return "not installed"
    if kind == "docker":
        image = busybox.docker_image()
    else:
        image = f"localhost/{busybox.DOCKER_REPO}:{busybox.key()}"
        have = subprocess.run([path, "image", "exists", image], check=False)
        if have.returncode != 0:
            imported = subprocess.run(
                [path, "import", "-", image],
                input=busybox.tarball(busybox.rootfs()),
                capture_output=True,
                check=False,
            )
            if imported.returncode != 0:
                return (imported.stderr.decode().strip().splitlines() or ["failed"])[-1][:120]
    argv = [path, "run", "--rm", "--network", "none", image, "true"]
    probe = subprocess.run(argv, capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["failed"])[-1][:120]
    return _quiet(argv)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmups", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("B1 runs every contender rootful: run it as root", file=sys.stderr)
        return 2
    if not busybox.available():
        print("needs busybox-static (apt-get install busybox-static)", file=sys.stderr)
        return 2

    from mlpack.oci.snapshots import unpack
    from mlpack.oci.store import Store
    from mlpack.runtime.embedded import EmbeddedRuntime
    from mlpack.runtime.protocol import RunConfig

    with tempfile.TemporaryDirectory(prefix="mlpack-b1-") as tmp:
        work = Path(tmp)
        home = work / "home"
        image = busybox.store_image(Store(home))
        os.environ["MLPACK_HOME"] = str(home)
        unpack(Store(home), image)  # "already unpacked" for every contender
        # As installed by pip: bytecode compiled once (PYTHONDONTWRITEBYTECODE, set in some dev
        # shells, would otherwise make every start recompile what changed since).
        import compileall

        compileall.compile_dir(REPO / "mlpack", quiet=1)
        env = {**os.environ, "MLPACK_HOME": str(home)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        bundle = _bundle(work)

        arms: dict[str, Callable[[], float]] = {}
        unavailable: dict[str, str] = {}
        arms["mlpack CLI"] = _quiet([str(MLPACK), "run", "--network", "none", image, "true"], env)
        arms["python floor"] = _quiet([sys.executable, "-I", "-S", "-c", "pass"])
        runtime = EmbeddedRuntime()
        config = RunConfig(image=image, command=("true",), network="none")
        devnull = os.open(os.devnull, os.O_WRONLY)

        def library() -> float:
            # The container inherits fds 1/2: point them at /dev/null for the run.
            saved = os.dup(1), os.dup(2)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            try:
                seconds = timed(lambda: runtime.run(config))
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            return seconds

        arms["mlpack library"] = library
        cpu: dict[str, list[float]] = {"runc": [], "mlpack-runtime": [], "crun": []}
        for name, made in (
            ("runc", _oci_arm("runc", bundle, cpu["runc"])),
            ("mlpack-runtime", _oci_arm(str(MLPACK_RUNTIME), bundle, cpu["mlpack-runtime"])),
            ("runc, no filter", _oci_arm("runc", _bundle(work, filtered=False), [])),
            ("crun", _oci_arm("crun", bundle, cpu["crun"])),
            ("docker", _docker_arm("docker")),
            ("podman", _docker_arm("podman")),
        ):
            if isinstance(made, str):
                unavailable[name] = made
            else:
                arms[name] = made

        print(
            f"B1 start+exit `true`: {platform.node()} kernel {platform.release()}, "
            f"{os.cpu_count()} cpus, python {platform.python_version()}; "
            f"{args.rounds} rounds after {args.warmups} warm-ups, interleaved; "
            f"load average {_load()}"
        )
        times = interleave(arms, rounds=args.rounds, warmups=args.warmups)
        print(f"  load average after: {_load()} (other jobs on the machine widen the intervals)")
        for name in arms:
            med = statistics.median(times[name])
            used = cpu.get(name, [])[args.warmups :]
            of_cpu = f", CPU {format_seconds(statistics.median(used)):>9}" if used else ""
            print(f"  {name:<16} median {format_seconds(med):>9}{of_cpu}")
        for name, why in unavailable.items():
            print(f"  {name:<16} unavailable: {why}")
        cli = times["mlpack CLI"]
        floor = times["python floor"]
        lines = []
        if "runc" in times:
            lines.append(compare("B1 CLI / runc", "mlpack", cli, "runc", times["runc"], goal=None))
        if "runc" in times and "mlpack-runtime" in times:
            lines.append(
                compare(
                    "B1 OCI CLI / runc",
                    "mlpack-runtime",
                    times["mlpack-runtime"],
                    "runc",
                    times["runc"],
                    goal=GOAL_OCI_CLI_RUNC,
                )
            )
            # CPU, for information: on a shared machine the wall time also measures the
            # neighbours, the CPU time hardly does. The warm-up rounds' figures are dropped.
            lines.append(
                compare(
                    "B1 OCI CLI / runc, CPU",
                    "mlpack-runtime",
                    cpu["mlpack-runtime"][args.warmups :],
                    "runc",
                    cpu["runc"][args.warmups :],
                    goal=None,
                )
            )
        if "docker" in times:
            lines.append(
                compare(
                    "B1 CLI / docker",
                    "mlpack",
                    cli,
                    "docker",
                    times["docker"],
                    goal=GOAL_CLI_DOCKER,
                )
            )
        if "podman" in times:
            lines.append(
                compare(
                    "B1 CLI / podman",
                    "mlpack",
                    cli,
                    "podman",
                    times["podman"],
                    goal=GOAL_CLI_DOCKER,
                )
            )
        minus_floor = [max(c - f, 1e-6) for c, f in zip(cli, floor, strict=True)]
        if "crun" in times:
            lines.append(
                compare(
                    "B1 (CLI - python) / crun",
                    "mlpack",
                    minus_floor,
                    "crun",
                    times["crun"],
                    goal=GOAL_CLI_MINUS_FLOOR_CRUN,
                )
            )
        elif "runc" in times:
            print(
                f"  (CLI - python floor) / crun: crun unavailable ({unavailable['crun']}); "
                "against runc instead, for information:"
            )
            lines.append(
                compare(
                    "B1 (CLI - python) / runc",
                    "mlpack",
                    minus_floor,
                    "runc",
                    times["runc"],
                    goal=None,
                )
            )
        if "runc, no filter" in times:
            lines.append(
                compare(
                    "B1 CLI / runc without seccomp",
                    "mlpack",
                    cli,
                    "runc",
                    times["runc, no filter"],
                    goal=None,
                )
            )
        if "runc" in times:
            lines.append(
                compare(
                    "B1 library / runc",
                    "mlpack",
                    times["mlpack library"],
                    "runc",
                    times["runc"],
                    goal=None,
                )
            )
        for line in lines:
            print(format_line(line))
        p50 = statistics.median(times["mlpack library"])
        verdict = "PASS" if p50 <= GOAL_LIBRARY_P50 else "FAIL"
        print(f"{'B1 library p50':<34} {format_seconds(p50):>9}  goal <= 30 ms  {verdict}")
        os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
