"""How the words of an answer are read, the same way for generated pairs and for a model's predictions:
a yes/no verdict, and "Unanswerable" (a value the photo cannot tell).

Generation labels a generated pair ``yes`` / ``no`` with :func:`parse_yes_no` (that label picks the
benchmark's yes/no questions), and evaluation reads a model's answer with the same function; a catalogue
cell, a generated attribute value and a predicted one all mean "no value" by the one rule of
:func:`is_unanswerable`. Pure functions, no model library.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any

YES, NO = "yes", "no"
# the word generated answers write for a value the photo cannot tell, and the normal form of every "no value"
UNANSWERABLE = "Unanswerable"

# Casefolded, spaces collapsed: the ways catalogue cells (empty cells of spreadsheets and data frames) and
# answers say there is no value.
_NO_VALUE = {"", "unanswerable", "n/a", "na", "none", "null", "nan", "unknown", "not visible", "-"}


def is_unanswerable(value: Any) -> bool:
    """True when ``value`` states no value: None, blank, or one of the spellings of "no value"."""
    return value is None or " ".join(str(value).split()).casefold() in _NO_VALUE


# "true"/"false" are verdicts too: some models answer a yes/no question that way.
_VERDICTS = {"yes": YES, "no": NO, "true": YES, "false": NO}
_OPPOSITE = {YES: NO, NO: YES}
# "No idea", "No doubt", "No way to tell", "No sure answer", "No one can tell": a "no" the next word turns
# into something other than a verdict.
_NOT_A_NO = {"idea", "clue", "doubt", "way", "sure", "one"}
# Markdown emphasis/code/heading/quote marks carry no meaning for the verdict.
_MARKDOWN = re.compile(r"[*_`#>~]")
# "Answer:", "A:" (also a full-width colon after NFKC is ":"), possibly repeated.
_PREFIX = re.compile(r"^\s*(?:answer|a)\s*:\s*", re.IGNORECASE)
# Letters only, so "don't" -> "don", "t" and "not"/"nothing"/"yesterday" stay whole words.
_WORD = re.compile(r"[^\W\d_]+")
_SENTENCE_END = re.compile(r"[.!?\n]")


def _is_bare(text: str, match: re.Match[str]) -> bool:
    """True when a verdict word stands alone as an answer, not as a determiner.

    "Yes, no." / "Yes and no" / "yes/no" end a clause right after "no", whereas in "Yes, no damage is
    visible" or "The jar has no label" the "no" qualifies the next word and is not a verdict.
    """
    return not re.match(r"\s+[^\W\d_]", text[match.end():])


def parse_yes_no(text: str | None) -> str | None:
    """A free-text answer read as ``"yes"``, ``"no"`` or None (no verdict).

    The first word decides when it is a verdict ("Yes - the box is torn"), unless the next word undoes it
    ("No idea") or the opposite verdict also appears as a bare answer ("Yes and no", "yes/no", "Yes. No.").
    Otherwise the first sentence must hold exactly one bare verdict ("The answer is yes."). "Not damaged"
    and "There is no label" hold none: "not" is no verdict word and a "no" before a noun is a determiner,
    and guessing would both inflate accuracy and label open answers as yes/no ones.
    """
    if not isinstance(text, str):
        return None
    s = unicodedata.normalize("NFKC", text).casefold()
    s = _MARKDOWN.sub("", s).strip()
    while True:
        stripped = _PREFIX.sub("", s, count=1)
        if stripped == s:
            break
        s = stripped.strip()
    words = list(_WORD.finditer(s))
    if not words:
        return None

    first = _VERDICTS.get(words[0].group())
    if first is not None:
        if first == NO and len(words) > 1 and words[1].group() in _NOT_A_NO and not s[words[0].end():words[1].start()].strip():
            return None
        opposite = _OPPOSITE[first]
        if any(_VERDICTS.get(m.group()) == opposite and _is_bare(s, m) for m in words[1:]):
            return None
        return first

    end = _SENTENCE_END.search(s)
    sentence = s[: end.start()] if end else s
    found = {_VERDICTS[m.group()] for m in _WORD.finditer(sentence) if m.group() in _VERDICTS and _is_bare(sentence, m)}
    return found.pop() if len(found) == 1 else None
