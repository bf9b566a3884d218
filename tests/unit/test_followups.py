"""Follow-ups made standalone by rule, in English and Korean: a pronoun or demonstrative gives way to the
earlier subject, an ellipsis gets it in front, and a question that stands alone is left as it came."""

from __future__ import annotations

import pytest

from apps.orchestration.src.conversations import FollowupRewriter, HistoryTurn
from apps.text.followups import attach, cue_of, rewrite, subject_of


@pytest.mark.parametrize(("question", "subject", "standalone"), [
    ("When was it founded?", "the Eiffel Tower", "When was the Eiffel Tower founded?"),
    ("What is its population?", "Seoul", "What is Seoul's population?"),
    ("Who married her?", "Marie Curie", "Who married Marie Curie?"),
    ("What was her profession?", "Marie Curie", "What was Marie Curie's profession?"),
    ("How many people live there?", "Paris", "How many people live in Paris?"),
    ("Who built that?", "the Eiffel Tower", "Who built the Eiffel Tower?"),
    ("And the population?", "Paris", "What about the population of Paris?"),
    ("How tall?", "the Eiffel Tower", "How tall (the Eiffel Tower)?"),
])
def test_english_follow_ups_carry_the_subject(question: str, subject: str, standalone: str) -> None:
    result = rewrite(question, subject)
    assert result.changed and result.question == standalone and result.subject == subject


def test_a_name_asked_about_takes_the_previous_question() -> None:
    result = rewrite("What about Lyon?", "Paris", previous="What is the population of Paris?",
                     previous_subject="Paris")
    assert result.question == "What is the population of Lyon?" and result.cue == "ellipsis"


@pytest.mark.parametrize(("question", "subject", "standalone"), [
    ("그것은 언제 만들어졌나?", "훈민정음", "훈민정음은 언제 만들어졌나?"),
    ("그것이 언제 만들어졌나?", "서울타워", "서울타워가 언제 만들어졌나?"),  # 이/가 follow the noun's last sound
    ("그의 업적은 무엇인가?", "세종대왕", "세종대왕의 업적은 무엇인가?"),
    ("그는 언제 태어났나?", "반기문", "반기문은 언제 태어났나?"),
    ("그곳으로 가는 방법은?", "서울", "서울로 가는 방법은?"),
    ("이 사건의 원인은?", "천안함 침몰 사건", "천안함 침몰 사건의 원인은?"),
    ("그 의원의 부친이 설립한 곳은?", "나경원", "나경원 의원의 부친이 설립한 곳은?"),
    ("언제 만들어졌나?", "훈민정음", "훈민정음은 언제 만들어졌나?"),
    ("누가 만들었어?", "훈민정음", "훈민정음은 누가 만들었어?"),
    ("인구는?", "서울", "서울의 인구는?"),
    ("그럼 인구는?", "서울", "서울의 인구는?"),
    ("검거한 장소는 경희대 내 어디인가?", "임종석", "임종석은 검거한 장소는 경희대 내 어디인가?"),
])
def test_korean_follow_ups_carry_the_subject(question: str, subject: str, standalone: str) -> None:
    result = rewrite(question, subject)
    assert result.changed and result.question == standalone


@pytest.mark.parametrize(("question", "subject"), [
    ("When was the Eiffel Tower built?", "Paris"),
    ("When did Marie Curie win her first prize?", "Paris"),  # her = Marie Curie, named before it
    ("Is it true that water boils at 100 degrees?", "Paris"),  # a dummy it
    ("What is photosynthesis?", "Paris"),
    ("Is there a museum in Lyon?", "Paris"),
    ("세종대왕은 언제 태어났나?", "훈민정음"),
    ("반기문이 참여정부에서 맡은 직위는?", "금강산"),
    ("JTBC가 종합편성채널에 신청하려 했던 이름은?", "반기문"),
    ("암호화폐는 무엇이고 이것을 관리하는 방식은?", "반기문"),  # 이것 = 암호화폐, its own topic
])
def test_a_question_that_stands_alone_is_left_as_it_came(question: str, subject: str) -> None:
    result = rewrite(question, subject)
    assert not result.changed and result.question == question and cue_of(question) is None


