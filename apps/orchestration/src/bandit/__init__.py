"""Soft Q-learning contextual bandit over retrieval strategies: state, policy, learner, replay, log, OPE."""
