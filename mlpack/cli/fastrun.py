"""``mlpack run`` and ``mlpack runtime`` on argparse: no typer, rich or docker on the exec path.

``mlpack.cli.main`` dispatches here before importing the typer app, and the typer commands of
the same names delegate here, so both spellings share one parser and one help text.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

TYPE_CHECKING = False  # typing is not imported on the run path (mypy reads this as True)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import NoReturn

    from mlpack.runtime.protocol import RunConfig, RunResult

UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """``512m``, ``2g``, ``1048576`` -> bytes (Docker's units, binary)."""
    size = _size(text)
    if size is None:
        import argparse

        msg = f"invalid size {text!r} (use e.g. 512m, 2g)"
        raise argparse.ArgumentTypeError(msg)
    return size


def _size(text: str) -> int | None:
    raw = text.strip().lower().removesuffix("ib").removesuffix("b") or "0"
    unit = raw[-1] if raw[-1] in UNITS else "b"
    number = raw[:-1] if raw[-1] in UNITS else raw
    try:
        return int(float(number) * UNITS[unit])
    except (ValueError, OverflowError):
        return None


def human(size: int) -> str:
    """Bytes as MiB/GiB for messages."""
    if size >= 1 << 30 and size % (1 << 30) == 0:
        return f"{size >> 30} GiB"
    return f"{size / (1 << 20):g} MiB"


def run_parser() -> argparse.ArgumentParser:
    """The parser of ``mlpack run`` (also used for ``--help``)."""
    import argparse

    p = argparse.ArgumentParser(
        prog="mlpack run",
        description="Run a command in a new container from an image (or a rootfs directory).",
    )
    p.add_argument("image", help="image reference in the mlpack store, or a rootfs directory")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command (default: the image's)")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-terminal")
    p.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="set an environment variable (KEY alone takes the host's value)",
    )
    p.add_argument(
        "--env-file",
        action="append",
        default=[],
        metavar="FILE",
        help="read KEY=VALUE lines from a file",
    )
    p.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro]",
        help="bind-mount a host path",
    )
    p.add_argument("-w", "--workdir", help="working directory inside the container")
    p.add_argument("-u", "--user", help="user[:group] (name from the image, or numeric)")
    p.add_argument("--hostname", help="container host name (default: the container id)")
    p.add_argument(
        "--network",
        choices=("none", "host"),
        default="none",
        help="none: loopback only (default); host: share the host's network",
    )
    p.add_argument("-m", "--memory", type=parse_size, help="memory limit, e.g. 512m, 4g")
    p.add_argument("--cpus", type=float, help="CPU quota, e.g. 0.5 or 2")
    p.add_argument("--pids-limit", type=int, help="maximum number of processes")
    p.add_argument(
        "--shm-size", type=parse_size, help="size of /dev/shm (default: half the memory limit)"
    )
    p.add_argument(
        "--init",
        action="store_true",
        help="run a tiny init as pid 1 that reaps zombies and forwards signals",
    )
    p.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    p.add_argument("--gpus", help="GPUs via CDI: all, a count, or device ids")
    p.add_argument("--keep", action="store_true", help="keep the writable layer after exit")
    p.add_argument("--name", help="container name (used as its id)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="add a label")
    p.add_argument(
        "--cap-profile",
        choices=("default", "docker"),
        default="default",
        help="capabilities: runc's 3 (default) or Docker's 14",
    )
    p.add_argument(
        "--runtime",
        choices=("embedded", "docker"),
        default="embedded",
        help="backend: the embedded runtime (default) or a Docker engine",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


# The common spellings of `mlpack run` parsed without argparse (its import, with gettext, is
# ~5 ms of every container start). Anything else (abbreviations, -mVALUE, a value starting
# with "-", --help, an error) goes to run_parser(); tests check both give the same result.
_RUN_VALUES: dict[str, tuple[str, str | tuple[str, ...]]] = {
    "-e": ("env", "append"),
    "--env": ("env", "append"),
    "--env-file": ("env_file", "append"),
    "-v": ("volume", "append"),
    "--volume": ("volume", "append"),
    "-w": ("workdir", "str"),
    "--workdir": ("workdir", "str"),
    "-u": ("user", "str"),
    "--user": ("user", "str"),
    "--hostname": ("hostname", "str"),
    "--network": ("network", ("none", "host")),
    "-m": ("memory", "size"),
    "--memory": ("memory", "size"),
    "--cpus": ("cpus", "float"),
    "--pids-limit": ("pids_limit", "int"),
    "--shm-size": ("shm_size", "size"),
    "--gpus": ("gpus", "str"),
    "--name": ("name", "str"),
    "--label": ("label", "append"),
    "--cap-profile": ("cap_profile", ("default", "docker")),
    "--runtime": ("runtime", ("embedded", "docker")),
}
_RUN_FLAGS: dict[str, tuple[str, ...]] = {
    "-i": ("interactive",),
    "--interactive": ("interactive",),
    "-t": ("tty",),
    "--tty": ("tty",),
    "-it": ("interactive", "tty"),
    "-ti": ("interactive", "tty"),
    "--init": ("init",),
    "--read-only": ("read_only",),
    "--keep": ("keep",),
    "--debug": ("debug",),
}


def _run_defaults() -> dict[str, object]:
    return {
        "env": [], "env_file": [], "volume": [], "label": [], "workdir": None, "user": None,
        "hostname": None, "network": "none", "memory": None, "cpus": None, "pids_limit": None,
        "shm_size": None, "gpus": None, "name": None, "cap_profile": "default",
        "runtime": "embedded", "interactive": False, "tty": False, "init": False,
        "read_only": False, "keep": False, "debug": False,
    }  # fmt: skip


def fast_parse_run(argv: Sequence[str]) -> SimpleNamespace | None:
    """``mlpack run`` arguments as run_parser() would parse them, or None to let it decide."""
    values = _run_defaults()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            values["image"] = arg
            values["command"] = list(argv[i + 1 :])
            return SimpleNamespace(**values)
        if arg in _RUN_FLAGS:
            for dest in _RUN_FLAGS[arg]:
                values[dest] = True
            i += 1
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in _RUN_VALUES:
            return None
        if eq:
            value = inline
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            value = argv[i + 1]
            i += 2
        else:
            return None
        dest, kind = _RUN_VALUES[name]
        try:
            if kind == "append":
                values[dest] = [*values[dest], value]  # type: ignore[misc]
            elif kind == "str":
                values[dest] = value
            elif kind == "size":
                size = _size(value)
                if size is None:
                    return None
                values[dest] = size
            elif kind == "float":
                values[dest] = float(value)
            elif kind == "int":
                values[dest] = int(value)
            elif value in kind:
                values[dest] = value
            else:
                return None
        except (ValueError, OverflowError):  # argparse words the error
            return None
    return None


def _env(args: argparse.Namespace | SimpleNamespace) -> tuple[tuple[str, str], ...]:
    from mlpack.errors import ConfigError

    pairs: list[tuple[str, str]] = []
    for name in args.env_file:
        try:
            with open(name, encoding="utf-8") as f:  # noqa: PTH123 - no pathlib on the run path
                lines = f.read().splitlines()
        except OSError as exc:
            msg = f"cannot read --env-file {name}: {exc.strerror}"
            raise ConfigError(msg, hint="check the path") from exc
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#"):
                pairs.append(_pair(line))
    pairs += [_pair(e) for e in args.env]
    return tuple(pairs)


def _pair(item: str) -> tuple[str, str]:
    from mlpack.errors import ConfigError

    key, sep, value = item.partition("=")
    if not key or "\0" in item:
        msg = f"invalid environment variable {item!r}"
        raise ConfigError(msg, hint="write KEY=VALUE, or KEY to pass the host's value")
    return (key, value) if sep else (key, os.environ.get(key, ""))


def to_config(args: argparse.Namespace | SimpleNamespace) -> RunConfig:
    """The parsed flags as a RunConfig."""
    from mlpack.errors import ConfigError
    from mlpack.runtime.protocol import Mount, RunConfig

    mounts = []
    for vol in args.volume:
        from pathlib import Path  # only with volumes: pathlib is ~4 ms of a start (B1)

        parts = vol.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            msg = f"invalid --volume {vol!r}"
            raise ConfigError(msg, hint="write -v HOST:CONTAINER or -v HOST:CONTAINER:ro")
        mounts.append(
            Mount(
                source=Path(parts[0]).absolute(),
                target=parts[1],
                read_only=len(parts) == 3 and parts[2] == "ro",
            )
        )
    labels = tuple(_pair(lbl) for lbl in args.label)
    command = tuple(args.command)
    if command[:1] == ("--",):
        command = command[1:]
    return RunConfig(
        image=args.image,
        command=command,
        env=_env(args),
        mounts=tuple(mounts),
        workdir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        network=args.network,
        memory=args.memory,
        cpus=args.cpus,
        pids_limit=args.pids_limit,
        shm_size=args.shm_size,
        tty=args.tty,
        interactive=args.interactive,
        init=args.init,
        read_only=args.read_only,
        gpus=args.gpus,
        keep=args.keep,
        name=args.name,
        labels=labels,
    )


def report(result: RunResult) -> int:
    """Say how the container ended when it did not simply exit; return the exit code."""
    if result.oom_killed:
        limit = f" (limit {human(result.memory_limit)})" if result.memory_limit else ""
        sys.stderr.write(f"killed: out of memory{limit}\n")
    return result.exit_code


def _fail(exc: BaseException, debug: bool) -> int:
    from mlpack.errors import MlpackError

    if debug:
        import traceback

        sys.stderr.write("".join(traceback.format_exception(exc)))
    if isinstance(exc, MlpackError):
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        return exc.exit_code
    raise exc


def main_run(argv: Sequence[str]) -> int:
    """``mlpack run ...``; returns the container's exit code."""
    from mlpack.errors import MlpackError

    args = fast_parse_run(argv) or run_parser().parse_args(list(argv))
    process = None
    try:
        if args.runtime == "embedded" and not args.tty:
            # The helper interpreter starts now, while this process imports the runtime and
            # prepares the container: ~10 ms off every start (BENCHMARKS B1).
            from mlpack.runtime.embedded.spawn import prestart

            process = prestart(interactive=args.interactive)
        config = to_config(args)
        if args.runtime == "docker":
            from mlpack.runtime.docker import DockerRuntime

            with DockerRuntime() as docker:
                return report(docker.run(config))
        from mlpack.runtime.embedded import EmbeddedRuntime

        runtime = EmbeddedRuntime(cap_profile=args.cap_profile)
        handed, process = process, None  # run_with owns it from here, whatever happens
        return report(runtime.run_with(config, process=handed))
    except MlpackError as exc:
        return _fail(exc, args.debug)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    finally:
        if process is not None:  # to_config or the runtime's import failed before the run
            process.discard()


def runtime_parser() -> argparse.ArgumentParser:
    """``mlpack runtime``: the OCI runtime command line (runc-compatible subset)."""
    import argparse
    from pathlib import Path

    p = argparse.ArgumentParser(
        prog="mlpack runtime",
        description="An OCI runtime: create, start, state, kill, delete and run bundles.",
    )
    p.add_argument("--root", type=Path, help="state directory (default: /run/mlpack as root)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # Flags runc accepts globally and harnesses pass; accepted and ignored.
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--log-format", help=argparse.SUPPRESS)
    p.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="op", required=True)
    for name, text in (
        ("create", "create a container, stopped before the user program"),
        ("run", "create and start a container, then wait for it"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("id")
        c.add_argument("-b", "--bundle", type=Path, default=Path())
        c.add_argument("--pid-file", type=Path)
        c.add_argument("--preserve-fds", type=int, default=0)
        c.add_argument(
            "--console-socket",
            metavar="PATH",
            help="Unix socket that receives the pty of a terminal: true container (SCM_RIGHTS)",
        )
        c.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
        c.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
        if name == "run":
            c.add_argument("-d", "--detach", action="store_true")
    s = sub.add_parser("start", help="start the user program of a created container")
    s.add_argument("id")
    s = sub.add_parser("state", help="print the state JSON of a container")
    s.add_argument("id")
    k = sub.add_parser("kill", help="send a signal to a container's pid 1")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="TERM")
    k.add_argument("-a", "--all", action="store_true")
    d = sub.add_parser("delete", help="delete a stopped container")
    d.add_argument("id")
    d.add_argument("-f", "--force", action="store_true")
    sub.add_parser("list", help="list containers")
    return p


def main_runtime(argv: Sequence[str]) -> int:
    """``mlpack runtime ...``."""
    import json
    from pathlib import Path

    from mlpack.errors import MlpackError
    from mlpack.runtime.embedded import lifecycle as oci
    from mlpack.runtime.embedded import state

    args = runtime_parser().parse_args(list(argv))
    root = Path(args.root or state.oci_root())
    try:
        console = Path(args.console_socket) if getattr(args, "console_socket", None) else None
        if args.op == "create":
            oci.create(
                root,
                args.id,
                args.bundle,
                pid_file=args.pid_file,
                preserve_fds=args.preserve_fds,
                console_socket=console,
            )
        elif args.op == "run":
            return oci.run(
                root,
                args.id,
                args.bundle,
                detach=args.detach,
                preserve_fds=args.preserve_fds,
                console_socket=console,
            )
        elif args.op == "start":
            oci.start(root, args.id)
        elif args.op == "state":
            sys.stdout.write(json.dumps(oci.oci_state(root, args.id), indent=2) + "\n")
        elif args.op == "kill":
            oci.kill(root, args.id, oci.parse_signal(args.signal), all_=args.all)
        elif args.op == "delete":
            oci.delete(root, args.id, force=args.force)
        elif args.op == "list":
            for d in state.list_dirs(root):
                doc = oci.oci_state(root, d.id)
                sys.stdout.write(f"{doc['id']}\t{doc['pid']}\t{doc['status']}\t{doc['bundle']}\n")
    except MlpackError as exc:
        return _fail(exc, args.debug)
    return 0


def dispatch(argv: Sequence[str]) -> int | None:
    """Handle ``run``/``runtime`` here; None means "not mine, use the typer app"."""
    if not argv:
        return None
    if argv[0] == "run":
        return _done(argv, main_run(argv[1:]))
    if argv[0] == "runtime":
        return _done(argv, main_runtime(argv[1:]))
    return None


def _done(argv: Sequence[str], code: int) -> int:
    """As the ``mlpack`` command itself, exit now: every cleanup ran in ``finally`` blocks, and
    the interpreter's teardown of the modules (~5-10 ms) would only delay the exit status.
    Called in-process with other arguments (tests, embedding), return the code instead.
    """
    if list(argv) != sys.argv[1:]:
        return code
    import atexit

    atexit._run_exitfuncs()  # what a normal exit would run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as Python reports an unflushable stdout at exit
    os._exit(code)


def exit_with(code: int) -> NoReturn:
    """Flush and exit with ``code``."""
    sys.stdout.flush()
    sys.exit(code)
