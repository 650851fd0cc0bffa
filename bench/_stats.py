"""Interleaved timing and the ratio line every benchmark prints (BENCHMARKS.md §3)."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# An arm runs its contender once and returns the seconds it took. It times itself, so that
# per-run setup (a fresh cache dir, a fresh fixture copy) stays out of the figure.
Arm = Callable[[], float]


def timed(fn: Callable[[], object]) -> float:
    """Run ``fn`` once and return its wall-clock seconds."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(
    arms: Mapping[str, Arm],
    *,
    rounds: int,
    warmups: int,
    on_round: Callable[[int, Mapping[str, float]], None] | None = None,
) -> dict[str, tuple[float, ...]]:
    """Run the arms round-robin (A, B, A, B, ...) and return each arm's kept times, in order.

    Interleaving spreads slow drift (other tenants, thermal, page cache) over every contender
    instead of charging it to whichever ran in the unlucky block, which is why hyperfine's
    blocks are only a cross-check. The order rotates from round to round, so no arm always
    runs right after the same other one (and pays for what it leaves behind: a container's
    network namespace, say, is torn down asynchronously after it exits). The first ``warmups``
    rounds are run and discarded.
    """
    if rounds < 1:
        msg = f"rounds must be >= 1, got {rounds}"
        raise ValueError(msg)
    kept: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for index in range(warmups + rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        this_round = {name: arms[name]() for name in order}
        if on_round is not None:
            on_round(index - warmups, this_round)
        if index >= warmups:
            for name, seconds in this_round.items():
                kept[name].append(seconds)
    return {name: tuple(times) for name, times in kept.items()}


def median(values: Sequence[float]) -> float:
    """The median; an empty sequence is a caller bug."""
    if not values:
        msg = "median of no values"
        raise ValueError(msg)
    return float(statistics.median(values))


def pair_ratios(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
    """Per-pair ratios a[i] / b[i]; pairs come from the same round, so drift cancels."""
    if len(a) != len(b) or not a:
        msg = f"need equally many paired times, got {len(a)} and {len(b)}"
        raise ValueError(msg)
    if any(x <= 0 for x in b):
        msg = "a baseline time is not positive"
        raise ValueError(msg)
    return tuple(x / y for x, y in zip(a, b, strict=True))


def bootstrap_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap CI of the median of ``values`` (seeded, so reruns print alike)."""
    if not values:
        msg = "bootstrap of no values"
        raise ValueError(msg)
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    low = medians[int(tail * (resamples - 1))]
    high = medians[round((1.0 - tail) * (resamples - 1))]
    return float(low), float(high)


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """One benchmark line: contender A against peer B, with the goal for A / B."""

    name: str
    a_label: str
    b_label: str
    a_median: float
    b_median: float
    ratio: float  # median of the per-pair ratios, not the ratio of medians
    ci: tuple[float, float]
    pairs: int
    goal: float | None  # PASS needs the upper CI bound <= goal; None prints "info"

    @property
    def verdict(self) -> str:
        """PASS, FAIL, or info when there is no goal."""
        if self.goal is None:
            return "info"
        return "PASS" if self.ci[1] <= self.goal else "FAIL"


def compare(
    name: str,
    a_label: str,
    a: Sequence[float],
    b_label: str,
    b: Sequence[float],
    *,
    goal: float | None,
) -> Comparison:
    """Reduce paired times to a :class:`Comparison`."""
    ratios = pair_ratios(a, b)
    return Comparison(
        name=name,
        a_label=a_label,
        b_label=b_label,
        a_median=median(a),
        b_median=median(b),
        ratio=median(ratios),
        ci=bootstrap_ci(ratios),
        pairs=len(ratios),
        goal=goal,
    )


def format_seconds(seconds: float) -> str:
    """Seconds with a unit that keeps three significant figures readable."""
    if seconds < 1.0:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def format_line(c: Comparison) -> str:
    """The one output line per comparison (BENCHMARKS.md §3)."""
    goal = "goal  -   " if c.goal is None else f"goal <= {c.goal:<4g}"
    return (
        f"{c.name:<34} {c.a_label} {format_seconds(c.a_median):>9}  "
        f"{c.b_label} {format_seconds(c.b_median):>9}  "
        f"ratio {c.ratio:6.3f} [{c.ci[0]:.3f}, {c.ci[1]:.3f}] n={c.pairs:<2}  {goal}  {c.verdict}"
    )
