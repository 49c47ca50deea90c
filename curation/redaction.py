"""Replace personal data in text with placeholders before anything is stored or logged.

Rule-based on purpose: it runs on millions of rows on CPU workers, needs no model download, and each rule
can be read and tested. Order matters: values the source declares personal go first, then e-mail and
card numbers (they contain digits a phone rule would take), order/customer ids, postal addresses, phones
and names.

How hard it looks depends on the text (``mode``):

* ``free_text``: what a customer or agent wrote (transcripts, reviews). Every rule, including lone given
  names from the list ("Thanks, Priya").
* ``structured``: short fields and OCR lines. Every rule but lone given names.
* ``catalog``: product listings. Only declared values and shapes that are personal wherever they appear
  (e-mail, card, phone, order/customer ids); street-address and name heuristics would take "1 TB Hard
  Drive" and "Ralph Lauren" for an address and a person.

Names are the hard part. What is caught: declared values (a ``ProfileName`` column mapped as PII, wherever
it reappears), transcript speaker labels (``[14:30] Agent (Maria):``, ``Maria (agent):``), honorifics,
cue phrases ("my name is …", "Dear …", "Thanks, …", also in lower case after the strongest cues) and
given names from a list followed by a capitalised surname. Phrases in ``keep`` (the catalog's brand names,
say) are never taken for names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, Mapping

KINDS = ("EMAIL", "CARD", "UCI", "PHONE", "ADDRESS", "NAME")
MODES = ("free_text", "structured", "catalog")


@dataclass(frozen=True)
class RedactionConfig:
    enabled: bool = True
    # Extra (KIND, regex) rules from the user, applied before the built-in ones; KIND becomes [KIND].
    extra_patterns: tuple[tuple[str, str], ...] = ()
    # Phrases never taken for a person's name (brands, product lines).
    keep: tuple[str, ...] = ()

    def __post_init__(self):
        for kind, pattern in self.extra_patterns:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", kind):
                raise ValueError(f"redaction kind {kind!r} must be upper-case letters, digits and _")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"redaction pattern for {kind} is not a valid regex: {exc}") from exc


@dataclass
class Redacted:
    text: str
    counts: dict[str, int] = field(default_factory=dict)


def merge_counts(into: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    for kind, n in more.items():
        if n:
            into[kind] = into.get(kind, 0) + n
    return into


@lru_cache(maxsize=1)
def first_names() -> frozenset[str]:
    text = resources.files("curation").joinpath("resources/first_names.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@lru_cache(maxsize=1)
def _first_names_lower() -> frozenset[str]:
    return frozenset(n.lower() for n in first_names())


# ---- patterns ------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Card numbers as people write them: 4-4-4-4 (or 4-4-4-1..7), Amex 4-6-5, or one unbroken run.
_CARD = re.compile(r"(?<![\d-])(?:\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5}|\d{13,19})(?![\d-])")
_CARD_CUE = re.compile(r"(?i)(?:card|visa|mastercard|amex|credit|debit|cc)\b[^\n]{0,25}$")
_AMAZON_ORDER = re.compile(r"\b\d{3}-\d{7}-\d{7}\b")
_ID_WITH_CUE = re.compile(
    r"(?i)\b(?:order|customer|client|account|acct|member(?:ship)?|ticket|case|reference|ref|tracking|rma|"
    r"return|refund|invoice|transaction|loyalty|user|uci|id)"
    r"(?:\s+(?:id|no\.?|number|num|code|#))?\s*(?:is|was|:|#|-)?\s*#?\s*"
    r"(?P<id>(?=[A-Za-z0-9-]*\d)[A-Za-z0-9][A-Za-z0-9-]{4,})\b"
)
_HASH_ID = re.compile(r"(?<!\w)#\d{5,}\b")
# Customer ids in Amazon's style (e.g. A3SGXH7AUHU8GW): A + 11-15 upper-case letters/digits, with digits.
_AMAZON_CUSTOMER = re.compile(r"\bA(?=[A-Z0-9]*\d)(?=[A-Z0-9]*[A-Z][A-Z0-9]*[A-Z])[A-Z0-9]{11,15}\b")
_PHONE = re.compile(r"(?<![\w+])\+?\(?\d[\d ().-]{5,}\d(?!\w)")
_PHONE_CUE = re.compile(
    r"(?i)(?:phone|telephone|tel|mobile|cell|call|reach|text|whatsapp|contact|my number)"
    r"(?:\s+(?:number|no\.?|#))?(?:\s+(?:me|us|him|her))?(?:\s+(?:at|on|is))?\W{0,6}$"
)
_DATE_START = re.compile(r"^\(?\d{4}[-./]\d{1,2}[-./]\d{1,2}|^\(?\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Cres|Row|Trail|Trl)"
)
# a street-name word: Capitalised, an ordinal (3rd) or a compass point (W, NE)
_STREET_WORD = r"(?:[A-Z][A-Za-z'-]*|\d+(?:st|nd|rd|th)|[NSEW]{1,2})\.?"
_STREET = re.compile(
    # not "1 TB ... Drive" or "2 Pack ... Drive": a quantity before a product name
    r"\b\d{1,6}[A-Za-z]?\s+(?!(?:TB|GB|MB|Pack|Count|Piece|Pieces|Pcs|Set|oz|ml|g|kg|lb|in|inch|ft|x|X)\b)(?:" + _STREET_WORD + r"\s+){1,4}" + _STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*[A-Za-z0-9-]+)?"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2})?"
    r"(?:,?\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?)?"  # a state only together with its ZIP ("NW1" is a postcode)
)
_PO_BOX = re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d+\b")
_CITY_STATE_ZIP = re.compile(r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2},\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b")

# A capitalised name word: Lee, O'Brien, McDonald, DeShawn, Smith-Jones (\b: "DeShawn" is one word).
_CAP = r"[A-Z][a-zA-Z]+(?:[-'][A-Z][a-zA-Z]+)?\b"
_NAME2 = _CAP + r"(?:[ \t]+" + _CAP + r")?"
_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Sir|Madam)\.?\s+(?P<name>" + _NAME2 + ")")
# Cues strong enough to take any capitalised word after them as a name.
_STRONG_CUE = re.compile(
    r"(?i:\b(?:my name is|my name's|name\s*:|dear|signed|sincerely,?|regards,?|ask for|spoke (?:to|with)|"
    r"speaking (?:to|with)|customer name\s*:|agent name\s*:))\s+(?P<name>" + _NAME2 + ")"
)
# ... and in lower case ("my name is sarah connor"), unless the words are ordinary ones.
_STRONG_CUE_LOWER = re.compile(r"(?i:\b(?:my name is|my name's|name\s*:))[ \t]+(?P<name>[a-z][a-z'-]+(?:[ \t]+[a-z][a-z'-]+)?)\b")
_NOT_NAMES = frozenset(
    "a an the and or but i is was be with by on in at of for to from not still also just listed under below "
    "above here there file attached same different correct wrong missing spelled misspelled written "
    "printed shown".split()
)
# Weak cues: the word after them must be a known given name.
_WEAK_CUE = re.compile(
    r"(?i:\b(?:this is|i am|i'm|hi|hello|hey|thanks|thank you|bye|goodbye|cheers)),?[ \t]+(?P<name>[A-Za-z][a-zA-Z'-]+(?:[ \t]+[A-Za-z][a-zA-Z'-]+)?)\b"
)
# Transcript line starts: optional timestamp ([14:30], 14:30:05 -, (2:15 PM)) or bullet, then a label.
_LINE_START = r"(?m)^[ \t]*(?:\[[^\]\n]{1,40}\][ \t]*|\(?\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]*[AaPp][Mm])?\)?[ \t]*[-–]?[ \t]*|[-*•][ \t]*)?"
_ROLES = r"(?:Agent|Customer|Rep|Representative|Support|Advisor|Associate|Caller|Client|Buyer|Seller)"
_SPEAKER = re.compile(
    _LINE_START + r"(?P<role>" + _ROLES + r")(?:[ \t]*\((?P<paren>[^)\n]{1,60})\)|[ \t-]+(?P<bare>" + _NAME2 + r"))[ \t]*:"
)
# "Maria (agent):" - whatever stands before a role in brackets is a name
_NAME_ROLE = re.compile(_LINE_START + r"(?P<name>[A-Za-z][\w'.-]*(?:[ \t]+[A-Za-z][\w'.-]*){0,2})[ \t]*\((?i:" + _ROLES + r")\)[ \t]*:")
_NAME_LABEL = re.compile(_LINE_START + r"(?P<name>" + _NAME2 + r")[ \t]*:")
_FULL_NAME = re.compile(r"\b(?P<first>" + _CAP + r")[ \t]+(?P<last>" + _CAP + ")")
_WORD = re.compile(r"\b" + _CAP)
_SENTINEL = re.compile("\ue000(\\d+)\ue001")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(value: str, m: re.Match, s: str) -> bool:
    """A Luhn-valid 13-19 digit number, or any such number right after a word like "card" (a mistyped
    card number is still a card number)."""
    digits = re.sub(r"\D", "", value)
    if not 13 <= len(digits) <= 19:
        return False
    return _luhn_ok(digits) or bool(_CARD_CUE.search(s[: m.start()]))


def _looks_like_measure(value: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:ml|l|g|kg|oz|lb|lbs|cm|mm|m|in|ft|pcs|pack)", value, re.I))


def _phone_ok(value: str, m: re.Match, s: str) -> bool:
    v = value.strip()
    if _DATE_START.search(v):  # 2023-11-04 14:30 is a time stamp
        return False
    digits = re.sub(r"\D", "", v)
    groups = re.findall(r"\d+", v)
    cue = bool(_PHONE_CUE.search(s[: m.start()]))
    if 10 <= len(digits) <= 15:
        if len(groups) == 1:
            # A bare run of digits is as likely a barcode (EAN-13) or model number: only with a cue.
            return cue or v.startswith("+")
        if v.startswith("+") or "(" in v or cue:
            return True
        # Without a + or a cue, phones come in groups of 2-4 digits; ISBNs and part numbers
        # (978-0-306-40615-7, 12345-67890-123) have longer ones.
        return max(len(g) for g in groups) <= 4 and len(groups) <= 5
    if len(digits) == 7 and re.fullmatch(r"\d{3}[-. ]\d{4}", v):
        return cue
    return False


def _space_flexible(value: str) -> str:
    return r"\s+".join(re.escape(part) for part in value.split())


class Redactor:
    """Redacts one text at a time; cheap to build, safe to share between threads."""

    def __init__(self, config: RedactionConfig | None = None):
        self.config = config or RedactionConfig()
        self._extra = [(kind, re.compile(p)) for kind, p in self.config.extra_patterns]
        self._names = first_names()
        self._names_lower = _first_names_lower()
        keep = sorted({k.strip() for k in self.config.keep if k and len(k.strip()) >= 2}, key=len, reverse=True)
        self._keep = (
            re.compile(r"(?<!\w)(?:" + "|".join(_space_flexible(k) for k in keep) + r")(?!\w)", re.IGNORECASE)
            if keep
            else None
        )

    def redact(
        self,
        text: str | None,
        *,
        known: Mapping[str, Iterable[str]] | None = None,
        mode: str = "free_text",
    ) -> Redacted:
        """Return the text with placeholders and a count per kind.

        ``known`` maps a kind to values the source declares personal (replaced wherever they occur).
        ``mode`` is ``free_text``, ``structured`` or ``catalog`` (see the module's docstring).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if text is None:
            return Redacted(None, {})  # type: ignore[arg-type]
        if not self.config.enabled or not text:
            return Redacted(text, {})
        counts: dict[str, int] = {}

        def sub(pattern: re.Pattern, kind: str, s: str, group: str | None = None, check=None) -> str:
            def repl(m: re.Match) -> str:
                value = m.group(group) if group else m.group(0)
                if not value or (check and not check(value, m, s)):
                    return m.group(0)
                counts[kind] = counts.get(kind, 0) + 1
                if group:
                    start, end = m.span(group)
                    return m.group(0)[: start - m.start()] + f"[{kind}]" + m.group(0)[end - m.start() :]
                return f"[{kind}]"

            return pattern.sub(repl, s)

        s = text
        known = known or {}
        # Declared values first (a whole e-mail before its local part looks like a name), names last.
        for kind, values in known.items():
            if kind != "NAME":
                s = self._replace_known(s, kind, values, counts)
        for kind, pattern in self._extra:
            s = sub(pattern, kind, s)
        s = sub(_EMAIL, "EMAIL", s)
        s = sub(_AMAZON_ORDER, "UCI", s)
        s = sub(_CARD, "CARD", s, check=_card_ok)
        s = sub(_ID_WITH_CUE, "UCI", s, group="id", check=lambda v, m, _s: not v.startswith("[") and not _looks_like_measure(v))
        s = sub(_HASH_ID, "UCI", s)
        s = sub(_AMAZON_CUSTOMER, "UCI", s)
        if mode != "catalog":
            s = sub(_PO_BOX, "ADDRESS", s)
            s = sub(_STREET, "ADDRESS", s)
            s = sub(_CITY_STATE_ZIP, "ADDRESS", s)
            s = sub(_UK_POSTCODE, "ADDRESS", s)
        s = sub(_PHONE, "PHONE", s, check=_phone_ok)
        if "NAME" in known:
            s = self._replace_known(s, "NAME", known["NAME"], counts)
        if mode != "catalog":
            s = self._redact_names(s, counts, free_names=mode == "free_text")
        return Redacted(s, counts)

    # ---- names ---------------------------------------------------------------------------------------
    def _replace_known(self, s: str, kind: str, values: Iterable[str], counts: dict[str, int]) -> str:
        variants: set[str] = set()
        for value in values:
            value = " ".join((value or "").split())  # cleaned like the text it is looked for in
            if not value:
                continue
            variants.add(value)
            if kind == "NAME":
                # 'Natalia Corres "Natalia Corres"' holds the name twice: each part counts, but only parts
                # that look like names ('Daniel "gluten free"' must not redact "gluten free" in reviews).
                parts = [p.strip() for p in re.split(r'["\u201c\u201d]', value) if p.strip()]
                for part in parts:
                    if all(w[:1].isupper() for w in part.split()):
                        variants.add(part)
                for part in list(variants):
                    first = part.split()[0].strip("\"'")
                    if first in self._names:
                        variants.add(first)
        for variant in sorted(variants, key=len, reverse=True):
            if len(variant) < 2:
                continue
            pattern = re.compile(r"(?<!\w)" + _space_flexible(variant) + r"(?!\w)", re.IGNORECASE)
            s, n = pattern.subn(f"[{kind}]", s)
            if n:
                counts[kind] = counts.get(kind, 0) + n
        return s

    def _redact_names(self, s: str, counts: dict[str, int], free_names: bool) -> str:
        names, names_lower = self._names, self._names_lower
        kept: list[str] = []
        if self._keep is not None:
            # Brands and other kept phrases become sentinels no name rule can match, and come back after.
            def hide(m: re.Match) -> str:
                kept.append(m.group(0))
                return f"\ue000{len(kept) - 1}\ue001"

            s = self._keep.sub(hide, s)

        def bump() -> str:
            counts["NAME"] = counts.get("NAME", 0) + 1
            return "[NAME]"

        def replace_group(m: re.Match, group: str = "name") -> str:
            start, end = m.span(group)
            return m.group(0)[: start - m.start()] + bump() + m.group(0)[end - m.start() :]

        def replace_first_word(m: re.Match) -> str:
            """Only the first of the two words the pattern took: the second is not part of the name."""
            start = m.start("name")
            end = start + len(m.group("name").split()[0])
            return m.group(0)[: start - m.start()] + bump() + m.group(0)[end - m.start() :]

        def speaker(m: re.Match) -> str:
            group = "paren" if m.group("paren") else "bare"
            person = m.group(group)
            if not person or person.strip().startswith("["):
                return m.group(0)
            return replace_group(m, group)

        s = _SPEAKER.sub(speaker, s)
        s = _NAME_ROLE.sub(lambda m: m.group(0) if m.group("name").startswith("[") else replace_group(m), s)
        s = _NAME_LABEL.sub(lambda m: replace_group(m) if m.group("name").split()[0] in names else m.group(0), s)
        s = _HONORIFIC.sub(replace_group, s)
        s = _STRONG_CUE.sub(replace_group, s)

        def strong_lower(m: re.Match) -> str:
            words = m.group("name").split()
            if words[0].lower() in _NOT_NAMES:
                return m.group(0)
            if len(words) > 1 and words[1].lower() in _NOT_NAMES:
                return replace_first_word(m)
            return replace_group(m)

        s = _STRONG_CUE_LOWER.sub(strong_lower, s)

        def weak(m: re.Match) -> str:
            words = m.group("name").split()
            if words[0].lower() not in names_lower:
                return m.group(0)
            if len(words) > 1 and not words[1][:1].isupper():  # "Thanks Maria for ...": the given name only
                return replace_first_word(m)
            return replace_group(m)

        s = _WEAK_CUE.sub(weak, s)
        s = _FULL_NAME.sub(lambda m: bump() if m.group("first") in names else m.group(0), s)
        if free_names:
            s = _WORD.sub(lambda m: bump() if m.group(0) in names else m.group(0), s)
        if kept:
            s = _SENTINEL.sub(lambda m: kept[int(m.group(1))], s)
        return s
