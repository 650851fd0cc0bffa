"""The reference resolver: pip-compile as a subprocess under the TARGET interpreter.

pip-tools has no public API (jazzband/pip-tools#1484) and ignores ``--python-version``
(#1124, #1382), so it runs with pinned pip and pip-tools versions in a cached venv of the
target interpreter: the host's when it matches, else inside the base image.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import TYPE_CHECKING, Final

from mlpack.errors import LockError
from mlpack.lock.failure import read_failure
from mlpack.lock.resolvers import (
    Pin,
    ResolveRequest,
    parse_output,
    reuse_files,
    write_inputs,
)
from mlpack.lock.runner import (
    IMAGE_TOOLS,
    Completed,
    HostRunner,
    Runner,
    host_interpreter,
    host_matches,
)
from mlpack.lock.uv import (
    attach_files,
    pylock_args,
    pylock_files,
    uv_binary,
    uv_env,
    with_target_files,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mlpack.vocabulary import ResolverName

PIP_VERSION: Final = "26.3"
# 7.7.0 compiles the examples' sets with hashes in 8-10 s where 7.6.2 took 15-16 s (B4); it
# needs Python 3.10, so a 3.9 target keeps 7.6.2.
PIPTOOLS_VERSION: Final = "7.7.0"
PIPTOOLS_VERSION_PY39: Final = "7.6.2"
# pip settings that do not change what is resolved; the rest (indexes, find-links,
# constraints) come from the request only.
PIP_KEEP: Final = frozenset(
    {"PIP_CACHE_DIR", "PIP_NO_CACHE_DIR", "PIP_DEFAULT_TIMEOUT", "PIP_CERT", "PIP_CLIENT_CERT",
     "PIP_KEYRING_PROVIDER", "PIP_RETRIES", "PIP_PROXY"}
)  # fmt: skip


def piptools_version(python_minor: str) -> str:
    """The pinned pip-tools release for a target Python (X.Y)."""
    return PIPTOOLS_VERSION_PY39 if python_minor == "3.9" else PIPTOOLS_VERSION


def tool_requirements(python_minor: str) -> tuple[str, str]:
    """The pinned pip and pip-tools requirements for a target Python (X.Y)."""
    return (f"pip=={PIP_VERSION}", f"pip-tools=={piptools_version(python_minor)}")


def piptools_args(request: ResolveRequest) -> list[str]:
    """``piptools compile`` arguments (after ``python -m``) for ``request``."""
    args = [
        "piptools",
        "compile",
        "requirements.in",
        "--output-file",
        "requirements.txt",
        "--generate-hashes",
        "--allow-unsafe",
        "--strip-extras",
        "--annotation-style",
        "split",
        "--no-header",
        "--quiet",
        *request.compile_args(),
    ]
    if request.ca_cert is not None:
        args += ["--cert", str(request.ca_cert)]
    return args


def piptools_env(request: ResolveRequest) -> dict[str, str]:
    """The host environment without pip settings: the request alone decides the indexes."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_")) or k in PIP_KEEP
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if request.ca_cert is not None:
        env["SSL_CERT_FILE"] = str(request.ca_cert)
    return env


