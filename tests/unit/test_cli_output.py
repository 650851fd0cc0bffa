"""The CLI's output module: plain lines for scripts, rich only for a terminal."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlpack.cli import output
from mlpack.progress import reporter


def test_lines_are_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    output.say("repo:100: [bold]x[/bold]", style="ok")
    output.note("error: :smile:", style="error")
    captured = capsys.readouterr()
    assert captured.out == "repo:100: [bold]x[/bold]\n"  # no colour without a terminal
    assert captured.err == "error: :smile:\n"


def test_a_table_for_scripts_is_aligned_and_never_truncated(
    capsys: pytest.CaptureFixture[str],
) -> None:
    long = "registry.example:5000/" + "a" * 150 + ":1"
    output.table(("REF", "SIZE"), [(long, "1 kB"), ("b:1", "12 MB")], title="images")
    assert capsys.readouterr().out.splitlines() == [
        "images",
        f"{'REF':<{len(long)}}  SIZE",
        f"{long}  1 kB",
        f"{'b:1':<{len(long)}}  12 MB",
    ]


def test_progress_without_a_terminal_prints_notices_and_no_bars(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with output.progress(notice_prefix="note: "):
        reporter().notice("using the debian base")
        reporter().start("layer", 10)
        reporter().advance("layer", 5)
        reporter().finish("layer")
    captured = capsys.readouterr()
    assert captured.err == "note: using the debian base\n"
    assert captured.out == ""


def test_rich_is_imported_only_for_a_terminal() -> None:
    code = (
        "import sys\n"
        "from mlpack.cli import output\n"
        "output.table(('A',), [('x',)])\n"
        "with output.progress():\n"
        "    pass\n"
        "print('rich' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "False"


def test_a_terminal_gets_the_rich_table_and_colours() -> None:
    import os
    import pty

    code = (
        "import sys\n"
        "from mlpack.cli import output\n"
        "output.table(('A', 'B'), [('x', 'y')])\n"
        "output.say('ok', style='ok')\n"
        "sys.stderr.write(str('rich' in sys.modules))\n"
    )
    parent, child = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], stdout=child, stderr=subprocess.PIPE, text=True,
            check=True, env=env,
        )  # fmt: skip
        shown = os.read(parent, 65536).decode()
    finally:
        os.close(parent)
        os.close(child)
    assert done.stderr == "True"
    assert "\x1b[32mok\x1b[0m" in shown
    assert "A" in shown
    assert "x" in shown


@pytest.mark.parametrize(
    ("size", "decimal", "binary"),
    [
        (999, "999 B", "999 B"),
        (1000, "1.0 kB", "1000 B"),
        (1_500_000, "1.5 MB", "1.4 MiB"),
        (3 << 30, "3.2 GB", "3.0 GiB"),
        (5 * 10**12, "5000.0 GB", "4656.6 GiB"),  # no unit past GB/GiB
    ],
)
def test_sizes_in_decimal_units_as_docker_images_or_binary(
    size: int, decimal: str, binary: str
) -> None:
    assert output.human_bytes(size) == decimal
    assert output.human_bytes(size, binary=True) == binary
