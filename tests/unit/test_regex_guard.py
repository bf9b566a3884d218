"""No regular expression in apps/ is worse than linear.

Python's `re` holds the GIL for a whole match, so one pathological input (a long run of spaces, a
10,000-character query) stalls every request on the worker. This finds every pattern the project
compiles (module-level `re.Pattern` objects, also inside module-level dicts and tuples, and every
`re.compile/search/sub/...` call with a literal pattern anywhere in the source) and runs each over
adversarial inputs: long runs of each character class, after each literal the pattern looks for.
The verdict compares the CPU time at n and 4n characters (linear ≈ 4×, quadratic ≈ 16×), which holds
on a loaded machine where an absolute bound would not; a hard ceiling catches the cubic ones.
"""

from __future__ import annotations

import ast
import gc
import importlib
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import apps
from apps.core.redaction import redact_text
from apps.ingestion.loaders import load_bytes
from apps.text.questions import question_type
from apps.text.sentences import split_sentences

APPS = Path(apps.__file__).resolve().parent
SIZES = (256, 1024, 4096, 16384, 65536)
SCREEN_S = 0.001  # at 4,096 characters: a linear scan takes tens of microseconds
FLOOR_S = 0.005  # below this, timer noise decides the ratio
LINEAR_RATIO = 8.0  # linear is 4× per 4× the input, quadratic 16×, cubic 64×
CEILING_S = 0.2  # any single run at these sizes
MAX_PREFIXES = 6
# Runs of each character class a text can hold, single and mixed, and nested openers.
UNITS = (" ", "\t", "\n", "\r\n", "\u3000", "a", "Z", "é", "0", "가", "ㄱ", "_", ".", ",", "!", "?", "#", ":",
         "/", "@", "-", "+", "[", "]", "(", "<", "*", "'", '"', "\\", "a ", "a.", ". ", "a:", "a1", "가 ",
         "\n ", " \n", "# ", "a-", "[1]", "a://", ":@")
# What comes between the literal and the run ("# a" + spaces: a heading's text), and after the run
# (\x01: something no run or terminator pattern expects next).
SEEDS = ("", "a", " a")
SUFFIXES = ("", "\x01")

_RE_CALLS = {"compile", "search", "match", "fullmatch", "sub", "subn", "split", "findall", "finditer"}
# Where the flags argument sits positionally for each call (re.sub(pattern, repl, string, count, flags)).
_FLAGS_AT = {"compile": 1, "search": 2, "match": 2, "fullmatch": 2, "split": 3, "findall": 2, "finditer": 2,
             "sub": 4, "subn": 4}


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(apps.__path__, "apps.")]


