"""The bandit's context: a short, human-readable, stable key from the query and a BM25 first look.

    {language}|{length}|{question type}|{specificity}|{lead}     e.g. "en|long|other|idf-high|lead-sharp"

- language: `en` or `ko` (script share).
- length: analysed query terms, `short` ≤ 3 < `medium` ≤ 8 < `long`.
- question type: what, how, why, fact (who/when/where), yesno, other (claims, keyword queries).
- specificity and lead come from the BM25 leg, which every bandit request runs first and reuses when
  the chosen strategy includes BM25 (so it costs a BM25-only request nothing extra):
  - specificity: the top hit's BM25 score per query term, a corpus-statistics (IDF-weighted) measure
    of how rare and well-matched the query's words are: `idf-high` ≥ 3.4 > `idf-low`; `idf-none`
    when no term matched.
  - lead: the top hit's margin over the second, (s1 - s2) / s1: `lead-sharp` ≥ 0.3 > `lead-clear`
    ≥ 0.1 > `lead-flat`; `lead-none` when no term matched.
  Thresholds are the SciFact train medians and tertiles; the same cut points split korquad-ko sensibly
  (BM25 scores per term sit in the same range). Where both are high BM25 alone is about as good as
  hybrid retrieval, at an eighth of its latency (no query embedding).

At most 2 × 3 × 6 × 7 = 252 states, far fewer in practice. Keys are deterministic functions of the
query and the corpus: identical in every process and across restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.search.types import LegHit
from apps.text.language import detect_language
from apps.text.questions import question_type

_QUESTION_GROUPS = {"who": "fact", "when": "fact", "where": "fact"}
HIGH_SPECIFICITY = 3.4
SHARP_LEAD = 0.3
CLEAR_LEAD = 0.1


def length_bucket(n_terms: int) -> str:
    return "short" if n_terms <= 3 else "medium" if n_terms <= 8 else "long"


def lexical_buckets(n_terms: int, first_look: Sequence[LegHit]) -> tuple[str, str]:
    if not first_look or first_look[0].score <= 0 or n_terms == 0:
        return "idf-none", "lead-none"
    top = first_look[0].score
    second = first_look[1].score if len(first_look) > 1 else 0.0
    specificity = "idf-high" if top / n_terms >= HIGH_SPECIFICITY else "idf-low"
    margin = (top - second) / top
    lead = "lead-sharp" if margin >= SHARP_LEAD else "lead-clear" if margin >= CLEAR_LEAD else "lead-flat"
    return specificity, lead


def encode_state(query: str, terms: Sequence[str], first_look: Sequence[LegHit]) -> str:
    kind = question_type(query)
    return "|".join((
        detect_language(query),
        length_bucket(len(terms)),
        _QUESTION_GROUPS.get(kind, kind),
        *lexical_buckets(len(terms), first_look),
    ))
