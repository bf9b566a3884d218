"""Spreading requests over the replicas of one remote model, and stepping around unhealthy ones: the
embedding servers and the answer model servers share it.

Each request goes to the healthy replica with the fewest requests in flight (ties in turn), so two
replicas share a long ingest evenly and a slow one gets less. A replica that fails (connection
error, timeout, 5xx) sits out a cooldown; the retry goes to another. When every replica is cooling
down, the one back soonest is tried rather than failing without asking anyone.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    down_until: float = 0.0
    failures: int = 0

    def healthy(self, now: float) -> bool:
        return self.down_until <= now


class ReplicaPool:
    def __init__(self, urls: list[str], cooldown_s: float = 10.0) -> None:
        if not urls:
            raise ValueError("at least one replica URL is needed")
        self.replicas = [Replica(u.rstrip("/")) for u in urls]
        self._cooldown = cooldown_s
        self._turn = itertools.count()

    def _healthy(self) -> list[Replica]:
        now = time.monotonic()
        return [r for r in self.replicas if r.healthy(now)]

    def pick(self) -> Replica:
        healthy = self._healthy()
        if not healthy:
            return min(self.replicas, key=lambda r: r.down_until)
        fewest = min(r.in_flight for r in healthy)
        candidates = [r for r in healthy if r.in_flight == fewest]
        return candidates[next(self._turn) % len(candidates)]

    def healthy_count(self) -> int:
        return max(len(self._healthy()), 1)

    def failed(self, replica: Replica) -> None:
        replica.failures += 1
        replica.down_until = time.monotonic() + self._cooldown

    def succeeded(self, replica: Replica) -> None:
        replica.down_until = 0.0
