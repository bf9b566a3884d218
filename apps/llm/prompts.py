"""Prompts in the question's language: Korean questions get Korean instructions and answers.

Each prompt is an instruction (a chat model's system message) and a body: the numbered sources, the
question, and a closing label ("Answer:" / "답변:"). The question comes after the sources, nearest the
answer, and the label lets a base model (the packaged local one) continue with the answer itself.
Providers that take one text (Gemini) get both joined.
"""

from __future__ import annotations

from dataclasses import dataclass

from apps.llm.base import ComposeRequest, Evidence

_INSTRUCTIONS = {
    "en": {
        "answer": "Answer the question in English in at most {n} sentences, using only the sources below. "
                  "Cite sources as [1], [2]. If the sources do not contain the answer, say so.",
        "summary": "Summarise what the sources below say about the question, in English, in at most {n} sentences. "
                   "Cite sources as [1], [2].",
        "keypoints": "List at most {n} key points from the sources below that bear on the question, in English, "
                     "one per line starting with '- ', each citing its source as [1], [2].",
        "judge": "Is every statement of the answer supported by the sources? Reply with exactly YES or NO.",
    },
    "ko": {
        "answer": "아래 출처만을 근거로 질문에 한국어로 최대 {n}문장으로 답하세요. 출처는 [1], [2]처럼 표시하세요. "
                  "출처에 답이 없으면 없다고 답하세요.",
        "summary": "질문과 관련하여 아래 출처의 내용을 한국어로 최대 {n}문장으로 요약하세요. 출처는 [1], [2]처럼 표시하세요.",
        "keypoints": "질문과 관련된 핵심 내용을 아래 출처에서 최대 {n}개 뽑아 한국어로 한 줄에 하나씩 '- '로 시작하여 쓰고, "
                     "각 줄에 출처를 [1], [2]처럼 표시하세요.",
        "judge": "답변의 모든 내용이 출처로 뒷받침됩니까? YES 또는 NO로만 답하세요.",
    },
}
_LABELS = {
    "en": {"sources": "Sources", "question": "Question", "answer": "Answer", "verdict": "Supported (YES or NO)"},
    "ko": {"sources": "출처", "question": "질문", "answer": "답변", "verdict": "뒷받침 여부 (YES 또는 NO)"},
}


@dataclass(frozen=True)
class Prompt:
    instruction: str
    body: str

    @property
    def text(self) -> str:
        return f"{self.instruction}\n\n{self.body}"

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": self.body}]


def _lang(language: str) -> str:
    return "ko" if language == "ko" else "en"


def _sources(evidence: tuple[Evidence, ...]) -> str:
    """Numbered as retrieved; a source whose text was condensed away keeps its number unused, so an
    answer's [n] always names the n-th piece of evidence."""
    return "\n\n".join(f"[{i}] {e.title}\n{e.text}" for i, e in enumerate(evidence, start=1) if e.text.strip())


def compose(request: ComposeRequest) -> Prompt:
    lang = _lang(request.language)
    labels = _LABELS[lang]
    return Prompt(_INSTRUCTIONS[lang][request.mode].format(n=request.max_sentences),
                  f"{labels['sources']}:\n{_sources(request.evidence)}\n\n"
                  f"{labels['question']}: {request.question}\n{labels['answer']}:")


def judge(question: str, answer: str, evidence: tuple[Evidence, ...], language: str) -> Prompt:
    lang = _lang(language)
    labels = _LABELS[lang]
    return Prompt(_INSTRUCTIONS[lang]["judge"],
                  f"{labels['sources']}:\n{_sources(evidence)}\n\n{labels['question']}: {question}\n"
                  f"{labels['answer']}: {answer}\n{labels['verdict']}:")


def compose_prompt(request: ComposeRequest) -> str:
    return compose(request).text


def judge_prompt(question: str, answer: str, evidence: tuple[Evidence, ...], language: str) -> str:
    return judge(question, answer, evidence, language).text


def parse_verdict(text: str) -> bool | None:
    """YES/NO from a judge's reply, however it is wrapped ("**YES**", "Yes.", "NO - because ..."); None
    when it says neither."""
    word = text.strip().lstrip("*#>`\"' ").upper()
    if word.startswith("YES"):
        return True
    if word.startswith("NO"):
        return False
    return None
