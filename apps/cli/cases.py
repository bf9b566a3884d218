"""`dtrag cases import | list | show | train | prune | wipe | reembed | stats | ope`: the case bank
(SPEC-CASES-001)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apps.cli.common import console, emit, fail, print_json, with_runtime
from apps.core.visibility import DEFAULT_COLLECTION

cases_app = typer.Typer(help="Case memory: past questions and the passages judged for them.", no_args_is_help=True)


def _queries(path: Path) -> dict[str, str]:
    queries = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                queries[str(row["_id"])] = str(row["text"])
            except (ValueError, KeyError, TypeError):
                fail(f"{path}:{number}: expected a JSON object with _id and text")
    return queries


@cases_app.command("import")
def cases_import(
    qrels: Path = typer.Option(..., exists=True, dir_okay=False, help="BEIR qrels TSV: query-id, corpus-id, score"),
    queries: Path = typer.Option(..., exists=True, dir_okay=False, help="BEIR queries.jsonl: _id, text"),
    collection: str = typer.Option(DEFAULT_COLLECTION, help="the collection whose documents the corpus ids name"),
    strategy: str | None = typer.Option(None, help="the strategy the history was served with (default: the default)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Cases from judgements: each judged query becomes a case whose passages are its documents' chunks
    (score > 0 relevant, else irrelevant). Re-importing a query replaces its case."""
    from apps.bench.beir import load_qrels
    from apps.search.cases.memory import UnknownCollectionError
    from apps.search.service import UnknownStrategyError

    judgements = load_qrels(qrels)
    texts = _queries(queries)

    async def work(rt: Any) -> Any:
        return await rt.cases.import_judgements(collection, texts, judgements, strategy)

    try:
        report = with_runtime(work)
    except (UnknownCollectionError, UnknownStrategyError) as exc:
        fail(str(exc))
    emit(vars(report), as_json, lambda r: console.print(
        f"{r['cases']} cases from {r['queries']} judged queries; {r['without_documents']} queries had none of "
        f"their documents in {collection!r}, {r['missing_documents']} judged document ids were not found"))


