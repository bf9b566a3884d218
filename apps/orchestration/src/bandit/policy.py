"""The policy's arithmetic, free of storage: soft value, Boltzmann probabilities, draws, greedy choice."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A few equal rewards say little about the spread: the sample variance is shrunk toward a prior
# (std 0.3, about what nDCG@10 varies per query) worth PRIOR_WEIGHT observations.
PRIOR_VARIANCE = 0.09
PRIOR_WEIGHT = 10


@dataclass(frozen=True)
class ArmStats:
    q: float  # estimated reward
    q_squared: float  # estimated second moment of the reward
    updates: int  # updates applied (replays re-apply experiences)
    experiences: int  # distinct experiences behind them: what the uncertainty rests on

    @property
    def standard_error(self) -> float:
        if self.experiences < 1:
            return math.inf
        sample = max(self.q_squared - self.q * self.q, 0.0)
        variance = (self.experiences * sample + PRIOR_WEIGHT * PRIOR_VARIANCE) / (self.experiences + PRIOR_WEIGHT)
        return math.sqrt(variance / self.experiences)


def soft_value(q: Sequence[float], temperature: float) -> float:
    """V(s) = τ · log Σ exp(Q(s,a)/τ), computed stably."""
    top = max(q)
    return top + temperature * math.log(sum(math.exp((x - top) / temperature) for x in q))


def temperature(visits: int, start: float, floor: float, halflife: int) -> float:
    """Halves every `halflife` visits of the state, never below `floor`."""
    return max(floor, start * 0.5 ** (visits / halflife))


def boltzmann(q: Sequence[float], tau: float, floor: float) -> list[float]:
    """π(a|s) = (1 - floor) · softmax(Q/τ) + floor / |A|: every arm keeps at least floor/|A|."""
    if tau <= 1e-9:
        best = max(q)
        winners = [i for i, x in enumerate(q) if x == best]
        soft = [1.0 / len(winners) if i in winners else 0.0 for i in range(len(q))]
    else:
        top = max(q)
        weights = [math.exp((x - top) / tau) for x in q]
        total = sum(weights)
        soft = [w / total for w in weights]
    k = len(q)
    return [(1 - floor) * p + floor / k for p in soft]


def draw(probabilities: Sequence[float], u: float) -> int:
    """The arm whose cumulative-probability interval holds u ∈ [0, 1)."""
    cumulative = 0.0
    for i, p in enumerate(probabilities):
        cumulative += p
        if u < cumulative:
            return i
    return len(probabilities) - 1


def conservative_greedy(stats: Sequence[ArmStats | None], baseline: int | None, z: float) -> int:
    """Argmax Q, but leave the baseline arm only for an arm ahead of it by z standard errors.

    Per-query rewards vary far more than arms differ, so plain argmax on a few dozen samples often
    prefers a worse arm by chance; the baseline is the benchmarked best fixed strategy.
    """
    known = [(i, s) for i, s in enumerate(stats) if s is not None and s.updates > 0]
    if not known:
        return baseline if baseline is not None else 0
    best, best_stats = max(known, key=lambda kv: (kv[1].q, -kv[0]))
    if baseline is None or best == baseline:
        return best
    base = stats[baseline]
    if base is None or base.experiences == 0:
        return baseline  # the default was never tried here: nothing shows anything beats it
    margin = z * math.sqrt(best_stats.standard_error**2 + base.standard_error**2)
    return best if best_stats.q - base.q > margin else baseline
