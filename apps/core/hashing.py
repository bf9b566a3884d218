"""Stable hashing for bucketing and seeded draws: MurmurHash3 (x86, 32-bit), never Python's salted `hash()`.

The input is `"{group}:{key}"` and the value is `hash % normalizer + 1`, as in Unleash's
`normalizedValue`, so another SDK computes the same bucket from the same strings and seed. Each use
has its own seed so that being in a rollout says nothing about a variant or an exploration draw.
"""

from __future__ import annotations

import mmh3

ROLLOUT_SEED = 0  # Unleash's strategy seed
VARIANT_SEED = 86028157  # Unleash's variant seed
EXPLORATION_SEED = 0x5EED_BA1D  # the bandit's exploration draws
BUCKETS = 10_000  # 0.01 % granularity


def normalized_value(key: str, group: str, normalizer: int = BUCKETS, seed: int = ROLLOUT_SEED) -> int:
    """1..normalizer, stable across processes, hosts and languages."""
    return mmh3.hash(f"{group}:{key}", seed, signed=False) % normalizer + 1


def unit_draw(key: str, group: str, seed: int = EXPLORATION_SEED) -> float:
    """A reproducible uniform draw in [0, 1) from a key (e.g. a request id)."""
    return mmh3.hash(f"{group}:{key}", seed, signed=False) / 2**32
