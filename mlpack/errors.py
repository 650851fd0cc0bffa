"""The single error root: every failure a user can cause is an MlpackError with a hint."""

from __future__ import annotations


class MlpackError(Exception):
    """A failure the user can act on: what failed and why (message), what to try (hint).

    The CLI prints ``error: <message>`` and ``hint: <hint>`` and exits with ``exit_code``;
    each stage has its own subclass and code so scripts can tell stages apart.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(MlpackError):
    """mlpack.toml / [tool.mlpack] or a command-line option is invalid."""

    exit_code = 2


class AnalyzeError(MlpackError):
    """The repository cannot be analysed at all (not a directory, unreadable root, conflicts)."""

    exit_code = 3


class LockError(MlpackError):
    """Resolution or lock-file handling failed."""

    exit_code = 4


class ImageError(MlpackError):
    """The OCI store, a registry, a layer or an archive failed."""

    exit_code = 5


class BuildError(MlpackError):
    """Building an image failed."""

    exit_code = 6


class ContainerError(MlpackError):
    """Creating, running or cleaning up a container failed."""

    exit_code = 7


class DeployError(MlpackError):
    """Rendering or submitting to Slurm / Kubernetes failed."""

    exit_code = 8


class RunError(MlpackError):
    """A recorded run cannot be found, repeated as recorded, or compared."""

    exit_code = 9


class ServeError(MlpackError):
    """A service could not be published, started or made healthy."""

    exit_code = 10


EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception, i.e. a bug in mlpack.
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE: the reader of the output went away
