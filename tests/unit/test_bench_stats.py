"""The benchmark maths: medians, paired ratios, bootstrap CIs, verdicts, interleaving, scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._stats import (
    bootstrap_ci,
    compare,
    format_line,
    interleave,
    median,
    pair_ratios,
)
from bench.analyze import score, sdist_truth


def test_median_odd_and_even() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_pair_ratios_are_per_round() -> None:
    assert pair_ratios([1.0, 4.0], [2.0, 8.0]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="paired"):
        pair_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="not positive"):
        pair_ratios([1.0], [0.0])


def test_median_of_ratios_is_not_ratio_of_medians() -> None:
    # Drift that hits both contenders in one round cancels in the per-pair ratio.
    a = [1.0, 10.0, 100.0]
    b = [2.0, 20.0, 50.0]
    c = compare("x", "a", a, "b", b, goal=None)
    assert c.ratio == 0.5
    assert c.a_median / c.b_median == 0.5
    assert compare("x", "a", [1.0, 1.0, 9.0], "b", [2.0, 1.0, 3.0], goal=None).ratio == 1.0


def test_bootstrap_ci_brackets_the_median_and_is_seeded() -> None:
    values = [0.20, 0.21, 0.22, 0.25, 0.30, 0.19, 0.23]
    low, high = bootstrap_ci(values)
    assert low <= median(values) <= high
    assert min(values) <= low
    assert high <= max(values)
    assert bootstrap_ci(values) == (low, high)
    assert bootstrap_ci([0.5] * 5) == (0.5, 0.5)


def test_bootstrap_ci_narrows_with_more_pairs() -> None:
    few = [0.1, 0.3, 0.2, 0.25, 0.15]
    low_few, high_few = bootstrap_ci(few)
    low_many, high_many = bootstrap_ci(few * 20)
    assert high_many - low_many < high_few - low_few


def test_verdict_uses_the_upper_ci_bound() -> None:
    passing = compare("x", "a", [1.0] * 5, "b", [5.0] * 5, goal=0.25)
    assert passing.ci == (0.2, 0.2)
    assert passing.verdict == "PASS"
    # The median ratio meets the goal, but the CI's upper bound does not: FAIL.
    noisy = compare("x", "a", [0.2, 0.2, 0.2, 0.4, 0.4], "b", [1.0] * 5, goal=0.25)
    assert noisy.ratio == 0.2
    assert noisy.ci[1] > 0.25
    assert noisy.verdict == "FAIL"
    assert compare("x", "a", [1.0], "b", [1.0], goal=None).verdict == "info"


def test_format_line_shows_medians_ratio_ci_goal_and_verdict() -> None:
    line = format_line(compare("B3 cold", "mlpack", [0.5] * 3, "pipreqs", [2.5] * 3, goal=0.25))
    assert "B3 cold" in line
    assert "500.0 ms" in line
    assert "2.50 s" in line
    assert "ratio  0.200 [0.200, 0.200]" in line
    assert "goal <= 0.25" in line
    assert line.endswith("PASS")


def test_interleave_rotates_the_order_and_discards_warmups() -> None:
    calls: list[str] = []
    clock = iter(range(1, 100))

    def arm(name: str) -> float:
        calls.append(name)
        return float(next(clock))

    times = interleave({"a": lambda: arm("a"), "b": lambda: arm("b")}, rounds=3, warmups=2)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert times == {"a": (5.0, 8.0, 9.0), "b": (6.0, 7.0, 10.0)}
    with pytest.raises(ValueError, match="rounds"):
        interleave({"a": lambda: 1.0}, rounds=0, warmups=0)


def test_score_accepts_any_listed_alternative_once() -> None:
    expected = (frozenset({"opencv-python", "opencv-python-headless"}), frozenset({"numpy"}))
    s = score(frozenset({"opencv-python-headless", "cv2"}), expected, frozenset({"cv2"}))
    assert (s.precision, s.recall) == (0.5, 0.5)
    assert s.f1 == 0.5
    assert s.missed == ("numpy",)
    assert s.extra == ("cv2",)
    assert s.forbidden == ("cv2",)
    assert score(frozenset(), expected).f1 == 0.0
    perfect = score(frozenset({"numpy", "opencv-python"}), expected)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)


def test_sdist_truth_reads_requires_dist_and_skips_the_project_itself(tmp_path: Path) -> None:
    (tmp_path / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: demo\n"
        "Requires-Dist: numpy>=1.17\n"
        "Requires-Dist: PyYAML\n"
        'Requires-Dist: torch; extra == "torch"\n'
        'Requires-Dist: demo[torch]; extra == "all"\n'
        'Requires-Dist: numpy; extra == "torch"\n'
    )
    truth = sdist_truth(tmp_path, "Demo")
    assert truth.core == (frozenset({"numpy"}), frozenset({"pyyaml"}))
    assert set().union(*truth.full) == {"numpy", "pyyaml", "torch"}


def test_sdist_truth_falls_back_to_egg_info_requires(tmp_path: Path) -> None:
    (tmp_path / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: demo\n")
    egg = tmp_path / "src" / "demo.egg-info"
    egg.mkdir(parents=True)
    (egg / "requires.txt").write_text(
        "packaging>=20\nhuggingface_hub\n\n[:python_version < '3.9']\nimportlib_metadata\n\n"
        "[testing]\npytest\n"
    )
    truth = sdist_truth(tmp_path, "demo")
    assert set().union(*truth.core) == {"packaging", "huggingface-hub", "importlib-metadata"}
    assert set().union(*truth.full) - set().union(*truth.core) == {"pytest"}
