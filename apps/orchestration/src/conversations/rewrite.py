"""A follow-up made standalone before planning and retrieval: by the rules (`apps.text.followups`), or
with a model answer provider (gemini, openai) by the model, for the questions the rules see leaning on
an earlier turn. The model gets the earlier questions and their subject, never retrieved text, and its
rewrite is used only when it is short and says nothing the conversation did not: anything else is
refused with a reason, and the rule's rewrite stands. A question that stands alone costs no model call.

Before an ellipsis gets the earlier subject, the question is looked up by itself (BM25 alone, a few
milliseconds): if it names the title of something it finds, it names its own subject and stands alone
("금강산에 있는 암석은?" after a turn about 반기문).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.core.config import Settings
from apps.llm.base import AnswerProvider, Usage
from apps.orchestration.src.conversations.types import FollowupRewrite, HistoryTurn
from apps.orchestration.src.debate.types import CompletionProvider
from apps.orchestration.src.planner.model import PlanRefused, json_reply
from apps.search.service import SearchService, SearchUnavailableError
from apps.search.strategies import BM25
from apps.search.types import SearchFilters
from apps.text.analyzer import Analyzer
from apps.text.followups import cue_of, subject_of
from apps.text.followups import rewrite as rule_rewrite
from apps.text.language import detect_language

log = logging.getLogger(__name__)

# Instruction-following models behind an API (as for the planner): a base model continues text instead.
MODEL_REWRITERS = ("gemini", "openai")
_MAX_CHARS = 1000
_SHOWN_TURNS = 3  # the model sees this many earlier questions: the subject is in the last ones
OWN_TITLES = 5  # what an ellipsis finds by itself, whose titles it may name
PROMPTS = {
    "en": (
        "You rewrite the last question of a conversation with a document search engine into a standalone "
        "question. Replace pronouns with what they refer to and fill in the subject the question leaves "
        "out, from the earlier questions. Do not answer it and add nothing else. If it already stands "
        "alone, return it unchanged. Reply with JSON only: {{\"question\": \"...\"}}\n\n"
        "Earlier questions:\n{history}\nSubject so far: {subject}\n\nLast question: {question}\nJSON:"
    ),
    "ko": (
        "문서 검색 엔진과의 대화에서 마지막 질문을 앞의 대화 없이도 이해되는 독립된 질문으로 고쳐 쓰세요. 대명사는 "
        "가리키는 대상으로 바꾸고, 빠진 주어는 앞의 질문에서 채우세요. 답하지 말고 다른 내용은 더하지 마세요. 이미 "
        "독립된 질문이면 그대로 돌려주세요. JSON만 답하세요: {{\"question\": \"...\"}}\n\n"
        "앞의 질문:\n{history}\n지금까지의 주제: {subject}\n\n마지막 질문: {question}\nJSON:"
    ),
}


class RewriteReply(BaseModel):
    """The JSON a model must answer with."""

    model_config = ConfigDict(extra="ignore")
    question: str = Field(min_length=1, max_length=_MAX_CHARS)

    @field_validator("question")
    @classmethod
    def _one_line(cls, value: str) -> str:
        cleaned = " ".join(value.split())
        if not cleaned:
            raise ValueError("the question is blank")
        return cleaned


def previous_subject(history: Sequence[HistoryTurn]) -> tuple[str | None, str | None]:
    """(subject, standalone question) of the newest earlier turn that had a subject."""
    for turn in reversed(history):
        if turn.subject:
            return turn.subject, turn.standalone
    return None, None


def turn_subject(standalone: str, titles: Sequence[str], carried: str | None) -> str | None:
    """What a turn is about, for the turns after it: the subject a rewrite carried in, else the one its
    standalone question names (its sources' titles first)."""
    return carried or subject_of(standalone, titles)


class ModelRewriter:
    def __init__(self, provider: CompletionProvider, analyzer: Analyzer, max_tokens: int) -> None:
        self.provider = provider
        self.analyzer = analyzer
        self.max_tokens = max_tokens

    async def rewrite(self, question: str, history: Sequence[HistoryTurn], subject: str | None,
                      usage: Usage) -> str:
        """The model's standalone question; fills `usage`; raises `PlanRefused` (reason, detail)."""
        shown = [f"- {t.standalone}" for t in history[-_SHOWN_TURNS:]]
        prompt = PROMPTS[detect_language(question)].format(history="\n".join(shown), subject=subject or "-",
                                                           question=question)
        reply = await json_reply(self.provider, prompt, self.max_tokens, RewriteReply, usage)
        await self._check(question, reply.question, history, subject)
        return reply.question

    async def _check(self, question: str, rewritten: str, history: Sequence[HistoryTurn], subject: str | None) -> None:
        """Short, about the question, and made of the conversation's words: a model that answers, or
        brings in what nobody asked, is refused."""
        if len(rewritten) > max(2 * len(question), len(question) + 150):
            raise PlanRefused("invalid", f"a rewrite of {len(rewritten)} characters for a question of {len(question)}")
        asked = set(await self.analyzer.atokens(question))
        said = set(asked)
        for text in [subject or "", *(t.standalone for t in history), *(title for t in history for title in t.titles)]:
            said |= set(await self.analyzer.atokens(text))
        words = await self.analyzer.atokens(rewritten)
        if asked and not asked & set(words):
            raise PlanRefused("invalid", "the rewrite shares no term with the question")
        novel = sorted(set(words) - said)
        if len(novel) > 1:  # one word of rephrasing ("founded" → "established") is fine; more is new content
            raise PlanRefused("invalid", f"the rewrite adds terms nobody asked about: {', '.join(novel[:5])}")


class FollowupRewriter:
    def __init__(self, model: ModelRewriter | None = None, search: SearchService | None = None) -> None:
        self.model = model
        self.search = search

    @classmethod
    def for_provider(cls, provider: AnswerProvider | None, analyzer: Analyzer, settings: Settings,
                     search: SearchService | None = None) -> FollowupRewriter:
        model = None
        if (settings.rewrite_model == "auto" and provider is not None and provider.name in MODEL_REWRITERS
                and isinstance(provider, CompletionProvider)):
            model = ModelRewriter(provider, analyzer, settings.rewrite_model_max_tokens)
        return cls(model, search)

    def rule(self, question: str, history: Sequence[HistoryTurn], fell_back: str | None = None,
             usage: Usage | None = None, start: float | None = None,
             own_titles: Sequence[str] = ()) -> FollowupRewrite:
        """The rules' rewrite alone (microseconds): also what stands when a model's is refused or late."""
        start = time.perf_counter() if start is None else start
        subject, previous = previous_subject(history)
        result = rule_rewrite(question, subject, previous=previous, previous_subject=subject, own_titles=own_titles)
        return FollowupRewrite(result.question, result.changed, result.subject, result.cue,
                               "rule" if result.changed else None,
                               round((time.perf_counter() - start) * 1000, 3), fell_back, usage or Usage())

    async def own_titles(self, question: str, filters: SearchFilters | None) -> tuple[str, ...]:
        """The titles of what `question` finds by itself (BM25 alone; none without a search service)."""
        if self.search is None:
            return ()
        try:
            result = await self.search.search(question, OWN_TITLES, filters, BM25, cacheable=True)
        except SearchUnavailableError:
            return ()
        return tuple(h.title for h in result.hits)

    async def rewrite(self, question: str, history: Sequence[HistoryTurn],
                      filters: SearchFilters | None = None) -> FollowupRewrite:
        start = time.perf_counter()
        own: tuple[str, ...] = ()
        if history and previous_subject(history)[0] and cue_of(question) == "ellipsis":
            own = await self.own_titles(question, filters)
        rule = self.rule(question, history, start=start, own_titles=own)
        if self.model is None or not history or rule.cue is None:
            return rule
        subject, _ = previous_subject(history)
        usage = Usage()
        try:
            text = await self.model.rewrite(question, history, subject, usage)
        except PlanRefused as exc:
            log.warning("model rewrite refused; the rule's stands", extra={"reason": str(exc)})
            return self.rule(question, history, fell_back=str(exc), usage=usage, start=start, own_titles=own)
        changed = text != " ".join(question.split())
        return FollowupRewrite(text, changed, subject if changed else None, rule.cue, "model" if changed else None,
                               round((time.perf_counter() - start) * 1000, 3), None, usage)
