"""Bytecode in the wheel layers: compiled by the image's Python (here played by a fake runner
that runs the very same command with the host's 3.11), unchecked-hash, deterministic."""

from __future__ import annotations

import gzip
import importlib.util
import io
import marshal
import os
import subprocess
import sys
import tarfile
import threading
from typing import TYPE_CHECKING, Any

from mlpack.build import bytecode
from mlpack.build.embedded import EmbeddedBuilder
from mlpack.errors import ImageError
from mlpack.oci.store import Store
from mlpack.progress import RecordingReporter, using
from mlpack.render import compile_command
from mlpack.spec import WheelStep, commands
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel

if TYPE_CHECKING:
    from pathlib import Path

    from mlpack.build.protocol import BuildResult

SITE = "opt/venv/lib/python3.11/site-packages"
PYC = f"{SITE}/hello/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"
STABLE = f"{SITE}/hello/__pycache__/stable.{sys.implementation.cache_tag}.pyc"
RECORD = f"{SITE}/hello-1.0.dist-info/RECORD"


class FakePython:
    """Plays the container: runs the command's interpreter part on the host, on the mounts.

    The container's paths become the host folders mounted there; a ``pycache_prefix`` compile's
    files are then moved to where the container's would be (under the in-image path).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.lock = threading.Lock()  # the two compiles run on two threads

    def __call__(
        self,
        *,
        image: str,
        argv: tuple[str, ...],
        mounts: tuple[tuple[str, Path], ...],
        readonly: tuple[tuple[str, Path], ...],
        network: bool,
    ) -> int:
        assert not network
        with self.lock:
            self.calls.append((image, argv))
            n = len(self.calls)
        _python, *flags_and_script, folder, in_image = argv
        paths = dict(mounts) | dict(readonly)
        host = paths[folder]
        prefix = next((f.partition("=")[2] for f in argv if f.startswith("pycache_prefix=")), None)
        if prefix is not None:  # the second compile: sources read-only, output in the scratch
            assert dict(readonly) == {folder: host}
            assert set(dict(mounts)) == {prefix}
            flags_and_script = [
                f"pycache_prefix={paths[prefix]}" if f.startswith("pycache_prefix=") else f
                for f in flags_and_script
            ]
        else:
            assert not readonly
        # A random seed outside: the script itself re-executes with PYTHONHASHSEED=0.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
        code = subprocess.run(
            [sys.executable, *flags_and_script, str(host), in_image], env=env, check=False
        ).returncode
        out = host
        if prefix is not None and code == 0:
            out = paths[prefix] / folder.strip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            (paths[prefix] / str(host).strip("/")).rename(out)
        self.after(out, beside=prefix is None, n=n)
        return code

    def after(self, out: Path, *, beside: bool, n: int) -> None:
        """What the compile does beyond the real script (nothing here); ``out``: where it wrote,
        ``beside``: in ``__pycache__`` folders, ``n``: which call this is.
        """


class FlakyPython(FakePython):
    """A compiler whose output for hello/__init__.py differs at every run, as marshal's
    ``FLAG_REF`` choice can (python/cpython#98819): the other modules stay deterministic.
    """

    def after(self, out: Path, *, beside: bool, n: int) -> None:
        name = f"__init__.{sys.implementation.cache_tag}.pyc"
        pyc = out / "hello" / "__pycache__" / name if beside else out / "hello" / name
        pyc.write_bytes(pyc.read_bytes() + n.to_bytes(1, "little"))


class MeetingPython(FakePython):
    """Each compile waits until the other has started: the build only ends if they overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.both_started = threading.Barrier(2, timeout=120)  # breaks, not hangs, if serial
        self.events: list[str] = []

    def __call__(self, **kwargs: Any) -> int:
        with self.lock:
            self.events.append("start")
        self.both_started.wait()
        code = super().__call__(**kwargs)
        with self.lock:
            self.events.append("end")
        return code


def build(
    tmp: Path, runner: FakePython | None, store: Store | None = None
) -> tuple[Store, BuildResult]:
    store = store or Store(tmp / "store")
    (tmp / "wheels").mkdir(parents=True, exist_ok=True)
    pin = make_wheel(tmp / "wheels", modules=("stable",))
    spec = make_spec(make_base(store, tmp), (pin,))
    builder = EmbeddedBuilder(store, wheels={pin.sha256: tmp / "wheels" / pin.filename},
                              runner=runner)  # fmt: skip
    project = make_project(tmp / "proj") if not (tmp / "proj").exists() else tmp / "proj"
    return store, builder.build(spec, context=project, tag="localhost/demo:pyc")


def files(store: Store, result: BuildResult, step: str) -> dict[str, bytes]:
    digest = next(x.digest for x in result.layers if x.step == step)
    with tarfile.open(
        fileobj=io.BytesIO(gzip.decompress(store.blob_path(digest).read_bytes()))
    ) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_installed_packages_get_unchecked_hash_bytecode_for_their_in_image_path(
    tmp_path: Path,
) -> None:
    python = FakePython()
    store, result = build(tmp_path, python)
    layer = files(store, result, "packages")
    pyc = layer[PYC]
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(pyc[4:8], "little") == commands.UNCHECKED_HASH_FLAGS
    source = layer[f"{SITE}/hello/__init__.py"]
    assert pyc[8:16] == importlib.util.source_hash(source)  # the source's hash, no mtime
    code = marshal.loads(pyc[16:])
    assert code.co_filename == f"/{SITE}/hello/__init__.py"  # the image's path, not staging's
    # The base's interpreter compiled it, twice (a fresh container each time), without network:
    # the second run differs only in writing its .pyc under a scratch folder.
    (image, argv), (image_again, again) = sorted(python.calls, key=lambda call: len(call[1]))
    assert image_again == image
    assert again == (*argv[:3], "-X", f"pycache_prefix={bytecode.SCRATCH}", *argv[3:])
    assert image == store.image("localhost/base:1").digest
    assert argv[0] == "/usr/bin/python3"
    assert "UNCHECKED_HASH" in argv[4]
    assert 'os.execve(sys.executable,sys.orig_argv,{**os.environ,"PYTHONHASHSEED":"0"})' in argv[4]
    # The code layer carries no bytecode.
    assert not [n for n in files(store, result, "code") if n.endswith(".pyc")]


def test_bytecode_layers_are_identical_across_builds(tmp_path: Path) -> None:
    _, one = build(tmp_path / "a", FakePython())
    _, two = build(tmp_path / "b", FakePython())
    assert [x.digest for x in one.layers] == [x.digest for x in two.layers]
    assert all(x.pyc_dropped == () for x in one.layers)


def test_the_record_lists_the_compiled_files_sorted_after_installers_rows(tmp_path: Path) -> None:
    """As pip lists what it compiles (empty hash and size), so `pip uninstall` removes them."""
    store_a, one = build(tmp_path / "a", FakePython())
    store_b, two = build(tmp_path / "b", FakePython())
    record = files(store_a, one, "packages")[RECORD]
    assert record == files(store_b, two, "packages")[RECORD]
    rows = record.decode().splitlines()
    tag = sys.implementation.cache_tag
    assert rows[-2:] == [
        f"hello/__pycache__/__init__.{tag}.pyc,,",
        f"hello/__pycache__/stable.{tag}.pyc,,",
    ]
    assert any(row.startswith("hello/__init__.py,sha256=") for row in rows[:-2])  # installer's
    # Every .pyc of the layer is listed: nothing is left for a RECORD reader to miss.
    layer = files(store_a, one, "packages")
    listed = {f"{SITE}/{row.split(',')[0]}" for row in rows}
    assert {n for n in layer if n.endswith(".pyc")} <= listed


def test_a_layer_without_bytecode_lists_none_in_its_record(tmp_path: Path) -> None:
    with using(RecordingReporter()):
        store, plain = build(tmp_path, None)
    assert b".pyc" not in files(store, plain, "packages")[RECORD]


def test_a_pyc_whose_two_compiles_differ_is_left_out_and_reported(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    with using(reporter):
        store, result = build(tmp_path / "a", FlakyPython())
    layer = files(store, result, "packages")
    assert PYC not in layer  # the unstable one: that module compiles at each start
    assert STABLE in layer  # the compiles agreed on the rest of the layer
    rows = layer[RECORD].decode().splitlines()
    assert f"hello/__pycache__/stable.{sys.implementation.cache_tag}.pyc,," in rows
    assert not [row for row in rows if "__pycache__/__init__." in row]
    packages = next(x for x in result.layers if x.step == "packages")
    assert packages.pyc_dropped == (f"/{PYC}",)
    assert any(
        "1 .pyc left out of the packages layer" in n and f"/{PYC}" in n for n in reporter.notices
    )
    # The layer is cached as built: the next build reuses it, with the same digest, and
    # reports the same left-out .pyc as the build that wrote it.
    _, again = build(tmp_path / "a", FlakyPython(), store)
    cached = next(x for x in again.layers if x.step == "packages")
    assert cached.cached
    assert cached.digest == packages.digest
    assert cached.pyc_dropped == (f"/{PYC}",)


def test_layers_with_and_without_bytecode_never_share_a_cache_entry(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    with using(reporter):
        store, plain = build(tmp_path, None)
    assert PYC not in files(store, plain, "packages")
    assert any("no bytecode" in n for n in reporter.notices)
    _, compiled = build(tmp_path, FakePython(), store)
    packages = next(x for x in compiled.layers if x.step == "packages")
    assert not packages.cached
    assert PYC in files(store, compiled, "packages")


def test_a_base_whose_python_does_not_run_gets_a_layer_without_bytecode(tmp_path: Path) -> None:
    def broken(*, mounts: tuple[tuple[str, Path], ...], **_: object) -> int:
        (site,) = (host for _, host in mounts)
        (site / "hello" / "__pycache__").mkdir(parents=True, exist_ok=True)  # partial, then fails
        (site / "hello" / "__pycache__" / "half.pyc").write_bytes(b"x")
        return 127

    reporter = RecordingReporter()
    with using(reporter):
        store, failed = build(tmp_path / "a", broken)  # type: ignore[arg-type]
    assert not [n for n in files(store, failed, "packages") if "__pycache__" in n]
    assert any("no bytecode in the packages layer" in n and "127" in n for n in reporter.notices)
    # The very layer of a build that compiles nothing, cached under that layer's key.
    _, plain = build(tmp_path / "b", None)
    assert [x.digest for x in failed.layers] == [x.digest for x in plain.layers]
    _, again = build(tmp_path / "a", None, store)
    assert next(x for x in again.layers if x.step == "packages").cached


def test_the_dockerfile_compiles_the_same_way() -> None:
    spec = make_spec("sha256:" + "0" * 64, ())
    step = next(s for s in spec.steps if isinstance(s, WheelStep))
    command = compile_command(spec, step, "/layer")
    assert command.startswith("/usr/bin/python3 -s -B -c ")
    assert command.endswith(
        " /layer/lib/python3.11/site-packages /opt/venv/lib/python3.11/site-packages"
    )
    assert commands.COMPILE_SCRIPT in command


def test_a_container_that_does_not_start_leaves_the_layer_without_bytecode(tmp_path: Path) -> None:
    def no_room(**_: object) -> int:
        raise ImageError("layer does not fit in the free space", hint="free disk space")

    reporter = RecordingReporter()
    with using(reporter):
        store, result = build(tmp_path, no_room)  # type: ignore[arg-type]
    assert PYC not in files(store, result, "packages")
    assert any("did not start: layer does not fit" in n for n in reporter.notices)


def test_the_two_compiles_run_at_the_same_time(tmp_path: Path) -> None:
    python = MeetingPython()
    store, result = build(tmp_path, python)
    assert python.events == ["start", "start", "end", "end"]
    layer = files(store, result, "packages")
    assert PYC in layer
    assert STABLE in layer
    assert all(x.pyc_dropped == () for x in result.layers)


def test_a_second_compile_that_fails_leaves_the_layer_without_bytecode(tmp_path: Path) -> None:
    class SecondFails(FakePython):
        def __call__(self, **kwargs: Any) -> int:
            code = super().__call__(**kwargs)
            return 1 if "-X" in kwargs["argv"] else code

    reporter = RecordingReporter()
    with using(reporter):
        store, failed = build(tmp_path / "a", SecondFails())
    assert not [n for n in files(store, failed, "packages") if "__pycache__" in n]
    assert any("no bytecode in the packages layer" in n and " 1 " in n for n in reporter.notices)
    _, plain = build(tmp_path / "b", None)
    assert [x.digest for x in failed.layers] == [x.digest for x in plain.layers]


def test_a_compile_under_a_pycache_prefix_writes_the_same_bytes(tmp_path: Path) -> None:
    """The second compile's .pyc are compared with the first's: only their place may differ."""
    source = tmp_path / "site"
    (source / "pkg").mkdir(parents=True)
    (source / "top.py").write_text("X = frozenset({'a', 'b', 'c'})\n")
    (source / "pkg" / "__init__.py").write_text("def f(x):\n    return {x, 'y', 1.5}\n")
    in_image = f"/{SITE}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    for argv in (
        commands.compile_argv(sys.executable, str(source), in_image),
        commands.compile_argv(
            sys.executable, str(source), in_image, pycache_prefix=str(tmp_path / "scratch")
        ),
    ):
        subprocess.run(argv, env=env, check=True)
    tag = sys.implementation.cache_tag
    scratch = tmp_path / "scratch" / str(source).strip("/")
    pairs = [
        (source / "__pycache__" / f"top.{tag}.pyc", scratch / f"top.{tag}.pyc"),
        (
            source / "pkg" / "__pycache__" / f"__init__.{tag}.pyc",
            scratch / "pkg" / f"__init__.{tag}.pyc",
        ),
    ]
    for beside, prefixed in pairs:
        assert beside.read_bytes() == prefixed.read_bytes()
        code = marshal.loads(prefixed.read_bytes()[16:])
        assert code.co_filename.startswith(in_image)  # the image's path, not the scratch's
    assert int.from_bytes(pairs[0][1].read_bytes()[4:8], "little") == commands.UNCHECKED_HASH_FLAGS
    assert sorted(p.name for p in scratch.rglob("*.pyc")) == [
        f"__init__.{tag}.pyc",
        f"top.{tag}.pyc",
    ]
