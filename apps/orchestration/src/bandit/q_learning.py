"""The runbooks' door to the learner: `get_q_learning()` is the process's Soft Q-learner on the
configured database (what the operators' one-line scripts inspect). The learner itself is `soft_q`."""

from __future__ import annotations

from apps.orchestration.src.bandit.soft_q import DEFAULT_ARMS, SoftQLearning
from apps.runtime import get_runtime

__all__ = ["DEFAULT_ARMS", "SoftQLearning", "get_q_learning"]


def get_q_learning() -> SoftQLearning:
    return get_runtime().bandit.learner
