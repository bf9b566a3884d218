"""The rule planner (apps/text/compound.py) on English and Korean questions, the merge that gives every
part its share of the context, the marker renumbering of part answers, and the model reply's validation."""

from __future__ import annotations

import pytest

from apps.orchestration.src.planner.compose import MarkerRenumberer, part_evidence
from apps.orchestration.src.planner.model import PlanRefused, PlanReply, json_object
from apps.orchestration.src.planner.plan import PlanPart
from apps.orchestration.src.planner.retrieval import merge, part_request_id
from apps.llm.base import Evidence
from apps.search.types import Hit
from apps.text.compound import has_cue, split_question

# (question, expected parts, the rule that split it)
TABLE = [
    # one thing: left whole
    ("What is BM25?", ["What is BM25?"], "single"),
    ("salt and pepper shrimp recipe", ["salt and pepper shrimp recipe"], "single"),
    ("Johnson & Johnson", ["Johnson & Johnson"], "single"),
    ("What does Johnson & Johnson make?", ["What does Johnson & Johnson make?"], "single"),
    ("How do insulin and glucagon regulate blood sugar?", ["How do insulin and glucagon regulate blood sugar?"],
     "single"),
    ("Who wrote books on math, physics and astronomy?", ["Who wrote books on math, physics and astronomy?"], "single"),
    ("Who discovered penicillin and when?", ["Who discovered penicillin and when?"], "single"),
    ("I run PostgreSQL 16. How do I tune autovacuum?", ["I run PostgreSQL 16. How do I tune autovacuum?"], "single"),
    ("Deltex interacts with eIF3. There is no known interaction between Deltex and elF3",
     ["Deltex interacts with eIF3. There is no known interaction between Deltex and elF3"], "single"),
    ("Ectopic expression of Sall4, Nanog, Esrrb, and Lin28 generates induced pluripotent stem cells.",
     ["Ectopic expression of Sall4, Nanog, Esrrb, and Lin28 generates induced pluripotent stem cells."], "single"),
    ("훈민정음은 언제 창제되었나?", ["훈민정음은 언제 창제되었나?"], "single"),
    ("A와 B 사이의 전쟁", ["A와 B 사이의 전쟁"], "single"),
    ("고려와 거란 사이의 전쟁은 언제 일어났나?", ["고려와 거란 사이의 전쟁은 언제 일어났나?"], "single"),
    ("약의 효과 차이는 무엇인가?", ["약의 효과 차이는 무엇인가?"], "single"),  # 효과 is a word, not "효" + 과
    ("삭망월과 태양년의 날짜 차이를 없애기 위해 사용된 방법은?", ["삭망월과 태양년의 날짜 차이를 없애기 위해 사용된 방법은?"],
     "single"),  # the comparison is not what is asked
    ("순수 수학, 물리학, 천문학, 생물학에 관한 책을 쓴 사람은?", ["순수 수학, 물리학, 천문학, 생물학에 관한 책을 쓴 사람은?"], "single"),
    ("흑이 기권한다면 기보엔 resigns와 더불어 무엇을 적어야하는가?", ["흑이 기권한다면 기보엔 resigns와 더불어 무엇을 적어야하는가?"],
     "single"),  # "와 더불어": together with
    ("첫 시도만 통과하고, 나머지는 실패하여, 11위에 머물게 된 올림픽은?",
     ["첫 시도만 통과하고, 나머지는 실패하여, 11위에 머물게 된 올림픽은?"], "single"),
    ("나경원 의원은 딸을 통해 장애인 문제에 관심을 갖게 됐다. 딸이 앓고 있는 장애는 무엇인가?",
     ["나경원 의원은 딸을 통해 장애인 문제에 관심을 갖게 됐다. 딸이 앓고 있는 장애는 무엇인가?"], "single"),
    # two questions
    ("What is BM25 and how does dense retrieval work?", ["What is BM25?", "How does dense retrieval work?"], "clauses"),
    ("What is BM25? How does dense retrieval work?", ["What is BM25?", "How does dense retrieval work?"], "questions"),
    ("What is BM25? Also, who invented it?", ["What is BM25?", "Who invented it?"], "questions"),
    ("Vitamin D prevents bone loss. In addition, sunlight helps produce vitamin D.",
     ["Vitamin D prevents bone loss.", "Sunlight helps produce vitamin D."], "questions"),
    ("Is it true that vitamin D prevents bone loss and that sunlight helps produce vitamin D?",
     ["Is it true that vitamin D prevents bone loss?", "Is it true that sunlight helps produce vitamin D?"], "clauses"),
    ("Is it true that HNF4A mutations cause diabetes and that Escherichia coli (E. coli) carries toxic proteins?",
     ["Is it true that HNF4A mutations cause diabetes?",
      "Is it true that Escherichia coli (E. coli) carries toxic proteins?"], "clauses"),  # "E." ends no sentence
    ("Biomaterials lack inductive properties, and 1 in 5 million in UK have abnormal PrP positivity.",
     ["Biomaterials lack inductive properties", "1 in 5 million in UK have abnormal PrP positivity."], "clauses"),
    ("I have two questions. First, what is BM25? Second, what is dense retrieval?",
     ["what is BM25?", "what is dense retrieval?"], "enumeration"),
    ("1) What is BM25? 2) What is dense retrieval?", ["What is BM25?", "What is dense retrieval?"], "enumeration"),
    ("Which is larger: (a) Mars (b) Venus?", ["Mars", "Venus"], "enumeration"),
    ("세종대왕은 누구인가? 훈민정음은 언제 만들어졌나?", ["세종대왕은 누구인가?", "훈민정음은 언제 만들어졌나?"], "questions"),
    ("훈민정음은 언제 창제되었고, 누가 만들었나?", ["훈민정음은 언제 창제되었고", "누가 만들었나?"], "clauses"),
    ("임종석이 지명수배 된 날은? 그리고 평양축전에 파견된 인물은?", ["임종석이 지명수배 된 날은?", "평양축전에 파견된 인물은?"],
     "questions"),
    ("임종석이 지명수배 된 날은, 그리고 평양축전에 대표로 파견된 인물은?",
     ["임종석이 지명수배 된 날은", "평양축전에 대표로 파견된 인물은?"], "clauses"),
    ("임종석이 지명수배 된 연도와, 평양축전에 대표로 파견된 인물은?",
     ["임종석이 지명수배 된 연도", "평양축전에 대표로 파견된 인물은?"], "clauses"),
    ("두 가지 질문이 있습니다. 첫째, 세종은 누구인가? 둘째, 한글은 언제 만들어졌나?",
     ["세종은 누구인가?", "한글은 언제 만들어졌나?"], "enumeration"),
    # comparisons
    ("BM25 vs dense retrieval", ["BM25", "dense retrieval"], "comparison"),
    ("BM25 vs dense retrieval for short queries", ["BM25 for short queries", "dense retrieval for short queries"],
     "comparison"),
    ("Compare PostgreSQL and SQLite", ["PostgreSQL", "SQLite"], "comparison"),
    ("Compare the side effects of aspirin and ibuprofen",
     ["the side effects of aspirin", "the side effects of ibuprofen"], "comparison"),
    ("What is the difference between BM25 and dense retrieval?", ["BM25", "dense retrieval"], "comparison"),
    ("How does BM25 differ from dense retrieval?", ["BM25", "dense retrieval"], "comparison"),
    ("Which is faster, BM25 or dense retrieval?", ["BM25", "dense retrieval"], "comparison"),
    ("BM25와 밀집 검색의 차이는 무엇인가?", ["BM25", "밀집 검색"], "comparison"),
    ("BM25와 밀집 검색의 차이", ["BM25", "밀집 검색"], "comparison"),
    ("사과와 배의 영양 성분 차이점은?", ["사과의 영양 성분", "배의 영양 성분"], "comparison"),
    ("PostgreSQL과 SQLite를 비교해 줘", ["PostgreSQL", "SQLite"], "comparison"),
    ("BM25와 밀집 검색은 어떻게 다른가?", ["BM25", "밀집 검색"], "comparison"),
    ("BM25 vs 밀집 검색, 어느 쪽이 빠른가?", ["BM25", "밀집 검색"], "comparison"),
    ("주차장에 차 두 대 있나?", ["주차장에 차 두 대 있나?"], "single"),
    ("한국의 수도와 일본의 수도의 차이는?", ["한국의 수도", "일본의 수도"], "comparison"),
    # lists
    ("What are the capitals of France, Germany and Italy?",
     ["What are the capitals of France?", "What are the capitals of Germany?", "What are the capitals of Italy?"], "list"),
    ("Explain BM25, dense retrieval, and hybrid search.",
     ["Explain BM25.", "Explain dense retrieval.", "Explain hybrid search."], "list"),
    ("BM25, 밀집 검색, 하이브리드 검색에 대해 설명해 줘",
     ["BM25에 대해 설명해 줘", "밀집 검색에 대해 설명해 줘", "하이브리드 검색에 대해 설명해 줘"], "list"),
]


