"""Follow-up questions made standalone by rule (English and Korean): no model, microseconds a question.

A follow-up leans on the turn before it in one of two ways:
- a reference: a pronoun or a demonstrative ("When was it founded?", "What is its population?",
  "그것은 언제 만들어졌나?", "그의 직업은?", "이 사건의 원인은?");
- an ellipsis: the subject left out ("How tall?", "And the population?", "What about Paris?",
  "언제 만들어졌나?", "예멘을 비판한 나라는?", "인구는?").
Either way the previous turn's subject goes in: in place of the reference, or in front of the ellipsis
("What about X?" with a name X asks the previous question about X instead). A question that names its
own subject and refers to nothing before it stands alone and is returned as it came ("When was the
Eiffel Tower built?", "반기문이 맡은 직위는?"); so is a question that already names the subject, and an
ellipsis that names the title of something it finds by itself (`own_titles`: Korean marks no subject in
"금강산에 있는 암석은?", but it names 금강산, whose pages it finds).

The subject of a turn (`subject_of`) is the longest title of its sources that the question names (a
document is about something, and a question names the thing it asks about), else what the grammar
marks: the noun phrase of "what/who is X", a capitalised name (English); the first word marked as a
topic, subject or possessor with 은/는/이/가/의, with the bare nouns before it (Korean).

Every rule looks at one word and its neighbours: the cost is linear in the question's length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from apps.text.language import has_hangul

Cue = Literal["reference", "ellipsis"]

_PUNCT = ".,;:!?()[]{}\"'“”‘’「」…·"
_TERMINAL = ("?", "？", ".", "!")

# --- English ------------------------------------------------------------------------------------------

_EN_WH = frozenset({"what", "who", "whom", "whose", "which", "when", "where", "why", "how"})
_EN_AUX = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "will", "would",
                     "has", "have", "had", "may", "might", "must", "shall", "be", "been"})
_EN_BE = frozenset({"is", "are", "was", "were"})
_EN_REQUEST = frozenset({"explain", "describe", "tell", "list", "name", "give", "define", "summarize", "summarise"})
_EN_PERSONAL = frozenset({"it", "they", "them", "he", "him", "she", "her", "itself", "themselves", "himself",
                          "herself"})
_EN_POSSESSIVE = frozenset({"its", "their", "his", "her", "theirs", "hers"})
_EN_DEMONSTRATIVE = frozenset({"this", "that", "these", "those"})
# "Is it true that ...", "how long does it take": an `it` that stands for no earlier thing.
_EN_DUMMY_IT_NEXT = frozenset({"true", "possible", "likely", "necessary", "important", "worth", "known", "said",
                               "take", "takes", "took", "matter", "mean", "cost", "costs"})
_EN_LEADS = (("and", "what", "about"), ("and", "how", "about"), ("what", "about"), ("how", "about"),
             ("what", "of"), ("and",), ("also",))
_EN_NAME_GLUE = frozenset({"of", "the", "de", "von", "van", "da", "del", "and", "&"})
_EN_DETERMINERS = frozenset({"the", "a", "an"})

# --- Korean -------------------------------------------------------------------------------------------

_KO_WH = ("무엇", "뭐", "뭔", "어떤", "무슨", "누구", "누가", "언제", "어디", "어딘", "왜", "어떻게", "얼마", "몇", "어느")
# Pronoun stems; a word is a pronoun when what follows the stem is a particle (or nothing).
_KO_PRONOUN_STEMS = ("그것", "이것", "저것", "그곳", "이곳", "저곳", "거기", "그녀", "그들", "이들", "그분", "이분",
                     "저분", "그쪽")
_KO_HE = "그"  # "그는", "그가", "그의": the bare 그 with a particle is "he"; 그러나, 그리고, 그런 are not
_KO_DETERMINERS = frozenset({"그", "이", "저", "해당"})
# 그 + these is time or discourse ("그 해", "그 후", "이 때"), not a thing named before.
_KO_NOT_REFERENT = frozenset({"해", "후", "때", "외", "밖", "밖에", "결과", "다음", "전", "뒤", "당시", "중", "이후",
                              "이전", "동안", "무렵", "날", "뒤로", "위", "아래", "사이", "이상", "이하", "정도"})
_KO_PARTICLES = ("에 대해서", "에 대하여", "에 대해", "에게서", "에서는", "에서도", "에게는", "으로는", "이라는", "에서",
                 "에게", "으로", "이란", "라는", "에는", "에도", "까지", "부터", "처럼", "보다", "은", "는", "이", "가",
                 "을", "를", "의", "에", "와", "과", "도", "로", "만", "란")
_KO_SUBJECT_MARKS = ("은", "는", "이", "가", "의")
# Particle pairs by the final sound of the noun before them: (after a consonant, after a vowel).
_KO_ALTERNATING = {"은": ("은", "는"), "는": ("은", "는"), "이": ("이", "가"), "가": ("이", "가"),
                   "을": ("을", "를"), "를": ("을", "를"), "과": ("과", "와"), "와": ("과", "와"),
                   "으로": ("으로", "로"), "로": ("으로", "로"), "이란": ("이란", "란"), "란": ("이란", "란"),
                   "이라는": ("이라는", "라는"), "라는": ("이라는", "라는")}
# Adverbs ending in 이 that are no subject ("많이", "같이").
_KO_ADVERBS = frozenset({"많이", "같이", "깊이", "특히", "없이", "굳이", "일찍이", "함께", "가장", "처음", "다시", "이미"})
# Stems that take 의 or 은/는 without naming what a question is about: times, quantities ("최근의", "대부분의").
_KO_NOT_SUBJECTS = frozenset({"최근", "당시", "현재", "오늘날", "대부분", "일부", "전체", "최초", "이후", "이전", "과거",
                              "미래", "그때", "다음", "처음", "마지막", "나머지", "각각", "모두"})
# Verb and adjective forms that modify the noun after them ("검거한 장소는", "받은 뒤", "있는 곳은"): the noun
# they modify is what the question asks for, not what it is about.
_KO_ADNOMINAL_ENDINGS = ("한", "된", "던", "될", "할", "하는", "되는", "있는", "없는", "않는", "않은", "라는", "다는", "받은",
                         "받는", "같은", "많은", "적은", "작은", "높은", "낮은", "넓은", "깊은", "좋은", "맡은", "얻은",
                         "남은", "만난", "만든", "이룬", "지닌", "가진", "알려진", "불리는", "이던", "였던", "인")
_KO_DISCOURSE = frozenset({"그럼", "그러면", "그리고", "또", "또한", "그렇다면", "그래서", "아울러"})
# Endings of a word that is no bare noun (verbs, adnominals, adverbial endings): where a name stops.
_KO_NOT_NOUN_ENDINGS = ("한", "된", "은", "는", "을", "를", "던", "인", "고", "서", "며", "면", "게", "지", "에", "로",
                        "와", "과", "도", "만", "까", "의", "이", "가", "다", "할", "될", "히", "적", "하여", "되어",
                        "여", "어", "아")
_KO_WH_DETERMINERS = frozenset({"어느", "무슨", "어떤", "몇"})  # "어느 대통령의": the possessor belongs to the question word
# Latin or digit finals as Korean reads them: 1 일, 3 삼, 6 육, 7 칠, 8 팔, 0 영, L 엘, M 엠, N 엔 end in a consonant.
_CONSONANT_FINALS = frozenset("013678lmnLMN")
_HANGUL_WORD = re.compile(r"^[\uac00-\ud7a3A-Za-z]+$")


@dataclass(frozen=True)
class Rewrite:
    question: str  # the standalone question: the input when it already stood alone
    changed: bool
    cue: Cue | None  # what made it a follow-up (None: it stands alone, or there was no subject to add)
    subject: str | None  # the subject carried in (None when unchanged)


# --- words --------------------------------------------------------------------------------------------

def _bare(word: str) -> str:
    return word.strip(_PUNCT).lower()


def _split_punct(word: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation)."""
    core = word.strip(_PUNCT)
    if not core:
        return word, "", ""
    start = word.index(core)
    return word[:start], core, word[start + len(core):]


