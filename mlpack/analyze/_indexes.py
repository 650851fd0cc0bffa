"""The package indexes that uv, Poetry, PDM and Pipenv name in their own tables, in pip's terms.

mlpack's config, like pip, has one index that replaces PyPI (``index-url``) and extra indexes
searched beside it (``extra-index-urls``); each tool's own rules decide which of its indexes is
which. Indexes that a tool uses only for the packages that name them (uv's ``explicit``,
Poetry's ``explicit``, Pipenv's sources after the first) become extra indexes: the lock cannot
pin one package to one index, and the extra index is how pip users reach such packages.
"""

from __future__ import annotations

from typing import Any, Final

_PYPI_HOSTS: Final = ("pypi.org/simple", "pypi.python.org/simple")


def tool_indexes(tool: dict[str, Any]) -> list[tuple[str, bool]]:
    """``(url, replaces PyPI)`` for each index in pyproject.toml's ``[tool.uv]``,
    ``[tool.poetry]`` and ``[tool.pdm]`` tables, in each tool's order of preference.
    """
    found = [*_uv(_table(tool, "uv")), *_poetry(_table(tool, "poetry")), *_pdm(_table(tool, "pdm"))]
    return [(url, primary) for url, primary in found if not _is_pypi(url)]


def pipfile_indexes(sources: object) -> list[tuple[str, bool]]:
    """Pipenv's ``[[source]]`` list: the first is the default index, the others extra."""
    urls = [entry["url"] for entry in _tables(sources) if isinstance(entry.get("url"), str)]
    return [(url, i == 0) for i, url in enumerate(urls) if not _is_pypi(url)]


def _uv(uv: dict[str, Any]) -> list[tuple[str, bool]]:
    """``[[tool.uv.index]]`` (``default = true`` replaces PyPI) and the older ``index-url`` /
    ``extra-index-url`` keys.
    """
    found = [
        (entry["url"], entry.get("default") is True)
        for entry in _tables(uv.get("index"))
        if isinstance(entry.get("url"), str)
    ]
    if isinstance(uv.get("index-url"), str):
        found.append((uv["index-url"], True))
    extra = uv.get("extra-index-url")
    found.extend(
        (url, False) for url in (extra if isinstance(extra, list) else ()) if isinstance(url, str)
    )
    return found


def _poetry(poetry: dict[str, Any]) -> list[tuple[str, bool]]:
    """``[[tool.poetry.source]]``: a primary source (the default priority, or the deprecated
    ``default = true``) disables the implicit PyPI unless PyPI is listed by name, so then the
    first primary source replaces PyPI.
    """
    sources = _tables(poetry.get("source"))
    pypi_listed = any(str(s.get("name", "")).lower() == "pypi" for s in sources)
    found: list[tuple[str, bool]] = []
    replaced = pypi_listed
    for source in sources:
        url = source.get("url")
        if not isinstance(url, str) or _is_pypi(url):
            continue
        primary = source.get("default") is True or (
            source.get("priority", "primary") in ("primary", "default")
            and source.get("secondary") is not True
        )
        found.append((url, primary and not replaced))
        replaced = replaced or primary
    return found


def _pdm(pdm: dict[str, Any]) -> list[tuple[str, bool]]:
    """``[[tool.pdm.source]]``: the source named ``pypi`` replaces PyPI; a ``find_links``
    source is no index.
    """
    return [
        (source["url"], str(source.get("name", "")).lower() == "pypi")
        for source in _tables(pdm.get("source"))
        if isinstance(source.get("url"), str) and source.get("type", "index") == "index"
    ]


def _is_pypi(url: str) -> bool:
    return any(host in url for host in _PYPI_HOSTS)


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _tables(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
