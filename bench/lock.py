"""B4 / B4-noop: `mlpack lock` against bare `uv pip compile` and bare `pip-compile`, same inputs.

Run: .venv/bin/python bench/lock.py [--quick] [--rounds N] [--large-pip-compile] [--noop-only]

Sets: the two examples (always) and a large ML set (unless --quick). Cold = empty uv/pip caches
and mlpack's index-listing cache, no mlpack.lock (so mlpack also resolves the base image from
its store); warm = caches kept, and for mlpack a re-lock after an edit of mlpack.toml that
changes the input hash but not the packages (an unchanged re-lock is the no-op, B4-noop).
The base image is resolved once beforehand (the store keeps it), so the figures are about
locking. pip-compile on the large set takes ~9 min cold, so it runs once, and only with
--large-pip-compile. Prints one ratio line per comparison (bench/_stats.py).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._stats import Comparison, compare, format_line, interleave, timed

if TYPE_CHECKING:
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
MLPACK = str(VENV_BIN / "mlpack")
LARGE = (
    "transformers",
    "datasets",
    "accelerate",
    "scikit-learn",
    "pandas",
    "fastapi",
    "uvicorn",
    "matplotlib",
)
INDEX = "https://pypi.org/simple"


def example_requirements(name: str) -> list[str]:
    root = ROOT / "examples" / name
    reqs = root / "requirements.txt"
    if reqs.exists():
        return [
            line.strip()
            for line in reqs.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
    import tomllib

    return list(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"])


def make_project(folder: Path, requirements: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    packages = ",\n".join(
        f'  {{ requirement = "{r}", source = "requirements.txt:{i}" }}'
        for i, r in enumerate(requirements, 1)
    )
    (folder / "mlpack.toml").write_text(
        f'name = "bench"\npython = "3.11"\n[dependencies]\nindex-url = "{INDEX}"\n'
        f"packages = [\n{packages}\n]\n"
    )
    (folder / "requirements.in").write_text("".join(f"{r}\n" for r in requirements))


class Bench:
    """Holds the scratch folders and the environment every contender shares."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.home = Path(os.environ.get("MLPACK_BENCH_HOME", Path.home() / ".cache/mlpack-bench"))
        self.cache = scratch / "cache"
        # PYTHONDONTWRITEBYTECODE (set in some dev shells) would make every contender
        # recompile its modules on each run; installs have bytecode, so the bench does too.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PIP_", "UV_")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        self.env.update(
            MLPACK_HOME=str(self.home),
            PIP_CONFIG_FILE=os.devnull,
            UV_CACHE_DIR=str(self.cache / "uv"),
            XDG_CACHE_HOME=str(self.cache / "xdg"),
            UV_NATIVE_TLS="1",
        )

    def clear_caches(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)
        shutil.rmtree(self.home / "cache" / "index-files", ignore_errors=True)

    def run(self, argv: list[str], cwd: Path) -> None:
        proc = subprocess.run(
            argv, cwd=cwd, env=self.env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")

    # -- contenders ---------------------------------------------------------------------------

    def mlpack(self, project: Path, *extra: str) -> Callable[[], None]:
        def go() -> None:
            (project / "mlpack.lock").unlink(missing_ok=True)
            self.run([MLPACK, "lock", str(project), *extra], project)

        return go

    def mlpack_edited(self, project: Path, *extra: str) -> Callable[[], None]:
        """A re-lock after an edit that changes the input hash but not the packages."""
        config = project / "mlpack.toml"
        state = {"n": 0}

        def go() -> None:
            state["n"] += 1
            text = config.read_text().split("\n[env]\n")[0]
            config.write_text(f'{text}\n[env]\nBENCH_EDIT = {{ default = "{state["n"]}" }}\n')
            self.run([MLPACK, "lock", str(project), *extra], project)

        return go

    def mlpack_noop(self, project: Path) -> Callable[[], None]:
        return lambda: self.run([MLPACK, "lock", str(project)], project)

    def uv(self, project: Path, *extra: str) -> Callable[[], None]:
        from uv import find_uv_bin

        from mlpack.lock.uv import uv_platform

        argv = [
            str(find_uv_bin()), "pip", "compile", "requirements.in", "-o", "uv.txt", "-q",
            "--python-version", "3.11.2", "--python-platform", uv_platform("linux/amd64"),
            "--generate-hashes", "--no-python-downloads", "--index-url", INDEX, *extra,
        ]  # fmt: skip

        def go() -> None:
            (project / "uv.txt").unlink(missing_ok=True)
            self.run(argv, project)

        return go

    def uv_python(self, project: Path) -> Callable[[], None]:
        """Bare uv with an explicit interpreter (what mlpack passes): no interpreter discovery."""
        return self.uv(project, "--python", sys.executable)

    def pip_compile(self, project: Path) -> Callable[[], None]:
        argv = [
            sys.executable, "-m", "piptools", "compile", "requirements.in", "-o", "pc.txt",
            "--generate-hashes", "--allow-unsafe", "--quiet", "--index-url", INDEX,
        ]  # fmt: skip

        def go() -> None:
            (project / "pc.txt").unlink(missing_ok=True)
            self.run(argv, project)

        return go


def arms_cold(bench: Bench, arms: dict[str, Callable[[], None]]) -> dict[str, Callable[[], float]]:
    def wrap(fn: Callable[[], None]) -> Callable[[], float]:
        def arm() -> float:
            bench.clear_caches()
            return timed(fn)

        return arm

    return {name: wrap(fn) for name, fn in arms.items()}


def arms_warm(arms: dict[str, Callable[[], None]]) -> dict[str, Callable[[], float]]:
    def wrap(fn: Callable[[], None]) -> Callable[[], float]:
        return lambda: timed(fn)

    return {name: wrap(fn) for name, fn in arms.items()}


def suite(
    bench: Bench, label: str, project: Path, *, rounds: int, pip_compile: bool, noop_only: bool
) -> list[Comparison]:
    out: list[Comparison] = []
    if not noop_only:
        out += resolves(bench, label, project, rounds=rounds, pip_compile=pip_compile)
    out.append(noop(bench, label, project, rounds=rounds))
    return out


def resolves(
    bench: Bench, label: str, project: Path, *, rounds: int, pip_compile: bool
) -> list[Comparison]:
    """B4: cold and warm locks against uv (and pip-compile)."""
    out: list[Comparison] = []
    contenders = {
        "mlpack": bench.mlpack(project),
        "uv": bench.uv(project),
        "uv-python": bench.uv_python(project),
    }
    if pip_compile:
        contenders["pip-compile"] = bench.pip_compile(project)
        contenders["mlpack-pt"] = bench.mlpack(project, "--resolver", "pip-tools")
    warm = dict(contenders)
    warm["mlpack"] = bench.mlpack_edited(project)
    if pip_compile:
        warm["mlpack-pt"] = bench.mlpack_edited(project, "--resolver", "pip-tools")
    for mode, arms in (("cold", arms_cold(bench, contenders)), ("warm", arms_warm(warm))):
        times = interleave(arms, rounds=rounds, warmups=1 if mode == "warm" else 0)
        first = len(out)
        out.append(
            compare(
                f"B4 {label} {mode} mlpack/uv --python",
                "mlpack",
                times["mlpack"],
                "uv-py",
                times["uv-python"],
                goal=1.10,
            )
        )
        out.append(
            compare(
                f"B4 {label} {mode} mlpack/uv",
                "mlpack",
                times["mlpack"],
                "uv",
                times["uv"],
                goal=1.10,
            )
        )
        if pip_compile:
            out.append(
                compare(
                    f"B4 {label} {mode} mlpack/pip-compile",
                    "mlpack",
                    times["mlpack"],
                    "pip-compile",
                    times["pip-compile"],
                    goal=0.05,
                )
            )
            out.append(
                compare(
                    f"B4 {label} {mode} mlpack-pt/pip-compile",
                    "mlpack-pt",
                    times["mlpack-pt"],
                    "pip-compile",
                    times["pip-compile"],
                    goal=1.05,
                )
            )
        for c in out[first:]:
            print(format_line(c), flush=True)
    return out


def noop(bench: Bench, label: str, project: Path, *, rounds: int) -> Comparison:
    """B4-noop: a re-lock with unchanged inputs against a real (warm) resolve, in wall time
    and, for information, in CPU time (the command and everything it runs, from wait4).
    """
    bench.mlpack(project)()
    cpu: dict[str, list[float]] = {"noop": [], "resolve": []}

    def with_cpu(name: str, fn: Callable[[], None]) -> Callable[[], float]:
        def arm() -> float:
            before = _children_cpu()
            seconds = timed(fn)
            cpu[name].append(_children_cpu() - before)
            return seconds

        return arm

    arms = {"noop": bench.mlpack_noop(project), "resolve": bench.mlpack(project)}
    times = interleave({k: with_cpu(k, fn) for k, fn in arms.items()}, rounds=rounds, warmups=1)
    # The "resolve" arm deletes the lock and writes it again, so each "noop" round finds one.
    c = compare(
        f"B4-noop {label} no-op/real resolve",
        "noop",
        times["noop"],
        "resolve",
        times["resolve"],
        goal=0.1,  # BENCHMARKS B4-noop, issue 9
    )
    print(format_line(c), flush=True)
    of_cpu = compare(
        f"B4-noop {label} CPU", "noop", cpu["noop"][1:], "resolve", cpu["resolve"][1:], goal=None
    )
    print(format_line(of_cpu), flush=True)
    return c


def _children_cpu() -> float:
    """CPU seconds of every child this process has reaped (and of their reaped children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def api_noop(project: Path, rounds: int) -> None:
    """The no-op in-process (no interpreter or CLI start), as B1 separates API from CLI."""
    sys.path.insert(0, str(ROOT))
    from mlpack.pipeline import lock_project

    t_noop = []
    for _ in range(rounds):
        start = time.perf_counter()
        result = lock_project(project)
        t_noop.append(time.perf_counter() - start)
        assert not result.resolved
    t_noop.sort()
    print(f"B4-noop API (in-process) median {t_noop[len(t_noop) // 2] * 1000:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the examples only")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large-pip-compile", action="store_true",
                        help="also time pip-compile on the large set (about 9 min cold)")  # fmt: skip
    parser.add_argument("--noop-only", action="store_true",
                        help="only B4-noop: the unchanged re-lock against a real resolve")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-lock-") as tmp:
        bench = Bench(Path(tmp))
        sets = {name: example_requirements(name) for name in ("training", "inference")}
        if not args.quick:
            sets["ml-large"] = list(LARGE)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"# bench/lock.py  python {sys.version.split()[0]}  rounds {args.rounds}  "
            f"load average {load}",
            flush=True,
        )
        for label, requirements in sets.items():
            project = Path(tmp) / label
            make_project(project, requirements)
            bench.run([MLPACK, "lock", str(project)], project)  # base resolved once, into the store
            if label != "ml-large" and not args.noop_only:  # the pip-tools venv, untimed
                bench.mlpack(project, "--resolver", "pip-tools")()
            large = label == "ml-large"
            if large and args.large_pip_compile and not args.noop_only:
                bench.clear_caches()
                seconds = timed(bench.pip_compile(project))
                print(f"B4 {label} cold pip-compile (one run) {seconds:.1f} s", flush=True)
            suite(bench, label, project, rounds=max(3, args.rounds // 2) if large else args.rounds,
                  pip_compile=not large, noop_only=args.noop_only)  # fmt: skip
            api_noop(project, 20)


if __name__ == "__main__":
    main()