def _hangul_final_consonant(ch: str) -> bool | None:
    if "\uac00" <= ch <= "\ud7a3":
        return (ord(ch) - 0xAC00) % 28 != 0
    return None


def _ends_in_consonant(noun: str) -> bool:
    last = noun.rstrip(_PUNCT + " ")[-1:] or " "
    hangul = _hangul_final_consonant(last)
    return hangul if hangul is not None else last in _CONSONANT_FINALS


def _ends_in_rieul(noun: str) -> bool:
    last = noun.rstrip(_PUNCT + " ")[-1:] or " "
    return "\uac00" <= last <= "\ud7a3" and (ord(last) - 0xAC00) % 28 == 8


def attach(noun: str, particle: str) -> str:
    """`noun` with `particle` in the form its final sound takes (반기문 + 가 → 반기문이, 에펠탑 + 로 → 에펠탑으로)."""
    pair = _KO_ALTERNATING.get(particle)
    if pair is None:
        return noun + particle
    consonant = _ends_in_consonant(noun)
    if pair[0] == "으로" and _ends_in_rieul(noun):  # 서울로, not 서울으로
        return noun + "로"
    return noun + (pair[0] if consonant else pair[1])


def _strip_particle(word: str) -> tuple[str, str]:
    """(stem, particle) of a Korean word; the particle is empty when none is recognised."""
    for particle in _KO_PARTICLES:
        if " " not in particle and word.endswith(particle) and len(word) > len(particle):
            return word[: -len(particle)], particle
    return word, ""


