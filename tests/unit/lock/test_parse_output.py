from __future__ import annotations

from mlpack.lock.resolvers import parse_output

H1, H2, H3 = "1" * 64, "2" * 64, "3" * 64

PIP_COMPILE = f"""\
--index-url https://pypi.org/simple

anyio==4.4.0 \\
    --hash=sha256:{H1} \\
    --hash=sha256:{H2}
    # via
    #   -r requirements.in
    #   httpx
httpx==0.27.0 \\
    --hash=sha256:{H3}
    # via -r requirements.in
idna==3.7 \\
    --hash=sha256:{H1}
    # via
    #   anyio
    #   httpx
mylib @ git+https://example.org/mylib@{"c" * 40}
    # via -r requirements.in
uvicorn[standard]==0.30.0 \\
    --hash=sha256:{H2}
    # via -r requirements.in

# The following packages are considered to be unsafe in a requirements file:
setuptools==70.0.0 \\
    --hash=sha256:{H3}
    # via uvicorn
"""


def test_parses_pins_hashes_and_via() -> None:
    pins = {p.name: p for p in parse_output(PIP_COMPILE)}
    assert set(pins) == {"anyio", "httpx", "idna", "mylib", "uvicorn", "setuptools"}
    assert pins["anyio"].version == "4.4.0"
    assert pins["anyio"].hashes == (H1, H2)
    assert pins["anyio"].via == ("-r", "httpx")
    assert pins["idna"].via == ("anyio", "httpx")
    assert pins["httpx"].via == ("-r",)
    assert pins["mylib"].url == "git+https://example.org/mylib@" + "c" * 40
    assert pins["mylib"].version == ""
    assert pins["uvicorn"].version == "0.30.0"
    assert pins["setuptools"].via == ("uvicorn",)


def test_line_style_annotations_are_split_on_commas() -> None:
    text = f"idna==3.7 --hash=sha256:{H1}\n    # via anyio, httpx, -r requirements.in\n"
    (pin,) = parse_output(text)
    assert pin.via == ("anyio", "httpx", "-r")
