"""Off-policy evaluation of the case selector: decisions logged by an exploring selector (its real decisions,
as the case leg logs them) let IPS/SNIPS recover what another selector would have earned, without serving it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from apps.orchestration.src.bandit.ope import evaluate
from apps.orchestration.src.case_ope import ADMIT, SKIP, logged_decisions
from apps.search.cases.features import BASE_FEATURES, FEATURES, Candidate
from apps.search.cases.leg import log_rows
from apps.search.cases.model import CollectionModel, Logistic, SelectorParameters
from apps.search.cases.selector import Selector, Thresholds
from apps.search.cases.store import feedback_ref
from apps.search.cases.types import Ranking

PLAIN = Ranking([1, 2, 3, 4, 5], [5.0, 4.0, 3.0, 2.0, 1.0])
# p(rank 1) = 0.95, 2: 0.5, 3: 0.27 (where the candidate passage sits), 4: 0.18, 5: 0.14
MODEL = SelectorParameters(1, FEATURES, BASE_FEATURES, {"c": CollectionModel(
    Logistic((1.0,) + (0.0,) * (len(FEATURES) - 1), 0.0), {"*": Logistic((6.0,) + (0.0,) * (len(BASE_FEATURES) - 1), -3.0)}, 100)})
HERE = 1 / (1 + np.exp(3.0 - 2.0))


class Versions:
    async def latest_version(self) -> int:
        return 1


def _candidate(p: float) -> Candidate:
    features = np.zeros(len(FEATURES))
    features[0] = np.log(p / (1 - p))  # the model's probability is p; as cosine 0.x it is no near-duplicate
    return Candidate(3, 7, "c", 1.0, float(features[0]), 0.5, 0.5, features)


def _log(n: int, exploration: float, seed: int = 0) -> tuple[list[SimpleNamespace], dict[str, dict[int, float]],
                                                             np.ndarray]:
    """n requests served by a selector with margin 0.2 and the given exploration; the passage at rank 3 is
    relevant with the probability the model gives it (a calibrated model), and the feedback marks it."""
    rng = np.random.default_rng(seed)
    logger = Selector(Versions(), Thresholds(0.95, 0.8, margin=0.2), 60, exploration=exploration,  # type: ignore[arg-type]
                      rng=np.random.default_rng(seed + 1))
    logger.parameters = MODEL
    rows, marks, ps = [], {}, rng.uniform(0.05, 0.95, n)
    for i, p in enumerate(ps):
        found = [_candidate(float(p))]
        decision = logger.decide(PLAIN, found, "bm25")
        rows.append(SimpleNamespace(request_id=f"r{i}", key_id="k", strategy="bm25",
                                    candidates=log_rows(found, decision, PLAIN)))
        # Marked whether or not the cases admitted it: only an admitted passage's mark is the cases' reward.
        marks[feedback_ref("k", f"r{i}")] = {3: 1.0 if rng.random() < p else -1.0, 1: 1.0}
    return rows, marks, ps


def _value(ps: np.ndarray, margin: float) -> float:
    """What a selector with this margin earns per decision, in expectation: 2p - 1 for each admitted passage."""
    return float(np.mean(np.where(ps - margin > HERE, 2 * ps - 1, 0.0)))


@pytest.mark.parametrize("margin", [0.0, 0.2, 0.5])
def test_ips_and_snips_recover_another_margins_value_from_an_exploring_log(margin: float) -> None:
    rows, marks, ps = _log(3000, exploration=0.5)
    thresholds = Thresholds(0.95, 0.8, margin=margin)
    logged, target, counts = logged_decisions(rows, marks, MODEL, thresholds)
    assert counts == {"requests": 3000, "without_propensity": 0} and len(logged) == 3000
    # The logger: half its decisions drawn under p, so its own admits at propensity 0.5 + 0.5 p, the passages
    # it held back at 0.5 p, and some of each went the other way.
    greedy = [(item, p) for item, p in zip(logged, ps, strict=True) if p - 0.2 > HERE]
    held = [(item, p) for item, p in zip(logged, ps, strict=True) if p - 0.2 <= HERE]
    assert all(item.probabilities[ADMIT] == pytest.approx(0.5 + 0.5 * p) for item, p in greedy)
    assert all(item.probabilities[ADMIT] == pytest.approx(0.5 * p) for item, p in held)
    assert 0 < sum(item.action == ADMIT for item, _ in held) < len(held)
    assert 0 < sum(item.action == SKIP for item, _ in greedy) < len(greedy)
    assert all(item.reward == 0.0 for item in logged if item.action == SKIP)
    estimate = evaluate(logged, lambda s: {ADMIT: target[s], SKIP: 1.0 - target[s]}, bootstrap=500)
    truth = _value(ps, margin)
    for name in ("ips", "snips"):
        low, high = estimate[name]["ci95"]
        assert low - 0.01 <= truth <= high + 0.01 and abs(estimate[name]["value"] - truth) < 0.04, (name, estimate)


def test_the_estimates_rank_margins_as_their_true_values_do_and_the_rule_earns_nothing_here() -> None:
    rows, marks, ps = _log(3000, exploration=0.5)
    values = {}
    for margin in (0.0, 0.2):
        logged, target, _ = logged_decisions(rows, marks, MODEL, Thresholds(0.95, 0.8, margin=margin))
        values[margin] = evaluate(logged, lambda s, t=target: {ADMIT: t[s], SKIP: 1 - t[s]}, bootstrap=10)["snips"]
    # Margin 0 admits passages from p 0.27 up, the ones under 0.5 more often wrong than right: worth less.
    assert _value(ps, 0.0) < _value(ps, 0.2) and values[0.0]["value"] < values[0.2]["value"]
    # The rule (no model) trusts only near-duplicates: none here, so it admits nothing and earns exactly 0.
    logged, target, _ = logged_decisions(rows, marks, SelectorParameters(), Thresholds(0.95, 0.8, margin=0.2))
    assert set(target.values()) == {0.0}
    assert evaluate(logged, lambda s: {ADMIT: target[s], SKIP: 1.0}, bootstrap=10)["ips"]["value"] == 0.0


def test_without_exploration_what_the_logger_never_admitted_is_unsupported() -> None:
    rows, marks, ps = _log(500, exploration=0.0)
    logged, target, _ = logged_decisions(rows, marks, MODEL, Thresholds(0.95, 0.8, margin=0.0))
    unsupported = [i for i in logged if target[i.state] > 0 and i.probabilities[ADMIT] == 0.0]
    assert len(unsupported) == int(np.sum((ps > HERE) & (ps - 0.2 <= HERE))) > 0
    # Rows logged before propensities were are counted, not guessed at.
    old = [SimpleNamespace(**{**vars(r), "candidates": [{k: v for k, v in c.items() if k != "mu"}
                                                        for c in r.candidates]}) for r in rows[:3]]
    assert logged_decisions(old, marks, MODEL, Thresholds(0.95, 0.8))[2] == {"requests": 3, "without_propensity": 3}
