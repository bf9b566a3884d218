"""The case selector without a database: the regression it fits, the bank's neighbour search, and how a
decision reorders a ranking (the rule before a model, the model after, irrelevant marks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.bench.case_ceilings import cross_fitted
from apps.search.cases.bank import CollectionIndex
from apps.search.cases.features import BASE_FEATURES, FEATURES, Candidate, base_features, candidates
from apps.search.cases.model import CollectionModel, Logistic, SelectorParameters, fit_logistic, sigmoid
from apps.search.cases.selector import Selector, Thresholds
from apps.search.cases.types import BankCase, Neighbour, Passage, Ranking

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def unit(*values: float) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def case(case_id: int, query: str, vector: np.ndarray, passages: list[Passage], collection: str = "c") -> BankCase:
    return BankCase(case_id, collection, query, "bm25", vector, 1.0, NOW, NOW, tuple(passages),
                    frozenset(query.lower().split()))


def test_the_fit_is_the_penalised_optimum_and_separates() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x @ np.array([2.0, -1.0, 0.0]) + 0.5 + rng.normal(scale=0.5, size=400) > 0).astype(float)
    coefficients, intercept = fit_logistic(x, y, l2=1.0)
    # Stationary: the penalised gradient (on standardised features, as fitted) vanishes.
    mean, scale = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / scale
    w = coefficients * scale
    b = intercept + coefficients @ mean
    p = sigmoid(z @ w + b)
    assert np.allclose(z.T @ (p - y) + w, 0, atol=1e-6) and abs(np.sum(p - y)) < 1e-6
    assert coefficients[0] > 1 and coefficients[1] < -0.5 and abs(coefficients[2]) < 0.3
    assert ((sigmoid(x @ coefficients + intercept) > 0.5) == y).mean() > 0.85
    # A constant feature gets no weight, and the fit still converges.
    flat = np.hstack([x, np.ones((400, 1))])
    assert abs(fit_logistic(flat, y)[0][3]) < 1e-9


def test_parameters_survive_json_and_a_version_on_other_features_is_not_read() -> None:
    model = CollectionModel(Logistic((0.5,) * len(FEATURES), -1.0), {"*": Logistic((1.0,) * len(BASE_FEATURES), 0.0)},
                            7)
    parameters = SelectorParameters(3, FEATURES, BASE_FEATURES, {"c": model})
    again = SelectorParameters.from_json(3, parameters.to_json())
    assert again == parameters and again.model_for("c", FEATURES, BASE_FEATURES) == model
    assert again.model_for("c", FEATURES[:-1], BASE_FEATURES) is None
    assert again.model_for("d", FEATURES, BASE_FEATURES) is None
    assert model.base_for("hybrid_cc") is model.base["*"]


def test_the_bank_finds_close_questions_by_terms_then_vector() -> None:
    index = CollectionIndex("c", [
        case(1, "who built the eiffel tower", unit(1, 0, 0), [Passage(10, 1.0, None)]),
        case(2, "eiffel tower height", unit(0.9, 0.1, 0), [Passage(11, 1.0, None)]),
        case(3, "vitamin d deficiency", unit(0, 1, 0), [Passage(12, 1.0, None)]),
    ])
    share_query, share_case = index.lexical(["who", "built", "the", "eiffel", "tower"])
    assert share_query[0] == pytest.approx(1.0) and share_case[0] == pytest.approx(1.0)
    assert 0 < share_query[1] < 1 and share_query[2] == 0
    terms = ["who", "built", "eiffel", "tower"]
    found, plausible = index.neighbours(terms, None, 5, 0.5, 0.2)
    assert found == [] and plausible  # without a vector: only whether any shares enough terms
    found, _ = index.neighbours(terms, unit(1, 0.05, 0), 5, 0.5, 0.2)
    assert [n.case.id for n in found] == [1, 2] and found[0].cosine > found[1].cosine
    assert [n.case.id for n in index.neighbours(terms, unit(1, 0.05, 0), 5, 0.5, 0.2, exclude=0)[0]] == [2]
    assert index.neighbours(["unrelated"], unit(1, 0, 0), 5, 0.5, 0.2) == ([], False)
    assert index.relevant_counts[10] == 1


def ranking(*order: int) -> Ranking:
    return Ranking(list(order), [float(len(order) - i) for i in range(len(order))], {"bm25": {c: i + 1 for i, c in
                                                                                          enumerate(order)}})


def candidate(chunk_id: int, judgement: float, cosine: float, lexical: float, case_id: int = 1) -> Candidate:
    return Candidate(chunk_id, case_id, "c", judgement, cosine, lexical, lexical, np.zeros(len(FEATURES)))


class Versions:
    async def latest_version(self) -> int:
        return 0


def selector() -> Selector:
    return Selector(Versions(), Thresholds(0.95, 0.8), refresh_s=60)  # type: ignore[arg-type]


def test_the_rule_moves_only_a_near_duplicates_passages_and_drops_its_irrelevant_ones() -> None:
    s = selector()
    plain = ranking(1, 2, 3, 4)
    decision = s.decide(plain, [candidate(3, 1.0, 0.97, 0.9)], "bm25")
    assert decision.rule and decision.order == [3, 1, 2, 4] and decision.hits[3].rank == 1
    # Close but not a near-duplicate: nothing moves.
    assert s.decide(plain, [candidate(3, 1.0, 0.9, 0.9)], "bm25").order == [1, 2, 3, 4]
    # A passage the ranking did not have comes in at the top.
    assert s.decide(plain, [candidate(9, 1.0, 0.99, 1.0)], "bm25").order == [9, 1, 2, 3, 4]
    # Irrelevant, from a near-duplicate: to the end; unless a case as close says relevant.
    assert s.decide(plain, [candidate(1, -1.0, 0.97, 0.9)], "bm25").order == [2, 3, 4, 1]
    mixed = s.decide(plain, [candidate(1, -1.0, 0.96, 0.9), candidate(1, 1.0, 0.98, 0.9, case_id=2)], "bm25")
    assert mixed.order == [1, 2, 3, 4] and mixed.dropped == []


def first_feature_model() -> SelectorParameters:
    """A selector whose probability is the sigmoid of the first feature, over a position prior in which
    1 / rank weighs in: p(rank 1) = 0.95, 2: 0.5, 3: 0.27, 4: 0.18, 5: 0.14."""
    base = Logistic((6.0,) + (0.0,) * (len(BASE_FEATURES) - 1), -3.0)
    weights = (1.0,) + (0.0,) * (len(FEATURES) - 1)
    return SelectorParameters(1, FEATURES, BASE_FEATURES, {"c": CollectionModel(Logistic(weights, 0.0), {"*": base},
                                                                                 100)})


def with_p(chunk_id: int, p: float) -> Candidate:
    """A passage a close case judged relevant, to which `first_feature_model` gives probability p."""
    features = np.zeros(len(FEATURES))
    features[0] = np.log(p / (1 - p))
    return Candidate(chunk_id, 1, "c", 1.0, 0.9, 0.5, 0.5, features)


def test_a_model_moves_a_passage_to_the_first_place_less_likely_than_it() -> None:
    s = selector()
    s.parameters = first_feature_model()

    plain = ranking(1, 2, 3, 4, 5)
    assert s.decide(plain, [with_p(4, 0.6)], "bm25").order == [1, 4, 2, 3, 5]
    assert s.decide(plain, [with_p(4, 0.99)], "bm25").order == [4, 1, 2, 3, 5]
    unmoved = s.decide(plain, [with_p(4, 0.01)], "bm25")
    assert unmoved.order == [1, 2, 3, 4, 5] and unmoved.hits == {} and not unmoved.rule
    # With a margin the selector must beat a position by that much: 0.6 - 0.2 passes rank 3 (0.27), not 2 (0.5).
    s.thresholds = Thresholds(0.95, 0.8, margin=0.2)
    assert s.decide(plain, [with_p(4, 0.6)], "bm25").order == [1, 2, 4, 3, 5]


def test_features_leave_a_past_questions_own_judgements_out() -> None:
    own = case(1, "who built the eiffel tower", unit(1, 0, 0), [Passage(10, 1.0, 1)])
    other = case(2, "who built eiffel tower", unit(1, 0.1, 0), [Passage(10, 1.0, 2), Passage(11, -1.0, 1)])
    index = CollectionIndex("c", [own, other])
    neighbour = Neighbour(other, 0.99, 0.8, 0.9, 0)
    found = candidates([neighbour], ranking(11, 10), {"c": index}, NOW, own=own)
    assert [(c.chunk_id, c.judgement) for c in found] == [(10, 1.0), (11, -1.0)]
    row = dict(zip(FEATURES, found[0].features))
    assert row["times_relevant"] == 0.0  # the neighbour's own mark and the replayed question's are left out
    assert row["rank"] == 0.5 and row["case_rank"] == 0.5 and row["same_top"] == 1.0 and row["is_top"] == 0.0
    assert base_features(ranking(1, 2, 3))[:, 0].tolist() == [1.0, 0.5, pytest.approx(1 / 3)]


def test_a_cases_age_counts_in_whole_days_and_the_position_model_sees_the_legs() -> None:
    """Seconds of age are the order of an import: a model that read them would drift while it serves."""
    other = case(2, "who built eiffel tower", unit(1, 0.1, 0), [Passage(10, 1.0, 2)])
    index = CollectionIndex("c", [other])
    neighbour = Neighbour(other, 0.99, 0.8, 0.9, 0)

    def age_feature(now: datetime) -> float:
        found = candidates([neighbour], ranking(11, 10), {"c": index}, now)
        return float(dict(zip(FEATURES, found[0].features))["age_days"])

    assert age_feature(NOW) == age_feature(NOW + timedelta(hours=23)) == 0.0
    assert age_feature(NOW + timedelta(days=3, hours=5)) == pytest.approx(np.log1p(3))
    both = Ranking([1, 2, 3], [3.0, 2.0, 1.0], {"bm25": {1: 2, 2: 1}, "dense": {1: 1, 3: 4}})
    columns = dict(zip(BASE_FEATURES, base_features(both).T.tolist()))
    assert columns["bm25"] == [0.5, 1.0, 0.0] and columns["dense"] == [1.0, 0.0, 0.25]


class Draws:
    """An rng whose draws are given (and which fails when asked for more than it was given)."""

    def __init__(self, *draws: float) -> None:
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def test_exploration_draws_some_decisions_with_the_selectors_probability_and_logs_the_propensity() -> None:
    model = first_feature_model()
    plain = ranking(1, 2, 3, 4, 5)
    # Each decision is a draw with probability 0.2: the first number says whether, the second admits under p.
    s = Selector(Versions(), Thresholds(0.95, 0.8, margin=0.05), refresh_s=60, exploration=0.2,  # type: ignore[arg-type]
                 rng=Draws(0.1, 0.05))  # type: ignore[arg-type]
    s.parameters = model
    # Held back (0.1 - 0.05 is under rank 4's 0.18), drawn, admitted: one place up.
    explored = s.decide(plain, [with_p(4, 0.1)], "bm25")
    assert explored.order == [1, 2, 4, 3, 5] and list(explored.hits) == [4] and explored.hits[4].case_ids == [1]
    assert explored.propensities == {4: pytest.approx(0.2 * 0.1)} and explored.base[4] == pytest.approx(sigmoid(-1.5))
    # Not drawn: the greedy ranking, the propensity logged all the same.
    s.rng = Draws(0.5)  # type: ignore[assignment]
    kept = s.decide(plain, [with_p(4, 0.1)], "bm25")
    assert kept.order == plain.order and kept.hits == {} and kept.propensities == {4: pytest.approx(0.02)}
    # One the selector admits: kept unless a draw says otherwise.
    s.rng = Draws(0.5)  # type: ignore[assignment]
    admitted = s.decide(plain, [with_p(4, 0.9)], "bm25")
    assert admitted.order == [1, 4, 2, 3, 5] and admitted.propensities == {4: pytest.approx(0.8 + 0.2 * 0.9)}
    s.rng = Draws(0.1, 0.95)  # type: ignore[assignment]
    assert s.decide(plain, [with_p(4, 0.9)], "bm25").order == plain.order
    # The top has nowhere to go: no draw (Draws() has none to give); a passage the plain ranking lacks explores
    # in just above its last.
    s.rng = Draws()  # type: ignore[assignment]
    assert s.decide(plain, [with_p(1, 0.5)], "bm25").propensities == {1: 0.0}
    s.rng = Draws(0.0, 0.0)  # type: ignore[assignment]
    absent = s.decide(plain, [with_p(9, 0.04)], "bm25")
    assert absent.order == [1, 2, 3, 4, 9, 5] and absent.propensities == {9: pytest.approx(0.2 * 0.04)}
    # The rule never explores: a passage it holds back has propensity 0 and stays.
    s.parameters = SelectorParameters()
    s.rng = Draws()  # type: ignore[assignment]
    ruled = s.decide(plain, [with_p(4, 0.9)], "bm25")
    assert ruled.rule and ruled.order == plain.order and ruled.propensities == {4: 0.0}


def test_fitted_in_hindsight_the_selector_follows_what_the_test_questions_own_outcomes_teach() -> None:
    """`dtrag bench cases`'s hindsight: each question is decided by a model fitted on the other folds'."""
    s = selector()
    s.parameters = first_feature_model()
    plain = ranking(1, 2, 3, 4, 5)
    truth = {f"q{i}": 3 if i % 2 else 4 for i in range(100)}

    def found(qid: str) -> list[Candidate]:
        # Close cases propose 3 and 4 to every question; the second feature says which one is its own.
        out = []
        for chunk_id in (3, 4):
            features = np.zeros(len(FEATURES))
            features[1] = float(chunk_id == truth[qid])
            out.append(Candidate(chunk_id, chunk_id, "c", 1.0, 0.9, 0.5, 0.5, features))
        return out

    inputs = {qid: (plain, found(qid)) for qid in truth}
    orders = cross_fitted(inputs, lambda qid, cid: cid == truth[qid], s, "c", "bm25")
    assert orders is not None and all(orders[qid][0] == truth[qid] for qid in truth)
    # No relevant passage among the candidates: nothing to fit.
    assert cross_fitted(inputs, lambda qid, cid: False, s, "c", "bm25") is None
