"""ProjectConfig: mlpack.toml (or ``[tool.mlpack]`` in pyproject.toml), validated.

mlpack.toml is the input every stage after ``analyze`` reads. ``analyze --write`` creates it and
later only *adds* what is missing, so the user's edits always win (see ``merge_into``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

from mlpack.errors import ConfigError
from mlpack.oslib.fs import atomic_write
from mlpack.paths import CONFIG_FILE, PYPROJECT_FILE
from mlpack.vocabulary import (
    COMPRESSIONS,
    DEFAULT_GROUPS,
    DEFAULT_PLATFORM,
    DEFAULT_PORT,
    PLATFORMS,
    Compression,
    EntrypointSpec,
    EnvSpec,
    PackageSpec,
    Platform,
    as_platform,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mlpack.analyze.analysis import Package, ProjectAnalysis
    from mlpack.analyze.imports import ImportSettings

KINDS: Final = ("training", "inference")
_PY_RE: Final = re.compile(r"^3\.\d{1,2}$")
_ENV_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

_TOP_KEYS: Final = frozenset(
    {"name", "python", "python-source", "base", "platform", "dependencies", "env", "layout",
     "entrypoints", "accelerator", "compression"}
)  # fmt: skip
_DEP_KEYS: Final = frozenset(
    {"packages", "index-url", "extra-index-urls", "system", "torch-variant", "groups",
     "ignore-imports", "import-map", "exclude"}
)  # fmt: skip
_LAYOUT_KEYS: Final = frozenset({"inputs", "outputs"})
_ENTRY_KEYS: Final = frozenset({"kind", "command", "port"})
_ENV_KEYS: Final = frozenset({"default", "secret"})


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    """The validated contents of mlpack.toml."""

    root: Path
    config_path: Path
    name: str
    python: str
    python_source: str
    base: str | None
    platform: Platform
    packages: tuple[PackageSpec, ...]
    index_url: str | None
    extra_index_urls: tuple[str, ...]
    system_packages: tuple[str, ...]
    torch_variant: str | None
    env: tuple[EnvSpec, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    entrypoints: tuple[EntrypointSpec, ...]
    cuda: bool
    groups: tuple[str, ...] = DEFAULT_GROUPS  # usage groups whose inferred packages go in
    ignore_imports: tuple[str, ...] = ()  # import names analysis leaves out
    import_map: tuple[tuple[str, str], ...] = ()  # import name -> distribution
    exclude: tuple[str, ...] = ()  # canonical distributions never added back
    compression: Compression = "gzip"  # of the layers the embedded builder writes


def config_location(root: Path) -> tuple[Path, bool]:
    """Return where the config lives: (path, is_pyproject).

    ``[tool.mlpack]`` in pyproject.toml is used when that table exists and no mlpack.toml does.
    """
    own = root / CONFIG_FILE
    if own.exists():
        return own, False
    pyproject = root / PYPROJECT_FILE
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return own, False
        if isinstance(data.get("tool"), dict) and "mlpack" in data["tool"]:
            return pyproject, True
    return own, False


def load_config(root: Path) -> ProjectConfig:
    """Read and validate the project's config; ConfigError with the file and field on problems."""
    path, in_pyproject = config_location(root)
    if not path.exists():
        msg = f"no {CONFIG_FILE} in {root}"
        raise ConfigError(msg, hint=f"run `mlpack analyze --write {root}` to create it")
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read {path}: {exc}"
        raise ConfigError(msg, hint="check the file's permissions and encoding (UTF-8)") from exc
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path} is not valid TOML: {exc}"
        raise ConfigError(msg, hint="fix the syntax error at the position shown") from exc
    if in_pyproject:
        data = data["tool"]["mlpack"]
        where = f"{path.name} [tool.mlpack]"
    else:
        where = path.name
    return _validate(data, root=root, path=path, where=where)


def _fail(where: str, field: str, why: str, hint: str) -> ConfigError:
    return ConfigError(f"{where}: `{field}` {why}", hint=hint)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise _fail(where, key, "must be a table", f"write it as [{key}]")
    return value


