"""Read a conda environment file's dependencies, with line numbers, without running conda."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mlpack.analyze._declfile import read_text, rel

if TYPE_CHECKING:
    from pathlib import Path

    import yaml

ENVIRONMENT_FILES: Final = ("environment.yml", "environment.yaml", "conda.yaml", "conda.yml")


@dataclass(frozen=True, kw_only=True)
class CondaDependency:
    """One entry of ``dependencies``: a conda match spec, or a line of its ``pip:`` list."""

    text: str
    line: int
    pip: bool


def read_environment(root: Path, path: Path, *, warnings: list[str]) -> tuple[CondaDependency, ...]:
    """Return the entries of an environment file's ``dependencies`` (empty, warned, when bad)."""
    text = read_text(root, path, warnings=warnings)
    if text is None:
        return ()
    name = rel(root, path)
    document = _compose(text, name, warnings)
    if document is None:
        return ()
    import yaml

    deps = _value(document, "dependencies")
    if deps is None:
        return ()
    if not isinstance(deps, yaml.SequenceNode):
        warnings.append(f"{name}:{deps.start_mark.line + 1}: dependencies is not a list; not read")
        return ()
    entries: list[CondaDependency] = []
    for item in deps.value:
        entries += _entries(item, name, warnings)
    return tuple(entries)


def _compose(text: str, name: str, warnings: list[str]) -> yaml.MappingNode | None:
    """The document's node tree, or None (warned unless empty) when it is unusable.

    ``compose``, not ``load``: nodes keep their line numbers, and no object is ever constructed.
    """
    import yaml  # only here: most repositories have no environment file (and it costs start-up)

    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        warnings.append(f"{name}{at}: invalid YAML ({problem}); not read")
        return None
    except RecursionError:
        warnings.append(f"{name}: nested too deeply to parse; not read")
        return None
    if document is not None and not isinstance(document, yaml.MappingNode):
        warnings.append(f"{name}: not a conda environment file (no top-level mapping); not read")
        return None
    return document


def _entries(item: yaml.Node, name: str, warnings: list[str]) -> list[CondaDependency]:
    """One item of ``dependencies``: a conda spec, or a ``pip:`` list of requirement lines."""
    import yaml

    if isinstance(item, yaml.ScalarNode):
        return [CondaDependency(text=str(item.value), line=item.start_mark.line + 1, pip=False)]
    pip = _value(item, "pip") if isinstance(item, yaml.MappingNode) else None
    if not isinstance(pip, yaml.SequenceNode):
        warnings.append(f"{name}:{item.start_mark.line + 1}: unexpected dependency entry")
        return []
    entries = []
    for line in pip.value:
        if isinstance(line, yaml.ScalarNode):
            entries.append(
                CondaDependency(text=str(line.value), line=line.start_mark.line + 1, pip=True)
            )
        else:
            warnings.append(f"{name}:{line.start_mark.line + 1}: pip entry is not text")
    return entries


def _value(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    import yaml

    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key and isinstance(v, yaml.Node):
            return v
    return None