def _particle_only(rest: str) -> bool:
    return rest == "" or rest in _KO_PARTICLES or rest in ("에게", "에서", "한테", "께서", "께")


def normalise_title(title: str) -> str:
    """A document title as questions write it: underscores as spaces, a trailing "(disambiguation)" dropped."""
    text = title.replace("_", " ").strip()
    text = re.sub(r"(?<!\s)\s*\([^()]*\)$", "", text).strip()
    return " ".join(text.split())


# --- subjects -----------------------------------------------------------------------------------------

def _named_title(question: str, titles: Sequence[str]) -> str | None:
    """The longest title the question names, as the question writes it ("the Eiffel Tower" for the
    title "Eiffel Tower" in "When was the Eiffel Tower built?")."""
    text = " ".join(question.split())
    squeezed = text.lower().replace(" ", "")
    best: str | None = None
    for raw in titles:
        title = normalise_title(raw)
        if len(title) < 2 or (best is not None and len(title) <= len(best)):
            continue
        if has_hangul(title):
            if title.lower().replace(" ", "") in squeezed:
                best = title
            continue
        found = re.search(rf"(?<![\w])(?:(the)\s+)?{re.escape(title)}(?![\w])", text, re.IGNORECASE)
        if found:
            best = found.group(0)
    return best


