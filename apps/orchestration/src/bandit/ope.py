"""Off-policy evaluation from the decision log: what would a candidate policy have earned?

For logged (s, a, r, μ(·|s)) and a target π(·|s), with weights w = π(a|s)/μ(a|s):
- IPS:   mean(w·r) — unbiased when μ > 0 wherever π > 0, high variance;
- SNIPS: Σ w·r / Σ w — self-normalised, slightly biased, much steadier;
- DR:    mean(Σ_a π(a|s)·q̂(s,a) + w·(r − q̂(s,a))) — a reward model q̂ (the Q-table) corrected by IPS.
Intervals are percentile bootstraps over logged decisions; the effective sample size (Σw)²/Σw²
says how many logged decisions the estimate is really worth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from apps.orchestration.src.bandit.decision_log import DecisionLog
    from apps.orchestration.src.bandit.soft_q import SoftQLearning

POLICIES = ("greedy", "current")


@dataclass(frozen=True)
class Logged:
    state: str
    action: str
    reward: float
    probabilities: dict[str, float]


Policy = Callable[[str], dict[str, float]]  # state → π(·|state)
RewardModel = Callable[[str, str], float]  # (state, action) → q̂


def _components(logged: Sequence[Logged], target: Policy, model: RewardModel | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.empty(len(logged))
    r = np.empty(len(logged))
    dr = np.empty(len(logged))
    for i, item in enumerate(logged):
        pi = target(item.state)
        mu = item.probabilities.get(item.action, 0.0)
        w[i] = pi.get(item.action, 0.0) / mu if mu > 0 else 0.0
        r[i] = item.reward
        if model is None:
            dr[i] = w[i] * r[i]
        else:
            direct = sum(p * model(item.state, a) for a, p in pi.items())
            dr[i] = direct + w[i] * (r[i] - model(item.state, item.action))
    return w, r, dr


def _estimates(w: np.ndarray, r: np.ndarray, dr: np.ndarray) -> dict[str, float]:
    total = w.sum()
    return {"ips": float(np.mean(w * r)), "snips": float((w * r).sum() / total) if total > 0 else float("nan"),
            "dr": float(np.mean(dr))}


def evaluate(logged: Sequence[Logged], target: Policy, model: RewardModel | None = None,
             bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    if not logged:
        return {"n": 0, "ess": 0.0}
    w, r, dr = _components(logged, target, model)
    point = _estimates(w, r, dr)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    n = len(logged)
    for _ in range(bootstrap):
        idx = rng.integers(0, n, n)
        for k, v in _estimates(w[idx], r[idx], dr[idx]).items():
            samples[k].append(v)
    result: dict[str, Any] = {"n": n, "ess": round(float(w.sum() ** 2 / (w * w).sum()) if (w * w).sum() else 0.0, 1),
                              "logged_mean_reward": round(float(r.mean()), 4)}
    for k, v in point.items():
        defined = [x for x in samples[k] if not np.isnan(x)]  # SNIPS has none when no resample has weight
        lo, hi = np.percentile(defined, [2.5, 97.5]) if defined else (float("nan"), float("nan"))
        result[k] = {"value": round(v, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
    return result


def greedy_policy(choose: Callable[[str], str], arms: Sequence[str]) -> Policy:
    return lambda state: {a: 1.0 if a == choose(state) else 0.0 for a in arms}


async def evaluate_log(decisions: DecisionLog, learner: SoftQLearning, policy: str = "greedy",
                       since: datetime | None = None) -> dict[str, Any]:
    """The value of `policy` (greedy: the learner's greedy choice; current: its Boltzmann policy) on
    the rewarded decisions since `since`, with the Q-table as DR's reward model: `dtrag bandit ope`
    and the dashboard's estimate."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    logged = [Logged(r.state, r.action, float(r.reward), dict(r.probabilities))
              async for r in decisions.rewarded(since=since)]
    arms = learner.arms
    target = (greedy_policy(learner.greedy, arms) if policy == "greedy"
              else lambda s: dict(zip(arms, learner.probabilities(s))))
    # The bootstrap resamples the whole log: CPU, off the event loop.
    estimate = await asyncio.to_thread(evaluate, logged, target,
                                       model=lambda s, a: learner.get_q_values(s)[arms.index(a)])
    return {"policy": policy, **estimate}
