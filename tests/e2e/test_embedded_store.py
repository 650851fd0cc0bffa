"""``mlpack run IMAGE`` from the store: overlayfs over unpacked layers, with whiteouts (root)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlpack.oci.store import Store
from tests.conftest import require
from tests.e2e.embedded_support import make_rootfs, require_root, run_cli

pytestmark = [pytest.mark.root]


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A two-layer image (busybox; then /bin/cat deleted and /etc/motd added) in a store."""
    require_root()
    require(shutil.which("umoci") is not None, "umoci")
    base = tmp_path_factory.mktemp("store")
    layout, bundle = base / "layout", base / "bundle"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", f"{layout}:bb")
    umoci("unpack", "--image", f"{layout}:bb", str(bundle))
    make_rootfs(bundle / "rootfs")
    umoci("repack", "--image", f"{layout}:bb", str(bundle))
    shutil.rmtree(bundle)
    umoci("unpack", "--image", f"{layout}:bb", str(bundle))
    (bundle / "rootfs" / "bin" / "cat").unlink()
    (bundle / "rootfs" / "etc" / "motd").write_text("layer two\n")
    umoci("repack", "--image", f"{layout}:bb", str(bundle))
    umoci(
        "config", "--image", f"{layout}:bb", "--config.env", "GREETING=hello",
        "--config.workingdir", "/tmp", "--config.cmd", "sh", "--config.cmd", "-c",
        "--config.cmd", 'echo "$GREETING"; pwd; cat /etc/motd; test -e /bin/cat || echo no-cat',
    )  # fmt: skip
    home = base / "home"
    done = run_cli(["import", str(layout)], home)
    assert done.returncode == 0, done.stderr
    store = Store(home)
    (summary,) = store.images()
    store.tag("localhost/test/bb:1", summary.digest)
    return home, "localhost/test/bb:1"


def test_run_the_image_default_command(stored: tuple[Path, str]) -> None:
    home, ref = stored
    done = run_cli(["run", ref], home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["hello", "/tmp", "layer two", "no-cat"]


def test_layers_are_shared_and_untouched(stored: tuple[Path, str]) -> None:
    home, ref = stored
    done = run_cli(["run", ref, "sh", "-c", "rm -rf /etc; echo gone > /new"], home)
    assert done.returncode == 0, done.stderr
    done = run_cli(["run", ref, "sh", "-c", "ls /etc/motd; test -e /new || echo clean"], home)
    assert done.stdout.split() == ["/etc/motd", "clean"]


# What `mlpack run IMAGE` does not load once the image is unpacked and memoized: the store
# (its index and layers are not read again), the registry client, cgroups without limits.
HEAVY_ON_RUN = {
    "mlpack.oci.store", "mlpack.oci.registry", "mlpack.runtime.embedded.cgroups", "docker",
}  # fmt: skip


def test_a_warm_run_imports_nothing_heavy(stored: tuple[Path, str]) -> None:
    home, ref = stored
    code = (
        "import sys\n"
        "from mlpack.cli.app import run_app\n"
        f"rc = run_app(['run', '--network', 'none', {ref!r}, 'true'])\n"
        f"print(rc, sorted(m for m in sys.modules if m in {sorted(HEAVY_ON_RUN)!r}))\n"
    )
    env = {"MLPACK_HOME": str(home), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", code]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert first.stdout.startswith("0 "), first.stdout + first.stderr
    assert list((home / "cache" / "run").glob("*.json")), "the first run records a memo"
    warm = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert warm.stdout.strip() == "0 []", warm.stdout + warm.stderr
