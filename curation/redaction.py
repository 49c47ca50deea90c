"""Replace personal data in text with placeholders before anything is stored or logged.

Rule-based on purpose: it runs on millions of rows on CPU workers, needs no model download, and each rule
can be read and tested. Order matters: e-mail and card numbers go first (they contain digits a phone rule
would take), then order/customer ids, phones, postal addresses and names.

Names are the hard part. What is caught: values the source itself declares personal (a ``ProfileName`` or
``UserId`` column mapped as PII, wherever they reappear in the text), speaker labels in transcripts
(``Agent (Maria):``), honorifics (``Mrs. Lee``), cue phrases (``my name is …``, ``Dear …``,
``Thanks, …``), and given names from a list followed by a capitalised surname. Free-standing given names
are caught only in customer-written text, where a brand named after a person is unlikely.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, Mapping

KINDS = ("EMAIL", "CARD", "UCI", "PHONE", "ADDRESS", "NAME")


@dataclass(frozen=True)
class RedactionConfig:
    enabled: bool = True
    # Extra (KIND, regex) rules from the user, applied before the built-in ones; KIND becomes [KIND].
    extra_patterns: tuple[tuple[str, str], ...] = ()

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


# ---- patterns ------------------------------------------------------------------------------------------
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Card numbers as people write them: 4-4-4-4 (or 4-4-4-1..7), Amex 4-6-5, or one unbroken run.
_CARD = re.compile(r"(?<![\d-])(?:\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{5}|\d{13,19})(?![\d-])")
_AMAZON_ORDER = re.compile(r"\b\d{3}-\d{7}-\d{7}\b")
_ID_WITH_CUE = re.compile(
    r"(?i)\b(?:order|customer|client|account|acct|member(?:ship)?|ticket|case|reference|ref|tracking|rma|"
    r"return|refund|invoice|transaction|loyalty|user|uci)"
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
_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Close|Crescent|Cres|Row|Trail|Trl)"
)
_STREET = re.compile(
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z'-]+\.?\s+){0,3}[A-Z][A-Za-z'-]*\s+" + _STREET_SUFFIX + r"\b\.?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*[A-Za-z0-9-]+)?"
    r"(?:,\s*[A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2})?"
    r"(?:,?\s*[A-Z]{2})?(?:,?\s+\d{5}(?:-\d{4})?)?"
)
_PO_BOX = re.compile(r"(?i)\bP\.?\s?O\.?\s+Box\s+\d+\b")
_CITY_STATE_ZIP = re.compile(r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+){0,2},\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b")
_UK_POSTCODE = re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s+\d[A-Z]{2}\b")

_CAP = r"[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?"
_HONORIFIC = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Sir|Madam)\.?\s+(?P<name>" + _CAP + r"(?:\s+" + _CAP + r")?)")
# Cues strong enough to take any capitalised word after them as a name.
_STRONG_CUE = re.compile(
    r"(?i:\b(?:my name is|my name's|name\s*:|dear|signed|sincerely,?|regards,?|ask for|spoke (?:to|with)|"
    r"speaking (?:to|with)|customer name\s*:|agent name\s*:))\s+(?P<name>" + _CAP + r"(?:\s+" + _CAP + r")?)"
)
# Weak cues: the word after them must be a known given name.
_WEAK_CUE = re.compile(
    r"(?i:\b(?:this is|i am|i'm|hi|hello|hey|thanks|thank you|bye|goodbye|cheers)),?\s+(?P<name>"
    + _CAP
    + r"(?:\s+"
    + _CAP
    + r")?)"
)
_SPEAKER = re.compile(
    r"(?m)^(?P<role>\s*(?:Agent|Customer|Rep|Representative|Support|Advisor|Associate|Caller|Client|Buyer|Seller)"
    r")(?:\s*\((?P<paren>[^)\n]{1,60})\)|[ -]+(?P<bare>" + _CAP + r"(?:\s+" + _CAP + r")?))\s*:"
)
_NAME_LABEL = re.compile(r"(?m)^(?P<name>" + _CAP + r"(?:\s+" + _CAP + r")?)\s*(?i:\((?:agent|customer)\))?\s*:")
_FULL_NAME = re.compile(r"\b(?P<first>" + _CAP + r")\s+(?P<last>" + _CAP + r")\b")
_WORD = re.compile(r"\b" + _CAP + r"\b")


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


class Redactor:
    """Redacts one text at a time; cheap to build, safe to share between threads."""

    def __init__(self, config: RedactionConfig | None = None):
        self.config = config or RedactionConfig()
        self._extra = [(kind, re.compile(p)) for kind, p in self.config.extra_patterns]
        self._names = first_names()

    def redact(
        self,
        text: str | None,
        *,
        known: Mapping[str, Iterable[str]] | None = None,
        free_names: bool = True,
    ) -> Redacted:
        """Return the text with placeholders and a count per kind.

        ``known`` maps a kind to values the source declares personal (they are replaced wherever they occur).
        ``free_names`` also takes lone given names (for customer-written text, not catalog fields).
        """
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
        s = sub(_CARD, "CARD", s, check=_card_ok)
        s = sub(_AMAZON_ORDER, "UCI", s)
        s = sub(_ID_WITH_CUE, "UCI", s, group="id", check=lambda v, m, _s: not v.startswith("[") and not _looks_like_measure(v))
        s = sub(_HASH_ID, "UCI", s)
        s = sub(_AMAZON_CUSTOMER, "UCI", s)
        s = sub(_PO_BOX, "ADDRESS", s)
        s = sub(_STREET, "ADDRESS", s)
        s = sub(_CITY_STATE_ZIP, "ADDRESS", s)
        s = sub(_UK_POSTCODE, "ADDRESS", s)
        s = sub(_PHONE, "PHONE", s, check=_phone_ok)
        if "NAME" in known:
            s = self._replace_known(s, "NAME", known["NAME"], counts)
        s = self._redact_names(s, counts, free_names)
        return Redacted(s, counts)

    # ---- names ---------------------------------------------------------------------------------------
    def _replace_known(self, s: str, kind: str, values: Iterable[str], counts: dict[str, int]) -> str:
        for value in sorted({v.strip() for v in values if v and v.strip()}, key=len, reverse=True):
            # A profile name such as 'Natalia Corres "Natalia Corres"' holds the name twice.
            variants = {value} | {part.strip() for part in re.split(r'["\u201c\u201d]', value) if part.strip()}
            if kind == "NAME":
                # "Natalia Corres" also appears as "Natalia"; take the given name when it is a known one.
                for part in list(variants):
                    first = part.split()[0].strip('"\'')
                    if first in self._names:
                        variants.add(first)
            for variant in sorted(variants, key=len, reverse=True):
                if len(variant) < 2:
                    continue
                pattern = re.compile(r"(?<!\w)" + re.escape(variant) + r"(?!\w)", re.IGNORECASE)
                s, n = pattern.subn(f"[{kind}]", s)
                if n:
                    counts[kind] = counts.get(kind, 0) + n
        return s

    def _redact_names(self, s: str, counts: dict[str, int], free_names: bool) -> str:
        names = self._names

        def bump() -> str:
            counts["NAME"] = counts.get("NAME", 0) + 1
            return "[NAME]"

        def speaker(m: re.Match) -> str:
            person = m.group("paren") or m.group("bare")
            if not person or person.strip().startswith("["):
                return m.group(0)
            return f"{m.group('role')} ({bump()}):"

        s = _SPEAKER.sub(speaker, s)

        def label(m: re.Match) -> str:
            first = m.group("name").split()[0]
            return m.group(0).replace(m.group("name"), bump(), 1) if first in names else m.group(0)

        s = _NAME_LABEL.sub(label, s)

        def strong(m: re.Match) -> str:
            start, end = m.span("name")
            return m.group(0)[: start - m.start()] + bump() + m.group(0)[end - m.start() :]

        s = _HONORIFIC.sub(strong, s)
        s = _STRONG_CUE.sub(strong, s)

        def weak(m: re.Match) -> str:
            first = m.group("name").split()[0]
            if first not in names:
                return m.group(0)
            return strong(m)

        s = _WEAK_CUE.sub(weak, s)

        def full(m: re.Match) -> str:
            return bump() if m.group("first") in names else m.group(0)

        s = _FULL_NAME.sub(full, s)
        if free_names:
            s = _WORD.sub(lambda m: bump() if m.group(0) in names else m.group(0), s)
        return s


_CARD_CUE = re.compile(r"(?i)(?:card|visa|mastercard|amex|credit|debit|cc)\b[^\n]{0,25}$")


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
    digits = re.sub(r"\D", "", value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):  # ISO date
        return False
    if 10 <= len(digits) <= 15:
        if value.strip().isdigit():
            # A bare run of digits is as likely a barcode (EAN-13) or model number: only with a cue.
            return bool(_PHONE_CUE.search(s[: m.start()]))
        # "1.5 2.5 3.5 ..." style number lists are not phones: ask for phone-like grouping.
        return bool(re.search(r"\d{3}", value)) and value.count(".") <= 3
    if len(digits) == 7 and re.fullmatch(r"\d{3}[-. ]\d{4}", value.strip()):
        return bool(_PHONE_CUE.search(s[: m.start()]))
    return False