def _check_keys(table: dict[str, Any], allowed: frozenset[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(
                where,
                f"{prefix}{key}",
                "is not a known setting",
                f"known settings here: {', '.join(sorted(allowed))}",
            )


def _str(value: object, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, field, "must be a string", f'write it as {field} = "..."')
    return value


def _str_list(value: object, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(where, field, "must be a list of strings", f'write it as {field} = ["..."]')
    return tuple(cast("list[str]", value))


def _requirement(text: str, where: str, field: str) -> str:
    # packaging is imported where a requirement is checked: `analyze` reads only import settings.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement as exc:
        raise _fail(
            where, field, f"has an invalid requirement {text!r}: {exc}", "use PEP 508 syntax"
        ) from exc
    return text


def _validate(data: dict[str, Any], *, root: Path, path: Path, where: str) -> ProjectConfig:
    """Check the tables one by one, in a fixed order: a file always gives the same first error."""
    _check_keys(data, _TOP_KEYS, where, "")
    name = _name(data, root, where)
    python = _python(data, where)
    python_source = _str(data.get("python-source", CONFIG_FILE), where, "python-source")
    base_value = data.get("base")
    base = None if base_value in (None, "") else _str(base_value, where, "base")
    platform = _platform(data, where)
    deps = _table(data, "dependencies", where)
    _check_keys(deps, _DEP_KEYS, where, "dependencies.")
    packages = _packages(deps, where)
    index_url_value = deps.get("index-url")
    index_url = None if index_url_value is None else _str(index_url_value, where, "index-url")
    extra_index = _str_list(
        deps.get("extra-index-urls", []), where, "dependencies.extra-index-urls"
    )
    system = _str_list(deps.get("system", []), where, "dependencies.system")
    groups, ignore_imports, import_map, exclude = _analysis_keys(deps, where)
    torch_value = deps.get("torch-variant")
    torch_variant = (
        None if torch_value is None else _str(torch_value, where, "dependencies.torch-variant")
    )
    env = tuple(_env_spec(n, s, where) for n, s in _table(data, "env", where).items())
    inputs, outputs = _layout(data, where)
    entrypoints = tuple(
        _entrypoint(n, s, where) for n, s in _table(data, "entrypoints", where).items()
    )
    return ProjectConfig(
        root=root,
        config_path=path,
        name=name,
        python=python,
        python_source=python_source,
        base=base,
        platform=platform,
        packages=packages,
        index_url=index_url,
        extra_index_urls=extra_index,
        system_packages=system,
        torch_variant=torch_variant,
        env=env,
        inputs=inputs,
        outputs=outputs,
        entrypoints=entrypoints,
        cuda=_cuda(data, where),
        groups=groups,
        ignore_imports=ignore_imports,
        import_map=import_map,
        exclude=exclude,
        compression=_compression(data, where),
    )


def _compression(data: dict[str, Any], where: str) -> Compression:
    value = _str(data.get("compression", "gzip"), where, "compression")
    if value not in COMPRESSIONS:
        raise _fail(
            where, "compression", f"is {value!r}, not gzip or zstd",
            'gzip reads everywhere; zstd (compression = "zstd") needs Docker 23+ or containerd',
        )  # fmt: skip
    return value


def _name(data: dict[str, Any], root: Path, where: str) -> str:
    """The image name: the folder's name unless set, and always a valid reference component."""
    name = _str(data.get("name", root.resolve().name.lower()), where, "name")
    if not _NAME_RE.match(name):
        raise _fail(
            where, "name", f"{name!r} is not a valid image name", "use lowercase a-z, 0-9, . _ -"
        )
    return name


def _python(data: dict[str, Any], where: str) -> str:
    """``major.minor`` only: the base image decides the patch level."""
    python = _str(data.get("python", ""), where, "python")
    if not _PY_RE.match(python):
        raise _fail(
            where,
            "python",
            f'must be a version like "3.11", not {python!r}',
            'set python = "3.11" (major.minor; the patch level comes from the base image)',
        )
    return python


def _platform(data: dict[str, Any], where: str) -> Platform:
    """One of the platforms mlpack builds for."""
    platform_text = _str(data.get("platform", DEFAULT_PLATFORM), where, "platform")
    platform = as_platform(platform_text)
    if platform is None:
        raise _fail(
            where,
            "platform",
            f"{platform_text!r} is not supported",
            f"use one of {', '.join(PLATFORMS)}",
        )
    return platform


def _packages(deps: dict[str, Any], where: str) -> tuple[PackageSpec, ...]:
    """``dependencies.packages``: PEP 508 strings or ``{ requirement, source }`` tables."""
    raw_packages = deps.get("packages", [])
    if not isinstance(raw_packages, list):
        raise _fail(where, "dependencies.packages", "must be a list", 'packages = ["numpy"]')
    return tuple(
        _package(item, where, f"dependencies.packages[{i}]") for i, item in enumerate(raw_packages)
    )


def _package(item: object, where: str, field: str) -> PackageSpec:
    """One package entry; a plain string's source is the config file itself."""
    if isinstance(item, str):
        return PackageSpec(requirement=_requirement(item, where, field), source=CONFIG_FILE)
    if isinstance(item, dict) and "requirement" in item:
        extra = set(item) - {"requirement", "source"}
        if extra:
            raise _fail(
                where, field, f"has unknown keys {sorted(extra)}", "use requirement and source"
            )
        req = _requirement(_str(item["requirement"], where, field), where, field)
        source = _str(item.get("source", CONFIG_FILE), where, f"{field}.source")
        return PackageSpec(requirement=req, source=source)
    raise _fail(
        where,
        field,
        'must be a requirement string or { requirement = "...", source = "..." }',
        'e.g. packages = ["numpy>=1.24"]',
    )


def _env_spec(env_name: str, spec: object, where: str) -> EnvSpec:
    """One ``[env]`` entry; a secret is declared by name only, so it may carry no default."""
    field = f"env.{env_name}"
    if not _ENV_RE.match(env_name):
        raise _fail(where, field, "is not a valid variable name", "use letters, digits and _")
    if not isinstance(spec, dict):
        raise _fail(where, field, "must be a table", f'write {env_name} = {{ default = "..." }}')
    _check_keys(spec, _ENV_KEYS, where, f"{field}.")
    secret = spec.get("secret", False)
    if not isinstance(secret, bool):
        raise _fail(where, f"{field}.secret", "must be true or false", "secret = true")
    default = spec.get("default")
    if default is not None:
        default = _str(default, where, f"{field}.default")
        if secret:
            raise _fail(
                where,
                f"{field}.default",
                "is set on a secret variable",
                "secrets are declared by name only; pass the value at run time with -e",
            )
    return EnvSpec(name=env_name, default=default, secret=secret)


def _layout(data: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Input and output folders, which must stay inside the project (they become mounts)."""
    layout = _table(data, "layout", where)
    _check_keys(layout, _LAYOUT_KEYS, where, "layout.")
    inputs = _str_list(layout.get("inputs", []), where, "layout.inputs")
    outputs = _str_list(layout.get("outputs", []), where, "layout.outputs")
    for rel in (*inputs, *outputs):
        if rel.startswith("/") or ".." in Path(rel).parts:
            raise _fail(
                where, "layout", f"path {rel!r} leaves the project", "use paths inside the repo"
            )
    return inputs, outputs


def _entrypoint(entry_name: str, spec: object, where: str) -> EntrypointSpec:
    """One ``[entrypoints.NAME]`` table: a kind, a non-empty command and an optional port."""
    field = f"entrypoints.{entry_name}"
    if not isinstance(spec, dict):
        raise _fail(where, field, "must be a table", f"write it as [entrypoints.{entry_name}]")
    _check_keys(spec, _ENTRY_KEYS, where, f"{field}.")
    kind = spec.get("kind", "training")
    if kind not in KINDS:
        raise _fail(where, f"{field}.kind", f"is {kind!r}", "use training or inference")
    command = _str_list(spec.get("command", []), where, f"{field}.command")
    if not command:
        raise _fail(where, f"{field}.command", "is empty", 'command = ["python", "train.py"]')
    port = spec.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise _fail(where, f"{field}.port", "must be a port number", "port = 8000")
    return EntrypointSpec(name=entry_name, kind=kind, command=command, port=port)


def _cuda(data: dict[str, Any], where: str) -> bool:
    """``accelerator.cuda``, the one flag the lock reads to choose CUDA wheels."""
    accel = _table(data, "accelerator", where)
    _check_keys(accel, frozenset({"cuda"}), where, "accelerator.")
    cuda = accel.get("cuda", False)
    if not isinstance(cuda, bool):
        raise _fail(where, "accelerator.cuda", "must be true or false", "cuda = false")
    return cuda


def _analysis_keys(
    deps: dict[str, Any], where: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
    """``groups``, ``ignore-imports``, ``import-map`` and ``exclude`` of ``[dependencies]``."""
    from packaging.utils import canonicalize_name

    from mlpack.vocabulary import GROUPS

    groups = _str_list(deps.get("groups", list(DEFAULT_GROUPS)), where, "dependencies.groups")
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise _fail(
            where, "dependencies.groups", f"has unknown groups {unknown}",
            f"use some of {', '.join(GROUPS)}",
        )  # fmt: skip
    ignore = _str_list(deps.get("ignore-imports", []), where, "dependencies.ignore-imports")
    raw_map = deps.get("import-map", {})
    if not isinstance(raw_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw_map.items()
    ):
        raise _fail(
            where, "dependencies.import-map", "must map import names to distribution names",
            '[dependencies.import-map]\ncv2 = "opencv-python-headless"',
        )  # fmt: skip
    exclude = _str_list(deps.get("exclude", []), where, "dependencies.exclude")
    return (
        groups,
        ignore,
        tuple((k, canonicalize_name(v)) for k, v in sorted(raw_map.items())),
        tuple(canonicalize_name(e) for e in exclude),
    )


def import_settings(root: Path) -> ImportSettings:
    """The analysis settings of the project's config (defaults when it has none or is broken).

    A broken config is reported by the stage that loads it; analysis only reads what it can.
    """
    from mlpack.analyze.imports import ImportSettings

    path, in_pyproject = config_location(root)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if in_pyproject:
            data = data["tool"]["mlpack"]
        deps = data.get("dependencies", {})
        _groups, ignore, mapping, exclude = _analysis_keys(deps, path.name)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, AttributeError):
        return ImportSettings()
    return ImportSettings(
        ignore_imports=frozenset(ignore), import_map=dict(mapping), exclude=frozenset(exclude)
    )


def _analysis_document(
    analysis: ProjectAnalysis, name: str, groups: Iterable[str] = DEFAULT_GROUPS
) -> dict[str, Any]:
    """The settings ``analyze`` would write into an empty config, as plain data.

    The Debian packages are those of the packages that go into the image: a library that only
    a notebook imports brings no system package.
    """
    from mlpack.analyze.debian import analyze_system_packages
    from mlpack.analyze.requirements import image_packages

    chosen = image_packages(analysis.packages, groups)
    packages = [{"requirement": _requirement_text(p), "source": p.source} for p in chosen]
    env = {
        v.name: ({"secret": True} if v.secret else ({"default": v.default} if v.default else {}))
        for v in analysis.env
    }
    entrypoints: dict[str, Any] = {}
    for entry in analysis.entrypoints:
        key = entry.name
        if key in entrypoints:
            continue
        table: dict[str, Any] = {"kind": entry.kind, "command": list(entry.command)}
        if entry.kind == "inference":
            table["port"] = _port_of(entry.command)
        entrypoints[key] = table
    return {
        "name": name,
        "python": analysis.python.version,
        "python-source": analysis.python.source,
        "platform": DEFAULT_PLATFORM,
        "dependencies": {
            "packages": packages,
            "system": sorted({s.name for s in analyze_system_packages(chosen)}),
            **_index_settings(analysis),
        },
        "env": env,
        "layout": {
            "inputs": [u.path for u in analysis.layout.inputs],
            "outputs": [u.path for u in analysis.layout.outputs],
        },
        "entrypoints": entrypoints,
        "accelerator": {"cuda": analysis.accelerator.cuda},
    }


def _index_settings(analysis: ProjectAnalysis) -> dict[str, Any]:
    """``index-url``/``extra-index-urls`` from the indexes the dependency files name: the first
    ``--index-url`` replaces PyPI, as pip reads it; every other index is an extra one.
    """
    primary = next((i.url for i in analysis.indexes if i.primary), None)
    extra = [i.url for i in analysis.indexes if i.url != primary]
    return ({"index-url": primary} if primary else {}) | (
        {"extra-index-urls": extra} if extra else {}
    )


def config_from_analysis(root: Path, analysis: ProjectAnalysis) -> ProjectConfig:
    """The config ``analyze --write`` would create, in memory (a build without mlpack.toml)."""
    path = root / CONFIG_FILE
    document = _analysis_document(analysis, _default_name(root))
    return _validate(document, root=root, path=path, where=f"{path.name} (from the analysis)")


def _port_of(command: tuple[str, ...]) -> int:
    """The port a server command listens on (``--port``, Streamlit's ``--server.port``,
    Gradio's ``GRADIO_SERVER_PORT=``, ``--bind HOST:PORT``), else the default port.
    """
    for i, arg in enumerate(command):
        flag, eq, value = arg.partition("=")
        if flag in {"--port", "-p", "--server.port", "GRADIO_SERVER_PORT"}:
            value = value if eq else (command[i + 1] if i + 1 < len(command) else "")
            if value.isdigit():
                return int(value)
    for arg in command:
        if arg.startswith("--bind=") or (":" in arg and arg.rsplit(":", 1)[1].isdigit()):
            return int(arg.rsplit(":", 1)[1])
    return DEFAULT_PORT


def _requirement_text(package: Package) -> str:
    text = package.name
    if package.extras:
        text += f"[{','.join(package.extras)}]"
    if package.url:
        text += f" @ {package.url}"
    else:
        text += package.specifier
    if package.marker:
        text += f"; {package.marker}"
    return text


def merge_into(existing: dict[str, Any], generated: dict[str, Any]) -> list[str]:
    """Add to ``existing`` (a tomlkit document/table) what ``generated`` has and it lacks.

    Values already present are never changed: the user's edits win. Returns notes on
    disagreements so the CLI can show them.
    """
    notes: list[str] = []
    for key, value in generated.items():
        if key not in existing:
            existing[key] = value
            continue
        current = existing[key]
        if isinstance(value, dict) and isinstance(current, dict):
            if key in {"env", "entrypoints"}:  # named entries: add the new names only
                for sub, sub_value in value.items():
                    if sub not in current:
                        current[sub] = sub_value
            else:
                notes.extend(merge_into(current, value))
        elif isinstance(current, list) and (key == "packages" or isinstance(value, list)):
            _add_missing(key, current, value)
        elif current != value:
            notes.append(f"kept {key} = {current!r} (analysis suggests {value!r})")
    return notes


def _add_missing(key: str, current: list[Any], value: list[Any]) -> None:
    """Append the items ``current`` lacks; packages match by name, whatever their versions,
    and Debian packages by name in either release's spelling (``libglib2.0-0``, ``...0t64``).
    """
    from mlpack.analyze.debian import debian13_name

    name_of = {"packages": _entry_name, "system": debian13_name}.get(key)
    for item in value:
        if name_of is None:
            missing = item not in current
        else:
            missing = name_of(item) not in {name_of(have) for have in current}
        if missing:
            current.append(item)


def _entry_name(item: object) -> str:
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    text = item.get("requirement", "") if isinstance(item, dict) else str(item)
    try:
        return canonicalize_name(Requirement(str(text)).name)
    except InvalidRequirement:
        return str(text)


def write_config(root: Path, analysis: ProjectAnalysis) -> tuple[Path, list[str]]:
    """Create or update the project's config from ``analysis``; return (path, notes).

    The file is rewritten atomically and validated before it replaces the old one.
    """
    import tomlkit  # only writing needs it; every stage imports this module to read

    path, in_pyproject = config_location(root)
    groups: tuple[str, ...] = DEFAULT_GROUPS
    exclude: frozenset[str] = frozenset()
    if path.exists():
        try:
            doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        except Exception as exc:  # tomlkit raises its own ParseError hierarchy
            msg = f"cannot update {path}: it is not valid TOML ({exc})"
            raise ConfigError(msg, hint="fix or remove the file, then run analyze --write") from exc
        plain = doc.unwrap()
        deps = (plain.get("tool", {}).get("mlpack", {}) if in_pyproject else plain).get(
            "dependencies", {}
        )
        groups, _, _, excluded = _analysis_keys(deps, path.name)
        exclude = frozenset(excluded)
    else:
        doc = tomlkit.document()
        doc.add(tomlkit.comment("mlpack project config: written by `mlpack analyze --write`."))
        doc.add(
            tomlkit.comment("Edit freely: re-running analyze --write only adds what is missing.")
        )
    generated = _analysis_document(analysis, _default_name(root), groups)
    generated["dependencies"]["packages"] = [
        p for p in generated["dependencies"]["packages"] if _entry_name(p) not in exclude
    ]
    if in_pyproject:
        target = doc["tool"]["mlpack"]
    else:
        target = doc
    notes = merge_into(cast("dict[str, Any]", target), generated)
    text = tomlkit.dumps(doc)
    data = tomllib.loads(text)
    _validate(data["tool"]["mlpack"] if in_pyproject else data, root=root, path=path,
              where=path.name)  # fmt: skip
    atomic_write(path, text)
    return path, notes


def _default_name(root: Path) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", root.resolve().name.lower()).strip("-._")
    return name or "project"