@pytest.mark.parametrize(("question", "expected", "kind"), TABLE, ids=[row[0][:40] for row in TABLE])
def test_rule_planner_table(question: str, expected: list[str], kind: str) -> None:
    split = split_question(question)
    assert [p.text for p in split.parts] == expected
    assert split.kind == kind


def test_a_part_that_refers_back_searches_with_the_topic() -> None:
    parts = split_question("What causes diabetes and how is it treated?").parts
    assert parts[1].text == "How is it treated?" and "diabetes" in parts[1].query
    korean = split_question("훈민정음은 언제 창제되었고, 누가 만들었나?").parts
    assert korean[1].query == "누가 만들었나? 훈민정음"
    # A shared frame's pronoun ("Is it true") refers to nothing: the part searches its own words.
    framed = split_question("Is it true that vitamin D prevents bone loss and that sunlight helps produce vitamin D?")
    assert all(p.query == p.text for p in framed.parts)


def test_a_framed_item_searches_with_its_lead() -> None:
    parts = split_question("Which is larger: (a) Mars (b) Venus?").parts
    assert [p.query for p in parts] == ["Which is larger Mars", "Which is larger Venus"]


def test_the_cue_gate() -> None:
    assert not has_cue("What is BM25?") and not has_cue("훈민정음은 언제 창제되었나?")
    assert has_cue("salt and pepper shrimp recipe")  # a cue is not a split: the rules (or a model) decide
    assert has_cue("BM25와 밀집 검색의 차이") and has_cue("What is X? What is Y?")