def _patterns_in(value: object) -> Iterator[re.Pattern]:
    if isinstance(value, re.Pattern):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _patterns_in(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _patterns_in(item)


def _flags(node: ast.expr) -> int:
    """`re.IGNORECASE | re.MULTILINE` as an int (the AST's literal flags)."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _flags(node.left) | _flags(node.right)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "re":
        return int(getattr(re, node.attr))
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    raise AssertionError(f"unreadable regex flags: {ast.unparse(node)}")


def _literal_patterns(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in _RE_CALLS and node.args):
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue  # built at import time: the module walk finds it
        at = _FLAGS_AT[node.func.attr]
        flag_nodes = [k.value for k in node.keywords if k.arg == "flags"] + node.args[at:at + 1]
        yield first.value, _flags(flag_nodes[0]) if flag_nodes else 0


def _all_patterns() -> tuple[dict[tuple[str, int], re.Pattern], list[str]]:
    found: dict[tuple[str, int], re.Pattern] = {}
    broken: list[str] = []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except Exception as exc:  # a module that cannot load hides its patterns: say so
            broken.append(f"{name}: {exc!r}")
            continue
        for value in vars(module).values():
            for pattern in _patterns_in(value):
                found.setdefault((pattern.pattern, pattern.flags), pattern)
    for path in APPS.rglob("*.py"):
        for source, flags in _literal_patterns(path):
            pattern = re.compile(source, flags)
            found.setdefault((pattern.pattern, pattern.flags), pattern)
    return found, broken


def _literals(pattern: str) -> set[str]:
    """The literal strings a pattern looks for ("://", "나요", "#"): the prefixes that reach its repeats."""
    out: set[str] = set()

    def walk(items) -> None:
        run = ""
        for op, arg in items:
            if str(op) == "LITERAL":
                run += chr(arg)
                continue
            if run:
                out.add(run)
            run = ""
            for sub in arg if isinstance(arg, (tuple, list)) else ():
                if isinstance(sub, re._parser.SubPattern):
                    walk(sub)
                elif isinstance(sub, list):
                    for branch in sub:
                        if isinstance(branch, re._parser.SubPattern):
                            walk(branch)
        if run:
            out.add(run)

    walk(re._parser.parse(pattern))
    return out


def _elapsed(run: Callable[[str], object], text: str, repeat: int = 1) -> float:
    """CPU seconds, best of `repeat`: the thread's own time (a busy machine's scheduling is not counted,
    and a match holds the GIL on one thread), without the collector (a collection skews one run)."""
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.thread_time()
            run(text)
            best = min(best, time.thread_time() - start)
    finally:
        gc.enable()
    return best


def superlinear(run: Callable[[str], object], make: Callable[[int], str], screen: bool = False) -> str | None:
    """Why `run(make(n))` grows faster than n, or None. Sizes grow 4× until a run is long enough to time
    well, then that run and the one before are re-timed (best of 5, twice if over) and compared. With
    `screen`, an input already fast at 4,096 characters passes (the sweep over every pattern runs thousands)."""
    previous: int | None = None
    for n in SIZES:
        took = _elapsed(run, make(n))
        if took > CEILING_S:
            return f"{took:.2f} s at {n:,} characters"
        if screen and n >= 4096 and took < SCREEN_S:
            return None
        if took >= FLOOR_S and previous is not None:
            for _ in range(2):
                took = _elapsed(run, make(n), 5)
                before = max(_elapsed(run, make(previous), 5), 1e-6)
                if took / before <= LINEAR_RATIO:
                    return None
            return f"{before * 1000:.1f} ms at {previous:,} characters, {took * 1000:.1f} ms at {n:,}"
        previous = n
    return None


def _shapes(prefix: str, unit: str) -> Iterator[tuple[str, Callable[[int], str]]]:
    for seed in SEEDS:
        for suffix in SUFFIXES:
            yield (f"{prefix + seed!r} + {unit!r}*n + {suffix!r}",
                   lambda n, p=prefix + seed, u=unit, s=suffix: p + u * (n // len(u)) + s)
    yield f"({prefix!r} + {unit!r})*n", lambda n, p=prefix, u=unit: (p + u) * (n // len(p + u))


def _exhaust(pattern: re.Pattern) -> Callable[[str], object]:
    """Every match in the text: the most any caller (search, sub, split, findall) can make it do.
    `subn` with a fixed replacement makes no match objects, so what is timed is the matching."""
    if isinstance(pattern.pattern, bytes):
        return lambda text: pattern.subn(b"", text.encode())
    return lambda text: pattern.subn("", text)


PATTERNS, BROKEN = _all_patterns()


def test_every_module_loads_so_its_patterns_are_checked() -> None:
    assert not BROKEN
    assert len(PATTERNS) >= 15  # the walk works: the project has at least these


@pytest.mark.parametrize("pattern", list(PATTERNS.values()), ids=[p.pattern[:40] for p in PATTERNS.values()])
def test_pattern_is_linear_on_adversarial_input(pattern: re.Pattern) -> None:
    run = _exhaust(pattern)
    source = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode()
    # Alternatives of many words ("is|are|was|...") lead to the same repeats: a few of them stand for all.
    prefixes = ["", *sorted({literal[:8] for literal in _literals(source)}, key=lambda s: (-len(s), s))[:MAX_PREFIXES]]
    for prefix in prefixes:
        for unit in UNITS:
            for shape, make in _shapes(prefix, unit):
                why = superlinear(run, make, screen=True)
                assert why is None, f"/{source}/ on {shape}: {why}"


# The four found in review, through the functions that use them (each took seconds before).

def test_sentence_splitting_is_linear_on_a_run_of_spaces() -> None:
    assert superlinear(split_sentences, lambda n: "a" + " " * n + "b") is None
    assert superlinear(split_sentences, lambda n: "a" + " \t" * (n // 2) + "b") is None


def test_markdown_heading_is_linear_on_trailing_spaces() -> None:
    assert superlinear(lambda text: load_bytes("x.md", text.encode(), 1 << 20),
                       lambda n: "# a" + " " * n + "b\n\nbody") is None


def test_redaction_is_linear_on_a_long_word() -> None:
    assert superlinear(redact_text, lambda n: "a" * n) is None
    assert superlinear(redact_text, lambda n: "a1" * (n // 2)) is None


def test_question_type_is_linear_on_a_long_query() -> None:
    assert superlinear(question_type, lambda n: "나요" + " " * n + "x") is None
