from __future__ import annotations

from mlpack.lock.indexes import Indexes
from mlpack.lock.resolvers import Pin
from mlpack.lock.torch import CUDA_MIN_DRIVER, decide, index_variant, torch_indexes

PYPI = Indexes()
CPU = Indexes(extra_index_urls=("https://download.pytorch.org/whl/cpu",))


def pins(*items: tuple[str, str]) -> tuple[Pin, ...]:
    return tuple(Pin(name=n, version=v) for n, v in items)


def test_no_torch_no_decision() -> None:
    assert (
        decide(
            pins(("numpy", "2.0.0")), cuda=False, variant=None, indexes=PYPI, platform="linux/amd64"
        )
        is None
    )


def test_cuda_runtime_from_nvidia_pin_and_driver_table() -> None:
    d = decide(
        pins(
            ("torch", "2.5.1"),
            ("nvidia-cuda-runtime-cu12", "12.4.127"),
            ("nvidia-cublas-cu12", "12.4.5.8"),
        ),
        cuda=True,
        variant=None,
        indexes=PYPI,
        platform="linux/amd64",
    )
    assert d is not None
    assert d.variant == "cu124"
    assert d.cuda_runtime == "12.4"
    assert d.min_driver == CUDA_MIN_DRIVER["12.4"] == "550.54.14"
    assert "CUDA use" in d.reason
    assert "2 nvidia-*" in d.reason


def test_local_version_names_the_variant() -> None:
    d = decide(
        pins(("torch", "2.3.0+cu121")),
        cuda=True,
        variant="cu121",
        indexes=PYPI,
        platform="linux/amd64",
    )
    assert d is not None
    assert d.variant == "cu121"
    assert d.cuda_runtime == "12.1"
    assert d.min_driver == "530.30.02"
    d = decide(
        pins(("torch", "2.3.0+cpu")), cuda=False, variant=None, indexes=CPU, platform="linux/amd64"
    )
    assert d is not None
    assert d.variant == "cpu"
    assert d.min_driver is None
    assert "download.pytorch.org/whl/cpu" in d.reason


def test_cpu_project_without_cpu_index_says_what_to_add() -> None:
    d = decide(
        pins(("torch", "2.5.1"), ("nvidia-cuda-runtime-cu12", "12.4.127")),
        cuda=False,
        variant=None,
        indexes=PYPI,
        platform="linux/amd64",
    )
    assert d is not None
    assert d.variant == "cu124"
    assert "no CPU-only index is configured" in d.reason
    assert "whl/cpu" in d.reason
    # "optional" (guarded GPU use) locks as "none" does: the wording must not deny the use.
    assert d.reason.startswith("the code needs no GPU (accelerator.cuda = false: no GPU use,")


def test_explicit_variant_adds_pytorch_index_once() -> None:
    added = torch_indexes(PYPI, variant="cpu")
    assert added.extra_index_urls == ("https://download.pytorch.org/whl/cpu",)
    assert torch_indexes(added, variant="cpu") == added
    assert torch_indexes(PYPI, variant=None) == PYPI
    assert index_variant("http://127.0.0.1:8000/whl/cu124/") == "cu124"
    assert index_variant("https://pypi.org/simple") is None


def test_newer_runtime_gets_its_major_floor() -> None:
    d = decide(
        pins(("torch", "2.15.0"), ("nvidia-cuda-runtime", "13.2.51")),
        cuda=True,
        variant=None,
        indexes=PYPI,
        platform="linux/amd64",
    )
    assert d is not None
    assert d.cuda_runtime == "13.2"
    assert d.min_driver == CUDA_MIN_DRIVER["13.0"]
    assert "CUDA 13.x floor" in d.reason
