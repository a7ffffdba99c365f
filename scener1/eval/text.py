"""Answer normalisation and exact-match rules for the QA benchmarks.

Two levels, both applied to the prediction and every reference alike:

* :func:`basic_normalize` (ScanQA EM@1/EM@10): Unicode NFKC, lower case, surrounding white space and
  trailing full stops removed, inner white space collapsed. ScanQA's references are already short lower-case
  phrases, so this only forgives formatting.
* :func:`refined_normalize` (SQA3D EM, and the "refined" EM-R of every QA benchmark): the basic level, then
  apostrophes dropped, every other non-alphanumeric character (hyphens, commas, quotes...) read as a space
  except a decimal point between digits, the articles a/an/the removed and the number words zero..twenty
  written as digits.

:func:`relaxed_match` is the "EM-R" rule used by the LEO / Chat-Scene line of papers: after refined
normalisation, with spaces removed, the prediction equals a reference or one contains the other. An empty
prediction never matches (it would be "contained" in every reference).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_WS = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^0-9a-z.]+")
_STRAY_DOT = re.compile(r"(?<![0-9])\.|\.(?![0-9])")
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}


def basic_normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", str(text)).lower()
    text = _WS.sub(" ", text).strip()
    return text.rstrip(".").rstrip()


def refined_normalize(text: str) -> str:
    text = basic_normalize(text).replace("'", "").replace("\u2019", "")
    text = _NOT_WORD.sub(" ", text)
    text = _STRAY_DOT.sub(" ", text)  # keep "2.5", drop every other full stop
    words = [_NUMBER_WORDS.get(w, w) for w in text.split() if w not in _ARTICLES]
    return " ".join(words)


def exact_match(prediction: str, references: Iterable[str], refined: bool = False) -> bool:
    """Whether the prediction equals one of the references after basic (or refined) normalisation."""
    norm = refined_normalize if refined else basic_normalize
    p = norm(prediction)
    return any(p == norm(r) for r in references)


def relaxed_match(prediction: str, references: Iterable[str]) -> bool:
    """EM-R: refined-normalised, spaces removed, equal or one containing the other (empty never matches)."""
    p = refined_normalize(prediction).replace(" ", "")
    if not p:
        return False
    for ref in references:
        r = refined_normalize(ref).replace(" ", "")
        if r and (p == r or p in r or r in p):
            return True
    return False
