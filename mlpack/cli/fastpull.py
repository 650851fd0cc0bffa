"""``mlpack pull`` without typer or rich when no terminal shows progress bars.

Scripts and CI pull in loops with their output captured: there the bars are off anyway, and
typer plus rich cost more import time than the pull of a small image. The output is the typer
command's, byte for byte: the digest lines on stdout, notices and ``error:``/``hint:`` on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Rich treats these as "this is a terminal": the full CLI must draw what they ask for.
_TERMINAL_ENV = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


class _LineReporter:
    """Notices as plain stderr lines (what rich prints with no terminal); no progress."""

    def notice(self, message: str) -> None:
        """Print one notice line."""
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    def start(self, task: str, total: int | None) -> None:
        """No bars without a terminal."""

    def advance(self, task: str, amount: int) -> None:
        """No bars without a terminal."""

    def finish(self, task: str) -> None:
        """No bars without a terminal."""


def parse(args: list[str]) -> tuple[str, str, Path | None, list[str]] | None:
    """``pull REF [--platform P] [--ca-cert F] [--insecure-registry H]...`` or None.

    Anything else (``--help``, unknown options, a missing or extra argument) is the full CLI's
    to handle, with its usage errors.
    """
    rest = args[1:]
    values: dict[str, list[str]] = {"--platform": [], "--ca-cert": [], "--insecure-registry": []}
    refs: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        key, eq, value = arg.partition("=")
        if key in values:
            if not eq:
                if i + 1 >= len(rest) or rest[i + 1].startswith("-"):
                    return None
                i += 1
                value = rest[i]
            values[key].append(value)
        elif arg.startswith("-"):
            return None
        else:
            refs.append(arg)
        i += 1
    if len(refs) != 1 or len(values["--platform"]) > 1 or len(values["--ca-cert"]) > 1:
        return None
    platform = values["--platform"][0] if values["--platform"] else "linux/amd64"
    ca_cert = Path(values["--ca-cert"][0]) if values["--ca-cert"] else None
    return refs[0], platform, ca_cert, values["--insecure-registry"]


def dispatch(args: list[str]) -> int | None:
    """Handle ``pull`` when stdout and stderr are not terminals; return None otherwise."""
    if sys.stderr.isatty() or sys.stdout.isatty() or any(k in os.environ for k in _TERMINAL_ENV):
        return None
    parsed = parse(args)
    if parsed is None:
        return None
    reference, platform, ca_cert, insecure = parsed
    from mlpack.errors import EXIT_INTERRUPTED, ConfigError, MlpackError
    from mlpack.progress import using

    try:
        from mlpack.oci.documents import Platform
        from mlpack.oci.registry import pull
        from mlpack.oci.registry_config import RegistryOptions, insecure_hosts
        from mlpack.oci.store import Store

        if ca_cert is not None and not ca_cert.is_file():
            msg = f"--ca-cert {ca_cert} is not a file"
            raise ConfigError(
                msg, hint="pass the PEM file of the CA that signed the registry's cert"
            )
        options = RegistryOptions(
            ca_cert=ca_cert,
            insecure=insecure_hosts() | frozenset(insecure),
            platform=Platform.parse(platform),
        )
        with using(_LineReporter()):
            result = pull(reference, Store.default(), options=options)
    except MlpackError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    sys.stdout.write(f"{result.reference}: {result.digest}\n")
    if result.index_digest:
        sys.stdout.write(f"index: {result.index_digest}\n")
    sys.stdout.flush()
    return 0
