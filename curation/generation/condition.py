"""What a customer's own words say about the condition the product and its packaging arrived in.

The condition tasks (``condition_packaging``, ``damage_detection`` and the difference asked in
``comparison``) rest on one sentence of the customer's text. A sentence is the product's condition on
arrival only when it speaks of *this customer's* product or its packaging *as received*. Each clause of a
sentence (split at "but", "however", "although", semicolons) is read on its own, and a condition word in it
(damaged, leaking, torn, melted, broken ... or intact, well packed, perfect condition ...) is set aside when:

* **other reviewers** say it ("some reviewers said it arrived broken", "some said theirs leaked", "I read
  that people got crushed boxes"): they describe their parcels, not this one. A clause of the customer's
  own in the same sentence still counts ("..., but mine came in perfect condition").
* **something else** is damaged: the words after it name a wall, a floor, a counter, a tooth, skin,
  clothes ... ("little or no damage to the wall", "broke my tooth"), or the words just before it name sound
  or music files ("the sound leaks", "mp3s ripped by Windows Media Player"). "No damage to the wall" says
  nothing about the parcel either way.
* it happened **later**, in use: "after 6 months of use", "after awhile", "soon after purchasing", "within
  two months of use", "the first time I tried", "later", "eventually". "Arrived after 3 days, crushed" is
  delivery time, not later, and still counts.
* the customer **did it**: "I dropped it", "one drop from 6 inches", "my son broke the lid", "accidentally".
  A part broken by the customer's own hand is not how it arrived.
* it is **hypothetical**: "if it arrives broken", "I was worried it would leak", "could be damaged".

A negated damage word ("not damaged", "nothing broken", "packed to avoid any damage") reads as intact, as
before. An **intact** reading needs more than the word: the sentence must speak of the arrival or the
packaging (arrived, came, delivered, shipping, packed, box, package, still sealed, ...), since "no leaks in my gym
bag" or "the flavour stays intact" are not how a parcel came. A **damaged** reading needs no such word: a
review is about the item received, and a sentence about the product's state with none of the markers above
("the bottoms were broken on all three bottles", "the berries had melted") is read as that state.

Damage anywhere in the text wins over "well packed" elsewhere ("Arrived well packed. The jar inside was
cracked."). Damage set aside as later or by the customer's hand is remembered (``damaged_since``): the
product may be broken in the customer's photo although it arrived intact, so no "not damaged" verdict rests
on such a text.

Pure functions over text; ``tasks.read_condition`` reads an item's fields with them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Words a customer uses for a damaged product or parcel; whole words only ("break" is not "breakfast").
DAMAGE = re.compile(
    r"\b(?:leak(?:s|ed|ing|y)?|torn|ripped|dent(?:s|ed)?|crush(?:ed)?|squashed|smash(?:ed)?|shatter(?:ed)?|broke|broken|"
    r"cracked|damag(?:e|ed|es)|spill(?:s|ed|ing)?|punctured|melted|mou?ldy|arrived open(?:ed)?|seal (?:was )?broken)\b",
    re.IGNORECASE,
)
# Words for a product or parcel that arrived whole.
INTACT = re.compile(
    r"\b(?:intact|undamaged|well[- ]packed|well[- ]packaged|securely packed|(?:perfect|good|great|excellent|mint) condition|"
    r"still sealed|sealed|carefully packaged|no damage|not damaged|nothing (?:was )?broken)\b",
    re.IGNORECASE,
)
# A condition word under a negation or a purpose of avoiding it ("not sealed", "to avoid any damage").
NEGATION = re.compile(r"\b(?:not|no|never|without|nothing|wasn't|weren't|isn't|didn't|avoid|prevent)\W+(?:\w+\W+){0,2}$", re.IGNORECASE)

# The clause speaks of the arrival or the packaging (what an intact reading needs).
ARRIVAL = re.compile(
    r"\b(?:arriv\w*|came|comes?|received?|receiving|deliver\w*|ship(?:ped|ping|ment|s)?|transit|mail(?:ed)?|post(?:ed)?|"
    r"packag\w*|pack(?:ed|ing)|parcel|box(?:es|ed)?|carton|wrap(?:ped|ping)|unbox\w*|(?:still|factory)\s+sealed|out of the box)\b",
    re.IGNORECASE,
)
# Other people's parcels: what reviewers, customers or "people" said, read or got.
_OTHERS = re.compile(
    r"\b(?:other|some|many|several|most|few|a lot of|lots of)\s+(?:of\s+the\s+)?(?:other\s+)?"
    r"(?:reviewers?|reviews|people|customers|buyers|users|purchasers|folks)\b"
    r"|\b(?:reviewers?|reviews|people|customers|buyers|users)\s+(?:have\s+|had\s+)?"
    r"(?:say|says|said|complain\w*|mention\w*|report\w*|wrote|write|claim\w*|note[sd]?|got|received)\b"
    r"|\b(?:some|many|several|a few)\s+(?:have\s+|had\s+)?(?:say|said|complain\w*|mention\w*|report\w*|wrote|claim\w*)\b"
    r"|\btheirs\b|\bI(?:'ve|\s+have|\s+had)?\s+read\b|\baccording to\b",
    re.IGNORECASE,
)
# Later, in use. "after ..." within a few words of a span of time or of use.
_LATER = re.compile(
    r"\bafter\b[^.,;!?]{0,30}?\b(?:minutes?|hours?|days?|weeks?|months?|years?|uses?|times|washe?s|awhile|while)\b"
    r"|\bafter\s+(?:\w+\s+and\s+)?(?:using|use|purchas\w*|buying|installing|owning|wearing|washing)\b"
    r"|\bwithin\s+(?:a|an|one|two|three|four|five|six|\d+|a\s+few|several)\s+(?:days?|weeks?|months?|years?|uses?)\b"
    r"|\b(?:later|eventually|over time|since then|soon after|while in use)\b"
    r"|\b(?:first|second|third|\d+(?:st|nd|rd|th))\s+time\s+(?:I|we)\s+(?:used|tried|plugged|put|wore|washed|ran)\b",
    re.IGNORECASE,
)
# "Arrived after 3 days": the delivery's time, not a later event.
_DELIVERY_TIME = re.compile(r"\b(?:arriv\w*|came|deliver\w*|ship\w*|received?)\s+(?:\w+\s+){0,2}(?:after|within)\b", re.IGNORECASE)
# The customer (or their household) did it.
_BY_USER = re.compile(
    r"\b(?:I|we|my\s+(?:son|daughter|kids?|child|children|husband|wife|dog|cat|puppy|partner|boyfriend|girlfriend))\s+"
    r"(?:\w+ly\s+|then\s+|also\s+|just\s+)?(?:dropped|broke|cracked|tore|ripped|spilled|knocked|crushed|squashed|smashed|sat\s+on|"
    r"stepped\s+on|chewed)\b"
    r"|\b(?:a|one)\s+drop\s+(?:from|on|onto)\b|\bdrop(?:ped)?\s+(?:it\s+)?from\b|\baccident(?:al(?:ly)?|ly)?\b|\bby mistake\b|\bmy (?:own )?fault\b",
    re.IGNORECASE,
)
_HYPOTHETICAL = re.compile(
    r"\b(?:if|unless|in case|whether|would|could|might|worried|worry|afraid|fear(?:ed|ful)?|hope[ds]?|hoping)\b", re.IGNORECASE
)
# Things a condition word may be about that are not the product or its packaging.
_OTHER_THINGS = frozenset(
    "wall walls paint plaster drywall floor floors carpet carpets rug rugs counter counters countertop countertops table tables desk "
    "furniture door doors window windows car dashboard visor clothes clothing shirt shirts pants skin hair tooth teeth filling fillings "
    "crown gums mouth stomach hand hands finger fingers nails dishwasher sink stove oven fridge tub tile tiles surface surfaces".split()
)
_NOT_PRODUCT_SUBJECTS = frozenset("sound sounds noise audio music mp3 mp3s songs cd cds files".split())
_CLAUSES = re.compile(r"[;:]\s*|,?\s+\b(?:but|however|although|though|whereas|except)\b,?\s+", re.IGNORECASE)
_WORDS = re.compile(r"[A-Za-z0-9']+")
_STOP = re.compile(r"[.,;:!?()]|\b(?:and|but|so|because|which)\b", re.IGNORECASE)


@dataclass(frozen=True)
class StatedCondition:
    """What a customer's own words say about the product's or parcel's condition on arrival (the evidence of
    the condition tasks); not a filter's condition (curation.filters.Condition)."""

    state: str  # damaged | intact
    quote: str  # the customer's sentence that says so
    field: str  # feedback_text | issue_type
    damaged_since: bool = False  # the text also tells of damage after arrival (in use, by the customer's hand)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+|<br\s*/?>", text) if s.strip()]


