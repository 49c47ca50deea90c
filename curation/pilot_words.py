"""What an annotator can mark as not supported by the image, for one answer: the choices the Pilot page
shows. An attribute-extraction answer is a JSON object, so splitting it on spaces gives fragments like
``{"Color":`` that nobody can judge; a JSON answer gives one choice per value instead, labelled by its key
path. A prose answer gives its words, and a word that occurs again gets its occurrence number so each
position is its own choice (marking the second "red" does not mark the first)."""
from __future__ import annotations

import json
import re
from typing import Any

_PUNCT = ".,;:!?()[]{}\"'“”‘’«»"
_OCCURRENCE = re.compile(r"^(\S+) \((\d+)\)$")  # "red (2)": a prose word has no spaces, so this cannot be a word itself


def _json_container(answer: str) -> dict | list | None:
    text = answer.strip()
    if not text or text[0] not in "{[":
        return None  # "1" or "true" parse as JSON too, but they are prose answers
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, (dict, list)) and value else None


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())  # one line: a value with newlines would break the chip


def _json_groups(value: Any, path: str, out: list[str]) -> None:
    if isinstance(value, dict):
        if not value:
            out.append(f"{path}: {{}}" if path else "{}")
        for key, inner in value.items():
            _json_groups(inner, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        if not value:
            out.append(f"{path}: []" if path else "[]")
        for k, inner in enumerate(value, start=1):
            _json_groups(inner, f"{path}[{k}]" if path else f"[{k}]", out)
    else:
        out.append(f"{path}: {_scalar(value)}" if path else _scalar(value))


def _words(answer: str) -> list[str]:
    out, seen = [], {}
    for raw in answer.split():
        word = raw.strip(_PUNCT)
        if not any(ch.isalnum() for ch in word):
            continue  # a dash or an ellipsis: nothing an image could support or not
        seen[word] = seen.get(word, 0) + 1
        out.append(word if seen[word] == 1 else f"{word} ({seen[word]})")
    return out


def answer_groups(answer: str | None) -> list[str]:
    """The markable parts of an answer, in order, all distinct: ``"Color: Black"`` per JSON value (nested
    keys joined by dots, list items numbered ``[1]``), otherwise the punctuation-stripped words with
    ``"word (2)"`` for a word's second occurrence."""
    text = str(answer or "")
    found = _json_container(text)
    if found is None:
        return _words(text)
    out: list[str] = []
    _json_groups(found, "", out)
    # two keys can flatten to the same label ({"a.b": 1, "a": {"b": 1}}): number the repeats like words
    seen: dict[str, int] = {}
    unique = []
    for label in out:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique


def group_word(label: str) -> str:
    """The text a marked choice stands for, for counting across samples: ``"red (2)"`` -> ``"red"``
    (which occurrence does not matter there); a JSON choice stays whole (``"Color: Black"``)."""
    m = _OCCURRENCE.match(label)
    return m.group(1) if m else label
