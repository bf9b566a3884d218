"""The selector's model: a logistic regression over a (query, case, passage) feature vector, and one over
the plain ranking's positions (how likely the passage at each is relevant). Both are fitted per collection
from the case bank's own outcomes; before a collection has enough, a fixed conservative rule stands in.

The regression is fitted by Newton's method (iteratively reweighted least squares) with an L2 penalty
on standardised features: a dozen features and a few thousand rows converge in a few steps, the result is
deterministic, and serving it is one dot product per candidate. (scikit-learn's LogisticRegression
computes the same optimum; it is not worth a 40 MB dependency and a second of import per worker here.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, max_steps: int = 50) -> tuple[np.ndarray, float]:
    """(coefficients, intercept) on the features as given, maximising the L2-penalised likelihood (the
    intercept unpenalised)."""
    n, d = x.shape
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([np.ones((n, 1)), (x - mean) / scale])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[0] = 0.0
    for _ in range(max_steps):
        p = sigmoid(z @ w)
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    coefficients = w[1:] / scale
    return coefficients, float(w[0] - coefficients @ mean)


@dataclass(frozen=True)
class Logistic:
    coefficients: tuple[float, ...]
    intercept: float

    def probability(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x @ np.asarray(self.coefficients) + self.intercept)

    def to_json(self) -> dict[str, Any]:
        return {"coefficients": [round(c, 6) for c in self.coefficients], "intercept": round(self.intercept, 6)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Logistic:
        return cls(tuple(float(c) for c in data["coefficients"]), float(data["intercept"]))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> Logistic:
        coefficients, intercept = fit_logistic(x, y, l2)
        return cls(tuple(float(c) for c in coefficients), intercept)


@dataclass(frozen=True)
class CollectionModel:
    """What was learned for one collection: the selector's regression, and per strategy one that says how
    likely the plain ranking's passage at each position is relevant (`"*"`: every strategy pooled)."""

    selector: Logistic | None  # None: too few outcomes yet, the fixed rule decides
    base: dict[str, Logistic]
    examples: int

    def base_for(self, strategy: str) -> Logistic | None:
        return self.base.get(strategy) or self.base.get("*")

    def to_json(self) -> dict[str, Any]:
        return {"selector": self.selector.to_json() if self.selector else None,
                "base": {k: m.to_json() for k, m in self.base.items()}, "examples": self.examples}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionModel:
        return cls(Logistic.from_json(data["selector"]) if data.get("selector") else None,
                   {k: Logistic.from_json(m) for k, m in data.get("base", {}).items()}, int(data.get("examples", 0)))


@dataclass(frozen=True)
class SelectorParameters:
    """One version of the selector: a model per collection that had enough outcomes (others: the rule)."""

    version: int = 0
    features: tuple[str, ...] = ()
    base_features: tuple[str, ...] = ()
    collections: dict[str, CollectionModel] = field(default_factory=dict)

    def model_for(self, collection: str, features: tuple[str, ...],
                  base_features: tuple[str, ...]) -> CollectionModel | None:
        """The collection's model, if it was fitted on these features (a version fitted on others is not
        read by code that computes different ones: the rule stands in until the next batch update)."""
        if (self.features, self.base_features) != (features, base_features):
            return None
        return self.collections.get(collection)

    def to_json(self) -> dict[str, Any]:
        return {"features": list(self.features), "base_features": list(self.base_features),
                "collections": {k: m.to_json() for k, m in self.collections.items()}}

    @classmethod
    def from_json(cls, version: int, data: dict[str, Any]) -> SelectorParameters:
        return cls(version, tuple(data.get("features", ())), tuple(data.get("base_features", ())),
                   {k: CollectionModel.from_json(m) for k, m in (data.get("collections") or {}).items()})