def clauses(sentence: str) -> list[str]:
    return [c for c in _CLAUSES.split(sentence) if c and c.strip()]


def _about_something_else(clause: str, match: re.Match) -> bool:
    """The condition word is about another thing: named just after it ("damage to the wall", "broke my
    tooth"), up to the next punctuation or conjunction, or just before it ("the sound leaks")."""
    after = _STOP.split(clause[match.end():], maxsplit=1)[0]
    if any(w.lower() in _OTHER_THINGS for w in _WORDS.findall(after)[:5]):
        return True
    before = _WORDS.findall(clause[: match.start()])[-2:]
    return any(w.lower() in _NOT_PRODUCT_SUBJECTS for w in before)


def set_aside(clause: str, match: re.Match) -> str | None:
    """Why a condition word in this clause is not the product's condition on arrival, or None when it is.
    One of: ``others``, ``something_else``, ``later``, ``by_customer``, ``hypothetical``."""
    if _OTHERS.search(clause):
        return "others"
    if _about_something_else(clause, match):
        return "something_else"
    later = _LATER.search(clause)
    if later and not _DELIVERY_TIME.search(clause[: later.end()]):
        return "later"
    if _BY_USER.search(clause):
        return "by_customer"
    if _HYPOTHETICAL.search(clause[: match.start()]):
        return "hypothetical"
    return None


