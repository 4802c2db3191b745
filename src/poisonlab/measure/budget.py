"""Minimum poison budget: the fewest poisoned rows that reach a target attack success rate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from poisonlab.exceptions import ParameterError


@dataclass
class BudgetResult:
    """Outcome of :func:`minimum_budget`.

    ``n_poison`` is the smallest count whose mean success over ``seeds`` reached ``target_asr``,
    or ``None`` when even ``max_poison`` did not ("not reached up to max_poison"). ``points``
    maps every count tried to the per-seed success rates.
    """

    target_asr: float
    n_poison: int | None
    max_poison: int
    seeds: tuple[int, ...]
    points: dict[int, list[float]] = field(default_factory=dict)
    accuracy: dict[int, list[float]] = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        """True where some count up to ``max_poison`` reached ``target_asr``."""
        return self.n_poison is not None

    def mean(self, n: int) -> float:
        """The mean attack success over the seeds at ``n`` poisoned rows."""
        return float(np.mean(self.points[n]))

    def describe(self) -> str:
        """One line for a table: ``"40 rows (mean success 0.93)"``, or ``"not reached up to 320"``."""
        if self.n_poison is None:
            return f"not reached up to {self.max_poison}"
        return f"{self.n_poison} rows (mean success {self.mean(self.n_poison):.2f})"

    def _point(self, n: int, asr: list[float]) -> dict[str, object]:
        point: dict[str, object] = {"n_poison": n, "asr_mean": self.mean(n), "asr": asr}
        if n in self.accuracy:
            point["accuracy_mean"] = float(np.mean(self.accuracy[n]))
        return point

    def as_dict(self) -> dict[str, object]:
        """The result as a JSON-ready dict, with one point per count tried (mean and per-seed success, and
        mean clean accuracy where it was measured).
        """
        return {
            "target_asr": self.target_asr,
            "n_poison": self.n_poison,
            "max_poison": self.max_poison,
            "reached": self.reached,
            "seeds": list(self.seeds),
            "points": [
                self._point(n, v) for n, v in sorted(self.points.items())
            ],
        }


def minimum_budget(
    evaluate: Callable[[int, int], float | tuple[float, float]],
    *,
    max_poison: int,
    target_asr: float = 0.9,
    seeds: Sequence[int] = (0, 1, 2),
    start: int = 1,
    resolution: float = 0.0,
    progress: Callable[[int, float], None] | None = None,
) -> BudgetResult:
    """Search counts for the smallest one whose mean success over ``seeds`` reaches ``target_asr``.

    ``evaluate(n_poison, seed)`` trains a model on data with ``n_poison`` poisoned rows (chosen
    with ``seed``) and returns its attack success rate, or ``(success rate, clean accuracy)``.
    The search doubles the count from ``start`` until the target is reached (or ``max_poison`` is
    tried), then bisects between the last miss and the first hit, down to one row, or to
    ``resolution`` times the count when training is expensive (``resolution=0.1`` stops within
    10%). Success is assumed to grow with the count, as it does on average; every point tried
    is kept in the result so that a non-monotone curve stays visible.
    """
    if not 0 < target_asr <= 1:
        raise ParameterError(
            f"The 'target_asr' parameter of minimum_budget must be a float in (0, 1]. "
            f"Got {target_asr!r} instead."
        )
    if max_poison < 1 or start < 1:
        raise ParameterError(
            f"minimum_budget needs max_poison >= 1 and start >= 1. Got {max_poison}, {start}."
        )
    if not seeds:
        raise ParameterError("The 'seeds' parameter of minimum_budget must name at least one seed.")
    result = BudgetResult(target_asr, None, max_poison, tuple(seeds))

    def mean_at(n: int) -> float:
        if n not in result.points:
            outcomes = [evaluate(n, s) for s in seeds]
            result.points[n] = [float(o[0] if isinstance(o, tuple) else o) for o in outcomes]
            if all(isinstance(o, tuple) for o in outcomes):
                result.accuracy[n] = [float(o[1]) for o in outcomes]  # type: ignore[index]
            if progress is not None:
                progress(n, result.mean(n))
        return result.mean(n)

    low, n = 0, min(start, max_poison)
    while mean_at(n) < target_asr:
        if n >= max_poison:
            return result
        low, n = n, min(2 * n, max_poison)
    high = n
    while high - low > max(1, int(resolution * high)):
        mid = (low + high) // 2
        if mean_at(mid) >= target_asr:
            high = mid
        else:
            low = mid
    result.n_poison = high
    return result
