"""render: golden Dockerfiles and .dockerignores for both examples, and the eject files."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from mlpack import __version__
from mlpack.config import load_config
from mlpack.lock.lockfile import read_lock
from mlpack.render import docker_quote, eject, render_dockerfile
from mlpack.spec import ImageSpec, Provenance, plan

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "render"
# MLPACK_UPDATE_GOLDEN=1 rewrites the golden files from the current templates.
UPDATE = os.environ.get("MLPACK_UPDATE_GOLDEN") == "1"
# BuildKit-only syntax the classic builder (docker-py) rejects: REPRODUCIBILITY.md §8.
BUILDKIT_ONLY = re.compile(r"--mount|--chmod|--link|<<|^# syntax=|TARGETPLATFORM", re.MULTILINE)


def spec_of(name: str, tmp_path: Path) -> ImageSpec:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    config = load_config(root)
    return plan(read_lock(root / "mlpack.lock"), config, provenance=Provenance())


def versionless(text: str) -> str:
    return text.replace(f"mlpack {__version__}", "mlpack VERSION").replace(
        f'"org.mlpack.version"="{__version__}"', '"org.mlpack.version"="VERSION"'
    )


@pytest.mark.parametrize("name", ["training", "inference"])
def test_rendered_files_match_the_golden_files(name: str, tmp_path: Path) -> None:
    spec = spec_of(name, tmp_path)
    out = tmp_path / "out"
    eject(spec, out)
    for rel in ("Dockerfile", ".dockerignore"):
        golden = FIXTURES / name / f"golden{rel if rel.startswith('.') else '.' + rel}"
        text = versionless((out / rel).read_text())
        if UPDATE:
            golden.write_text(text)
        assert text == golden.read_text(), f"{rel} of {name} differs from {golden}"


@pytest.mark.parametrize("name", ["training", "inference"])
def test_dockerfile_uses_classic_builder_syntax_and_hash_checked_installs(
    name: str, tmp_path: Path
) -> None:
    text = render_dockerfile(spec_of(name, tmp_path))
    assert not BUILDKIT_ONLY.search(text)
    assert "--require-hashes --no-deps --no-cache-dir" in text
    assert "--no-index" in text
    # The wheelhouse only enters builder stages: the final stage copies installed trees.
    final = text.rsplit("\nFROM ", 1)[1]
    assert ".mlpack/" not in final
    assert final.index("COPY --from=venv") < final.index("COPY --from=packages")
    assert final.index("COPY --from=packages") < final.index("COPY --from=code /app/")
    # The code stage deletes what render added to the context before the final stage copies it.
    assert "COPY . /app/\nRUN rm -rf /app/.mlpack" in text
    # Bytecode by the image's Python, unchecked-hash, named for the in-image prefix.
    assert "&& /usr/bin/python3 -s -B -c " in text
    assert '"PYTHONHASHSEED":"0"' in text
    assert "UNCHECKED_HASH" in text
    assert " /layer/lib/python3.11/site-packages /opt/venv/lib/python3.11/site-packages" in text
    assert "--no-compile" in text  # pip's own (timestamped) compile stays off


def test_eject_writes_one_hash_checked_requirements_file_per_group(tmp_path: Path) -> None:
    spec = spec_of("training", tmp_path)
    written = eject(spec, tmp_path / "out")
    names = sorted(p.relative_to(tmp_path / "out").as_posix() for p in written)
    assert names == [
        ".dockerignore",
        ".mlpack/debs/SHA256SUMS",
        ".mlpack/debs/install.sh",
        ".mlpack/requirements/packages.txt",
        "Dockerfile",
    ]
    lines = (tmp_path / "out/.mlpack/requirements/packages.txt").read_text().splitlines()
    lock = read_lock(FIXTURES / "training" / "mlpack.lock")
    assert len(lines) == len(lock.packages)
    assert all(re.fullmatch(r"\S+==\S+ --hash=sha256:[0-9a-f]{64}", line) for line in lines)
    # The system stage checks the .deb files the user downloads against the lock's hashes.
    (pin,) = lock.system_packages
    sums = (tmp_path / "out/.mlpack/debs/SHA256SUMS").read_text()
    assert sums == f"{pin.sha256}  {pin.filename}\n"


def test_secret_names_never_get_a_value_in_the_dockerfile(tmp_path: Path) -> None:
    text = render_dockerfile(spec_of("training", tmp_path))
    assert "ENV WANDB_API_KEY" not in text
    assert "ARG WANDB" not in text


def test_docker_quote_stops_expansion_and_escapes_quotes() -> None:
    assert docker_quote('a"b$HOME\\') == '"a\\"b\\$HOME\\\\"'
