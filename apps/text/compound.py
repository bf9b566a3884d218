"""A question that asks several things, split into the questions it asks (English and Korean).

Word-level rules, no model, microseconds a question. Stages, each applied to what the one before left:
1. enumerations: "1) ... 2) ...", "(a) ... (b) ...", "First, ... Second, ...", "첫째, ... 둘째, ...",
   bullet lines → one part per item (an item that is not itself a question is asked in the lead's frame);
2. sentences: two or more sentences that ask (a question mark, a question word, a request), or a
   sentence opening with an additive marker ("Also,", "In addition,", "그리고", "또한") → one part per
   ask; a sentence that only gives context stays with its neighbour;
3. clauses: "... and how/what/is ...", "that X and that Y", ", and" + a clause, "; "; Korean a question
   clause ending in -고/-며 before another question, a conjunctive adverb (", 그리고", "또한", "아울러")
   between two asks, "A와, B는?" → one part per clause;
4. comparisons: "X vs Y", "compare X and/with/to Y", "the difference between X and Y", "how does X
   differ from Y", "which ..., X or Y", "X와 Y의 차이(점)", "X와 Y 비교", "X와 Y는 어떻게 다른가",
   "X와 Y 중 어느 ..." → X and Y, the shared head or aspect given to both ("the side effects of
   aspirin and ibuprofen" → "... of aspirin", "... of ibuprofen"; "A와 B의 성능 차이" → "A의 성능");
5. lists: a request ("explain", "what are", "설명해 줘", "각각") over three or more items → one part per
   item in the request's frame.
Everything else is one thing: "salt and pepper shrimp recipe", "Johnson & Johnson", "A와 B 사이의
전쟁" and "Who wrote books on math, physics and astronomy?" stay whole. A Korean comparison counts only
when it is the question's focus ("A와 B의 차이는?", not "A와 B의 차이를 없애기 위해 쓴 방법은?").

A later part that refers back ("... and how is it treated?", "... 누가 만들었나?") searches with the
first part's topic added to its own words (`Part.query`).

Every pattern here runs on one word (or an anchored fixed string), never over the whole text, so the
cost is linear in the question's length.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from apps.text.language import has_hangul
from apps.text.sentences import split_sentences

# --- vocabulary ----------------------------------------------------------------------------------------

_EN_WH = frozenset({"what", "who", "whom", "whose", "which", "when", "where", "why", "how"})
_EN_AUX = frozenset({"is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "will", "would",
                     "has", "have", "had", "may", "might", "must", "shall"})
_EN_REQUEST = frozenset({"explain", "describe", "tell", "list", "name", "give", "define", "summarize", "summarise",
                         "compare", "find", "show", "identify", "outline"})
_EN_ADDITIVE = (("and", "also"), ("in", "addition"), ("also",), ("additionally",), ("moreover",), ("furthermore",),
                ("besides",), ("plus",), ("and",))
_EN_PRONOUNS = frozenset({"it", "its", "they", "them", "their", "theirs", "he", "him", "his", "she", "her", "hers",
                          "this", "these", "those"})
_EN_SUBORDINATORS = frozenset({"if", "when", "while", "although", "though", "because", "since", "as", "after",
                               "before", "in", "with", "for", "during", "unlike", "like", "whereas", "once"})
_EN_TAIL_PREPOSITIONS = frozenset({"in", "for", "on", "when", "during", "regarding", "across", "under", "among",
                                   "against", "at"})
_EN_ORDINALS = {"first": 1, "firstly": 1, "second": 2, "secondly": 2, "third": 3, "thirdly": 3, "fourth": 4,
                "fourthly": 4, "fifth": 5, "finally": 0, "lastly": 0}
_EN_LIST_LEADS = (("what", "is"), ("what", "are"), ("what", "were"), ("what", "was"), ("who", "is"), ("who", "are"),
                  ("who", "were"), ("who", "was"), ("tell", "me", "about"), ("give", "me", "an", "overview", "of"),
                  ("give", "an", "overview", "of"), ("explain",), ("describe",), ("define",), ("summarize",),
                  ("summarise",), ("list",))
_EN_POLITE = (("please",), ("can", "you"), ("could", "you"), ("would", "you"))

_KO_WH = ("무엇", "뭐", "뭔", "어떤", "무슨", "누구", "누가", "언제", "어디", "어딘", "왜", "어떻게", "얼마", "몇", "어느")
_KO_QUESTION_ENDINGS = ("까", "니", "냐", "나요", "가요", "죠", "는가", "인가", "인지", "습니까", "입니까", "은가",
                        "을까", "ㄴ가", "나", "지요", "야")
_KO_REQUESTS = ("알려", "설명", "말해", "정리", "요약", "소개", "적으시오", "쓰시오", "구하시오", "찾으시오", "답하시오",
                "서술하시오", "비교해", "나열")
_KO_ADDITIVE = (("그리고", "또"), ("그리고",), ("또한",), ("아울러",), ("더불어",), ("추가로",), ("그", "밖에"),
                ("이와", "함께"), ("또",))
_KO_MIDDLE_ADVERBS = frozenset({"그리고", "또한", "아울러", "더불어"})
_KO_ORDINALS = {"첫째": 1, "첫째로": 1, "둘째": 2, "둘째로": 2, "셋째": 3, "셋째로": 3, "넷째": 4, "넷째로": 4,
                "다섯째": 5, "마지막으로": 0}
_KO_COUNTED = {"첫": 1, "두": 2, "세": 3, "네": 4, "다섯": 5}  # "첫 번째", "두 번째", ...
_KO_PRONOUNS = ("그것", "이것", "그녀", "그들", "그곳", "이곳", "그는", "그가", "그의", "그를", "이들")
_KO_PARTICLES = ("에 대해서", "에 대하여", "에 대해", "에서는", "에서", "이라는", "라는", "으로", "에게", "이란", "란",
                 "에는", "은", "는", "이", "가", "을", "를", "의", "에", "와", "과", "도", "로")
_KO_TOPIC_PARTICLES = ("은", "는", "이", "가")
_KO_COMPARISON_CUES = ("차이점", "차이", "비교", "공통점", "장단점", "다른점")
_KO_DIFFER = ("다른", "다르", "다릅", "달라", "달랐")
_KO_DIFFER_LEADS = frozenset({"어떻게", "무엇이", "뭐가", "어디가", "점이", "점에서", "어떤"})
# What may follow a Korean comparison cue for the comparison to be the question's focus: particles,
# copulas, question and request endings, nothing that names another thing ("방법", "없애기").
_KO_FOCUS_PIECES = ("무엇", "뭐", "뭔", "뭘", "어떻게", "어떤", "설명", "알려", "말해", "비교", "정리", "있", "없", "되",
                    "해", "하", "주", "줘", "줄", "세요", "시오", "십시오", "요", "가", "까", "나", "니", "냐", "야",
                    "이", "인", "입니", "습니", "죠", "지", "예", "에", "점", "은", "는", "을", "를", "일", "는지",
                    "인지", "봐", "보", "자", "며", "고", "게", "대해", "대해서", "대하여", "서", "과", "와", "의",
                    "들", "이다", "다", "한", "할", "할까", "해줘", "해요", "드", "려", "십", "니까", "가요", "까요",
                    "나요", "이야", "예요", "에요", "라", "리")

_PUNCT = ".,;:!?()[]{}\"'“”‘’「」…·"
_TERMINAL = ("?", "？", ".", "!")
_NUMBERED = re.compile(r"\(?([1-9][0-9]?)[.)]")  # "1." "1)" "(1)": matched on one word
_LETTERED = re.compile(r"\(?([a-h])\)")  # "a)" "(a)"
_BULLETS = ("- ", "* ", "• ", "· ")

KINDS = ("single", "enumeration", "questions", "clauses", "comparison", "list")
# Longer text is a passage, not a question to plan: left whole. This also bounds the rules' cost (some
# compare a clause with all that came before it).
MAX_CHARS = 2000


@dataclass(frozen=True)
class Part:
    text: str  # the part as asked
    query: str  # what the part searches: its text, plus the topic it refers back to


@dataclass(frozen=True)
class Split:
    parts: tuple[Part, ...]
    kind: str  # one of KINDS: the first stage that split the question ("single": it asks one thing)

    @property
    def compound(self) -> bool:
        return len(self.parts) > 1


# --- words ---------------------------------------------------------------------------------------------

def _bare(word: str) -> str:
    return word.strip(_PUNCT).lower()


def _starts(words: Sequence[str], phrase: Sequence[str], at: int = 0) -> bool:
    return len(words) - at >= len(phrase) and all(_bare(words[at + i]) == p for i, p in enumerate(phrase))


def _join(words: Sequence[str]) -> str:
    return " ".join(words).strip(" ,;:")


def _ends_sentence(word: str) -> bool:
    return word.rstrip("\"'”’)]").endswith((*_TERMINAL, ":"))


def _made_of(word: str, pieces: Sequence[str]) -> bool:
    """Whether `word` is a concatenation of `pieces` (a reachability scan, linear in the word)."""
    reachable = [False] * (len(word) + 1)
    reachable[0] = True
    for i in range(len(word)):
        if reachable[i]:
            for piece in pieces:
                if word.startswith(piece, i):
                    reachable[i + len(piece)] = True
    return reachable[len(word)]


def _hangul_syllables(text: str) -> int:
    return sum(1 for ch in text if "\uac00" <= ch <= "\ud7a3")


def _strip_particle(word: str) -> str:
    for particle in _KO_PARTICLES:
        stem = word[: -len(particle)]
        if " " not in particle and word.endswith(particle) and stem and (_hangul_syllables(stem) or stem[-1].isalnum()):
            return word[: -len(particle)]
    return word


def _conjunct_stem(word: str) -> str | None:
    """The noun of a Korean conjunct "X와", "X과", "X랑" (None if the word is not one). A stem of one
    syllable before 과 is refused: 효과, 결과, 사과 are words, not conjuncts; "X하고" is left out, as
    it is as often a verb ("통과하고") as a conjunct."""
    bare = word.rstrip(",")
    for ending, min_stem in (("이랑", 1), ("와", 1), ("랑", 1), ("과", 2)):
        if bare.endswith(ending):
            stem = bare[: -len(ending)]
            if stem and (_hangul_syllables(stem) >= min_stem or not has_hangul(stem)) and stem[-1].isalnum():
                return stem
    return None


# --- what a sentence is --------------------------------------------------------------------------------

def asks(text: str) -> bool:
    """A question or a request: a question mark, a question word or auxiliary up front (English), a
    question word, question ending or request anywhere (Korean)."""
    stripped = text.strip().rstrip("\"'”’)]")
    if stripped.endswith(("?", "？")):
        return True
    if has_hangul(stripped):
        words = stripped.split()
        last = words[-1].rstrip(_PUNCT) if words else ""
        return (any(cue in stripped for cue in _KO_WH) or last.endswith(_KO_QUESTION_ENDINGS)
                or any(request in stripped for request in _KO_REQUESTS))
    words = stripped.split()
    if not words:
        return False
    first = _bare(words[0])
    if first in ("please", "can", "could", "would") and len(words) > 1:
        first = _bare(words[1]) if first == "please" else first
    return first in _EN_WH or first in _EN_AUX or first in _EN_REQUEST


def _additive(words: Sequence[str]) -> int:
    """How many words an additive opener takes ("Also," "In addition," "그리고"), 0 for none."""
    table = _KO_ADDITIVE if words and has_hangul(words[0]) else _EN_ADDITIVE
    for phrase in table:
        if _starts(words, phrase) and len(words) > len(phrase):
            return len(phrase)
    return 0


def _finish(words: Sequence[str], question: bool) -> str:
    """A part's text: trimmed, an English part capitalised and given the question mark its sentence had."""
    text = _join(words)
    if not text:
        return text
    if not has_hangul(text):
        text = text[0].upper() + text[1:]
        if question and not text.endswith(_TERMINAL):
            text += "?"
    return text


