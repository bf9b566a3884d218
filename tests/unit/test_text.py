"""Lexical analysis, language detection, sentence splitting and chunking."""

from __future__ import annotations

from apps.ingestion.chunking import chunk_text
from apps.text.analyzer import get_analyzer
from apps.text.language import detect_language
from apps.text.questions import question_type
from apps.text.sentences import split_sentences


def test_english_analysis_stems_and_drops_stopwords() -> None:
    tokens = get_analyzer("bigram").tokens("The cells were Running experiments on mice!")
    assert list(tokens) == ["cell", "run", "experi", "mice"]


def test_korean_analysis_keeps_content_morphemes() -> None:
    tokens = get_analyzer("kiwi").tokens("세종대왕은 1443년에 훈민정음을 창제하였다.")
    assert {"세종", "대왕", "훈민정음", "창제", "1443"} <= set(tokens)
    assert "은" not in tokens and "을" not in tokens and "하" not in tokens  # particles, suffixes dropped


def test_mixed_script_uses_each_analyser() -> None:
    tokens = get_analyzer("kiwi").tokens("Transformers 모델을 사용하여 running 실험")
    assert {"transform", "run", "모델", "사용", "실험"} <= set(tokens)


def test_korean_bigrams_need_no_model() -> None:
    bigram = get_analyzer("bigram")
    assert bigram.tokens("세종대왕은 밥을") == ("세종", "종대", "대왕", "왕은", "밥을")
    # A one-syllable word stays whole; Latin and digits inside Korean text take the English path.
    assert bigram.tokens("1443년 GPT로 running 밥") == ("년", "로", "밥", "1443", "gpt", "run")
    assert bigram.tokens("Running experiments") == get_analyzer("kiwi").tokens("Running experiments")
    # A query and the text it should match share bigrams although particles differ.
    assert set(bigram.tokens("훈민정음 창제")) <= set(bigram.tokens("훈민정음을 창제하였다"))


def test_query_terms_are_unique_and_bounded() -> None:
    assert get_analyzer("bigram").query_terms("cell cells cell growth", limit=10) == ["cell", "growth"]
    assert len(get_analyzer("bigram").query_terms(" ".join(f"word{i}" for i in range(500)), limit=64)) == 64
    assert get_analyzer("bigram").query_terms("the of ??? !!", limit=10) == []


def test_language_detection() -> None:
    assert detect_language("기계 학습은 AI의 한 분야이다") == "ko"
    assert detect_language("Machine learning with a 한글 word") == "en"


def test_sentence_split_english_and_korean() -> None:
    assert split_sentences("Smith et al. found it. Does it work? Yes!") == ["Smith et al. found it.", "Does it work?", "Yes!"]
    assert split_sentences("첫 문장이다. 둘째 문장인가요? 셋째\n넷째 줄이다") == ["첫 문장이다.", "둘째 문장인가요?", "셋째", "넷째 줄이다"]
    # Whitespace runs: a line break anywhere in a run ends the sentence; text inside a sentence is kept.
    assert split_sentences("one  \t\n \t two") == ["one", "two"]
    assert split_sentences("  lead\n\n\nnext.  \t Last  word  ") == ["lead", "next.", "Last  word"]
    assert split_sentences("He said \"Go.\"  Then left.") == ['He said "Go."', "Then left."]
    assert split_sentences("Use e.g. e.g. this. Done") == ["Use e.g. e.g. this.", "Done"]


def test_question_types() -> None:
    assert question_type("What is BM25?") == "what" and question_type("세종은 누구인가") == "who"
    assert question_type("  Is it raining?") == "yesno" and question_type("DOES it work") == "yesno"
    assert question_type("비가 오나요 ?  ") == "yesno" and question_type("비가 오나요\n") == "yesno"
    assert question_type("정답입니까?") == "yesno"
    assert question_type("Island maps are old.") == "other"  # "is" only as a whole word
    assert question_type("오나요 말고 다른 것") == "other"  # the ending must end the question
    assert question_type("") == "other"


def test_chunking_respects_budget_and_overlaps() -> None:
    def count(text: str) -> int:
        return len(text.split())

    text = " ".join(f"Sentence {i} has exactly six words." for i in range(30))
    chunks = chunk_text(text, count, max_tokens=30, overlap_tokens=6)
    assert all(c.token_count <= 30 for c in chunks)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:]):
        assert a.text.split(". ")[-1].rstrip(".") in b.text  # one sentence of overlap
    long_sentence = " ".join(["word"] * 100)
    pieces = chunk_text(long_sentence, count, max_tokens=30, overlap_tokens=0)
    assert [p.token_count for p in pieces] == [30, 30, 30, 10]


def test_chunking_korean_without_spaces_in_a_long_run() -> None:
    text = "가" * 100
    pieces = chunk_text(text, len, max_tokens=40, overlap_tokens=0)
    assert "".join(p.text for p in pieces) == text and all(p.token_count <= 40 for p in pieces)
