from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mlpack.errors import LockError
from mlpack.lock import piptools
from mlpack.lock.indexes import Indexes
from mlpack.lock.piptools import PipToolsResolver, piptools_args, tool_requirements
from mlpack.lock.resolvers import ResolveRequest
from mlpack.lock.runner import IMAGE_CA, IMAGE_WORK, ImageRunner
from mlpack.lock.uv import uv_compile_args, uv_env
from mlpack.runtime.protocol import RunConfig, RunResult
from mlpack.vocabulary import PackageSpec

OUTPUT = "anyio==4.4.0 \\\n    --hash=sha256:" + "1" * 64 + "\n    # via -r requirements.in\n"


class FakeRuntime:
    """Records the RunConfig and plays pip-compile by writing its output into the work mount."""

    name = "fake"

    def __init__(self, exit_code: int = 0) -> None:
        self.configs: list[RunConfig] = []
        self.exit_code = exit_code

    def check_available(self) -> None:
        pass

    def run(self, config: RunConfig) -> RunResult:
        self.configs.append(config)
        work = next(m.source for m in config.mounts if m.target == IMAGE_WORK)
        if self.exit_code == 0:
            (work / "requirements.txt").write_text(OUTPUT)
        (work / ".stderr").write_text("ERROR: ResolutionImpossible: conflict\n")
        return RunResult(container_id="c1", exit_code=self.exit_code)


def request(tmp_path: Path, **kw: object) -> ResolveRequest:
    base: dict[str, object] = {
        "requirements": (PackageSpec(requirement="anyio", source="requirements.txt:1"),),
        "python": "3.9.2",
        "platform": "linux/amd64",
        "indexes": Indexes(index_url="https://u:tok@idx.example/simple"),
        "workdir": tmp_path,
    }
    base.update(kw)
    return ResolveRequest(**base)  # type: ignore[arg-type]


def test_pip_tools_runs_in_the_base_image_when_the_host_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(piptools, "host_matches", lambda *_: False)
    monkeypatch.setattr(piptools, "with_target_files", lambda _r, pins, *_a, **_k: pins)
    monkeypatch.setattr(piptools, "start_target_files", lambda _r: None)  # no index to ask
    runtime = FakeRuntime()
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    work = tmp_path / "work"
    work.mkdir()
    resolver = PipToolsResolver(
        tools_home=tmp_path / "tools",
        image_runner=lambda tools: ImageRunner(
            runtime, "python:3.9-slim", tools_dir=tools, ca_bundle=ca
        ),
    )
    (pin,) = resolver.resolve(request(work))
    assert pin.name == "anyio"
    assert pin.via == ("-r",)
    (config,) = runtime.configs
    assert config.image == "python:3.9-slim"
    assert config.network == "host"
    ca_mount = next(m for m in config.mounts if m.target == IMAGE_CA)
    assert ca_mount.read_only
    assert ca_mount.source == ca
    script = config.command[-1]
    assert " ".join(tool_requirements("3.9")) in script
    assert "--generate-hashes" in script
    assert not (work / ".stderr").exists()  # captured output files are removed


def test_pip_tools_is_pinned_per_target_python() -> None:
    """7.7.0 (faster) needs Python 3.10: a 3.9 target keeps 7.6.2, and each its own venv."""
    assert tool_requirements("3.9") == ("pip==26.3", "pip-tools==7.6.2")
    assert tool_requirements("3.11") == ("pip==26.3", "pip-tools==7.7.0")
    assert tool_requirements("3.13") == tool_requirements("3.11")


def test_in_image_failure_is_a_lock_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piptools, "host_matches", lambda *_: False)
    started = []

    def start(request: ResolveRequest) -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen(["sleep", "30"]))
        return started[-1]

    monkeypatch.setattr(piptools, "start_target_files", start)
    runtime = FakeRuntime(exit_code=1)
    resolver = PipToolsResolver(
        tools_home=tmp_path / "tools",
        image_runner=lambda tools: ImageRunner(runtime, "img", tools_dir=tools),
    )
    with pytest.raises(LockError, match="conflict"):
        resolver.resolve(request(tmp_path))
    assert started[0].returncode is not None  # the concurrent uv run is stopped, not awaited


def test_no_target_interpreter_and_no_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(piptools, "host_matches", lambda *_: False)
    with pytest.raises(LockError, match=r"must run under Python 3\.9") as info:
        PipToolsResolver(tools_home=tmp_path).resolve(request(tmp_path))
    assert "uv" in info.value.hint


