"""A model plans instead of the rules: one call with a JSON-only prompt, the reply validated with
pydantic. A reply that is not that JSON, or names parts the question does not ask, is refused with a
reason, and the caller keeps the rule planner's plan: a model's plan never turns into an error."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from apps.llm.base import LLMError, Usage
from apps.orchestration.src.debate.types import CompletionProvider
from apps.text.analyzer import Analyzer
from apps.text.compound import Part

PROMPTS = {
    "en": (
        "You split a user's question for a document search engine.\n"
        "If the question asks several separate things (questions joined by 'and', a comparison of X and Y, "
        "a list of items each to be explained), write each thing as its own self-contained question and "
        "repeat the subject instead of a pronoun. If it asks one thing, including names with 'and' "
        "('Johnson & Johnson', 'salt and pepper shrimp') and relations ('the war between A and B'), return "
        "it unchanged as the only part.\n"
        "At most {max_parts} parts, in the question's language. Reply with JSON only, nothing else: "
        '{{"parts": ["...", "..."]}}\n\nQuestion: {question}\nJSON:'
    ),
    "ko": (
        "문서 검색 엔진을 위해 사용자의 질문을 나눕니다.\n"
        "질문이 서로 다른 여러 가지를 묻는다면('그리고'로 이어진 질문들, X와 Y의 비교, 각각 설명할 항목의 목록) "
        "각각을 독립된 질문으로 쓰고 대명사 대신 주어를 되풀이하세요. 한 가지만 묻는다면('A와 B 사이의 전쟁' 같은 "
        "관계나 이름 포함) 질문을 그대로 하나의 항목으로 돌려주세요.\n"
        "항목은 최대 {max_parts}개, 질문과 같은 언어로. JSON만 답하고 다른 글은 쓰지 마세요: "
        '{{"parts": ["...", "..."]}}\n\n질문: {question}\nJSON:'
    ),
}
_MAX_PART_CHARS = 1000


class PlanRefused(ValueError):
    """The model's plan was not used; `reason` is a short label (metrics) and the message says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class PlanReply(BaseModel):
    """The JSON a model must answer with."""

    model_config = ConfigDict(extra="ignore")
    parts: list[str] = Field(min_length=1, max_length=8)

    @field_validator("parts")
    @classmethod
    def _parts(cls, parts: list[str]) -> list[str]:
        cleaned = [" ".join(p.split()) for p in parts]
        if any(not p or len(p) > _MAX_PART_CHARS for p in cleaned):
            raise ValueError(f"every part must be 1 to {_MAX_PART_CHARS} characters")
        return cleaned


def json_object(text: str) -> str:
    """The outermost {...} of a reply (models wrap JSON in code fences or a sentence)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise PlanRefused("malformed", "the reply holds no JSON object")
    return text[start: end + 1]


Reply = TypeVar("Reply", bound=BaseModel)


async def json_reply(provider: CompletionProvider, prompt: str, max_tokens: int, reply: type[Reply],
                     usage: Usage) -> Reply:
    """One model call whose answer must be the JSON of `reply` (the planner's parts, a follow-up's
    rewrite); fills `usage`; raises `PlanRefused` "error" (the call failed) or "malformed"."""
    try:
        generation = await provider.complete(prompt, max_tokens)
    except LLMError as exc:
        raise PlanRefused("error", str(exc)) from None
    usage.assign(generation.usage)
    try:
        return reply.model_validate_json(json_object(generation.text))
    except ValidationError as exc:
        raise PlanRefused("malformed", exc.errors()[0]["msg"]) from None


class ModelPlanner:
    def __init__(self, provider: CompletionProvider, analyzer: Analyzer, max_parts: int, max_tokens: int) -> None:
        self.provider = provider
        self.analyzer = analyzer
        self.max_parts = max_parts
        self.max_tokens = max_tokens

    async def plan(self, question: str, language: str, usage: Usage) -> list[Part]:
        """The model's parts (one part: it asks one thing); fills `usage`; raises `PlanRefused`."""
        prompt = PROMPTS["ko" if language == "ko" else "en"].format(max_parts=self.max_parts, question=question)
        reply = await json_reply(self.provider, prompt, self.max_tokens, PlanReply, usage)
        parts = list(dict.fromkeys(reply.parts))
        if len(parts) > self.max_parts:
            raise PlanRefused("invalid", f"{len(parts)} parts, more than {self.max_parts}")
        # A part must ask about something the question names: a model that answers, or invents, is refused.
        asked = set(await self.analyzer.atokens(question))
        for part in parts:
            if not asked & set(await self.analyzer.atokens(part)):
                raise PlanRefused("invalid", f"the part {part[:80]!r} shares no term with the question")
        return [Part(p, p) for p in parts]
