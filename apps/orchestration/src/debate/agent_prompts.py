"""Prompts for debating agents and their judge, in the question's language (Korean or English).

Sources carry the debate's global numbers, so a claim an agent adopts from another keeps the citation
that verified it. Agents see the others' verified claims only, each with the sentence of its source
that verified it (Khan et al. 2024: debaters argue better from verified quotes than from assertions).
"""

from __future__ import annotations

from collections.abc import Sequence

from apps.llm.base import Evidence
from apps.llm.extractive import NOT_FOUND
from apps.orchestration.src.debate.claims import markers, quote
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.types import Claim, Role, Turn

ABSTAIN = "NOT FOUND"  # the exact reply for "my sources do not say"
CONFLICT = "CONFLICT"  # the judge's first line when verified sources disagree
CONFLICT_HEADER = {
    "en": "The sources give different answers:",
    "ko": "출처마다 답이 다릅니다:",
}

_TEXT = {
    "en": {
        "task": "You are agent {k} of {n} answering a question from your own share of the retrieved documents. "
                "Answer in at most {s} short sentences using only the sources shown. End every sentence with "
                "the number of the source that states it, like [3]. Use the source's own words for names, "
                "numbers and dates. If the sources do not answer the question, reply exactly: " + ABSTAIN,
        "affirmative": "Give the answer your sources support best.",
        "critical": "Be sceptical: state only what a source says outright, and do not take another agent's "
                    "claim unless a source shown to you states it.",
        "revise": "Revise your answer. Keep what your sources support. Adopt another agent's claim, with its "
                  "source number, only if it answers the question better and your sources do not contradict "
                  "it. Where your sources contradict another agent, keep your own claim and its source.",
        "judge": "You judge a debate between agents who each read different documents. Below are the question "
                 "and each agent's final claims with the source sentences that verified them. Answer in at most "
                 "{s} sentences, each ending with its source number like [3]. If verified claims give different "
                 "answers to the question, write " + CONFLICT + " on the first line, then one line per answer "
                 "with its source number. If no claim answers the question, reply exactly: " + ABSTAIN,
        "labels": ("Question", "Your sources", "Your previous answer", "Other agents", "Agent", "source",
                   "Agents' claims", "Sources"),
    },
    "ko": {
        "task": "당신은 {n}명 중 {k}번 에이전트이며, 검색된 문서 중 당신에게 주어진 몫만으로 질문에 답합니다. "
                "아래 출처만을 근거로 최대 {s}개의 짧은 문장으로 한국어로 답하세요. 모든 문장 끝에 그 내용을 담은 "
                "출처 번호를 [3]처럼 붙이세요. 이름, 숫자, 날짜는 출처의 표현 그대로 쓰세요. 출처에 답이 없으면 "
                "정확히 다음과 같이만 답하세요: " + ABSTAIN,
        "affirmative": "출처가 가장 잘 뒷받침하는 답을 제시하세요.",
        "critical": "비판적으로 검토하세요: 출처가 명시한 것만 말하고, 당신에게 보이는 출처가 말하지 않는 다른 "
                    "에이전트의 주장은 받아들이지 마세요.",
        "revise": "답을 고치세요. 당신의 출처가 뒷받침하는 내용은 유지하세요. 다른 에이전트의 주장은 질문에 더 잘 "
                  "답하고 당신의 출처와 모순되지 않을 때만 그 출처 번호와 함께 받아들이세요. 당신의 출처가 다른 "
                  "에이전트와 모순되면 당신의 주장과 출처를 유지하세요.",
        "judge": "서로 다른 문서를 읽은 에이전트들의 토론을 판정합니다. 아래에 질문과 각 에이전트의 최종 주장, 그 "
                 "주장을 검증한 출처 문장이 있습니다. 최대 {s}문장으로 한국어로 답하고 각 문장 끝에 출처 번호를 "
                 "[3]처럼 붙이세요. 검증된 주장들이 질문에 서로 다른 답을 내면 첫 줄에 " + CONFLICT + "라고 쓰고, "
                 "이어서 답마다 한 줄씩 출처 번호와 함께 쓰세요. 질문에 답하는 주장이 없으면 정확히 다음과 같이만 "
                 "답하세요: " + ABSTAIN,
        "labels": ("질문", "당신의 출처", "당신의 이전 답", "다른 에이전트", "에이전트", "출처", "에이전트들의 주장",
                   "출처"),
    },
}


def _text(ctx: DebateContext) -> dict:
    return _TEXT["ko" if ctx.language == "ko" else "en"]


def _sources(ctx: DebateContext, evidence: Sequence[Evidence]) -> str:
    return "\n\n".join(f"[{ctx.numbers[e.chunk_id]}] {e.title}\n{e.text}" for e in evidence)


def _quoted(ctx: DebateContext, claims: Sequence[Claim], source_label: str) -> str:
    return "\n".join(f"- {c.text} {markers(ctx, c)} ({source_label} {markers(ctx, c)}: \"{quote(ctx, c)}\")"
                     for c in claims)


def agent_prompt(ctx: DebateContext, role: Role, agent: int, agents: int, view: Sequence[Evidence],
                 max_sentences: int, previous: Turn | None, others: Sequence[Turn]) -> str:
    t = _text(ctx)
    question, sources, before, peers, name, source, _, _ = t["labels"]
    parts = [t["task"].format(k=agent + 1, n=agents, s=max_sentences), t[role],
             f"{question}: {ctx.question}", f"{sources}:\n{_sources(ctx, view)}"]
    if previous is not None:
        parts.append(f"{before}:\n" + (_quoted(ctx, previous.verified, source) or ABSTAIN))
    answering = [o for o in others if o.answering]
    if answering:
        parts.append(f"{peers}:\n" + "\n".join(f"{name} {o.agent + 1}:\n{_quoted(ctx, o.verified, source)}"
                                               for o in answering))
        parts.append(t["revise"])
    return "\n\n".join(parts)


def judge_prompt(ctx: DebateContext, positions: Sequence[Turn], max_sentences: int) -> str:
    t = _text(ctx)
    question, _, _, _, name, source, claims, sources = t["labels"]
    cited = dict.fromkeys(i for p in positions for c in p.verified for i in c.chunk_ids)
    return "\n\n".join([
        t["judge"].format(s=max_sentences), f"{question}: {ctx.question}",
        f"{claims}:\n" + "\n".join(f"{name} {p.agent + 1}:\n{_quoted(ctx, p.verified, source)}" for p in positions),
        f"{sources}:\n{_sources(ctx, [ctx.chunk(i) for i in cited])}",
    ])


def is_abstention(text: str) -> bool:
    stripped = text.strip().strip(".").strip()
    return stripped.upper().startswith(ABSTAIN) or stripped in {s.rstrip(".") for s in NOT_FOUND.values()}
