"""Normalise text from sources: HTML line breaks, stray tags, entities, control characters, whitespace.

Customer text arrives with HTML in it (``<br />`` in the Amazon reviews, pasted markup in transcripts).
Markup is noise for instruction tuning and a hazard for any page that shows it, so tags are removed and
counted; the text itself is kept as data (the UI still escapes everything it shows).
"""
from __future__ import annotations

import html
import re
import unicodedata

_BREAK = re.compile(r"(?i)<\s*(?:br|/p|p|/div|div|/li)\s*/?\s*>")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_SCRIPT = re.compile(r"(?is)<\s*(script|style)\b[^>]*>.*?<\s*/\s*\1\s*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def clean_text(text: str | None) -> tuple[str | None, dict[str, int]]:
    """Return the cleaned text (None stays None) and what was done to it."""
    if text is None:
        return None, {}
    notes: dict[str, int] = {}
    s = unicodedata.normalize("NFC", str(text))
    s, n = _SCRIPT.subn(" ", s)
    if n:
        notes["scripts_removed"] = n
    s, n = _BREAK.subn("\n", s)
    if n:
        notes["html_breaks"] = n
    s, n = _TAG.subn("", s)
    if n:
        notes["html_tags_removed"] = n
    unescaped = html.unescape(s)
    if unescaped != s:
        notes["html_entities"] = 1
        s = unescaped
    s, n = _CONTROL.subn("", s)
    if n:
        notes["control_chars_removed"] = n
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    s = "\n".join(_SPACES.sub(" ", line).strip() for line in s.split("\n"))
    s = _BLANK_LINES.sub("\n\n", s).strip()
    return s, notes