def _english_names(words: list[str]) -> list[tuple[int, int]]:
    """(start, end) word spans of capitalised names ("Marie Curie", "Bank of Korea"); a sentence's first
    word counts only when it is no question or request word."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        core = words[i].strip(_PUNCT)
        lead = i == 0 and (_bare(core) in _EN_WH or _bare(core) in _EN_AUX or _bare(core) in _EN_REQUEST)
        if core[:1].isupper() and core.lower() != "i" and not lead:
            j = i + 1
            while j < len(words) and not words[j - 1].endswith((",", ";", ":", "?", ".")):
                nxt = words[j].strip(_PUNCT)
                if nxt[:1].isupper() or (nxt.lower() in _EN_NAME_GLUE and j + 1 < len(words)
                                         and words[j + 1].strip(_PUNCT)[:1].isupper()):
                    j += 1
                else:
                    break
            spans.append((i, j))
            i = j
        else:
            i += 1
    return spans


def _english_subject(question: str) -> str | None:
    words = question.split()
    lower = [_bare(w) for w in words]
    # "What is X?", "Who was X?": X is what the question is about.
    if len(words) >= 3 and lower[0] in _EN_WH and lower[1] in _EN_BE and len(words) - 2 <= 6:
        phrase = " ".join(words[2:]).strip(_PUNCT + " ")
        if phrase and not any(w in _EN_PERSONAL or w in _EN_POSSESSIVE for w in lower[2:]):
            return phrase
    spans = _english_names(words)
    if spans:
        start, end = spans[0]
        return " ".join(words[start:end]).strip(_PUNCT + " ").removesuffix("'s").removesuffix("’s")
    return None


def _bare_noun(word: str) -> bool:
    return bool(_HANGUL_WORD.match(word)) and not word.endswith(_KO_NOT_NOUN_ENDINGS) and not word.startswith(_KO_WH)


def _adnominal(word: str) -> bool:
    return len(word) >= 2 and word.endswith(_KO_ADNOMINAL_ENDINGS) and not word.startswith(_KO_WH)


def _korean_marked(words: list[str]) -> list[int]:
    """Positions of the words that name what a Korean question is about: a noun marked as topic, subject
    or possessor (은/는/이/가/의, 에서는 ...), or a name in Latin script. Not the last word (what is asked
    for: "나라는?"), a question word or what hangs on one ("어느 대통령의"), an adverb, a time or quantity
    ("최근의"), a verb form ("받은"), nor the noun a verb form modifies, with the nouns chained to it by 의
    ("결혼한 상대의 이름은": the thing asked for)."""
    marked: list[int] = []
    in_head = False  # inside the noun phrase a verb form modifies
    for i, word in enumerate(words[:-1]):
        before = words[i - 1] if i else ""
        if _adnominal(word):
            in_head = True
            continue
        stem, particle = _strip_particle(word)
        if in_head and not particle:  # "연구하는 주요 연구자의": the bare nouns of the phrase
            continue
        head = in_head
        in_head = in_head and particle == "의"  # "상대의 이름은": the chain goes on through 의
        if (head or word.startswith(_KO_WH) or before in _KO_WH_DETERMINERS or word in _KO_DISCOURSE
                or word in _KO_ADVERBS or stem in _KO_NOT_SUBJECTS or not stem or stem.isdigit()):
            continue
        if any(ch.isascii() and ch.isalpha() for ch in word):
            marked.append(i)
        elif particle in _KO_SUBJECT_MARKS or particle.endswith(("는", "은")):
            marked.append(i)
    return marked


def _korean_subject(question: str) -> str | None:
    words = [w.strip(_PUNCT) for w in question.split()]
    words = [w for w in words if w]
    for i in _korean_marked(words):
        if _korean_reference(words, i) is not None:
            continue
        stem, _ = _strip_particle(words[i])
        start = i
        while start > 0 and _bare_noun(words[start - 1]) and words[start - 1] not in _KO_DETERMINERS:
            start -= 1
        return " ".join([*words[start:i], stem])
    return None


def subject_of(question: str, titles: Sequence[str] = ()) -> str | None:
    """What a question asks about: the longest of `titles` (its sources' titles) that it names, else the
    subject its grammar marks; None when neither says."""
    named = _named_title(question, titles)
    if named is not None:
        return named
    return _korean_subject(question) if has_hangul(question) else _english_subject(question)


# --- cues ---------------------------------------------------------------------------------------------

def _english_reference(words: list[str], i: int) -> str | None:
    """"personal" | "possessive" | "demonstrative" | "place" when words[i] refers back, else None."""
    word = _bare(words[i])
    nxt = _bare(words[i + 1]) if i + 1 < len(words) else ""
    prev = _bare(words[i - 1]) if i else ""
    last = i == len(words) - 1 or words[i].endswith(_TERMINAL)
    if word == "there":  # "live there?" refers to a place; "is there a ...?" does not
        return "place" if last and prev not in _EN_AUX else None
    if word == "it" and nxt in _EN_DUMMY_IT_NEXT:
        return None
    if word == "her":  # possessive before a noun ("her husband"), personal at the end ("who married her")
        return "possessive" if nxt and nxt not in _EN_AUX and not words[i].endswith(_TERMINAL) else "personal"
    if word in _EN_POSSESSIVE:
        return "possessive"
    if word in _EN_PERSONAL:
        return "personal"
    if word in _EN_DEMONSTRATIVE:
        if last or prev in _EN_WH or prev in _EN_AUX:
            return "demonstrative"
    return None


def _korean_reference(words: list[str], i: int) -> str | None:
    """"pronoun" | "determiner" when words[i] refers back, else None."""
    word = words[i].strip(_PUNCT)
    for stem in _KO_PRONOUN_STEMS:
        if word.startswith(stem) and _particle_only(word[len(stem):]):
            return "pronoun"
    if word.startswith(_KO_HE) and len(word) > 1 and word[1:] in ("는", "가", "의", "를", "에게", "와", "도", "로", "한테"):
        return "pronoun"
    if word in _KO_DETERMINERS and i + 1 < len(words):
        noun, _ = _strip_particle(words[i + 1].strip(_PUNCT))
        if noun and noun not in _KO_NOT_REFERENT and not words[i + 1].startswith(_KO_WH):
            return "determiner"
    return None


def _english_lead(lower: list[str]) -> int:
    for lead in _EN_LEADS:
        if len(lower) > len(lead) and tuple(lower[: len(lead)]) == lead:
            return len(lead)
    return 0


def _english_cue(words: list[str]) -> Cue | None:
    lower = [_bare(w) for w in words]
    names = _english_names(words)
    for i in range(len(words)):
        if _english_reference(words, i) is not None:
            # A name before the pronoun is what it refers to: "When did Marie Curie win her prize?"
            if not any(start < i for start, _ in names):
                return "reference"
    if _english_lead(lower):
        return "ellipsis"
    # "How tall?", "Why?", "When exactly?": question words with at most one word more, naming nothing.
    content = [w for w in lower if w and w not in _EN_WH and w not in _EN_AUX]
    if lower and lower[0] in _EN_WH and not names and (not content or (lower[0] == "how" and len(content) <= 1)):
        return "ellipsis"
    return None


def _korean_cue(words: list[str]) -> Cue | None:
    bare = [w.strip(_PUNCT) for w in words]
    bare = [w for w in bare if w]
    marked = _korean_marked(bare)
    for i in range(len(bare)):
        if _korean_reference(bare, i) is not None:
            # A topic of its own before the pronoun is what it refers to: "암호화폐는 ... 이것을 ...".
            topics = [j for j in marked if j < i and _strip_particle(bare[j])[1].endswith(("는", "은"))]
            if not topics:
                return "reference"
    if marked or (bare and any(ch.isascii() and ch.isalpha() for ch in bare[-1])):
        return None
    return "ellipsis"


def cue_of(question: str) -> Cue | None:
    """Whether a question leans on an earlier turn: "reference" (a pronoun, a demonstrative), "ellipsis"
    (no subject of its own), or None (it stands alone)."""
    words = question.split()
    if not words:
        return None
    return _korean_cue(words) if has_hangul(question) else _english_cue(words)


# --- rewriting ----------------------------------------------------------------------------------------

def _possessive(subject: str) -> str:
    return subject + ("'" if subject.endswith("s") else "'s")


def _english_rewrite(question: str, cue: Cue, subject: str, previous: str | None, previous_subject: str | None) -> str:
    words = question.split()
    lower = [_bare(w) for w in words]
    if cue == "reference":
        out: list[str] = []
        for i, word in enumerate(words):
            kind = _english_reference(words, i)
            if kind is None:
                out.append(word)
                continue
            lead, _, trail = _split_punct(word)
            name = {"possessive": _possessive(subject), "place": f"in {subject}"}.get(kind, subject)
            out.append(lead + name + trail)
        text = " ".join(out)
        return text[0].upper() + text[1:] if text and not words[0][:1].isupper() else text
    skip = _english_lead(lower)
    rest = words[skip:]
    if skip and rest and lower[skip - 1] in ("about", "of", "and", "also") and _english_names(rest) == [(0, len(rest))]:
        # "What about Paris?": the previous question, asked about the new name.
        name = " ".join(rest).strip(_PUNCT + " ")
        if previous and previous_subject and previous_subject in previous:
            return previous.replace(previous_subject, name, 1)
        return f"What about {name}?"
    if skip and rest:
        phrase = " ".join(rest).rstrip("?？ ").strip()
        return f"What about {phrase} of {subject}?"
    stem = question.strip().rstrip("?？ ")
    return f"{stem} ({subject})?" if stem else f"{subject}?"


def _korean_rewrite(question: str, cue: Cue, subject: str) -> str:
    words = question.split()
    if cue == "reference":
        bare = [w.strip(_PUNCT) for w in words]
        out: list[str] = []
        i = 0
        while i < len(words):
            kind = _korean_reference(bare, i) if bare[i] else None
            lead, core, trail = _split_punct(words[i])
            if kind == "pronoun":
                stem = next((s for s in _KO_PRONOUN_STEMS if core.startswith(s)), _KO_HE)
                out.append(lead + attach(subject, core[len(stem):]) + trail)
            elif kind == "determiner":
                noun_lead, noun_core, noun_trail = _split_punct(words[i + 1])
                noun, particle = _strip_particle(noun_core)
                # "이 사건의" about "천안함 침몰 사건" → "천안함 침몰 사건의"; else the name before the noun.
                named = attach(subject, particle) if subject.endswith(noun) else f"{subject} {noun_core}"
                out.append(lead + noun_lead + named + noun_trail)
                i += 1
            else:
                out.append(words[i])
            i += 1
        return " ".join(out)
    while len(words) > 1 and words[0].strip(_PUNCT) in _KO_DISCOURSE:
        words = words[1:]
    if len(words) == 1:  # "인구는?": the subject's
        return f"{attach(subject, '의')} {words[0]}"
    return f"{attach(subject, '은')} {' '.join(words)}"


def _asks_about_another(question: str) -> bool:
    """"What about Lyon?", "And Lyon?", "그럼 부산은?": a name alone, asked the previous question about."""
    words = question.split()
    if has_hangul(question):
        while len(words) > 1 and words[0].strip(_PUNCT) in _KO_DISCOURSE:
            words = words[1:]
        return len(words) == 1
    return _english_lead([_bare(w) for w in words]) > 0


def _korean_swap(name: str | None, previous: str | None, previous_subject: str | None) -> str | None:
    """The previous question with its subject replaced by `name`, each particle fitted to the new noun."""
    if not (name and previous and previous_subject and previous_subject in previous):
        return None
    at = previous.index(previous_subject)
    tail = previous[at + len(previous_subject):]
    particle = next((p for p in _KO_ALTERNATING if tail.startswith(p)), "")
    return previous[:at] + attach(name, particle) + tail[len(particle):]


def rewrite(question: str, subject: str | None, previous: str | None = None,
            previous_subject: str | None = None, own_titles: Sequence[str] = ()) -> Rewrite:
    """`question` made standalone with `subject` (the previous turn's), or as it came when it stands
    alone, already names the subject, or there is no subject. `previous` is the previous turn's standalone
    question (with its subject `previous_subject`): "What about Paris?" asks it again about Paris.
    `own_titles` are the titles of what the question finds by itself: an ellipsis that names one of them
    names its own subject ("금강산에 있는 암석은?" finds 금강산's pages), and stands alone."""
    text = " ".join(question.split())
    unchanged = Rewrite(text, False, None, None)
    cue = cue_of(text)
    named = _named_title(text, own_titles) if cue == "ellipsis" else None
    swap = named is not None and _asks_about_another(text)
    if named is not None and not swap:
        cue = None
    if cue is None or not subject:
        return Rewrite(text, False, cue, None)
    if normalise_title(subject).lower().replace(" ", "") in text.lower().replace(" ", ""):
        return unchanged
    if has_hangul(text):
        new = _korean_swap(named, previous, previous_subject) if swap else None
        new = new or _korean_rewrite(text, cue, subject)
    else:
        new = _english_rewrite(text, cue, subject, previous, previous_subject)
    new = " ".join(new.split())
    return Rewrite(new, new != text, cue, subject) if new != text else unchanged