def _negated(clause: str, match: re.Match) -> bool:
    return bool(NEGATION.search(clause[: match.start()]))


def _reading(sentence: str) -> tuple[str | None, bool]:
    """(damaged | intact | None, whether damage was set aside as later or by the customer) for one sentence."""
    damaged = intact = since = False
    for clause in clauses(sentence):
        for m in DAMAGE.finditer(clause):
            why = set_aside(clause, m)
            since |= why in ("later", "by_customer") and not _negated(clause, m)
            if why is None:
                if _negated(clause, m):
                    intact = True
                else:
                    damaged = True
        for m in INTACT.finditer(clause):
            if set_aside(clause, m) is None:
                if _negated(clause, m):  # "not sealed", "not in perfect condition"
                    damaged = True
                else:
                    intact = True
    if damaged:
        return "damaged", since
    if intact and ARRIVAL.search(sentence):
        return "intact", since
    return None, since


def arrival_condition(texts: list[tuple[str, str | None]]) -> StatedCondition | None:
    """The condition the customer's texts (``(field, text)``, in order) say the product arrived in, with the
    sentence that says it; None when no sentence speaks of it."""
    readings = [(name, s, *_reading(s)) for name, text in texts for s in sentences(text or "")]
    since = any(r[3] for r in readings)
    for state in ("damaged", "intact"):  # damage anywhere wins over "well packed" elsewhere
        for name, sentence, found, _ in readings:
            if found == state:
                return StatedCondition(state, sentence, name, since)
    return None
