"""The argparse-free parse of ``mlpack run`` gives what run_parser() gives, or defers to it."""

from __future__ import annotations

import pytest

from mlpack.cli import fastrun

SAME = [
    ["IMG"],
    ["IMG", "true"],
    ["-it", "IMG", "sh"],
    ["-ti", "IMG", "--rm", "x"],
    ["-i", "-t", "-e", "A=1", "--env", "B", "-e", "", "IMG", "sh", "-c", "echo $A"],
    ["-v", "/a:/b", "--volume=/c:/d:ro", "-w", "/w", "-u", "1000:1000", "IMG"],
    ["--hostname", "h", "--network", "host", "-m", "64m", "--cpus", "0.5", "IMG", "x"],
    ["--pids-limit", "20", "--shm-size=1g", "--init", "--read-only", "--keep", "IMG"],
    ["--gpus", "all", "--name", "n", "--label", "a=b", "--label=c=d", "IMG"],
    ["--cap-profile", "docker", "--runtime", "docker", "--debug", "--env-file", "f", "IMG"],
    ["IMG", "-e", "X", "--help"],  # after the image, everything is the command
    ["-m", "512", "--memory", "2GiB", "IMG", "--", "cmd"],
]
DEFERRED = [
    [],
    ["--help"],
    ["-h"],
    ["--net", "host", "IMG"],  # an abbreviation: argparse resolves it
    ["-mfoo", "IMG"],
    ["-m", "lots", "IMG"],
    ["--network", "bridge", "IMG"],
    ["--cpus", "-1", "IMG"],
    ["--pids-limit", "x", "IMG"],
    ["-e"],
    ["-", "true"],
]


@pytest.mark.parametrize("argv", SAME)
def test_fast_parse_matches_argparse(argv: list[str]) -> None:
    fast = fastrun.fast_parse_run(argv)
    assert fast is not None
    slow = fastrun.run_parser().parse_args(argv)
    assert vars(fast).keys() == vars(slow).keys()
    for key, value in vars(slow).items():
        if key == "command":  # to_config drops a leading "--", which argparse may keep or not
            assert _command(fast.command) == _command(value)
        else:
            assert getattr(fast, key) == value, key


def _command(command: list[str]) -> list[str]:
    return command[1:] if command[:1] == ["--"] else command


@pytest.mark.parametrize("argv", DEFERRED)
def test_unusual_spellings_go_to_argparse(argv: list[str]) -> None:
    assert fastrun.fast_parse_run(argv) is None


def test_every_run_option_is_known_to_the_fast_parse() -> None:
    parser = fastrun.run_parser()
    known = set(fastrun._RUN_VALUES) | set(fastrun._RUN_FLAGS)
    for action in parser._actions:
        for option in action.option_strings:
            assert option in known or option in ("-h", "--help"), option
