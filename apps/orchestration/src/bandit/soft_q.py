"""Soft Q-learning over retrieval strategies, with the Q-table in the database shared by all workers.

Q(s, a) moves toward the target r + γ·V(s') with V(s) = τ·log Σ exp(Q(s,·)/τ) (γ = 0 by default:
a request is one step). Each update is one atomic upsert computed by the database from the stored
value, so concurrent learners in any number of processes lose no update. The step size is 1/n
until it reaches α (a sample mean first, then an exponential average that can follow drift).

Reads go through a snapshot refreshed at most every `refresh_s`: selecting an arm costs no query.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.hashing import unit_draw
from apps.core.models import BanditPolicy, QValue, ReplayExperience, utcnow
from apps.orchestration.src.bandit import policy as pol
from apps.orchestration.src.bandit.replay import Experience, ReplayBuffer
from apps.orchestration.src.bandit.storage import EngineHolder

DEFAULT_ARMS = ("bm25", "dense", "hybrid_rrf", "hybrid_cc")

_UPDATE_SQL = text("""
INSERT INTO q_values (policy, state, action, q, q_squared, updates, experiences, updated_at)
VALUES (:policy, :state, :action, CAST(:target AS float8), CAST(:target2 AS float8), 1, :fresh, :now)
ON CONFLICT (policy, state, action) DO UPDATE SET
    q = q_values.q + (CASE WHEN CAST(1 AS float8) / (q_values.updates + 1) > CAST(:alpha AS float8)
                      THEN CAST(1 AS float8) / (q_values.updates + 1) ELSE CAST(:alpha AS float8) END)
                     * (excluded.q - q_values.q),
    q_squared = q_values.q_squared
                + (CASE WHEN CAST(1 AS float8) / (q_values.updates + 1) > CAST(:alpha AS float8)
                   THEN CAST(1 AS float8) / (q_values.updates + 1) ELSE CAST(:alpha AS float8) END)
                  * (excluded.q_squared - q_values.q_squared),
    updates = q_values.updates + 1,
    experiences = q_values.experiences + excluded.experiences,
    updated_at = excluded.updated_at
""")

_BUMP_SQL = text("""
INSERT INTO bandit_policies (name, version, learned_through, batches, updated_at)
VALUES (:policy, 1, :through, 1, :now)
ON CONFLICT (name) DO UPDATE SET
    version = bandit_policies.version + 1,
    batches = bandit_policies.batches + 1,
    learned_through = CASE WHEN excluded.learned_through > bandit_policies.learned_through
                      THEN excluded.learned_through ELSE bandit_policies.learned_through END,
    updated_at = excluded.updated_at