def test_long_and_adversarial_input_stays_fast() -> None:
    import time

    from apps.text.compound import MAX_CHARS

    long = "What is BM25? " * (MAX_CHARS // 14 + 1)
    assert len(split_question(long).parts) == 1  # a passage, not a question to plan
    # Just under the limit, the patterns that compare a clause with what came before stay cheap.
    budget = MAX_CHARS - 10
    for unit in ("x and what x ", "a, ", "and ", "? ", "와 ", "1) ", "E. ", "누가 했고 ", "what is x? ", " "):
        text = (unit * (budget // len(unit)))[:budget] + "x"
        start = time.perf_counter()
        split_question(text)
        assert time.perf_counter() - start < 0.5, unit


def _hit(chunk_id: int) -> Hit:
    return Hit(chunk_id=chunk_id, doc_id=f"d{chunk_id}", score=1.0 / chunk_id)


def test_merge_gives_every_part_its_quota_then_fuses_the_rest() -> None:
    part_a = [_hit(c) for c in (1, 2, 3, 4, 5, 6)]
    part_b = [_hit(c) for c in (11, 3, 12, 13, 14)]
    merged = merge([part_a, part_b], top_k=6)
    ids = [hit.chunk_id for hit, _ in merged]
    # Quota 3 each, in turns: a1, b11, a2, b3 (also a's), a3 is taken: a's third is 3; b's third is 12.
    assert ids[:5] == [1, 11, 2, 3, 12]
    assert len(ids) == 6 and len(set(ids)) == 6
    owners = dict((hit.chunk_id, o) for hit, o in merged)
    assert owners[3] == (0, 1) and owners[1] == (0,) and owners[11] == (1,)
    # A dominant part cannot crowd out the other: b keeps half the places although a has more hits.
    assert sum(1 for _, o in merged if 1 in o) >= 3


def test_merge_with_an_empty_part_and_a_single_part() -> None:
    assert [h.chunk_id for h, _ in merge([[_hit(1), _hit(2)], []], top_k=2)] == [1, 2]
    assert [h.chunk_id for h, _ in merge([[_hit(1), _hit(2), _hit(3)]], top_k=2)] == [1, 2]


def test_part_request_ids_fit_the_log() -> None:
    assert part_request_id("r1", 0) == "r1" and part_request_id("r1", 2) == "r1.p2"
    assert len(part_request_id("x" * 64, 3)) == 64


def test_markers_are_renumbered_across_stream_pieces() -> None:
    renumber = MarkerRenumberer({1: 4, 2: 7})
    out = "".join(renumber.feed(p) for p in ["Bone loss [", "1]. Sun [2", "] and [3]", " [1", "]", " [2"])
    assert out + renumber.flush() == "Bone loss [4]. Sun [7] and [3] [4] [2"  # an unclosed "[2" is no marker
    plain = MarkerRenumberer({1: 2})
    assert plain.feed("a [b] c") + plain.flush() == "a [b] c"


def test_part_evidence_is_each_parts_own_plus_what_no_part_found() -> None:
    evidence = [Evidence(c, f"d{c}", "", "", 1.0) for c in (1, 2, -1)]  # -1: a tool's result
    parts = [PlanPart("a", "a", hits=(1,)), PlanPart("b", "b", hits=(2,))]
    assert [[e.chunk_id for e in own] for own in part_evidence(parts, evidence)] == [[1, -1], [2, -1]]


def test_model_replies_are_validated() -> None:
    assert PlanReply.model_validate_json(json_object('```json\n{"parts": ["What is X?", "Y?"]}\n```')).parts == [
        "What is X?", "Y?"]
    for garbage in ("I think there are two questions.", '{"parts": []}', '{"parts": "x"}', '{"steps": ["x"]}',
                    '{"parts": [""]}', "{not json}"):
        with pytest.raises((PlanRefused, ValueError)):
            PlanReply.model_validate_json(json_object(garbage))
