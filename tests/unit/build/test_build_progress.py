"""The embedded builder's progress through the reporter seam: installs and layer writes, in bytes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpack.build.embedded import EmbeddedBuilder
from mlpack.oci.store import Store
from mlpack.progress import SilentReporter, using
from tests.unit.build.fakes import make_base, make_project, make_spec, make_wheel

if TYPE_CHECKING:
    from pathlib import Path


class Tasks(SilentReporter):
    def __init__(self) -> None:
        self.totals: dict[str, int | None] = {}
        self.done: dict[str, int] = {}
        self.finished: list[str] = []

    def start(self, task: str, total: int | None) -> None:
        self.totals[task] = total
        self.done[task] = 0

    def advance(self, task: str, amount: int) -> None:
        self.done[task] += amount

    def finish(self, task: str) -> None:
        self.finished.append(task)


def test_each_install_and_layer_write_reports_its_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    (tmp_path / "wheels").mkdir()
    pin = make_wheel(tmp_path / "wheels")
    wheel = tmp_path / "wheels" / pin.filename
    spec = make_spec(make_base(store, tmp_path), (pin,))
    tasks = Tasks()
    with using(tasks):
        result = EmbeddedBuilder(store, wheels={pin.sha256: wheel}).build(
            spec, context=make_project(tmp_path / "proj"), tag="localhost/demo:p"
        )
    assert tasks.totals["install packages"] == wheel.stat().st_size
    assert tasks.done["install packages"] == wheel.stat().st_size
    for layer in result.layers[1:]:
        assert tasks.done[f"layer {layer.step}"] == layer.size  # every compressed byte
    assert tasks.finished == ["layer venv", "install packages", "layer packages", "layer code"]
    # A cached rebuild writes nothing.
    again = Tasks()
    with using(again):
        EmbeddedBuilder(store, wheels={pin.sha256: wheel}).build(
            spec, context=tmp_path / "proj", tag="localhost/demo:p"
        )
    assert again.finished == []