def test_an_ellipsis_that_names_what_it_finds_stands_alone() -> None:
    # No marked subject: by grammar alone it could lean on the turn before ...
    question = "금강산에 있는 암석은 무엇인가?"
    assert rewrite(question, "반기문").question == "반기문은 금강산에 있는 암석은 무엇인가?"
    # ... but it names the title of what it finds by itself: it has its own subject.
    assert not rewrite(question, "반기문", own_titles=["금강산", "금강산 관광"]).changed
    # A name alone asks the previous question about it, whether or not it finds pages of its own.
    swapped = rewrite("What about Lyon?", "Paris", previous="How many people live in Paris?",
                      previous_subject="Paris", own_titles=["Lyon"])
    assert swapped.question == "How many people live in Lyon?"
    korean = rewrite("그럼 부산은?", "서울", previous="서울의 인구는?", previous_subject="서울", own_titles=["부산"])
    assert korean.question == "부산의 인구는?"
    assert rewrite("그럼 인구는?", "서울", previous="서울의 면적은?", previous_subject="서울").question == "서울의 인구는?"
    # What it finds but does not name is no subject of its own: "예멘을 비판한 나라는?" finds 반기문's pages.
    assert rewrite("예멘을 공습하여 비판한 나라는?", "반기문", own_titles=["반기문"]).changed


def test_nothing_changes_without_a_subject_or_when_the_question_names_it() -> None:
    assert rewrite("When was it founded?", None).question == "When was it founded?"
    assert rewrite("When was it founded?", None).cue == "reference"
    assert not rewrite("그것은 언제 만들어졌나?", None).changed
    assert not rewrite("How tall is the Eiffel Tower?", "the Eiffel Tower").changed
    assert not rewrite("훈민정음은 언제?", "훈민정음").changed


def test_subjects_come_from_the_sources_titles_first_then_the_grammar() -> None:
    assert subject_of("Who designed the Statue of Liberty?", ["Liberty", "Statue of Liberty"]) == \
        "the Statue of Liberty"
    assert subject_of("천안함 침몰 사건의 원인으로 제기된 설은?", ["천안함_침몰_사건", "어뢰"]) == "천안함 침몰 사건"
    assert subject_of("Mercury's orbit is how long?", ["Mercury (planet)"]) == "Mercury"
    assert subject_of("What is the capital of France?") == "the capital of France"
    assert subject_of("When did Marie Curie win the Nobel Prize?") == "Marie Curie"
    assert subject_of("훈민정음은 누가 만들었나?") == "훈민정음"
    assert subject_of("나경원 의원의 부친이 설립한 곳은?") == "나경원 의원"
    assert subject_of("2004년 7월 반기문은 어디에 갔나?") == "반기문"
    assert subject_of("How tall?") is None


def test_korean_particles_follow_the_nouns_last_sound() -> None:
    assert attach("반기문", "가") == "반기문이" and attach("서울타워", "이") == "서울타워가"
    assert attach("훈민정음", "는") == "훈민정음은" and attach("세종", "를") == "세종을"
    assert attach("서울", "으로") == "서울로" and attach("부산", "로") == "부산으로"
    assert attach("JTBC", "은") == "JTBC는" and attach("GPT-3", "가") == "GPT-3이"


async def test_the_rewriter_reads_the_newest_turn_with_a_subject() -> None:
    history = (HistoryTurn("Who designed the Statue of Liberty?", "Who designed the Statue of Liberty?",
                           "the Statue of Liberty"),
               HistoryTurn("Thanks!", "Thanks!", None))
    result = await FollowupRewriter().rewrite("When was it built?", history)
    assert result.rewritten and result.by == "rule" and result.question == "When was the Statue of Liberty built?"
    alone = await FollowupRewriter().rewrite("When was the Eiffel Tower built?", history)
    assert not alone.rewritten and alone.by is None and alone.question == "When was the Eiffel Tower built?"
    first = await FollowupRewriter().rewrite("When was it built?", ())
    assert not first.rewritten and first.cue == "reference"
