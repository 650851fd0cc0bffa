"""The wheel ships the templates and the command: build it, install it in a fresh venv, use it."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(dist),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (found,) = dist.glob("mlpack_env-*.whl")
    return found


def test_wheel_contains_templates_and_typed_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "mlpack/templates/dockerignore.j2" in names
    assert "mlpack/templates/Dockerfile.j2" in names
    assert "mlpack/templates/k8s/job.yaml.j2" in names
    assert "mlpack/py.typed" in names
    (entry_points,) = (n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "mlpack = mlpack.cli:main" in scripts
    assert "mlpack-runtime = mlpack.cli.oci_runtime:main" in scripts


def test_installed_wheel_renders_a_template(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # Dependencies come from this venv's site-packages through a .pth line (no network), while
    # mlpack itself comes only from the wheel: that directory's own .pth files (the editable
    # install) are not processed, so the checkout is not importable from the fresh venv.
    deps = next(Path(p) for p in sys.path if p.endswith("site-packages"))
    (site_packages,) = (env_dir / "lib").glob("python*/site-packages")
    (site_packages / "deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import mlpack.render as r;"
        "print(r.templates_dir());"
        "print(r.render_template('dockerignore.j2', excludes=['.git', '/outputs', '/data']))"
    )
    result = subprocess.run(
        [str(py), "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    templates_at, rendered = result.stdout.split("\n", 1)
    assert templates_at.startswith(str(site_packages))
    assert templates_at.endswith("mlpack/templates")
    assert "\n/outputs\n" in rendered
    assert "\n/data\n" in rendered
    assert ".git\n" in rendered
    version = subprocess.run(
        [str(env_dir / "bin" / "mlpack"), "--version"], check=False, capture_output=True, text=True
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("mlpack ")
    usage = subprocess.run(
        [str(env_dir / "bin" / "mlpack-runtime"), "--help"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 0, usage.stderr
    assert usage.stdout.startswith("usage: mlpack-runtime")
