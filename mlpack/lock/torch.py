"""PyTorch's CPU or CUDA build: which index to add, which build was locked, what driver it needs."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from mlpack.lock.indexes import Indexes, strip_userinfo
from mlpack.lock.lockdata import TorchDecision

if TYPE_CHECKING:
    from mlpack.lock.resolvers import Pin
    from mlpack.vocabulary import Platform

TORCH_INDEX: Final = "https://download.pytorch.org/whl/{variant}"

# CUDA runtime -> minimum Linux host driver (NVIDIA CUDA Toolkit release notes, table 3,
# "Toolkit Driver Version"). Minor-version compatibility lets older 12.x drivers (>= 525.60.13)
# run some workloads, but this table is what every feature of that runtime needs.
CUDA_MIN_DRIVER: Final = {
    "11.7": "515.43.04",
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}
_CUDA_RUNTIME_PKG: Final = re.compile(r"^nvidia-cuda-runtime(-cu\d+)?$")
_LOCAL_CU: Final = re.compile(r"^cu(\d+)(\d)$")


def index_variant(url: str) -> str | None:
    """``.../whl/cpu`` -> "cpu", ``.../whl/cu124`` -> "cu124"; None for other indexes."""
    found = re.search(r"/whl/(cpu|cu\d+)/?$", strip_userinfo(url))
    return found.group(1) if found else None


def torch_indexes(indexes: Indexes, *, variant: str | None) -> Indexes:
    """Add PyTorch's index for an explicit ``torch-variant`` unless one is configured already."""
    if variant is None or any(index_variant(u) == variant for u in indexes.all):
        return indexes
    url = TORCH_INDEX.format(variant=variant)
    return Indexes(
        index_url=indexes.index_url,
        extra_index_urls=(*indexes.extra_index_urls, url),
        source=indexes.source,
    )


def min_driver(runtime: str) -> tuple[str, bool] | None:
    """(minimum host driver, exact) for a CUDA runtime "12.4".

    A runtime newer than the table gets the highest known entry of the same major version: CUDA's
    minor-version compatibility makes that the floor, and ``exact`` is False to say so.
    """
    if runtime in CUDA_MIN_DRIVER:
        return CUDA_MIN_DRIVER[runtime], True
    major, _, minor = runtime.partition(".")
    same = [
        (int(m.partition(".")[2]), d)
        for m, d in CUDA_MIN_DRIVER.items()
        if m.partition(".")[0] == major
        and minor.isdigit()
        and int(m.partition(".")[2]) <= int(minor)
    ]
    return (max(same)[1], False) if same else None


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def decide(
    pins: tuple[Pin, ...],
    *,
    cuda: bool,
    variant: str | None,
    indexes: Indexes,
    platform: Platform,
) -> TorchDecision | None:
    """Describe the torch build in ``pins`` and why it is the one locked; None without torch."""
    by_name = {p.name: p for p in pins}
    torch = by_name.get("torch")
    if torch is None:
        return None
    locked, runtime = _locked_variant(torch, by_name)
    pinned = f"torch=={torch.version}"
    if variant is not None:
        why = f"torch-variant = {variant!r} in mlpack.toml"
    elif cuda:
        why = "the analysis found CUDA use (accelerator.cuda = true)"
    else:
        why = "the code needs no GPU (accelerator.cuda = false: no GPU use, or only guarded use)"
    cpu_index = next((u for u in indexes.all if index_variant(u) == "cpu"), None)
    nvidia = sum(1 for n in by_name if n.startswith("nvidia-"))
    if locked == "cpu":
        reason = _cpu_reason(why, pinned, platform=platform, cpu_index=cpu_index)
    elif cuda or (variant is not None and variant != "cpu"):
        reason = f"{why}; {pinned} brings CUDA {runtime} ({nvidia} nvidia-* packages)"
    else:
        reason = (
            f"{why}, but no CPU-only index is configured, so the default index's CUDA build "
            f"was locked ({pinned}, {nvidia} nvidia-* packages); add "
            f'extra-index-urls = ["{TORCH_INDEX.format(variant="cpu")}"] or '
            'torch-variant = "cpu" to [dependencies] for CPU-only wheels'
        )
    driver = min_driver(runtime) if runtime else None
    if runtime is not None and driver is not None:
        floor = "" if driver[1] else f" (the CUDA {runtime.partition('.')[0]}.x floor)"
        reason += f"; needs host NVIDIA driver >= {driver[0]}{floor}"
    return TorchDecision(
        variant=locked,
        reason=reason,
        cuda_runtime=runtime,
        min_driver=driver[0] if driver else None,
    )


def _locked_variant(torch: Pin, by_name: dict[str, Pin]) -> tuple[str, str | None]:
    """The variant the torch pin is (``cpu`` or ``cuXY``) and its CUDA runtime minor, if any.

    The local version label says it when present (``+cpu``, ``+cu121``); the default index's
    wheels carry none, and then the ``nvidia-cuda-runtime-*`` pin tells the CUDA build.
    """
    _, _, local = torch.version.partition("+")
    if local == "cpu":
        return "cpu", None
    if (m := _LOCAL_CU.match(local)) is not None:
        return local, f"{m.group(1)}.{m.group(2)}"
    runtime_pin = next((p for n, p in by_name.items() if _CUDA_RUNTIME_PKG.match(n)), None)
    if runtime_pin is None:
        return "cpu", None
    runtime = _minor(runtime_pin.version)
    return "cu" + runtime.replace(".", ""), runtime


def _cpu_reason(why: str, pinned: str, *, platform: Platform, cpu_index: str | None) -> str:
    """Why a CPU-only torch was locked, naming where its wheels come from."""
    if platform == "linux/arm64" and cpu_index is None:
        return f"{why}; the index's linux/arm64 build is CPU-only ({pinned})"
    if cpu_index is not None:
        return f"{why}; CPU-only wheels from {strip_userinfo(cpu_index)} ({pinned})"
    return f"{why}; {pinned} carries no CUDA runtime"
