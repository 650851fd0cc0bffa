from __future__ import annotations

from pathlib import Path

import pytest

from mlpack.analyze.accelerators import analyze_accelerator
from mlpack.analyze.analysis import Accelerator, Package
from mlpack.analyze.factcache import collect_facts
from mlpack.analyze.walk import walk_repo
from tests.unit.analyze.repo_helpers import make_repo, parse_mode  # noqa: F401  (fixture)


def accelerator_of(root: Path, packages: tuple[Package, ...] = ()) -> Accelerator:
    warnings: list[str] = []
    tree = walk_repo(root, warnings=warnings)
    facts = collect_facts(tree, cache_dir=root.parent / "cache", warnings=warnings)
    return analyze_accelerator(facts, packages)


def pkg(name: str, **kw: object) -> Package:
    base: dict[str, object] = {
        "specifier": "",
        "source": f"requirements.txt:{name}",
        "imports": (),
        "optional": False,
        "declared": True,
        "used": False,
    }
    base.update(kw)
    return Package(name=name, **base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("import torch\nmodel = torch.nn.Linear(2, 2)\nmodel.cuda()\n", 3),
        ("import torch\ndev = torch.device('cuda:0')\n", 2),
        ("import torch\nx = torch.zeros(1).to('cuda')\n", 2),
        ("import torch\ntorch.cuda.set_device(0)\n", 2),
        # PyTorch >= 2.6's device-agnostic API
        ("import torch\ndevice = torch.accelerator.current_accelerator()\n", 2),
        (
            "from transformers import AutoModel\nm = AutoModel.from_pretrained('x', device_map='cuda')\n",
            2,
        ),
        ("import tensorflow as tf\nwith tf.device('/GPU:0'):\n    pass\n", 2),
        ("import tensorflow as tf\ntf.config.list_physical_devices('GPU')\n", 2),
        ("import jax\njax.devices('gpu')\n", 2),
        ("import torch.distributed as dist\ndist.init_process_group(backend='nccl')\n", 2),
        (
            "import argparse\np = argparse.ArgumentParser()\np.add_argument('--device', default='cuda')\n",
            3,
        ),
        # A config's device default (nanoGPT's `device = 'cuda'`, detectron2's defaults.py).
        ("import torch\nbatch = 12\ndevice = 'cuda'  # or 'cpu'\n", 3),
        ("_C = object()\n_C.MODEL.DEVICE = 'cuda'\n", 2),
        # A condition that is not about the device does not make GPU use optional.
        ("import torch\nmode = 'train'\nif mode == 'train':\n    torch.zeros(1).cuda()\n", 4),
    ],
)
@pytest.mark.usefixtures("parse_mode")
def test_unconditional_gpu_use_needs_cuda(tmp_path: Path, code: str, line: int) -> None:
    root = make_repo(tmp_path / "repo", {"train.py": code})
    assert accelerator_of(root) == Accelerator(
        cuda=True, source=f"train.py:{line}", level="required"
    )


@pytest.mark.usefixtures("parse_mode")
def test_availability_fallback_alone_is_cpu(tmp_path: Path) -> None:
    root = make_repo(
        tmp_path / "repo",
        {
            "train.py": """
                import torch
                device = "cuda" if torch.cuda.is_available() else "cpu"
                dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
                model = torch.nn.Linear(2, 2).to(device)
                if torch.cuda.is_available():
                    model = model.cuda()
                    torch.cuda.synchronize()
                torch.cuda.manual_seed_all(0)
                torch.cuda.empty_cache()
                torch.accelerator.device_count()
                parser.add_argument("--device", default="cpu")
                parser.add_argument("--backend", default="cuda")
            """,
            "tests/test_gpu.py": "import torch\ntorch.zeros(1).cuda()\n",
        },
    )
    # Guarded use only: the GPU is optional (with where it is used), a CPU image works.
    assert accelerator_of(root) == Accelerator(cuda=False, source="train.py:3", level="optional")


@pytest.mark.parametrize(
    "condition",
    [
        'x.device.type not in ["cuda", "xpu"]',  # peft's adapters follow the weights' device
        'device.type == "cpu"',
        "has_gpu",  # detectron2's launcher
        "args.cuda",
        "LOCAL_RANK != -1",  # yolov5: GPU use only when launched distributed
        "dist.get_backend() == dist.Backend.NCCL",
        "use_accel",  # pytorch/examples' mnist: torch.accelerator.is_available() before
    ],
)
@pytest.mark.usefixtures("parse_mode")
def test_gpu_use_under_a_device_check_is_optional(tmp_path: Path, condition: str) -> None:
    code = f"""
        import torch

        def place(x, y, args, device, has_gpu, LOCAL_RANK, dist, use_accel):
            if {condition}:
                y = y.to("cuda")
                torch.cuda.set_device(0)
            return y
    """
    root = make_repo(tmp_path / "repo", {"train.py": code})
    assert accelerator_of(root) == Accelerator(cuda=False, source="train.py:6", level="optional")


def test_cuda_packages(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", {"a.py": "x = 1\n"})
    assert accelerator_of(root, (pkg("numpy"),)).cuda is False
    for package in (
        pkg("nvidia-cublas-cu12"),
        pkg("cupy-cuda12x"),
        pkg("onnxruntime-gpu"),
        pkg("jax", extras=("cuda12",)),
        pkg("cupy", imports=("cupy",), used=True),
    ):
        assert accelerator_of(root, (package,)) == Accelerator(
            cuda=True, source=package.source, level="required"
        )
    # an optional extra does not make CUDA required
    dev = pkg("faiss-gpu", group="gpu", optional=True)
    assert accelerator_of(root, (dev,)).cuda is False
