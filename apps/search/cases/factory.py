"""Building case memory from settings: the leg a search runs (before the search service exists), then the
service around it (which needs the search service to replay past questions)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings
from apps.search.cases.bank import CaseBank
from apps.search.cases.leg import CaseLeg
from apps.search.cases.memory import CaseMemory
from apps.search.cases.selector import Selector, Thresholds
from apps.search.cases.store import CaseStore
from apps.search.cases.training import TrainingLimits
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.service import SearchService
from apps.text.analyzer import Analyzer


def build_case_leg(engine: AsyncEngine, embedder: EmbeddingProvider, analyzer: Analyzer, settings: Settings) -> CaseLeg:
    store = CaseStore(engine)
    bank = CaseBank(store, embedder, analyzer, settings.max_query_terms, settings.cases_refresh_s)
    selector = Selector(store, Thresholds(settings.cases_duplicate_cosine, settings.cases_duplicate_lexical,
                                         settings.cases_margin),
                        settings.cases_refresh_s, exploration=settings.cases_exploration)
    return CaseLeg(store, bank, selector, neighbours=settings.cases_neighbours, min_cosine=settings.cases_min_cosine,
                   min_lexical=settings.cases_min_lexical)


def build_case_memory(leg: CaseLeg, search: SearchService, settings: Settings) -> CaseMemory:
    limits = TrainingLimits(neighbours=settings.cases_neighbours, min_cosine=settings.cases_min_cosine,
                            min_lexical=settings.cases_min_lexical, max_cases=settings.cases_train_max_cases,
                            min_examples=settings.cases_min_examples)
    return CaseMemory(leg.store, leg.bank, leg.selector, leg, search, search.embedder, limits,
                      train_every=settings.cases_train_every,
                      decisions_retention_days=settings.cases_decisions_retention_days)
