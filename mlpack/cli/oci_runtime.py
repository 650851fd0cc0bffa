"""``mlpack-runtime``: the OCI runtime command line, with runc's flags and exit codes.

This is a different program from ``mlpack``: container engines and conformance harnesses call
it the way they call runc (``create``, ``start``, ``state``, ``kill``, ``delete``, ``run``,
``list``, global ``--root``/``--log``/``--log-format``/``--systemd-cgroup``), so it keeps
runc's flag contract on its own argparse parser. ``mlpack runtime ...`` forwards here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlpack.cli.boundary import guarded
from mlpack.errors import ConfigError

TYPE_CHECKING = False  # no typing on mlpack-runtime's start path (mypy reads this as True)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from _typeshed import SupportsWrite

    from mlpack.runtime.embedded.spawn import HelperProcess

PROG = "mlpack-runtime"


class _Parser(argparse.ArgumentParser):
    """Usage errors as ``error:``/``hint:`` lines through the boundary, like every failure."""

    # argparse makes a help formatter for every add_argument (to check its metavar), and each
    # asks the terminal for its width (importing shutil): ~2 ms of every container start.
    # The width matters only for help, so the terminal is asked when help is printed.
    help_width = 78

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message, hint=f"see `{self.prog} --help`")

    def _get_formatter(self) -> argparse.HelpFormatter:
        return argparse.HelpFormatter(prog=self.prog, width=self.help_width)

    def print_help(self, file: SupportsWrite[str] | None = None) -> None:
        import shutil

        self.help_width = shutil.get_terminal_size().columns - 2
        super().print_help(file)


def _add_create(sub: argparse._SubParsersAction[_Parser], name: str, text: str) -> None:
    c = sub.add_parser(name, help=text)
    c.add_argument("id")
    c.add_argument("-b", "--bundle", type=Path, default=Path())
    c.add_argument("--pid-file", type=Path)
    c.add_argument("--preserve-fds", type=int, default=0)
    c.add_argument(
        "--console-socket",
        type=Path,
        metavar="PATH",
        help="Unix socket that receives the pty of a terminal: true container (SCM_RIGHTS)",
    )
    c.add_argument("--no-pivot", action="store_true", help=argparse.SUPPRESS)
    c.add_argument("--no-new-keyring", action="store_true", help=argparse.SUPPRESS)
    if name == "run":
        c.add_argument("-d", "--detach", action="store_true")


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of runc's command line (the subset mlpack implements)."""
    p = _Parser(prog=prog, description="An OCI runtime: create, start, state, kill and delete.")
    p.add_argument("--root", type=Path, help="state directory (default: /run/mlpack as root)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    # Flags runc accepts globally and harnesses pass; accepted and ignored.
    p.add_argument("--log", help=argparse.SUPPRESS)
    p.add_argument("--log-format", help=argparse.SUPPRESS)
    p.add_argument("--systemd-cgroup", action="store_true", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="op", required=True)
    _add_create(sub, "create", "create a container, stopped before the user program")
    _add_create(sub, "run", "create and start a container, then wait for it")
    sub.add_parser("start", help="start the user program of a created container").add_argument("id")
    sub.add_parser("state", help="print the state JSON of a container").add_argument("id")
    k = sub.add_parser("kill", help="send a signal to a container's pid 1")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="TERM")
    k.add_argument("-a", "--all", action="store_true")
    d = sub.add_parser("delete", help="delete a stopped container")
    d.add_argument("id")
    d.add_argument("-f", "--force", action="store_true")
    sub.add_parser("list", help="list containers")
    return p


def _prestart(args: argparse.Namespace) -> HelperProcess | None:
    """For ``create`` and ``run``, the helper, started first thing after parsing: the
    runtime's imports and setup overlap its start, and cgroup moves are kept fast meanwhile
    (``spawn.keep_cgroup_moves_fast``). Not for a console socket (the pty made later is its
    stdio).
    """
    if args.op not in ("create", "run") or args.console_socket is not None:
        return None
    from mlpack.runtime.embedded.spawn import prestart

    fds = tuple(range(3, 3 + args.preserve_fds))
    return prestart(interactive=True, keep_fds=fds, warm_cgroup_moves=True)


def _create(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle

    lifecycle.create(
        root,
        args.id,
        args.bundle,
        pid_file=args.pid_file,
        preserve_fds=args.preserve_fds,
        console_socket=args.console_socket,
        process=args.helper,
    )
    return 0


def _run(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle

    return lifecycle.run(
        root,
        args.id,
        args.bundle,
        detach=args.detach,
        preserve_fds=args.preserve_fds,
        console_socket=args.console_socket,
        process=args.helper,
    )


def _start(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle

    lifecycle.start(root, args.id)
    return 0


def _state(root: Path, args: argparse.Namespace) -> int:
    import json  # indented, as runc prints it; only here (not on create/run's path)

    from mlpack.runtime.embedded import lifecycle

    sys.stdout.write(json.dumps(lifecycle.oci_state(root, args.id), indent=2) + "\n")
    return 0


def _kill(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle

    lifecycle.kill(root, args.id, lifecycle.parse_signal(args.signal), all_=args.all)
    return 0


def _delete(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle

    lifecycle.delete(root, args.id, force=args.force)
    return 0


def _list(root: Path, args: argparse.Namespace) -> int:
    from mlpack.runtime.embedded import lifecycle, state

    for d in state.list_dirs(root):
        doc = lifecycle.oci_state(root, d.id)
        sys.stdout.write(f"{doc['id']}\t{doc['pid']}\t{doc['status']}\t{doc['bundle']}\n")
    return 0


OPERATIONS: dict[str, Callable[[Path, argparse.Namespace], int]] = {
    "create": _create,
    "run": _run,
    "start": _start,
    "state": _state,
    "kill": _kill,
    "delete": _delete,
    "list": _list,
}


def _say_no_pivot_is_ignored() -> None:
    """The ``--no-pivot`` of runc (MS_MOVE + chroot, escapable by a process that can chroot) is not
    offered: the container gets ``pivot_root`` as always, and the caller is told so.
    """
    from mlpack.cli.output import note

    note(
        "notice: --no-pivot is ignored: mlpack always uses pivot_root (the old root is unreachable)"
    )


def run_runtime(argv: Sequence[str], prog: str = PROG) -> int:
    """Run ``mlpack-runtime ARGV`` and return the exit code."""
    parsed: list[argparse.Namespace] = []

    def work() -> int:
        parsed.append(parser(prog).parse_args(list(argv)))
        args = parsed[0]
        args.helper = _prestart(args)
        if getattr(args, "no_pivot", False):
            _say_no_pivot_is_ignored()
        from mlpack.runtime.embedded import state

        return OPERATIONS[args.op](Path(args.root or state.oci_root()), args)

    return guarded(work, debug=lambda: bool(parsed) and parsed[0].debug)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the ``mlpack-runtime`` command.

    It ends with ``os._exit`` once stdout and stderr are flushed: the interpreter's teardown
    (~5 ms of every ``run``, freeing module by module) does nothing a runtime invocation needs,
    and the package registers no exit handlers. The container lives in its own processes.
    """
    code = run_runtime(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said
            code = code or 1
    os._exit(code)