""")


@dataclass
class Snapshot:
    stats: dict[str, dict[str, pol.ArmStats]] = field(default_factory=dict)
    version: int = 0
    loaded_at: float = -1e18
    priors: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Each arm's mean Q over all states, weighted by evidence: the arm's estimate in a new state.
        sums: dict[str, list[float]] = {}
        for arms in self.stats.values():
            for arm, s in arms.items():
                acc = sums.setdefault(arm, [0.0, 0.0])
                acc[0] += s.q * s.experiences
                acc[1] += s.experiences
        self.priors = {arm: total / m for arm, (total, m) in sums.items() if m > 0}


class SoftQLearning(EngineHolder):
    def __init__(
        self,
        alpha: float = 0.005,
        gamma: float = 0.0,
        temperature: float = 0.1,
        *,
        arms: Sequence[str] = DEFAULT_ARMS,
        baseline: str | None = "hybrid_cc",
        min_temperature: float = 0.01,
        temperature_halflife: int = 200,
        probability_floor: float = 0.1,
        safety_z: float = 2.0,
        policy: str = "default",
        refresh_s: float = 1.0,
        engine: AsyncEngine,
    ) -> None:
        super().__init__(engine)
        if not arms:
            raise ValueError("at least one arm is needed")
        self.alpha, self.gamma, self.temperature = alpha, gamma, temperature
        self.arms = tuple(arms)
        self.baseline = baseline if baseline in self.arms else None
        self.min_temperature = min(min_temperature, temperature)
        self.temperature_halflife = temperature_halflife
        self.probability_floor = probability_floor
        self.safety_z = safety_z
        self.policy = policy
        self.refresh_s = refresh_s
        self._snapshot = Snapshot()

    @classmethod
    def from_settings(cls, settings, engine: AsyncEngine, arms: Sequence[str] | None = None,
                      ) -> SoftQLearning:
        return cls(settings.bandit_alpha, settings.bandit_gamma, settings.bandit_temperature,
                   arms=arms or settings.arms, baseline=settings.default_strategy,
                   min_temperature=settings.bandit_min_temperature,
                   temperature_halflife=settings.bandit_temperature_halflife,
                   probability_floor=settings.bandit_probability_floor, safety_z=settings.bandit_safety_z,
                   refresh_s=settings.bandit_policy_refresh_s, engine=engine)

    # --- reading ----------------------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> Snapshot:
        if not force and time.monotonic() - self._snapshot.loaded_at < self.refresh_s:
            return self._snapshot
        async with self.engine.connect() as conn:
            self._snapshot = await self._load(conn)
        return self._snapshot

    async def _load(self, conn: AsyncConnection) -> Snapshot:
        rows = await conn.execute(select(QValue.state, QValue.action, QValue.q, QValue.q_squared, QValue.updates,
                                         QValue.experiences).where(QValue.policy == self.policy))
        stats: dict[str, dict[str, pol.ArmStats]] = {}
        for state, action, q, q_squared, updates, experiences in rows:
            stats.setdefault(state, {})[action] = pol.ArmStats(float(q), float(q_squared), int(updates),
                                                               int(experiences))
        version = (await conn.execute(select(BanditPolicy.version).where(BanditPolicy.name == self.policy))
                   ).scalar_one_or_none()
        return Snapshot(stats, int(version or 0), time.monotonic())

    def _current(self, max_age_s: float | None = None) -> Snapshot:
        """The snapshot, read synchronously if none was loaded yet (or it is older than max_age_s).
        Serving code awaits `refresh()` first, so it never blocks here."""
        age = time.monotonic() - self._snapshot.loaded_at
        if self._snapshot.loaded_at < 0 or (max_age_s is not None and age > max_age_s):
            self._snapshot = self.read_blocking(self._load)
        return self._snapshot

    @property
    def version(self) -> int:
        return self._current().version

    @property
    def q_table(self) -> dict[str, list[float]]:
        """state → learned Q-values in arm order; 0.0 where an arm has no update in that state yet
        (selection fills those from the arm's prior, see `get_q_values`)."""
        snapshot = self._current(max_age_s=self.refresh_s)
        return {state: [s.q if s is not None else 0.0 for s in self.stats(state)] for state in sorted(snapshot.stats)}

    def stats(self, state: str) -> list[pol.ArmStats | None]:
        seen = self._current().stats.get(state, {})
        return [seen.get(arm) for arm in self.arms]

    def _pooled(self, state: str) -> list[pol.ArmStats | None]:
        """Per-state estimates shrunk toward the arm's prior by PRIOR_WEIGHT pseudo-experiences.

        A state sees an arm only a few times at first; a few unlucky rewards would otherwise sink the
        arm there, the Boltzmann policy would stop trying it, and the estimate would never recover.
        """
        priors = self._current().priors
        pooled: list[pol.ArmStats | None] = []
        for arm, s in zip(self.arms, self.stats(state)):
            prior = priors.get(arm)
            if s is None or prior is None:
                pooled.append(s)
                continue
            w = s.experiences / (s.experiences + pol.PRIOR_WEIGHT)
            q = w * s.q + (1 - w) * prior
            # Move the second moment with the mean so the spread (and standard error) stays the state's own.
            pooled.append(pol.ArmStats(q, s.q_squared - s.q * s.q + q * q, s.updates, s.experiences))
        return pooled

    def get_q_values(self, state: str) -> list[float]:
        """Q-values used for choosing: pooled estimates, the arm's prior where it has none (0.0 before any)."""
        priors = self._current().priors
        return [s.q if s is not None else priors.get(arm, 0.0) for arm, s in zip(self.arms, self._pooled(state))]

    def visits(self, state: str) -> int:
        return sum(s.updates for s in self.stats(state) if s is not None)

    def state_temperature(self, state: str) -> float:
        return pol.temperature(self.visits(state), self.temperature, self.min_temperature,
                               self.temperature_halflife)

    def soft_value(self, state: str) -> float:
        return pol.soft_value(self.get_q_values(state), self.state_temperature(state))

    def probabilities(self, state: str) -> list[float]:
        return pol.boltzmann(self.get_q_values(state), self.state_temperature(state), self.probability_floor)

    def select(self, state: str, request_id: str) -> tuple[str, list[float]]:
        """Draw an arm from π(·|s); the draw is seeded by the request id, so replaying a log reproduces it."""
        probabilities = self.probabilities(state)
        return self.arms[pol.draw(probabilities, unit_draw(request_id, "bandit"))], probabilities

    def greedy(self, state: str) -> str:
        baseline = self.arms.index(self.baseline) if self.baseline else None
        return self.arms[pol.conservative_greedy(self._pooled(state), baseline, self.safety_z)]

    # --- learning ---------------------------------------------------------------------------------

    @staticmethod
    def calculate_reward(confidence: float, latency: float, latency_cost: float = 0.0) -> float:
        """Reward = quality signal in [-1, 1] minus the latency cost per millisecond."""
        return float(confidence) - latency_cost * float(latency)

    def arm(self, action: str | int) -> str:
        """An arm by name or by its index in `arms` (the original API took indices)."""
        if isinstance(action, int) and not isinstance(action, bool):
            if not 0 <= action < len(self.arms):
                raise ValueError(f"arm index {action} is out of range 0..{len(self.arms) - 1}")
            return self.arms[action]
        if action not in self.arms:
            raise ValueError(f"unknown arm {action!r}; arms are {', '.join(self.arms)}")
        return action

    def update_q_value(self, state: str, action: str | int, reward: float, next_state: str | None = None) -> None:
        """One update from synchronous code (the original API), written to the shared Q-table at once."""
        arm = self.arm(action)

        async def work(engine: AsyncEngine) -> None:
            async with write_transaction(engine) as conn:
                await self.update(state, arm, reward, next_state, conn=conn)

        self.run_blocking(work)
        self._snapshot.loaded_at = -1e18  # read the new value on next use

    async def update(self, state: str, action: str, reward: float, next_state: str | None = None,
                     conn: AsyncConnection | None = None) -> None:
        """One update toward reward + γ·V(next_state), in `conn`'s transaction when given."""
        target = reward + (self.gamma * self.soft_value(next_state) if self.gamma and next_state else 0.0)
        params = dict(policy=self.policy, state=state, action=action, target=target, target2=target * target,
                      alpha=self.alpha, fresh=1, now=utcnow())
        if conn is not None:
            await conn.execute(_UPDATE_SQL, params)
            return
        async with write_transaction(self.engine) as own:
            await own.execute(_UPDATE_SQL, params)

    async def apply(self, experiences: Sequence[Experience]) -> None:
        """One transaction: every experience's update, then a new policy version."""
        known = [e for e in experiences if e.action in self.arms]  # removed arms teach nothing
        if not known:
            return
        async with write_transaction(self.engine) as conn:
            now = utcnow()
            ids = [e.id for e in known if e.id is not None]
            # Claimed once, whoever claims first: concurrent learners never count an experience twice.
            fresh = set((await conn.execute(
                update(ReplayExperience).where(ReplayExperience.id.in_(ids), ReplayExperience.applied.is_(False))
                .values(applied=True).returning(ReplayExperience.id)
            )).scalars()) if ids else set()
            await conn.execute(_UPDATE_SQL, [
                dict(policy=self.policy, state=e.state, action=e.action, target=e.reward,
                     target2=e.reward * e.reward, alpha=self.alpha, fresh=int(e.id is None or e.id in fresh),
                     now=now) for e in known
            ])
            await conn.execute(_BUMP_SQL, dict(policy=self.policy, through=max(e.id or 0 for e in known), now=now))
        self._snapshot.loaded_at = -1e18  # read the new values on next use

    async def batch_update(self, buffer: ReplayBuffer, batch_size: int = 32) -> int:
        """Sample a batch uniformly from the replay buffer and learn from it; returns its size."""
        batch = await buffer.sample(batch_size)
        await self.apply(batch)
        return len(batch)

