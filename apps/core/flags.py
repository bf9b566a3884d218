"""Feature flag registry and the environment source of flag values.

Every flag defaults to OFF. This module knows the definitions and how the environment spells them
(`FEATURE_<NAME>` or `USE_<NAME>`); rollout evaluation builds on top of it in `apps.rollout`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class FlagDefinition:
    name: str
    description: str
    owner: str = "dt-rag"
    default: bool = False
    reserved: bool = False  # named by the runbooks, no behaviour yet: never makes a request "new"
    per_request: bool = True  # False: a platform switch (where jobs run), not a feature of a request's pipeline


FLAG_DEFINITIONS: tuple[FlagDefinition, ...] = (
    FlagDefinition("soft_q_bandit", "Soft Q-learning bandit chooses the retrieval strategy per query", "learning"),
    FlagDefinition("debate_mode", "Multi-agent debate as an answer mode", "orchestration"),
    FlagDefinition("experience_replay", "Store experiences and run batch Q-updates", "learning"),
    FlagDefinition("meta_planner", "Query planning before retrieval: multi-part questions split and retrieved "
                                   "part by part", "orchestration"),
    FlagDefinition("neural_case_selector", "Case memory: past questions close to a query move the passages judged "
                                           "for them, chosen by a learned selector", "learning"),
    FlagDefinition("mcp_tools", "The answer graph calls registered MCP servers' tools", "orchestration"),
    FlagDefinition("tools_policy", "Policy gate on every tool call, in and out (off: no outbound calls)",
                   "orchestration"),
    FlagDefinition("new_pipeline", "Route requests to the new pipeline variant", "platform"),
    FlagDefinition("llm_validation", "Ask the LLM to judge answer groundedness", "orchestration"),
    FlagDefinition("agent_messaging", "DT-RAG as an A2A agent (card and tasks)", "orchestration"),
    FlagDefinition("hallucination_detection", "Mark or remove unsupported answer sentences", "orchestration"),
    FlagDefinition("evidence_tracking", "Map answer sentences to supporting chunks", "orchestration"),
    FlagDefinition("durable_worker", "Run jobs on RQ workers instead of in-process", "platform", per_request=False),
)
FLAGS: dict[str, FlagDefinition] = {f.name: f for f in FLAG_DEFINITIONS}
RESERVED_FLAGS: tuple[str, ...] = tuple(f.name for f in FLAG_DEFINITIONS if f.reserved)


def parse_bool(raw: str) -> bool | None:
    """`true/1/yes/on` → True, `false/0/no/off` → False, anything else → None."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def env_flag_value(name: str, environ: Mapping[str, str] | None = None) -> bool | None:
    """The environment's value for a flag, or None when the environment does not set it.

    `FEATURE_<NAME>` wins over `USE_<NAME>` when both are set. An unparseable value is logged and
    ignored, so the flag keeps its default.
    """
    environ = os.environ if environ is None else environ
    for var in (f"FEATURE_{name.upper()}", f"USE_{name.upper()}"):
        raw = environ.get(var)
        if raw is None:
            continue
        value = parse_bool(raw)
        if value is None:
            log.warning("ignoring %s=%r: expected one of true/1/yes/on or false/0/no/off", var, raw)
            continue
        return value
    return None


class FlagConfigError(ValueError):
    """An invalid rollout setting: startup stops (or the API answers 422) rather than guess."""


@dataclass(frozen=True)
class EnvFlagConfig:
    enabled: bool | None = None
    rollout: float | None = None  # a fraction, 0.1 = 10 %
    user_ids: frozenset[str] | None = None


def parse_rollout(raw: str | float, source: str) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FlagConfigError(f"{source}={raw!r}: expected a fraction between 0 and 1 (0.1 = 10 %)") from None
    if not 0.0 <= value <= 1.0:
        raise FlagConfigError(f"{source}={raw!r}: expected a fraction between 0 and 1 (0.1 = 10 %), "
                              "not a percentage")
    return round(value, 4)  # 0.01 % granularity


def parse_user_ids(raw: str) -> frozenset[str]:
    return frozenset(u.strip() for u in raw.split(",") if u.strip())


def env_flag_config(name: str, environ: Mapping[str, str] | None = None) -> EnvFlagConfig:
    """`FEATURE_<NAME>`/`USE_<NAME>`, `<NAME>_ROLLOUT_PERCENTAGE` and `<NAME>_USER_IDS` for one flag."""
    environ = os.environ if environ is None else environ
    upper = name.upper()
    rollout_raw = environ.get(f"{upper}_ROLLOUT_PERCENTAGE")
    users_raw = environ.get(f"{upper}_USER_IDS")
    return EnvFlagConfig(
        enabled=env_flag_value(name, environ),
        rollout=parse_rollout(rollout_raw, f"{upper}_ROLLOUT_PERCENTAGE") if rollout_raw is not None else None,
        user_ids=parse_user_ids(users_raw) if users_raw is not None else None,
    )