class PipToolsResolver:
    """pip-compile under the target interpreter, on the host or in the base image."""

    name: ResolverName = "pip-tools"

    def __init__(
        self,
        *,
        tools_home: Path,
        image_runner: Callable[[Path], Runner] | None = None,
    ) -> None:
        """:param image_runner: makes a runner for the base image, given its tools folder."""
        self.tools_home = tools_home
        self.image_runner = image_runner

    def resolve(self, request: ResolveRequest) -> tuple[Pin, ...]:
        """Run pip-compile where the target interpreter is and parse its pins.

        uv resolves the same inputs into pylock.toml meanwhile (it takes a fraction of
        pip-compile's time), so the target's file names are ready when pip-compile ends;
        only pins uv chose differently need the ``--no-deps`` run afterwards.
        """
        if not host_matches(request.python_minor, request.platform) and self.image_runner is None:
            msg = (
                f"pip-tools must run under Python {request.python_minor} on "
                f"{request.platform}; this host has no such interpreter and no container "
                "runtime is available to run it inside the base image"
            )
            raise LockError(msg, hint="use the default resolver (uv), which needs no target")
        write_inputs(request)
        names = start_target_files(request)
        try:
            done = self._compile(request)
        except BaseException:
            _stop(names)
            raise
        if done.returncode != 0:
            _stop(names)
            raise read_failure(request, done.stderr, tool="pip-compile")
        pins = parse_output((request.workdir / "requirements.txt").read_text(encoding="utf-8"))
        pins = reuse_files(pins, request.known_files)
        if names is not None and names.wait() == 0:
            pins = attach_files(pins, pylock_files(request))
        missing = tuple(p for p in pins if p.url is None and p.version and not p.files)
        if missing:
            found = with_target_files(request, missing, HostRunner(), offline=False)
            by_name = {p.name: p for p in found}
            pins = tuple(by_name.get(p.name, p) for p in pins)
        return pins

    def _compile(self, request: ResolveRequest) -> Completed:
        """Run pip-compile on the host's matching interpreter or in the base image."""
        env = piptools_env(request)
        if host_matches(request.python_minor, request.platform):
            python = self._host_venv(request.python_minor)
            done = HostRunner().run(
                [python, "-m", *piptools_args(request)], cwd=request.workdir, env=env
            )
        else:
            assert self.image_runner is not None  # resolve() checked
            minor = request.python_minor
            tools = self.tools_home / f"pip-tools-image-py{minor}-{_tag(minor)}"
            tools.mkdir(parents=True, exist_ok=True)
            venv = f"{IMAGE_TOOLS}/venv"
            install = " ".join(tool_requirements(minor))
            script = (
                f"test -x {venv}/bin/python || {{ python3 -m venv {venv}.tmp && "
                f"{venv}.tmp/bin/python -m pip install -q {install} && mv {venv}.tmp {venv}; }}"
                f" && {venv}/bin/python -m " + " ".join(_quote(a) for a in piptools_args(request))
            )
            done = self.image_runner(tools).run(
                ["/bin/sh", "-c", script], cwd=request.workdir, env={}
            )
        return done

    def _host_venv(self, python_minor: str) -> str:
        """The cached venv with pinned pip and pip-tools for the host interpreter."""
        interpreter = host_interpreter(python_minor)
        assert interpreter is not None  # host_matches checked it
        venv = self.tools_home / f"pip-tools-py{python_minor}-{_tag(python_minor)}"
        wanted = tool_requirements(python_minor)
        python = venv / "bin" / "python"
        if python.exists():
            return str(python)
        self.tools_home.mkdir(parents=True, exist_ok=True)
        tmp = venv.with_name(f"{venv.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        uv = uv_binary()
        runner = HostRunner()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
        env["UV_NATIVE_TLS"] = "1"
        for argv in (
            [uv, "venv", "--quiet", "--no-config", "--python", interpreter, str(tmp)],
            [uv, "pip", "install", "--quiet", "--no-config", "--python", str(tmp / "bin" / "python"),
             *wanted],
        ):  # fmt: skip
            done = runner.run(argv, cwd=self.tools_home, env=env)
            if done.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                msg = f"cannot install {' '.join(wanted)}: {done.stderr.strip()[-400:]}"
                raise LockError(msg, hint="check the network; or use the default resolver (uv)")
        try:
            tmp.rename(venv)
        except OSError:  # another process won the race; its venv is as good
            shutil.rmtree(tmp, ignore_errors=True)
        return str(python)


def start_target_files(request: ResolveRequest) -> subprocess.Popen[bytes] | None:
    """Start uv resolving the same inputs into pylock.toml, for the target's file names.

    It runs while pip-compile does; None when uv cannot start (the names are then found
    after pip-compile, as for pins uv resolved differently).
    """
    try:
        return subprocess.Popen(
            pylock_args(request, offline=False),
            cwd=request.workdir,
            env=uv_env(request),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, LockError):
        return None


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()


def _tag(python_minor: str) -> str:
    machine = platform.machine().lower()
    return f"{machine}-pip{PIP_VERSION}-piptools{piptools_version(python_minor)}"


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
