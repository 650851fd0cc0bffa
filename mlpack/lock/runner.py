"""Where a resolver's subprocess runs: on the host, or inside the base image (injectable)."""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from mlpack.errors import LockError, MlpackError
from mlpack.lock.indexes import redact
from mlpack.vocabulary import MACHINES

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mlpack.runtime.protocol import Runtime
    from mlpack.vocabulary import Platform


@dataclass(frozen=True, kw_only=True)
class Completed:
    """How a command ended, with its captured output."""

    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    """Runs one command to completion and captures its output."""

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Completed:
        """Run ``argv`` in ``cwd``; LockError when it cannot start at all."""
        ...


class ImageRunnerFactory(Protocol):
    """Makes a runner inside ``image`` with ``tools`` mounted; ``mlpack.pipeline`` hands one over.

    The lock stage names no container runtime: whoever composes the stages picks it.
    """

    def __call__(self, image: str, tools: Path) -> Runner:
        """A runner for commands inside ``image``."""
        ...


class HostRunner:
    """Runs commands as host subprocesses."""

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Completed:
        """Run ``argv`` on this machine."""
        try:
            proc = subprocess.run(
                list(argv), cwd=cwd, env=dict(env), capture_output=True, text=True, check=False
            )
        except OSError as exc:
            msg = f"cannot run {argv[0]}: {exc.strerror or exc}"
            raise LockError(msg, hint="check that the tool is installed") from exc
        return Completed(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def host_matches(python_minor: str, target_platform: Platform) -> bool:
    """True when a host interpreter of ``python_minor`` resolves exactly as the target would."""
    machine = platform.machine().lower()
    return (
        sys.platform == "linux"
        # uname says x86_64 on Linux; some systems say amd64, as OCI does.
        and machine in (MACHINES[target_platform], target_platform.partition("/")[2])
        and (host_interpreter(python_minor) is not None)
    )


def host_interpreter(python_minor: str) -> str | None:
    """A real (non-shim) host interpreter of version ``python_minor``, if any."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_minor:
        return sys.executable
    for candidate in (f"/usr/bin/python{python_minor}", f"/usr/local/bin/python{python_minor}"):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which(f"python{python_minor}")


# Paths inside the container where the image runner mounts its host folders.
IMAGE_WORK: Final = "/mlpack/work"
IMAGE_TOOLS: Final = "/mlpack/tools"
IMAGE_CA: Final = "/etc/ssl/certs/ca-certificates.crt"


class ImageRunner:
    """Runs commands inside the base image through a container runtime, with host networking.

    The runtime streams output to the terminal, so stdout/stderr are captured into files in
    the mounted work folder. The CA bundle is mounted for this step only, read-only.
    """

    def __init__(
        self,
        runtime: Runtime,
        image: str,
        *,
        tools_dir: Path,
        ca_bundle: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.image = image
        self.tools_dir = tools_dir
        self.ca_bundle = ca_bundle

    def run(self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Completed:
        """Run ``argv`` in the image with ``cwd`` mounted at /mlpack/work."""
        from mlpack.runtime.protocol import Mount, RunConfig

        mounts = [
            Mount(source=cwd, target=IMAGE_WORK),
            Mount(source=self.tools_dir, target=IMAGE_TOOLS),
        ]
        run_env = [(k, v) for k, v in sorted(env.items()) if not k.startswith("MLPACK_")]
        if self.ca_bundle is not None:
            mounts.append(Mount(source=self.ca_bundle, target=IMAGE_CA, read_only=True))
            run_env += [("SSL_CERT_FILE", IMAGE_CA), ("PIP_CERT", IMAGE_CA)]
        script = f"{shlex.join(argv)} >{IMAGE_WORK}/.stdout 2>{IMAGE_WORK}/.stderr"
        try:
            result = self.runtime.run(
                RunConfig(
                    image=self.image,
                    command=("/bin/sh", "-c", script),
                    env=tuple(run_env),
                    mounts=tuple(mounts),
                    workdir=IMAGE_WORK,
                    network="host",
                )
            )
        except MlpackError as exc:
            msg = f"cannot run the resolver inside {self.image}: {redact(exc.message)}"
            raise LockError(msg, hint=exc.hint or "use --resolver uv") from exc

        def _read(name: str) -> str:
            path = cwd / name
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
            path.unlink(missing_ok=True)
            return text

        return Completed(
            returncode=result.exit_code, stdout=_read(".stdout"), stderr=_read(".stderr")
        )
