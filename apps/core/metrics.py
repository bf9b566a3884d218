"""Prometheus metrics, correct with several workers.

Counters and histograms live in this process; under `dtrag serve --workers N` each worker writes them
to files in PROMETHEUS_MULTIPROC_DIR (set before the workers start) and any worker's /metrics sums
them. State that lives in the database (replay buffer size, Q-table states, canary state) is read at
scrape time, so it is the same whichever worker answers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("dtrag_requests", "HTTP requests", ["endpoint", "method", "variant", "status"])
ERRORS = Counter("dtrag_request_errors", "HTTP requests answered with a 5xx", ["endpoint", "variant", "status"])
LATENCY = Histogram("dtrag_request_duration_seconds", "HTTP request latency", ["endpoint", "variant"],
                    buckets=_LATENCY_BUCKETS)
PIPELINE_STEP = Histogram("dtrag_pipeline_step_duration_seconds", "Answer pipeline node durations", ["step"],
                          buckets=_LATENCY_BUCKETS)
BATCH_LEARNING_SUCCESS = Counter("batch_learning_success", "Bandit batch updates applied")
BATCH_LEARNING_FAILURE = Counter("batch_learning_failure", "Bandit batch updates that failed")
LLM_TOKENS = Counter("llm_tokens", "LLM tokens", ["provider", "model", "kind"])
LLM_COST = Counter("llm_cost_usd", "LLM cost in US dollars", ["provider", "model"])
FLAG_EVALUATIONS = Counter("feature_flag_evaluations", "Feature flag evaluations", ["flag", "result"])
DEBATES = Counter("dtrag_debates", "Debates run, by how they stopped", ["stop_reason"])
DEBATE_ROUNDS = Counter("dtrag_debate_rounds", "Debate rounds completed")
DEBATE_LLM_CALLS = Counter("dtrag_debate_llm_calls", "Model calls made by debates (agents and judge)")
DEBATE_FALLBACKS = Counter("dtrag_debate_fallbacks", "Debates that served the single-pass answer instead",
                           ["reason"])
PLANS = Counter("dtrag_plans", "Query plans, by number of parts and planner (rule, model)", ["parts", "planner"])
PLANNER_FALLBACKS = Counter("dtrag_planner_fallbacks", "Model plans refused for the rule planner's, by reason "
                                                       "(malformed, invalid, error)", ["reason"])


def render(db_gauges: dict[str, tuple[str, list[tuple[dict[str, str], float]]]]) -> bytes:
    """This process's (or all workers') metrics plus gauges read from the database for this scrape."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        from prometheus_client import REGISTRY

        body = generate_latest(REGISTRY)
    extra = CollectorRegistry()

    class _Database:
        def collect(self):
            for name, (help_text, samples) in db_gauges.items():
                labels = sorted(samples[0][0]) if samples else []
                family = GaugeMetricFamily(name, help_text, labels=labels)
                for label_values, value in samples:
                    family.add_metric([label_values[k] for k in labels], value)
                yield family

    extra.register(_Database())
    return body + generate_latest(extra)

_JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
JOBS = Counter("dtrag_jobs", "Jobs reaching a status, by kind and mode", ["kind", "status", "mode"])
JOB_DURATION = Histogram("dtrag_job_duration_seconds", "One job attempt's run time", ["kind", "mode"],
                         buckets=_JOB_BUCKETS)
JOB_QUEUE_LATENCY = Histogram("dtrag_job_queue_latency_seconds", "From a job's creation to its first claim",
                              ["kind", "mode"], buckets=_JOB_BUCKETS)
JOB_FALLBACKS = Counter("dtrag_job_fallbacks", "Jobs sent to in-process execution instead of the queue", ["reason"])
JOB_QUEUE_DEPTH = Gauge("dtrag_job_queue_depth", "Queued jobs (read from the database by the jobs monitor)",
                        multiprocess_mode="max")

# Reranking (apps/search/rerank): outcome ok | timeout | error; the last two served the fused order.
RERANK_CALLS = Counter("dtrag_rerank_calls", "Reranker calls by outcome (timeout and error fell back)", ["outcome"])
RERANK_DURATION = Histogram("dtrag_rerank_duration_seconds", "Reranker call latency", buckets=_LATENCY_BUCKETS)

# Doors (apps/doors, SPEC-DOORS-001): door mcp | mcp_stdio | a2a | chat | tools (calls out); operation the
# tool or method. Errors by kind: client (refused input, auth, limits) or server (a failure on our side).
DOOR_CALLS = Counter("dtrag_door_calls", "Calls through a door", ["door", "operation"])
DOOR_ERRORS = Counter("dtrag_door_errors", "Door calls that failed, by kind", ["door", "operation", "kind"])
DOOR_LATENCY = Histogram("dtrag_door_duration_seconds", "Door call latency", ["door", "operation"],
                         buckets=_LATENCY_BUCKETS)
TOOL_DECISIONS = Counter("dtrag_tool_decisions", "Tool-call decisions of the policy gate",
                         ["direction", "decision", "reason"])

# Case memory (apps/search/cases, SPEC-CASES-001). Lookups by outcome: none (no close case: the plain
# ranking) | unchanged (close cases, same ranking) | changed | error (the plain ranking, degraded).
CASE_LOOKUPS = Counter("dtrag_case_lookups", "Searches with case memory on, by outcome", ["outcome"])
CASE_HITS = Counter("dtrag_case_hits", "Hits served that past cases moved up")
CASES_WRITTEN = Counter("dtrag_cases_written", "Cases written, by origin (feedback, import)", ["origin"])
CASE_SELECTOR_UPDATES = Counter("dtrag_case_selector_updates", "Case selector batch updates (stored, superseded)",
                                ["outcome"])
