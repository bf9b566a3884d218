"""The one renderer of bench results: every bench returns a plain dict, `--json` prints it as it is,
and `render` shows it to a person as header lines and rich tables (one layout per bench below)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.table import Table

from apps.cli.common import console

Report = dict[str, Any]


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _retrieval(r: Report) -> None:
    ing = r["ingest"]
    speed = "reused" if ing["reused"] else f"{ing['docs_per_s']} docs/s, {ing['tokens_per_s']} tokens/s"
    console.print(
        f"[bold]{r['dataset']}[/bold] split={r['split']} queries={r['queries']} "
        f"backend={r['backend']}; ingest: {ing['docs']} docs ({speed}) in {ing['seconds']} s"
        + (f", {ing['skipped']} invalid documents skipped" if ing['skipped'] else "")
    )
    table = Table("strategy", "nDCG@10", "Recall@100", "MAP@100", "MRR@10", "p50 ms", "p95 ms", "p99 ms",
                  "bm25 leg p50", "dense leg p50")
    for name, m in r["strategies"].items():
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("ndcg@10", "recall@100", "map@100", "mrr@10")),
                      *(f"{m[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                      *(f"{m[k]:.1f}" if k in m else "" for k in ("bm25_leg_p50_ms", "dense_leg_p50_ms")))
    emb = r["query_embedding"]
    table.add_row("(query embedding alone)", "", "", "", "", *(f"{emb[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")))
    console.print(table)


def _answer(r: Report) -> None:
    table = Table("metric", "value")
    for key, value in r.items():
        table.add_row(key, str(value))
    console.print(table)


_DEBATE_METRICS = (
    "exact_match", "f1", "containment", "exact_match_clean", "containment_clean", "source_hit", "grounded",
    "silent_misinformation_rate", "unflagged_misinformation_rate", "misinformation_rate", "conflict_reported_rate",
    "conflict_false_alarm_rate", "abstained", "llm_calls_per_question", "calls_per_question", "tokens_per_question",
    "p50_ms", "p95_ms")
_DEBATE_DIFFERENCES = ("exact_match", "f1", "containment", "exact_match_clean", "silent_misinformation")


def _debate(r: Report) -> None:
    console.print(f"[bold]{r['dataset']}[/bold] provider={r['provider']} ({r['model']}) "
                  f"agents={r['agents']} rounds={r['rounds']} vote={r['voters']} answers; "
                  f"{r['questions']} questions, {r['planted']} with a planted copy "
                  f"(conflicts={r['conflicts']}), noise={r['noise']}, seed={r['seed']}")
    modes = list(r["modes"])
    table = Table("metric", *modes)
    for metric in _DEBATE_METRICS:
        table.add_row(metric, *(_fmt(r["modes"][m].get(metric)) for m in modes))
    console.print(table)
    debate = r["modes"]["debate"]
    console.print(f"debate: mean rounds {debate['mean_rounds']}, stop reasons {debate['stop_reasons']}, "
                  f"fell back {debate['fell_back_rate']}")
    diffs = Table("difference (paired bootstrap 95 %)", *_DEBATE_DIFFERENCES)
    for name, pair in r["differences"].items():
        diffs.add_row(name.replace("_minus_", " − "), *(
            "–" if pair[k]["mean"] is None else f"{pair[k]['mean']:+.4f} [{pair[k]['ci95'][0]:+.4f}, "
                                                f"{pair[k]['ci95'][1]:+.4f}]"
            for k in _DEBATE_DIFFERENCES))
    console.print(diffs)


def _soak(r: Report) -> None:
    console.print(f"{r['backend']} workers={r['workers']} rate={r['rate_per_s']}/s "
                  f"for {r['duration_s']} s: {r['requests']} requests, errors {r['errors'] or 0}")
    table = Table("route", "requests", "p50 ms", "p95 ms", "p99 ms")
    for route, m in r["routes"].items():
        table.add_row(route, str(m["requests"]), f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['p99_ms']:.1f}")
    console.print(table)
    rss = r["rss_mb"]
    for pid, start in rss["start"].items():
        console.print(f"worker {pid}: RSS {start} MB at start, {rss['after_warm_up'].get(pid)} MB after warm-up, "
                      f"{rss['end'].get(pid)} MB at the end ({rss['growth_percent'].get(pid)} % since warm-up, "
                      f"{rss['growth_percent_from_start'].get(pid)} % since start)")
    db = r["database_bytes"]
    console.print(f"database: {db['start']:,} → {db['end']:,} bytes (+{db['growth']:,})")


def _embed(r: Report) -> None:
    table = Table("provider", "docs/s", "tokens/s", "x in-process", "query p50 ms", "query p95 ms", "min cosine")
    for name, row in r["rows"].items():
        table.add_row(name, f"{row['docs_per_s']:.2f}", f"{row['tokens_per_s']:,}", f"{row['vs_in_process']:.3f}",
                      f"{row['query_p50_ms']:.1f}", f"{row['query_p95_ms']:.1f}",
                      "-" if row["min_cosine_to_in_process"] is None else f"{row['min_cosine_to_in_process']:.5f}")
    console.print(f"{r['dataset']}: {r['passages']} passages ({r['tokens']:,} tokens), "
                  f"{r['queries']} queries, {r['cores']} cores")
    console.print(table)
    console.print(f"{r['replicas']} one-thread replicas / one: x{r['replicas_speedup']}")


def _http(r: Report) -> None:
    table = Table("path", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "CPU ms/req",
                  "CPU-bound mean floor ms")
    for name in ("http", "in_process"):
        m = r[name]
        table.add_row(name, str(m["requests"]), str(m["errors"]), f"{m['throughput_rps']:.1f}",
                      f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['p99_ms']:.1f}",
                      f"{m['cpu_ms_per_request']:.1f}", f"{m['cpu_bound_mean_floor_ms']:.0f}")
    console.print(f"{r['dataset']} backend={r['backend']} strategy={r['strategy']} "
                  f"concurrency={r['concurrency']} workers={r['workers']} cores={r['cores']}")
    console.print(table)
    console.print(f"HTTP / in-process: p50 x{r['http_over_in_process_p50']}, p95 x{r['http_over_in_process_p95']}")


def _jobs(r: Report) -> None:
    first = r["configurations"][0]  # every configuration ingests the same documents
    console.print(f"[bold]{r['dataset']}[/bold]: {first['docs']} documents, {first['tokens']} tokens, "
                  f"{first['chunks']} chunks; {r['cores']} cores, {r['batch_documents']} documents per "
                  f"transaction, passage cache off")
    table = Table("configuration", "workers × threads", "jobs", "seconds", "docs/s", "tokens/s", "queue latency ms",
                  "idle queue p50 / p95 ms")
    for row in r["configurations"]:
        idle = row["idle_queue_latency_ms"]
        table.add_row(row["config"], f"{row['workers'] or '–'} × {row['threads_per_worker']}", str(row["jobs"] or "–"),
                      f"{row['seconds']:.1f}", f"{row['docs_per_s']:.2f}",
                      f"{row['tokens_per_s']:.0f}", ", ".join(f"{ms:.0f}" for ms in row["queue_latency_ms"]) or "–",
                      f"{idle['p50']:.0f} / {idle['p95']:.0f}" if idle else "–")
    console.print(table)
    kill = r["kill_9"]
    console.print(f"kill -9 of the worker holding a {kill['docs']}-document job after {kill['committed_before_kill']} "
                  f"committed (attempt {kill['killed_attempt']}): the other worker claimed it after "
                  f"{kill['reclaimed_after_s']:.1f} s (lease {r['lease_s']:g} s, sweep every "
                  f"{r['lease_s'] / 2:g} s) and finished it {kill['finished_after_s']:.1f} s after the kill as "
                  f"attempt {kill['final_attempt']} ({kill['final_result']['created']} documents written, "
                  f"{kill['final_result']['unchanged']} already committed skipped); "
                  f"{kill['documents_stored']} documents stored")


def _bandit(r: Report) -> None:
    console.print(f"[bold]{r['dataset']}[/bold] backend={r['backend']} train={r['train_split']} "
                  f"({r['train_queries']} queries × {r['epochs']} epochs) test={r['test_queries']} queries "
                  f"λ={r['latency_cost']} ms⁻¹")
    table = Table("policy", "nDCG@10", "mean ms")
    table.add_row("learned (greedy)", f"{r['learned']['ndcg@10']:.4f}", f"{r['learned']['mean_ms']:.1f}")
    for name, m in r["fixed"].items():
        mark = " (best)" if name == r["best_fixed"] else ""
        mark += " (default)" if name == r["default"] else ""
        table.add_row(f"fixed {name}{mark}", f"{m['ndcg@10']:.4f}", f"{m['mean_ms']:.1f}")
    table.add_row("uniform random", f"{r['random']['ndcg@10']:.4f}", f"{r['random']['mean_ms']:.1f}")
    table.add_row("per-query oracle", f"{r['oracle']['ndcg@10']:.4f}", f"{r['oracle']['mean_ms']:.1f}")
    console.print(table)
    c = r["comparison"]
    console.print(f"learned − best fixed: {c['learned_minus_best_fixed']:+.4f}; learned − default: "
                  f"{c['learned_minus_default']:+.4f}; latency ratio to best fixed: {c['latency_ratio_to_best_fixed']}"
                  f"; learned choices: {r['learned']['choices']}")
    curve = Table("epoch", "train mean reward", "test nDCG@10", "test mean ms", "policy version")
    for p in r["learning_curve"]:
        curve.add_row(str(p["epoch"]), f"{p['train_mean_reward']:.4f}", f"{p['test_ndcg@10']:.4f}",
                      f"{p['test_mean_ms']:.1f}", str(p["policy_version"]))
    console.print(curve)
    o = r["ope"]
    console.print(f"OPE of the greedy policy from {o['n']} logged decisions (ESS {o['ess']}): "
                  + ", ".join(f"{k.upper()} {o[k]['value']:.4f} [{o[k]['ci95'][0]:.4f}, {o[k]['ci95'][1]:.4f}]"
                              for k in ("ips", "snips", "dr"))
                  + f"; measured on the logged (train) queries: {o['measured_train_reward']:.4f}, "
                    f"on test: {o['measured_test_reward']:.4f}")
    q = r["q_table"]
    console.print(f"Q-table: {q['states']} states; policy overhead p50/p95 {r['policy_overhead']['p50_ms']}/"
                  f"{r['policy_overhead']['p95_ms']} ms; full replay buffer {r['replay_buffer_full']['entries']} "
                  f"entries = {r['replay_buffer_full']['bytes']} bytes")
    top = Table("state", "visits", "greedy", *(f"Q {a}" for a in q["arms"]))
    for s in q["top_states"]:
        top.add_row(s["state"], str(s["visits"]), s["greedy"], *(f"{x:.4f}" for x in s["q"]))
    console.print(top)


def _rollout(r: Report) -> None:
    b = r["bucketing"]
    console.print(f"[bold]bucketing[/bold] {b['users']:,} users: observed share {b['observed_share_percent']}; "
                  f"same variant in two processes with different PYTHONHASHSEED: "
                  f"{b['same_variant_across_processes_percent']}%; ramp 10→50 %: {b['ramp_10_to_50_moved_out']} moved "
                  f"out, {b['ramp_10_to_50_added']} added; evaluation p50/p99 {b['evaluation_us']['p50']}/"
                  f"{b['evaluation_us']['p99']} µs")
    for name, s in r.get("canary_drill", {}).items():
        console.print(f"[bold]drill {name}[/bold]: requests {s['requests']}, verdicts {s['verdicts']}, "
                      f"rolled back: {s['rolled_back']}"
                      + (f" {s['seconds_from_first_error_to_rollback']} s after the first error "
                         f"(interval {s['interval_s']} s)" if s["rolled_back"] else ""))


LAYOUTS: dict[str, Callable[[Report], None]] = {
    "retrieval": _retrieval, "answer": _answer, "debate": _debate, "soak": _soak, "embed": _embed, "http": _http,
    "jobs": _jobs, "bandit": _bandit, "rollout": _rollout,
}


def _flat(report: Report, prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in report.items():
        name = f"{prefix}{key}"
        rows += _flat(value, name + ".") if isinstance(value, dict) else [(name, value)]
    return rows


def _generic(r: Report) -> None:
    """Benches whose result is a nested dict of figures: one row per figure, named by its path."""
    table = Table("figure", "value")
    for name, value in _flat(r):
        table.add_row(name, _fmt(value))
    console.print(table)


def render(bench: str, report: Report) -> None:
    LAYOUTS.get(bench, _generic)(report)
