"""The resolvers by name: ``uv`` (the default: any target, from any host) and ``pip-tools``."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

from mlpack.lock.piptools import PipToolsResolver
from mlpack.lock.uv import UvResolver

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from mlpack.lock.resolvers import Resolver
    from mlpack.lock.runner import ImageRunnerFactory
    from mlpack.vocabulary import ResolverName


@dataclass(frozen=True, kw_only=True)
class ResolverSetup:
    """What a resolver may need: its tools folder, the base image and a way to run inside it."""

    tools: Path
    image: str
    image_runner: ImageRunnerFactory | None = None


def _uv(_setup: ResolverSetup) -> Resolver:
    return UvResolver()


def _pip_tools(setup: ResolverSetup) -> Resolver:
    factory = setup.image_runner
    return PipToolsResolver(
        tools_home=setup.tools,
        image_runner=None if factory is None else partial(factory, setup.image),
    )


RESOLVERS: Final[Mapping[ResolverName, Callable[[ResolverSetup], Resolver]]] = {
    "uv": _uv,
    "pip-tools": _pip_tools,
}


def make_resolver(name: ResolverName, setup: ResolverSetup) -> Resolver:
    """The resolver registered under ``name``."""
    return RESOLVERS[name](setup)