def test_ca_cert_reaches_both_tools(tmp_path: Path) -> None:
    ca = tmp_path / "corp.pem"
    req = request(tmp_path, ca_cert=ca, upgrade_packages=("numpy",))
    assert uv_env(req)["SSL_CERT_FILE"] == str(ca)
    args = piptools_args(req)
    assert args[args.index("--cert") + 1] == str(ca)
    assert args[args.index("--upgrade-package") + 1] == "numpy"
    uv_args = uv_compile_args(req)
    assert uv_args[uv_args.index("--python-version") + 1] == "3.9.2"
    assert uv_args[uv_args.index("--python-platform") + 1] == "x86_64-manylinux_2_36"
    arm = uv_compile_args(request(tmp_path, platform="linux/arm64"))
    assert arm[arm.index("--python-platform") + 1] == "aarch64-manylinux_2_36"


def test_resolution_settings_in_the_environment_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_INDEX_URL", "https://elsewhere.example/simple")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pipcache"))
    env = uv_env(request(tmp_path))
    assert "UV_INDEX_URL" not in env
    assert env["UV_CACHE_DIR"] == str(tmp_path / "cache")
    penv = piptools.piptools_env(request(tmp_path))
    assert "PIP_FIND_LINKS" not in penv
    assert penv["PIP_CACHE_DIR"] == str(tmp_path / "pipcache")


class FakeUvRunner:
    """Plays uv: requirements.txt on the first call, pylock.toml on the offline second one."""

    def __init__(self, *, pylock_ok: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.pylock_ok = pylock_ok

    def run(self, argv, *, cwd: Path, env):  # type: ignore[no-untyped-def]
        from mlpack.lock.runner import Completed

        self.calls.append(list(argv))
        if "--offline" not in argv:
            (cwd / "requirements.txt").write_text(
                "anyio==4.4.0 \\\n    --hash=sha256:" + "1" * 64 + " \\\n"
                "    --hash=sha256:" + "2" * 64 + "\n    # via -r requirements.in\n"
            )
            return Completed(returncode=0, stdout="", stderr="")
        if not self.pylock_ok:
            return Completed(returncode=2, stdout="", stderr="error: offline")
        (cwd / "pylock.toml").write_text(
            'lock-version = "1.0"\n[[packages]]\nname = "AnyIO"\nversion = "4.4.0"\n'
            'sdist = { url = "https://files.example/anyio-4.4.0.tar.gz", hashes = { sha256 = "'
            + "2"
            * 64
            + '" } }\nwheels = [{ url = "https://files.example/anyio-4.4.0-py3-none-any.whl", '
            'hashes = { sha256 = "' + "1" * 64 + '" } }]\n'
        )
        return Completed(returncode=0, stdout="", stderr="")


def test_uv_names_files_from_an_offline_pylock_run(tmp_path: Path) -> None:
    from mlpack.lock.uv import UvResolver

    runner = FakeUvRunner()
    (pin,) = UvResolver(runner).resolve(request(tmp_path))
    assert pin.files == (
        ("anyio-4.4.0-py3-none-any.whl", "1" * 64),
        ("anyio-4.4.0.tar.gz", "2" * 64),
    )
    assert "--offline" in runner.calls[1]
    assert "pylock.toml" in runner.calls[1]
    failing = FakeUvRunner(pylock_ok=False)
    (bare,) = UvResolver(failing).resolve(request(tmp_path))
    assert bare.files == ()  # the locker then lists the index instead
    assert bare.hashes == ("1" * 64, "2" * 64)


def test_uv_reuses_the_previous_locks_file_names_when_no_pin_moved(tmp_path: Path) -> None:
    from mlpack.lock.uv import UvResolver

    known = (("anyio", "4.4.0", ("2" * 64, "1" * 64), (("anyio-4.4.0.tar.gz", "2" * 64),)),)
    runner = FakeUvRunner()
    (pin,) = UvResolver(runner).resolve(request(tmp_path, known_files=known))
    assert pin.files == (("anyio-4.4.0.tar.gz", "2" * 64),)
    assert len(runner.calls) == 1  # no second (pylock) run
    for stale in (
        (("anyio", "4.3.0", ("1" * 64, "2" * 64), (("anyio-4.3.0.tar.gz", "2" * 64),)),),
        (("anyio", "4.4.0", ("1" * 64,), (("anyio-4.4.0.tar.gz", "1" * 64),)),),  # new file
    ):
        runner = FakeUvRunner()
        (pin,) = UvResolver(runner).resolve(request(tmp_path, known_files=stale))
        assert len(runner.calls) == 2
        assert pin.files == (
            ("anyio-4.4.0-py3-none-any.whl", "1" * 64),
            ("anyio-4.4.0.tar.gz", "2" * 64),
        )
