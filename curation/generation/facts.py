"""The facts an item's own text states, each with the field that states it.

Samples may only say what the data supports, so every value here carries its source (``attributes.Color``,
``title``, ``description``, ``ocr``, ``brand``, ``category``). The keys are the item's own attribute keys,
spelled one way across the store (:func:`canonical_key`), plus the paper's eight keys where some field
states a value: brand from the brand column or a known brand of the catalog found in the title; colour,
target gender, size and pack count from the title's wording (then the description and the photo's text);
an expiry date from the photo's text or the description.

Pure functions: the generator, the evaluation's benchmarks and the quality report all read facts here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping

from ..verdicts import is_unanswerable

PAPER_KEYS = ("ProductType", "Name", "Brand", "Color", "Count", "Size", "ExpiryDate", "TargetGender")

# Spellings catalogs use for the paper's keys (compared after lower-casing and dropping separators).
_ALIASES = {
    "producttype": "ProductType", "itemtype": "ProductType", "type": "ProductType",
    "name": "Name", "itemname": "Name", "title": "Name", "productname": "Name",
    "brand": "Brand", "brandname": "Brand", "manufacturer": "Brand",
    "color": "Color", "colour": "Color", "colorname": "Color", "colourname": "Color",
    "count": "Count", "numberofitems": "Count", "unitcount": "Count", "itemcount": "Count", "packsize": "Count",
    "packagequantity": "Count", "quantity": "Count", "numberofpieces": "Count",
    "size": "Size", "sizename": "Size",
    "expirydate": "ExpiryDate", "expirationdate": "ExpiryDate", "bestbefore": "ExpiryDate", "bestbeforedate": "ExpiryDate",
    "targetgender": "TargetGender", "gender": "TargetGender", "department": "TargetGender",
}


def canonical_key(key: str) -> str:
    """One spelling per key: the paper's key for its known aliases, else the words in CamelCase.

    ``"Sleeve Style"``, ``"sleeve_style"``, ``"sleeveStyle"`` and ``"SLEEVE-STYLE"`` all become ``"SleeveStyle"``.
    """
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(key).strip())
    words = [w for w in re.split(r"[^0-9A-Za-z]+", text) if w]
    alias = _ALIASES.get("".join(words).lower())
    if alias:
        return alias
    return "".join(w[:1].upper() + w[1:].lower() for w in words) or str(key).strip()


@dataclass(frozen=True)
class Fact:
    key: str
    value: str
    source: str  # the field that states it: title, description, ocr, brand, category, attributes.<Key>
    quote: str  # the words of that field that state it


def _clean(value) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return None if is_unanswerable(text) else text


# ---- what titles say -------------------------------------------------------------------------------------
_COLOURS = (
    "black", "white", "grey", "gray", "silver", "gold", "red", "blue", "navy", "green", "yellow", "orange", "purple",
    "pink", "brown", "beige", "ivory", "cream", "tan", "khaki", "olive", "teal", "turquoise", "maroon", "burgundy",
    "charcoal", "coral", "lavender", "violet", "indigo", "magenta", "mint", "aqua", "copper", "bronze", "rose gold",
    "multicolor", "multicolour", "multi", "clear", "transparent", "natural", "walnut", "espresso", "oak", "taupe",
    "camel", "mustard", "wine", "plum", "slate", "sand", "stone", "bright white", "off white", "off-white",
)
_SHADE = r"(?:(?:light|dark|pale|deep|bright|heather|matte|royal|sky|forest|iron|jet|hot|baby|dusty|steel)\s+)?"
_COLOUR_RE = re.compile(r"^" + _SHADE + r"(?:" + "|".join(sorted((re.escape(c) for c in _COLOURS), key=len, reverse=True)) + r")"
                        r"(?:\s*(?:/|&|and|\s)\s*" + _SHADE + r"(?:" + "|".join(re.escape(c) for c in _COLOURS) + r"))?$", re.IGNORECASE)
_COLOUR_LABEL = re.compile(r"\bcolou?r\s*[:=]\s*([A-Za-z][A-Za-z /&-]{1,30}?)(?=\s*(?:[,;|()]|$))", re.IGNORECASE)
# A colour word inside a name ("Black Pepper", "Orange Juice") is not the product's colour; a colour that is a
# segment of its own ("..., Gray", "... - Black", "(Navy Blue)") or the title's last words usually is.
_SEGMENTS = re.compile(r"\s*(?:,|\||\(|\)|\[|\]|\s-\s|\s–\s|/)\s*")

_GENDERS = (
    (re.compile(r"\b(?:women'?s?|womens|ladies'?|female)\b", re.IGNORECASE), "Women"),
    (re.compile(r"(?<![a-z])(?:men'?s|mens|male)\b", re.IGNORECASE), "Men"),
    (re.compile(r"\b(?:girls'?|girl's)\b", re.IGNORECASE), "Girls"),
    (re.compile(r"\b(?:boys'?|boy's)\b", re.IGNORECASE), "Boys"),
    (re.compile(r"\bunisex\b", re.IGNORECASE), "Unisex"),
)

_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12, "dozen": 12, "twenty": 20, "twenty-four": 24}
_NUM = r"(\d{1,4}|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
_COUNT_PATTERNS = (
    re.compile(r"\b(?:pack|box|case|set|bag|bundle|carton)\s+of\s+" + _NUM + r"\b", re.IGNORECASE),
    re.compile(r"\b" + _NUM + r"[\s-]*(?:pack|pk|packs)\b", re.IGNORECASE),
    re.compile(r"\b" + _NUM + r"[\s-]*(?:count|ct|pieces|piece|pcs|pc|units|capsules|tablets|bars|bottles|cans|pods|rolls|sachets|portions)\b", re.IGNORECASE),
    re.compile(r"\b" + _NUM + r"\s*x\s*\d+(?:\.\d+)?\s*(?:g|ml|oz|fl\.?\s*oz|l|kg)\b", re.IGNORECASE),
)
_QUANTITY = re.compile(
    r"\b(\d+(?:[.,]\d+)?)\s*(fl\.?\s*oz|oz|ounces?|ml|millilit(?:er|re)s?|l|lit(?:er|re)s?|g|grams?|kg|kilograms?|lbs?|pounds?|"
    r"inch(?:es)?|in\.|cm|mm|ft|feet|quarts?|gallons?|watts?|w)\b",
    re.IGNORECASE,
)
_CLOTHING_SIZE = re.compile(r"\bsize\s*[:\-]?\s*([0-9]{1,2}(?:\.5)?(?:\s*(?:wide|narrow|regular|petite|tall))?|x{0,3}[sml]|x{1,3}l|[2-5]xl)\b", re.IGNORECASE)
_LETTER_SIZE = re.compile(r"^(?:x{0,3}-?small|medium|x{0,3}-?large|x{1,3}l|[2-5]xl|xs|s|m|l)(?:\s*(?:/|-)\s*(?:x{0,3}-?small|medium|x{0,3}-?large|xs|s|m|l|xl))?$", re.IGNORECASE)
_EXPIRY = re.compile(
    r"\b(?:exp(?:iry|iration)?(?:\s+date)?|best\s+before(?:\s+end)?|use\s+by|bb|bbe)\s*[:.]?\s*"
    r"(\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{4}[/.-]\d{1,2}(?:[/.-]\d{1,2})?|\d{1,2}[/.-]\d{4}|[A-Z][a-z]{2,8}\.?\s+\d{4})",
    re.IGNORECASE,
)


def _segments(title: str) -> list[str]:
    return [s.strip(" .;:") for s in _SEGMENTS.split(title) if s and s.strip(" .;:")]


def colour_in(text: str) -> tuple[str, str] | None:
    """(colour, the words stating it) where the text names a colour as its own segment or labels one."""
    label = _COLOUR_LABEL.search(text)
    if label:
        return label.group(1).strip().title(), label.group(0)
    segments = _segments(text)
    for segment in reversed(segments):
        if _COLOUR_RE.match(segment):
            return segment.title(), segment
    if segments:  # "Women's Crew Neck Tee Heather Gray": the title's last one to three words
        words = segments[-1].split()
        for n in (3, 2, 1):
            if len(words) > n and _COLOUR_RE.match(" ".join(words[-n:])):
                tail = " ".join(words[-n:])
                return tail.title(), tail
    return None


def gender_in(text: str) -> tuple[str, str] | None:
    found = [(m, label) for pattern, label in _GENDERS if (m := pattern.search(text))]
    if not found:
        return None
    labels = {label for _, label in found}
    if {"Women", "Men"} <= labels or "Unisex" in labels:
        return "Unisex", " / ".join(m.group(0) for m, _ in found)
    match, label = found[0]
    return label, match.group(0)


def count_in(text: str) -> tuple[str, str] | None:
    """A pack size: "Pack of 12", "12-pack", "5 count", "Set of 6", "6 x 500 g" (as a number)."""
    for pattern in _COUNT_PATTERNS:
        m = pattern.search(text)
        if m:
            raw = m.group(1).lower()
            number = _NUMBER_WORDS.get(raw) or int(raw)
            if number >= 1:
                return str(number), m.group(0)
    return None


def size_in(text: str) -> tuple[str, str] | None:
    m = _CLOTHING_SIZE.search(text)
    if m:
        return m.group(1).upper() if len(m.group(1)) <= 3 else m.group(1).title(), m.group(0)
    for segment in _segments(text):
        if _LETTER_SIZE.match(segment):
            return segment.title() if len(segment) > 3 else segment.upper(), segment
    m = _QUANTITY.search(text)
    if m:
        return " ".join(m.group(0).split()), m.group(0)
    return None


def expiry_in(text: str) -> tuple[str, str] | None:
    m = _EXPIRY.search(text)
    return (m.group(1), m.group(0)) if m else None


def brand_in(title: str, known_brands: Mapping[str, str]) -> tuple[str, str] | None:
    """The longest known brand (of this catalog's brand column) that the title names as whole words,
    earliest first. ``known_brands`` maps the lower-cased brand to its spelling."""
    if not known_brands:
        return None
    words = re.findall(r"[\w'&.+-]+", title)
    best = None
    for start in range(len(words)):
        for n in range(min(5, len(words) - start), 0, -1):
            phrase = " ".join(words[start : start + n])
            brand = known_brands.get(phrase.lower())
            if brand and (best is None or n > best[2]):
                best = (brand, phrase, n)
                break
        if best:
            return best[0], best[1]
    return None


_FROM_TEXT = (("Color", colour_in), ("TargetGender", gender_in), ("Count", count_in), ("Size", size_in))


def item_facts(
    *,
    title: str | None,
    brand: str | None = None,
    category: str | None = None,
    attributes: Mapping[str, object] | None = None,
    description: str | None = None,
    ocr_text: str | None = None,
    known_brands: Mapping[str, str] | None = None,
) -> dict[str, Fact]:
    """Every key the item's fields state a value for, in a stable order: the paper's keys first, then the
    item's own attribute keys. An attribute column wins over what the title's words suggest."""
    facts: dict[str, Fact] = {}

    def put(key: str, value, source: str, quote=None) -> None:
        value = _clean(value)
        if value and key not in facts:
            facts[key] = Fact(key, value, source, _clean(quote) or value)

    own = {}
    for raw_key, raw_value in (attributes or {}).items():
        value = _clean(raw_value)
        if value:
            own.setdefault(canonical_key(raw_key), (value, f"attributes.{raw_key}"))
    title = _clean(title)
    put("ProductType", *(own.get("ProductType") or (category, "category")))
    put("Name", *(own.get("Name") or (title, "title")))
    if "Brand" in own:
        put("Brand", *own["Brand"])
    put("Brand", brand, "brand")
    if title and "Brand" not in facts:
        found = brand_in(title, known_brands or {})
        if found:
            put("Brand", found[0], "title", found[1])
    for key, reader in _FROM_TEXT:
        if key in own:
            put(key, *own[key])
            continue
        for source, text in (("title", title), ("description", description), ("ocr", ocr_text)):
            # colour and size words in a description often describe other things ("pairs well with a black
            # belt"); only the title and labelled text are read for them
            if not text or (key in ("Color", "Size") and source == "description"):
                continue
            found = reader(text)
            if found:
                put(key, found[0], source, found[1])
                break
    if "ExpiryDate" in own:
        put("ExpiryDate", *own["ExpiryDate"])
    for source, text in (("ocr", ocr_text), ("description", description)):
        found = expiry_in(text) if text else None
        if found:
            put("ExpiryDate", found[0], source, found[1])
            break
    for key, (value, source) in own.items():
        put(key, value, source)
    return {k: facts[k] for k in [*(k for k in PAPER_KEYS if k in facts), *(k for k in facts if k not in PAPER_KEYS)]}


def known_brand_index(brands: Iterable[str | None]) -> dict[str, str]:
    """Lower-cased brand -> its spelling, for :func:`brand_in`; generic one-letter names are left out."""
    out: dict[str, str] = {}
    for brand in brands:
        brand = _clean(brand)
        if brand and len(brand) > 1 and brand.lower() not in ("generic", "unbranded", "no brand"):
            out.setdefault(brand.lower(), brand)
    return out


def complete_attributes(values: Mapping[str, str], facts: Mapping[str, Fact]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """An attribute answer (an LLM's) with every value the item's fields state filled in where the answer
    left it out or called it "Unanswerable", and the evidence of each key that a field supports. A value
    the answer gives and no field states is kept (the photo may show it) but has no evidence."""
    out = dict(values)
    evidence = []
    for key, fact in facts.items():
        given = _clean(out.get(key))
        if given is None:
            out[key] = fact.value
        if _clean(out[key]) and out[key].strip().lower() == fact.value.lower():
            evidence.append({"field": fact.source, "text": fact.quote, "key": key})
    return out, evidence
