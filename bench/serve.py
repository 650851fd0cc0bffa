"""Serving load: examples/inference under `mlpack serve` (embedded, socket activation), under
`mlpack serve --backend docker` (the socket handed over by the courier), under `docker run -p`
of the same image, and run directly on the host; plus start-to-healthy times.

Run as root, with a Docker engine and ApacheBench (`ab`, Debian's apache2-utils):

    MLPACK_HOME=... .venv/bin/python bench/serve.py --project DIR --model DIR [--quick]

DIR is examples/inference with its mlpack.toml and mlpack.lock (its base image and wheels in
MLPACK_HOME); --model holds the model.json of a training run (mounted read-only at /app/models).
The host arm installs the same locked wheels into a venv of the host's Python. One load
generator (ab, keep-alive, POST /predict) drives all three; traffic goes only to 127.0.0.1 and is
bounded by -n requests. Arms are interleaved round by round (bench/_stats.py). Goals (issue 13):
embedded >= 0.95x the host's throughput with p99 within 1.1x, and ahead of docker run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench._stats import compare, format_line
from mlpack.home import mlpack_home
from mlpack.lock.lockfile import read_lock
from mlpack.lock.wheelhouse import cached_path

REPO = Path(__file__).resolve().parents[1]
MLPACK = [sys.executable, "-c", "from mlpack.cli import main; main()"]
TAG = "mlpack-bench/inference:serve"
BODY = {
    "instances": [
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
    ]
}
SERVER = ("uvicorn", "app.main:app", "--log-level", "warning", "--no-access-log")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path, limit: float = 120) -> float:
    """Seconds from now until /health answers 200 (the start was just before)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        if healthy(port):
            return time.perf_counter() - start
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    raise SystemExit(f"{log.stem}: not healthy (exit {proc.poll()}); its log:\n{log.read_text()}")


def load(port: int, requests: int, concurrency: int, body: Path) -> tuple[float, float]:
    """(requests per second, p99 seconds) of `ab` against POST /predict."""
    out = subprocess.run(
        ["ab", "-q", "-k", "-n", str(requests), "-c", str(concurrency), "-p", str(body),
         "-T", "application/json", f"http://127.0.0.1:{port}/predict"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if failed is None or int(failed[1]) != 0 or "Non-2xx" in out:
        raise SystemExit(f"ab saw failed requests:\n{out}")
    rps = re.search(r"Requests per second:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+(\d+)", out, re.MULTILINE)
    assert rps is not None
    assert p99 is not None
    return float(rps[1]), int(p99[1]) / 1000


def host_venv(project: Path, where: Path) -> Path:
    """A venv of the host's Python with the project's locked wheels (from the wheelhouse)."""
    lock = read_lock(project / "mlpack.lock")
    flat = where / "wheels"
    flat.mkdir(parents=True)
    pins = []
    for pkg in lock.packages:
        pins.append(f"{pkg.name}=={pkg.version}")
        for f in pkg.files:
            path = cached_path(mlpack_home(), f.sha256, f.name)
            if path.exists():
                (flat / f.name).symlink_to(path)
    venv = where / "venv"
    python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(flat),
         *pins],
        check=True,
    )  # fmt: skip
    return venv


def docker_image(project: Path, where: Path) -> None:
    """The project's image (built by mlpack) loaded into the Docker engine as TAG."""
    from mlpack.pipeline import build_project

    digest = build_project(project, note=lambda _: None).digest
    tar = where / "image.tar"
    subprocess.run([*MLPACK, "export", digest, "-o", str(tar), "--tag", TAG], check=True)
    subprocess.run(["docker", "load", "-q", "-i", str(tar)], check=True, capture_output=True)


Starter = Callable[[int], subprocess.Popen[bytes]]