@cases_app.command("list")
def cases_list(
    collection: str | None = typer.Option(None, help="only this collection's"),
    limit: int = typer.Option(50, min=1, max=10_000),
    offset: int = typer.Option(0, min=0),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The newest cases first."""
    rows = with_runtime(lambda rt: rt.cases.store.listing(collection, limit, offset))

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table("id", "collection", "origin", "query", "reward", "relevant", "irrelevant", "passages", "created")
        for r in rows:
            table.add_row(str(r["id"]), r["collection"], r["origin"], r["query"][:60], f"{r['reward']:.2f}",
                          str(r["relevant"]), str(r["irrelevant"]), str(r["passages"]), r["created_at"][:19])
        console.print(table)

    emit(rows, as_json, show)


@cases_app.command("show")
def cases_show(case_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One case: its question and every passage with its judgement."""
    found = with_runtime(lambda rt: rt.cases.store.get(case_id))
    if found is None:
        fail(f"no case {case_id}")
    if as_json:
        print_json(found)
        return
    console.print(f"case {found['id']} in {found['collection']!r} ({found['origin']}, reward {found['reward']:.2f}, "
                  f"strategy {found['strategy'] or 'default'}, {found['model']})\n{found['query']}")
    table = Table("chunk", "judgement", "shown at", "document", "title")
    for p in found["passages"]:
        table.add_row(str(p["chunk_id"]), f"{p['judgement']:+.0f}", str(p["shown_rank"] or ""),
                      p["external_id"] or p["doc_id"], p["title"][:50])
    console.print(table)


@cases_app.command("train")
def cases_train(as_json: bool = typer.Option(False, "--json")) -> None:
    """One batch update of the selector from the bank and the logged outcomes; every worker reads the new
    version within CASES_REFRESH_S."""
    report = with_runtime(lambda rt: rt.cases.train())
    emit(report, as_json, lambda r: console.print(
        f"version {r['version'] or '(another worker stored one first)'} in {r['seconds']} s\n"
        + "\n".join(f"  {name}: {c['cases']} cases, {c['examples']} examples ({c['positives']} positive), "
                    f"{c['selector']}" for name, c in r["collections"].items())))


@cases_app.command("prune")
def cases_prune(
    older_than_days: float | None = typer.Option(None, min=0, help="also cases not updated for this long"),
    collection: str | None = typer.Option(None, help="only this collection's"),
) -> None:
    """Delete cases whose passages are all gone (their documents deleted or replaced) and, with
    --older-than-days, old ones."""
    from apps.search.cases.memory import UnknownCollectionError

    try:
        pruned = with_runtime(lambda rt: rt.cases.prune(older_than_days, collection))
    except UnknownCollectionError as exc:
        fail(str(exc))
    console.print(f"pruned {pruned} cases")


@cases_app.command("wipe")
def cases_wipe(
    collection: str = typer.Option(..., help="the collection whose cases go"),
    yes: bool = typer.Option(False, "--yes", help="no question asked"),
) -> None:
    """Delete every case of a collection."""
    from apps.search.cases.memory import UnknownCollectionError

    if not yes:
        typer.confirm(f"delete every case of {collection!r}?", abort=True)
    try:
        wiped = with_runtime(lambda rt: rt.cases.wipe(collection))
    except UnknownCollectionError as exc:
        fail(str(exc))
    console.print(f"wiped {wiped} cases of {collection!r}")


@cases_app.command("reembed")
def cases_reembed() -> None:
    """Give the cases embedded by another model vectors of the configured one (after EMBEDDING_* changed)."""
    console.print(f"re-embedded {with_runtime(lambda rt: rt.cases.reembed())} cases")


@cases_app.command("stats")
def cases_stats(hours: float = typer.Option(24.0, min=0.01), as_json: bool = typer.Option(False, "--json")) -> None:
    """Bank size per collection, the selector's version, and the hit rate over the window."""
    summary = with_runtime(lambda rt: rt.cases.summary(hours))
    emit(summary, as_json, lambda s: console.print(
        f"{s['cases']} cases ({', '.join(f'{k}: {v}' for k, v in s['by_collection'].items()) or 'none'}); selector "
        f"version {s['selector_version']}; last {s['window_hours']} h: {s['requests']} requests with case memory, "
        f"{s['changed']} changed by cases (hit rate {s['hit_rate'] if s['hit_rate'] is not None else '-'})"))


@cases_app.command("ope")
def cases_ope(
    target: str = typer.Option("current", help="current: the newest selector version (or --version); rule: the "
                                               "fixed rule everywhere"),
    version: int | None = typer.Option(None, min=0, help="with --target current: this stored version"),
    margin: float | None = typer.Option(None, min=0.0, max=1.0, help="the target's margin (default CASES_MARGIN)"),
    collection: str | None = typer.Option(None, help="only the decisions on this collection's passages"),
    since: datetime | None = typer.Option(None, help="only requests from this time (ISO 8601)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Off-policy value of a selector from the logged decisions: per passage a close case vouched for, the
    reward of admitting it (+1 marked relevant, -1 irrelevant), IPS and SNIPS with 95 % intervals, against
    what the logging selector earned."""
    from apps.orchestration.src import case_ope

    if target not in case_ope.TARGETS:
        fail("--target must be current or rule", 2)
    if target == "rule" and version is not None:
        fail("--version goes with --target current", 2)

    async def work(rt: Any) -> dict[str, Any]:
        parameters = await case_ope.target_parameters(rt.cases.store, target, version)
        when = since.astimezone() if since and since.tzinfo is None else since
        report = await case_ope.evaluate_selector(rt.cases.store, parameters, rt.cases.selector.thresholds,
                                                  margin=margin, collection=collection, since=when)
        return {"target": target, **report}

    try:
        result = with_runtime(work)
    except LookupError as exc:
        fail(str(exc))
    emit(result, as_json or not result.get("n"), _show_ope, indent=2)


def _show_ope(r: dict[str, Any]) -> None:
    console.print(f"target={r['target']} (version {r['version']}, margin {r['margin']}) on {r['n']} decisions in "
                  f"{r['requests']} requests: effective sample size {r['ess']}, {r['explored']} explored, "
                  f"agreement {r['agreement']}, {r['unsupported']} the logging selector could not have made; "
                  f"logged mean reward {r['logged_mean_reward']}")
    table = Table("estimator", "value", "95 % interval")
    for name in ("ips", "snips"):
        table.add_row(name.upper(), f"{r[name]['value']:.4f}", f"[{r[name]['ci95'][0]:.4f}, {r[name]['ci95'][1]:.4f}]")
    console.print(table)