# --- stage 1: enumerations -----------------------------------------------------------------------------

def _markers(words: Sequence[str]) -> list[tuple[int, int, int]]:
    """(position, width, number) of item markers at the start of a sentence or clause."""
    found: list[tuple[int, int, int]] = []
    for i, word in enumerate(words):
        # "(2)" marks an item anywhere; "2)", "2." and ordinals only where a sentence or clause starts.
        if i and not (_ends_sentence(words[i - 1]) or words[i - 1].endswith(",") or word.startswith("(")):
            continue
        bare = word.rstrip(",:")
        numbered = _NUMBERED.fullmatch(word) or _LETTERED.fullmatch(word)
        if numbered:
            value = numbered.group(1)
            found.append((i, 1, int(value) if value.isdigit() else ord(value) - ord("a") + 1))
        elif word.endswith((",", ":")) and _bare(word) in _EN_ORDINALS:
            found.append((i, 1, _EN_ORDINALS[_bare(word)]))
        elif bare in _KO_ORDINALS:
            found.append((i, 1, _KO_ORDINALS[bare]))
        elif bare in _KO_COUNTED and i + 1 < len(words) and words[i + 1].rstrip(",:").startswith("번째"):
            found.append((i, 2, _KO_COUNTED[bare]))
    return found


def _valid_sequence(markers: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The markers numbered 1, 2, 3, ... (a final "finally"/"마지막으로" continues any sequence)."""
    kept: list[tuple[int, int, int]] = []
    for marker in markers:
        expected = len(kept) + 1
        if marker[2] == expected or (marker[2] == 0 and len(kept) >= 2):
            kept.append(marker)
    return kept if len(kept) >= 2 and kept[0][2] == 1 else []


def _enumeration(text: str) -> list[Part] | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bullets = [line for line in lines if line.startswith(_BULLETS)]
    if len(bullets) >= 2:
        lead = _join(lines[: lines.index(bullets[0])])
        items = [line[2:].strip() for line in bullets]
    else:
        words = text.split()
        markers = _valid_sequence(_markers(words))
        if not markers:
            return None
        lead = _join(words[: markers[0][0]])
        bounds = [m[0] for m in markers] + [len(words)]
        items = [_join(words[start + width: end]) for (start, width, _), end in zip(markers, bounds[1:])]
    items = [item for item in items if item]
    if len(items) < 2:
        return None
    if not asks(lead):
        return [Part(item, item) for item in items]
    # Items under a question ("Which is larger: (a) Mars (b) Venus?") are asked in its frame; the final
    # question mark is the lead's.
    parts = []
    for item in items:
        own = item.rstrip("?？ ")
        parts.append(Part(item, item) if asks(own) else Part(own, f"{lead} {own}"))
    return parts


# --- stage 2: sentences --------------------------------------------------------------------------------

def _initial(word: str) -> bool:
    """"E." or "(E.": an initial or a one-letter abbreviation, not the end of a sentence."""
    bare = word.lstrip("([\"'")
    return len(bare) == 2 and bare[0].isalpha() and bare[1] == "."


def _sentences(text: str) -> list[str] | None:
    joined: list[list[str]] = []
    for sentence in split_sentences(text):
        if joined and _initial(joined[-1][-1].rsplit(" ", 1)[-1]):  # "Escherichia coli (E. coli)"
            joined[-1].append(sentence)
        else:
            joined.append([sentence])
    sentences = [" ".join(pieces) for pieces in joined]
    if len(sentences) < 2:
        return None
    groups: list[tuple[list[str], bool]] = []  # (sentences, whether the group asks or opens additively)
    previous_asks = False
    for sentence in sentences:
        words = sentence.split()
        opener = _additive(words)
        this_asks = asks(sentence)
        if groups and (previous_asks or opener):
            body = _join(words[opener:]) if opener else sentence
            groups.append(([body], this_asks or bool(opener)))
        elif groups:
            groups[-1][0].append(sentence)
            groups[-1] = (groups[-1][0], groups[-1][1] or this_asks)
        else:
            groups.append(([sentence], this_asks))
        previous_asks = this_asks
    merged: list[list[str]] = []
    for body, counts in groups:
        if counts or not merged:
            merged.append(body)
        else:
            merged[-1].extend(body)  # context after an ask ("Thanks.") stays with it
    parts = [" ".join(body) for body in merged]
    return [_finish(p.split(), asks(p)) for p in parts] if len(parts) >= 2 else None


# --- stage 3: clauses ----------------------------------------------------------------------------------

def _segment_before(words: Sequence[str], end: int) -> list[str]:
    """The words before `end` back to the previous comma, semicolon or colon (the one ending at
    `end - 1` included in the segment)."""
    start = end - 1
    while start > 0 and not words[start - 1].endswith((",", ";", ":")):
        start -= 1
    return list(words[start:end])


def _english_clauses(words: list[str]) -> list[str] | None:
    question = " ".join(words).rstrip().endswith("?")
    # "Is it true that X and that Y?": the frame goes with each clause.
    for j, word in enumerate(words):
        if _bare(word) in ("that", "whether") and j >= 1:
            cuts = [i for i in range(j + 2, len(words) - 1)
                    if _bare(words[i]) == "and" and _bare(words[i + 1]) == _bare(word)]
            if cuts:
                frame = words[: j + 1]
                bounds = [j + 1] + [c + 2 for c in cuts]
                ends = cuts + [len(words)]
                clauses = [words[b:e] for b, e in zip(bounds, ends)]
                if all(len(c) >= 2 for c in clauses):
                    return [_finish(frame + c, question) for c in clauses]
            break
    cuts: list[tuple[int, int]] = []  # (index of the conjunction, words it takes)
    start = 0
    for i in range(1, len(words) - 2):
        bare = _bare(words[i])
        width = 3 if _starts(words, ("as", "well", "as"), i) else 1 if bare in ("and", "plus") else 0
        if words[i - 1].endswith(";") and i - start >= 3 and len(words) - i >= 3:
            cuts.append((i, 0))
            start = i
            continue
        if not width:
            continue
        after = i + width
        if after < len(words) and _bare(words[after]) == "also":
            after += 1
        rest = words[after:]
        nxt = _bare(rest[0]) if rest else ""
        left = words[start:i]
        if (nxt in _EN_WH or nxt in _EN_AUX) and len(rest) >= 3 and asks(" ".join(left)):
            cuts.append((i, after - i))
            start = after
        elif bare == "and" and words[i - 1].endswith(","):
            segment = _segment_before(words, i)
            # A short opening phrase ("In patients with diabetes, and ...") is no clause of its own.
            introductory = _bare(segment[0]) in _EN_SUBORDINATORS and len(segment) < 8
            if (len(segment) >= 4 and not introductory and len(rest) >= 4
                    and not any(w.endswith(",") for w in rest[:3])):
                cuts.append((i, after - i))
                start = after
    if not cuts:
        return None
    pieces: list[list[str]] = []
    begin = 0
    for index, width in cuts:
        pieces.append(words[begin:index])
        begin = index + width
    pieces.append(words[begin:])
    if any(len(p) < 2 for p in pieces):
        return None
    return [_finish(p, question or asks(" ".join(p))) for p in pieces]


def _korean_clauses(words: list[str]) -> list[str] | None:
    cuts: list[tuple[int, int, str]] = []  # (index where the next clause starts, words dropped before it, rewrite)
    start = 0
    for i, word in enumerate(words[:-1]):
        left = words[start: i + 1]
        right = words[i + 1:]
        right_text = " ".join(right)
        bare = word.rstrip(",")
        if (bare.endswith(("고", "며")) and (word.endswith(",") or any(c in right_text for c in _KO_WH))
                and any(c in " ".join(left) for c in _KO_WH) and asks(right_text) and len(right) >= 1
                and len(left) >= 2):
            cuts.append((i + 1, 0, ""))
            start = i + 1
        elif (bare in _KO_MIDDLE_ADVERBS or (bare == "또" and i and words[i - 1].endswith(","))) \
                and i - start >= 2 and len(right) >= 2 and asks(right_text) \
                and (words[i - 1].endswith((",", "?", "？")) or asks(" ".join(words[start:i]))) \
                and _conjunct_stem(words[i - 1]) is None:  # "A와 더불어" is "together with A"
            cuts.append((i + 1, 1, ""))
            start = i + 1
        elif word.endswith(",") and _conjunct_stem(word) is not None and len(left) >= 2 and len(right) >= 2 \
                and asks(right_text):
            cuts.append((i + 1, 0, _conjunct_stem(word) or ""))
            start = i + 1
    if not cuts:
        return None
    pieces: list[str] = []
    begin = 0
    for index, dropped, rewrite in cuts:
        piece = list(words[begin: index - dropped])
        if rewrite:
            piece[-1] = rewrite
        pieces.append(_join(piece))
        begin = index
    pieces.append(_join(words[begin:]))
    return pieces if all(pieces) else None


def _clauses(text: str) -> list[str] | None:
    words = text.split()
    if len(words) < 4:
        return None
    return _korean_clauses(words) if has_hangul(text) else _english_clauses(words)


# --- stage 4: comparisons ------------------------------------------------------------------------------

def _distribute(x: list[str], y: list[str]) -> tuple[list[str], list[str]]:
    """Share a head ("the side effects of" aspirin and ibuprofen) or a tail (X vs Y "for short queries")."""
    lower_x, lower_y = [_bare(w) for w in x], [_bare(w) for w in y]
    if "of" in lower_x and "of" not in lower_y and len(y) <= 3:
        y = x[: len(lower_x) - lower_x[::-1].index("of")] + y
        lower_y = [_bare(w) for w in y]
    for k in range(1, len(y)):
        if lower_y[k] in _EN_TAIL_PREPOSITIONS and not any(w in _EN_TAIL_PREPOSITIONS for w in lower_x) and len(x) <= 3:
            x = x + y[k:]
            break
    return x, y


def _english_comparison(words: list[str]) -> list[str] | None:
    lower = [_bare(w) for w in words]
    start = 0
    for polite in _EN_POLITE:
        if _starts(words, polite):
            start = len(polite)
    pair: tuple[list[str], list[str]] | None = None
    vs = next((i for i, w in enumerate(lower) if w in ("vs", "versus") and 0 < i < len(words) - 1), None)
    if vs is not None:
        left_start = vs
        while left_start > start and not words[left_start - 1].endswith((":", ",", ";")):
            left_start -= 1
        if lower[left_start] == "compare":
            left_start += 1
        right_end = vs + 1
        while right_end < len(words) and not words[right_end - 1].endswith((":", ",", ";", "?", ".", "!")):
            right_end += 1
        pair = (words[left_start:vs], words[vs + 1: right_end])
    elif lower[start:start + 1] == ["compare"]:
        joint = next((i for i in range(start + 2, len(words) - 1)
                      if lower[i] in ("and", "with", "to", "against")), None)
        if joint is not None:
            pair = (words[start + 1: joint], words[joint + 1:])
    elif "between" in lower and any(w in ("difference", "differences") for w in lower[: lower.index("between")]):
        between = lower.index("between")
        lead = lower[start: between]
        allowed = {"what", "is", "are", "what's", "the", "main", "key", "major", "difference", "differences", "explain",
                   "describe", "tell", "me", "about", "there", "any"}
        joint = next((i for i in range(between + 2, len(words) - 1) if lower[i] == "and"), None)
        if set(lead) <= allowed and joint is not None:
            pair = (words[between + 1: joint], words[joint + 1:])
    elif lower[start] == "how" and len(lower) > start + 3 and lower[start + 1] in ("does", "do", "is", "are"):
        for i in range(start + 3, len(words) - 1):
            if (lower[i] in ("differ", "different") and lower[i + 1] == "from") or \
                    (lower[i] == "compare" and lower[i + 1] in ("to", "with")):
                pair = (words[start + 2: i], words[i + 2:])
                break
    elif lower[start] == "which":
        comma = next((i for i, w in enumerate(words) if w.endswith(",") and i > start), None)
        if comma is not None:
            joint = next((i for i in range(comma + 2, len(words) - 1) if lower[i] == "or"), None)
            if joint is not None:
                pair = (words[comma + 1: joint], words[joint + 1:])
    if pair is None:
        return None
    x, y = [w for w in pair[0] if w.strip(_PUNCT)], [w for w in pair[1] if w.strip(_PUNCT)]
    if not x or not y or len(x) > 8 or len(y) > 8:
        return None
    x, y = _distribute(x, y)
    return [_join(x).strip(_PUNCT), _join(y).strip(_PUNCT)]


def _korean_comparison(words: list[str]) -> list[str] | None:
    conj = next((i for i, w in enumerate(words[:-1]) if not w.endswith(",") and _conjunct_stem(w) is not None), None)
    if conj is None:
        return None
    cue = None
    for k in range(conj + 1, len(words)):
        bare = words[k].rstrip(_PUNCT)
        if bare.startswith(_KO_COMPARISON_CUES):
            rest = bare[next(len(c) for c in _KO_COMPARISON_CUES if bare.startswith(c)):]
            tail = [w.strip(_PUNCT) for w in words[k + 1:]]
            if all(not piece or _made_of(piece, _KO_FOCUS_PIECES) for piece in [rest, *tail]):
                cue = k
            break
        if bare.startswith(_KO_DIFFER) and k > conj + 1 and words[k - 1].rstrip(_PUNCT) in _KO_DIFFER_LEADS:
            cue = k - 1
            break
        if bare == "중" and k + 1 < len(words) and any(words[k + 1].startswith(c) for c in _KO_WH):
            cue = k
            break
    if cue is None:
        return None
    stem = _conjunct_stem(words[conj]) or ""
    x = [*words[:conj], stem]
    middle = [w.rstrip(_PUNCT) for w in words[conj + 1: cue]]
    if not middle:
        return None
    aspect: list[str] = []
    if middle[-1].endswith("의") and len(middle[-1]) > 1:
        y = [*middle[:-1], middle[-1][:-1]]
    else:
        of = next((j for j, w in enumerate(middle) if w.endswith("의") and len(w) > 1), None)
        if of is not None and of < len(middle) - 1:
            y = [*middle[:of], middle[of][:-1]]
            aspect = middle[of + 1:]
        else:
            y = [*middle[:-1], _strip_particle(middle[-1])]
    if not y or not y[-1]:
        return None
    if aspect:
        return [f"{_join(x)}의 {_join(aspect)}", f"{_join(y)}의 {_join(aspect)}"]
    return [_join(x), _join(y)]


def _korean_versus(words: list[str]) -> list[str] | None:
    """"BM25 vs 밀집 검색" (and "versus"); the counter-ambiguous "대" is not taken for "versus"."""
    for i, word in enumerate(words[1:-1], start=1):
        if _bare(word) in ("vs", "versus"):
            end = i + 1
            while end < len(words) and not words[end - 1].endswith((",", "?", "？", ":")):
                end += 1
            y = [w.rstrip(_PUNCT) for w in words[i + 1: end]]
            y[-1] = _strip_particle(y[-1])
            return [_join(words[:i]), _join(y)] if y[-1] else None
    return None


def _comparison(text: str) -> list[str] | None:
    words = text.split()
    if len(words) < 2:
        return None
    if has_hangul(text):
        return _korean_comparison(words) or _korean_versus(words)
    return _english_comparison(words)


# --- stage 5: lists ------------------------------------------------------------------------------------

def _items(words: list[str], splitters: frozenset[str]) -> list[list[str]]:
    items: list[list[str]] = [[]]
    for word in words:
        if _bare(word) in splitters:
            if items[-1]:
                items.append([])
            continue
        items[-1].append(word.rstrip(","))
        if word.endswith(",") and items[-1]:
            items.append([])
    return [item for item in items if item]


def _english_list(words: list[str]) -> list[str] | None:
    start = 0
    for polite in _EN_POLITE:
        if _starts(words, polite):
            start = len(polite)
    lead = next((phrase for phrase in _EN_LIST_LEADS if _starts(words, phrase, start)), None)
    if lead is None:
        return None
    body_start = start + len(lead)
    body = words[body_start:]
    end = body[-1][-1] if body and body[-1][-1] in _TERMINAL else ""
    body = [*body[:-1], body[-1].rstrip("".join(_TERMINAL))] if end else body
    if sum(w.endswith(",") for w in body) < 1 or not any(_bare(w) in ("and", "or") for w in body):
        return None
    items = _items(body, frozenset({"and", "or"}))
    if len(items) < 3 or any(len(item) > 6 for item in items[1:-1]):
        return None
    first, last = items[0], items[-1]
    lower_first = [_bare(w) for w in first]
    head: list[str] = []
    if "of" in lower_first and all("of" not in [_bare(w) for w in item] for item in items[1:]):
        head = first[: len(lower_first) - lower_first[::-1].index("of")]
        items[0] = first[len(head):]
    elif len(first) > 6:
        return None
    tail: list[str] = []
    lower_last = [_bare(w) for w in last]
    cut = next((k for k in range(1, len(last)) if lower_last[k] in _EN_TAIL_PREPOSITIONS), None)
    if cut is not None:
        tail, items[-1] = last[cut:], last[:cut]
    lead_words = words[:body_start]
    return [_finish([*lead_words, *head, *item, *tail], bool(end == "?")) + ("" if end == "?" else end)
            for item in items]


def _korean_list(words: list[str]) -> list[str] | None:
    predicate = next((k for k, w in enumerate(words) if k and (
        w.startswith(("대해", "대하여", "각각")) or any(w.startswith(r) for r in _KO_REQUESTS + ("무엇인지", "뭔지")))), None)
    if predicate is None or not any(w.endswith(",") for w in words[:predicate]):
        return None
    anchor = predicate - 1  # the last item's word, carrying the particle the request takes ("검색에", "C는")
    carrier = words[anchor]
    stripped = _strip_particle(carrier.rstrip(_PUNCT))
    particle = carrier.rstrip(_PUNCT)[len(stripped):]
    enumeration = [*words[:anchor], stripped]
    items: list[list[str]] = [[]]
    for word in enumeration:
        stem = _conjunct_stem(word) if not word.endswith(",") else None
        if word in ("및", "그리고") and items[-1]:
            items.append([])
        elif stem is not None and word is not enumeration[-1]:
            items[-1].append(stem)
            items.append([])
        else:
            items[-1].append(word.rstrip(","))
            if word.endswith(","):
                items.append([])
    items = [item for item in items if item]
    each = any(w.startswith("각각") for w in words[predicate:])
    if len(items) < (2 if each else 3) or any(len(item) > 5 for item in items):
        return None
    rest = [w for w in words[predicate:] if not w.startswith("각각")]
    return [f"{_join(item)}{particle} {_join(rest)}".strip() for item in items]


def _list(text: str) -> list[str] | None:
    words = text.split()
    if len(words) < 4:
        return None
    return _korean_list(words) if has_hangul(text) else _english_list(words)


# --- topics --------------------------------------------------------------------------------------------

def _refers_back(text: str, first: str) -> bool:
    """Whether a later part leans on the first: a pronoun the first part does not share (a shared "it"
    is a frame: "Is it true that ... and that ..."), or a Korean question with no topic or subject of
    its own (Korean drops the topic the clause before gave)."""
    words = text.split()
    if has_hangul(text):
        if any(w.startswith(_KO_PRONOUNS) for w in words):
            return True
        marked = [w for w in words if w.rstrip(_PUNCT).endswith(_KO_TOPIC_PARTICLES)
                  and not w.startswith(_KO_WH)]
        return not marked and len(words) <= 3 and asks(text)
    shared = {_bare(w) for w in first.split()}
    return any(_bare(w) in _EN_PRONOUNS and _bare(w) not in shared for w in words)


def _topic(text: str) -> str:
    words = text.split()
    if has_hangul(text):
        marked = next((w for w in words if w.rstrip(_PUNCT).endswith(_KO_TOPIC_PARTICLES)
                       and not w.startswith(_KO_WH)), words[0] if words else "")
        return _strip_particle(marked.rstrip(_PUNCT))
    lower = [_bare(w) for w in words]
    k = 0
    while k < len(words) and (lower[k] in _EN_WH or lower[k] in _EN_AUX or lower[k] in _EN_REQUEST):
        k += 1
    return _join(words[k:]).strip(_PUNCT)


def _with_topics(texts: list[str]) -> tuple[Part, ...]:
    topic = _topic(texts[0])
    return tuple(Part(t, f"{t} {topic}" if i and topic and _refers_back(t, texts[0]) else t)
                 for i, t in enumerate(texts))


# --- the splitter --------------------------------------------------------------------------------------

_STAGES = (("clauses", _clauses), ("comparison", _comparison), ("list", _list))


def _refine(part: Part, kind: str) -> tuple[list[Part], str]:
    """Split one part further by the clause, comparison and list stages (the first that applies)."""
    for name, stage in _STAGES:
        pieces = stage(part.text)
        if pieces and len(pieces) >= 2:
            return [Part(p, p) for p in pieces], name if kind == "single" else kind
    return [part], kind


def split_question(question: str) -> Split:
    """The parts a question asks, in order; one part (the question, trimmed) when it asks one thing."""
    text = question.strip()
    whole = Split((Part(text, text),), "single")
    if len(text) > MAX_CHARS or not has_cue(text):  # every rule needs a cue: most single questions stop here
        return whole
    kind = "single"
    parts: list[Part]
    enumerated = _enumeration(text)
    if enumerated:
        parts, kind = enumerated, "enumeration"
    else:
        sentences = _sentences(text)
        if sentences:
            parts, kind = [Part(s, s) for s in sentences], "questions"
        else:
            parts = [Part(text, text)]
    refined: list[Part] = []
    for part in parts:
        pieces, kind = _refine(part, kind)
        if len(pieces) > 1 and part.query != part.text:  # pieces of a framed item keep the frame's words
            pieces = [Part(p.text, f"{part.query} {p.text}") for p in pieces]
        refined.extend(pieces)
    unique: dict[str, Part] = {}
    for part in refined:
        if part.text and any(ch.isalnum() for ch in part.text):
            unique.setdefault(part.text.lower(), part)
    if len(unique) < 2:
        return whole
    parts = list(unique.values())
    topics = _with_topics([p.text for p in parts])
    return Split(tuple(Part(p.text, t.query if p.query == p.text else p.query) for p, t in zip(parts, topics)), kind)


def has_cue(question: str) -> bool:
    """Whether a question might ask several things (the gate before asking a model to plan it): a
    coordinator, a comparison or list word, a separator, two sentences. One-clause questions have none."""
    if len(question) > MAX_CHARS:
        return False
    words = question.split()
    if question.count("?") + question.count("？") >= 2 or any(w.endswith((";", ",")) for w in words):
        return True
    if len(split_sentences(question)) >= 2:
        return True
    for word in words:
        bare = _bare(word)
        if _NUMBERED.fullmatch(word) or _LETTERED.fullmatch(word):
            return True
        if bare in ("and", "or", "vs", "versus", "compare", "compared", "difference", "differences", "differ",
                    "also", "plus", "both", "respectively", "each", "between", "well"):
            return True
        if has_hangul(word) and (_conjunct_stem(word) is not None or bare.endswith(("고", "며"))
                                 or bare in ("및", "그리고", "또", "또한", "아울러", "더불어", "중")
                                 or bare.startswith(_KO_COMPARISON_CUES + _KO_DIFFER + ("각각",))):
            return True
    return False