def starters(
    project: Path, model: Path, venv: Path, logs: Path, *, docker_host_net: bool
) -> dict[str, Starter]:
    # `docker run -p` needs the engine's bridge network and its NAT or proxy; an engine without
    # them (as on the machine these figures come from) can serve only with --network host.
    net = ("--network", "host") if docker_host_net else ()

    def out(name: str) -> int:
        return os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def host(port: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "MODEL_PATH": str(model / "model.json")}
        return subprocess.Popen(
            [str(venv / "bin" / SERVER[0]), *SERVER[1:], "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=project, env=env, stdout=out("host"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def mlpack(backend: str) -> Starter:
        def start(port: int) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [*MLPACK, "serve", "--backend", backend, str(project), "--port", str(port),
                 "-v", f"{model}:/app/models:ro", "--", *SERVER, "--port", "8000"],
                stdout=out(arm[backend]), stderr=subprocess.STDOUT,
            )  # fmt: skip

        return start

    arm = {"embedded": "embedded", "docker": "mlpack-docker"}

    def docker(port: int) -> subprocess.Popen[bytes]:
        published = () if net else ("-p", f"127.0.0.1:{port}:8000")
        return subprocess.Popen(
            ["docker", "run", "--rm", "--name", f"mlpack-bench-{port}", *net, *published,
             "-v", f"{model}:/app/models:ro", TAG,
             *SERVER, "--host", "127.0.0.1" if net else "0.0.0.0",
             "--port", str(port) if net else "8000"],
            stdout=out("docker"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    return {
        "host": host,
        "embedded": mlpack("embedded"),
        "mlpack-docker": mlpack("docker"),
        "docker": docker,
    }


def stop(name: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    if name == "docker":
        subprocess.run(["docker", "stop", "-t", "5", f"mlpack-bench-{port}"],
                       capture_output=True, check=False)  # fmt: skip
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="fewer rounds and requests")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--docker-network-host",
        action="store_true",
        help="docker run --network host instead of -p (an engine without a bridge network)",
    )
    args = parser.parse_args()

    for tool in ("ab", "docker"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (apt-get install apache2-utils / docker.io)")
    project, model = args.project.resolve(), args.model.resolve()
    rounds, requests = (2, 2000) if args.quick else (5, 10000)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        venv = host_venv(project, where)
        docker_image(project, where)
        body = where / "body.json"
        body.write_text(json.dumps(BODY))
        arms = starters(project, model, venv, where, docker_host_net=args.docker_network_host)
        per_req: dict[str, list[float]] = {name: [] for name in arms}
        p99: dict[str, list[float]] = {name: [] for name in arms}
        start: dict[str, list[float]] = {name: [] for name in arms}
        names = list(arms)
        for round_ in range(rounds + 1):  # round 0 warms caches and is dropped
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                port = free_port()
                t0 = time.perf_counter()
                proc = arms[name](port)
                try:  # stopped whatever happens: a docker container outlives its CLI
                    wait_healthy(port, proc, where / f"{name}.log")
                    up = time.perf_counter() - t0
                    rps, tail = load(port, requests, args.concurrency, body)
                finally:
                    stop(name, port, proc)
                if round_:
                    per_req[name].append(1 / rps)
                    p99[name].append(tail)
                    start[name].append(up)
                    print(f"round {round_} {name:<13} {rps:8.0f} req/s  p99 {tail * 1000:5.1f} ms"
                          f"  healthy after {up:.2f}s", flush=True)  # fmt: skip
    print(f"\nab -k -n {requests} -c {args.concurrency} POST /predict; time per request = 1/rps")
    lines = [
        compare("time/request embedded/host", "embedded", per_req["embedded"], "host",
                per_req["host"], goal=1 / 0.95),
        compare("p99 embedded/host", "embedded", p99["embedded"], "host", p99["host"], goal=1.1),
        compare("time/request embedded/docker", "embedded", per_req["embedded"], "docker",
                per_req["docker"], goal=1.0),
        compare("p99 embedded/docker", "embedded", p99["embedded"], "docker", p99["docker"],
                goal=1.0),
        compare("time/request mlpack-docker/docker", "mlpack-docker", per_req["mlpack-docker"],
                "docker", per_req["docker"], goal=1.0),
        compare("start-to-healthy embedded/docker", "embedded", start["embedded"], "docker",
                start["docker"], goal=None),
        compare("start-to-healthy mlpack-docker/docker", "mlpack-docker", start["mlpack-docker"],
                "docker", start["docker"], goal=None),
    ]  # fmt: skip
    for line in lines:
        print(format_line(line))


if __name__ == "__main__":
    main()
