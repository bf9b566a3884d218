"""Prompts in the question's language: Korean questions get Korean instructions and answers."""

from __future__ import annotations

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


def _sources(evidence: tuple[Evidence, ...]) -> str:
    return "\n\n".join(f"[{i}] {e.title}\n{e.text}" for i, e in enumerate(evidence, start=1))


def compose_prompt(request: ComposeRequest) -> str:
    lang = "ko" if request.language == "ko" else "en"
    instruction = _INSTRUCTIONS[lang][request.mode].format(n=request.max_sentences)
    label = ("질문", "출처") if lang == "ko" else ("Question", "Sources")
    return f"{instruction}\n\n{label[0]}: {request.question}\n\n{label[1]}:\n{_sources(request.evidence)}"


def judge_prompt(question: str, answer: str, evidence: tuple[Evidence, ...], language: str) -> str:
    lang = "ko" if language == "ko" else "en"
    labels = ("질문", "답변", "출처") if lang == "ko" else ("Question", "Answer", "Sources")
    return (f"{_INSTRUCTIONS[lang]['judge']}\n\n{labels[0]}: {question}\n{labels[1]}: {answer}\n\n"
            f"{labels[2]}:\n{_sources(evidence)}")
