"""The message framing both ends of the helper protocol read with."""

from __future__ import annotations

import os

import pytest

from mlpack.oslib.lines import LineReader


def test_lines_split_and_joined_across_writes_and_eof() -> None:
    r, w = os.pipe()
    try:
        reader = LineReader(r)
        os.write(w, b'{"pid": 7}\n{"crea')
        assert reader.read_line() == b'{"pid": 7}'
        os.write(w, b'ted": true}\nok\n\n')
        assert reader.read_line() == b'{"created": true}'
        assert reader.read_line() == b"ok"
        assert reader.read_line() == b""  # an empty line is a message, not the end
        os.write(w, b"cut off")
        os.close(w)
        w = -1
        assert reader.read_line() is None  # a writer that died mid-line sent no message
        assert reader.read_line() is None
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_one_read_per_burst_of_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a read per byte: the helper's status messages cost one system call each."""

    r, w = os.pipe()
    reads: list[int] = []
    real_read = os.read

    def counting_read(fd: int, n: int) -> bytes:
        reads.append(fd)
        return real_read(fd, n)

    monkeypatch.setattr(os, "read", counting_read)
    try:
        os.write(w, b'{"exit": 0, "signal": null, "cpu_us": 1019}\n{"x": 1}\n')
        reader = LineReader(r)
        assert reader.read_line() == b'{"exit": 0, "signal": null, "cpu_us": 1019}'
        assert reader.read_line() == b'{"x": 1}'
        assert len(reads) == 1
    finally:
        os.close(r)
        os.close(w)
