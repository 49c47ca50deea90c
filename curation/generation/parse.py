"""Pull question/answer pairs out of an LLM's text and validate them; every refusal has a reason.

Accepted shapes, tried in order: our tagged pairs (``<question>…</question><answer>…</answer>``), JSON
(a list of objects, or ``{"pairs": [...]}``, also inside a Markdown code fence), and "Q: … / A: …" lines.
A pair cut off by a truncated response is dropped with the reason ``truncated``.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..verdicts import UNANSWERABLE, parse_yes_no
from .facts import canonical_key
from .tasks import ATTRIBUTE_KEYS, normalise

MAX_QUESTION_CHARS = 500
MAX_ANSWER_CHARS = 2000
# A field may not contain another pair's tags: a question with no answer, or an answer with no closing
# tag, must not swallow the next pair.
_TAGGED = re.compile(
    r"<question>((?:(?!</?question>|</?answer>).)*?)</question>\s*<answer>((?:(?!</?question>|</?answer>).)*?)</answer>",
    re.DOTALL | re.IGNORECASE,
)
_LAST_ANSWER_END = re.compile(r"</answer>(?!.*</answer>)", re.DOTALL | re.IGNORECASE)
_OPEN_TAIL = re.compile(r"<question>(?:(?!</answer>).)*$", re.DOTALL | re.IGNORECASE)
_ANY_TAG = re.compile(r"</?\s*(?:question|answer)\s*>", re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_QA = re.compile(r"^\s*(?:\d+[.)]\s*)?Q(?:uestion)?\s*[:.]\s*(.+?)\s*\n\s*A(?:nswer)?\s*[:.]\s*(.+?)(?=\n\s*(?:\d+[.)]\s*)?Q(?:uestion)?\s*[:.]|\Z)",
                 re.DOTALL | re.MULTILINE | re.IGNORECASE)


@dataclass
class Pair:
    question: str
    answer: str
    answer_format: str = "short"
    label: str | None = None  # yes | no for yes/no answers
    index: int = 0  # its place among the raw pairs of the response (to find its evidence)


@dataclass
class Reject:
    reason: str
    detail: str
    question: str | None = None
    answer: str | None = None


def extract_pairs(text: str) -> tuple[list[tuple[str, str]], list[Reject]]:
    """Raw (question, answer) pairs and the rejects found while extracting them."""
    rejects: list[Reject] = []
    if not text or not text.strip():
        return [], [Reject("empty_response", "the model returned no text")]
    pairs = [(q, a) for q, a in _TAGGED.findall(text)]
    if pairs:
        end = _LAST_ANSWER_END.search(text)
        tail = text[end.end() :] if end else ""
        if _OPEN_TAIL.search(tail):
            rejects.append(Reject("truncated", "the last pair is cut off (the response ended inside it)"))
        dangling = len(re.findall(r"<question>", text, re.IGNORECASE)) - len(pairs) - (1 if rejects else 0)
        if dangling > 0:
            rejects.append(Reject("malformed_pair", f"{dangling} question(s) without a well-formed answer were skipped"))
        return pairs, rejects
    if _OPEN_TAIL.search(text):
        rejects.append(Reject("truncated", "the response ended inside its first pair"))
        return [], rejects
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        parsed = _json_pairs(candidate)
        if parsed is not None:
            return parsed, rejects
    pairs = [(q, a) for q, a in _QA.findall(text)]
    if pairs:
        return pairs, rejects
    return [], [Reject("no_pairs", "no question/answer pair found in the response")]


def _json_pairs(text: str) -> list[tuple[str, str]] | None:
    text = text.strip()
    if not text or text[0] not in "[{":
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, dict):
        value = value.get("pairs") or value.get("qa") or value.get("samples")
    if not isinstance(value, list):
        return None
    out = []
    for entry in value:
        if isinstance(entry, dict) and "question" in entry and "answer" in entry:
            answer = entry["answer"]
            out.append((str(entry["question"]), answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)))
    return out or None


def answer_format(answer: str) -> str:
    stripped = answer.strip()
    if stripped[:1] in "{[":
        try:
            json.loads(stripped)
            return "json"
        except ValueError:
            pass
    if parse_yes_no(stripped):
        return "yes_no"
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) >= 2 and all(re.match(r"\s*(?:[-*•]|\d+[.)])\s+", line) for line in lines):
        return "list"
    return "short" if len(stripped.split()) <= 8 else "detailed"


def normalise_attributes(answer: str, allowed: tuple[str, ...] | list[str] | None = None) -> tuple[str | None, str | None]:
    """The attribute JSON with every key spelled the store's one way (``canonical_key``), or why not.

    Keys may be the paper's and the item's own (``allowed``: its attribute keys, canonical); any other key
    is an invention. Keys the answer leaves out are not added: an absent key claims nothing."""
    try:
        value = json.loads(answer.strip())
    except ValueError as exc:
        return None, f"not valid JSON: {exc.msg}"
    if not isinstance(value, dict):
        return None, "not a JSON object"
    if not value:
        return None, "missing key(s): the object is empty"
    permitted = set(ATTRIBUTE_KEYS) | {canonical_key(k) for k in (allowed or ())}
    fixed: dict[str, str] = {}
    for raw_key, v in value.items():
        key = canonical_key(raw_key)
        if key not in permitted:
            return None, f"unknown key(s): {raw_key}"
        if not isinstance(v, (str, int, float)) or isinstance(v, bool) or (isinstance(v, float) and not math.isfinite(v)):
            return None, "values must be strings or finite numbers"
        fixed.setdefault(key, str(v).strip() or UNANSWERABLE)
    return json.dumps(fixed, ensure_ascii=False), None


def validate(task: str, raw_pairs: list[tuple[str, str]], seen: set[str] | None = None,
             attribute_keys: tuple[str, ...] | list[str] | None = None) -> tuple[list[Pair], list[Reject]]:
    """Keep the good pairs; ``seen`` (normalised questions+answers already stored for the item) grows.
    ``attribute_keys``: the item's own attribute keys, which attribute answers may use besides the paper's."""
    seen = seen if seen is not None else set()
    good, rejects = [], []
    for index, (question, answer) in enumerate(raw_pairs):
        question, answer = question.strip(), answer.strip()
        if not question or not answer:
            rejects.append(Reject("empty", "an empty question or answer", question, answer))
            continue
        if _ANY_TAG.search(question) or _ANY_TAG.search(answer):
            rejects.append(Reject("malformed_pair", "a question or answer holds a tag of another pair", question[:200], answer[:200]))
            continue
        if len(question) > MAX_QUESTION_CHARS or len(answer) > MAX_ANSWER_CHARS:
            rejects.append(Reject("too_long", f"over {MAX_QUESTION_CHARS} / {MAX_ANSWER_CHARS} characters", question[:200], answer[:200]))
            continue
        if task == "attribute_extraction":
            fixed, why = normalise_attributes(answer, attribute_keys)
            if fixed is None:
                reason = "unknown_keys" if why and why.startswith("unknown") else "missing_keys" if why and why.startswith("missing") else "bad_json"
                rejects.append(Reject(reason, why or "", question, answer))
                continue
            answer = fixed
        key = normalise(question) + "\x1f" + normalise(answer)
        if key in seen:
            rejects.append(Reject("duplicate", "the same pair (after normalising) exists already", question, answer))
            continue
        seen.add(key)
        fmt = answer_format(answer)
        good.append(Pair(question, answer, fmt, parse_yes_no(answer), index))
    return good, rejects
