"""Near-duplicate question/answer samples by their text (MinHash + LSH): the pure core, no store and no jobs.

Two samples are near-duplicates when the caller gives them the same key (their first image's near-duplicate
photo group and their task, say) and their texts say the same thing: the Jaccard similarity of the sets of
word k-grams ("shingles") of their normalised texts is at least a threshold. :func:`groups_by_text` returns
the connected components of those pairs, like ``groups_by_hash`` in curation/near_dups.py does for photos.

A text may be one string or a tuple of fields, e.g. ``(question, answer)``; with fields, every field must be
near-equal on its own (the smallest per-field Jaccard is compared). Pass fields: joined into one string, a
ten-word question outweighs a one-word answer, and "...shown in this image? Blue" and "...? Red" reach 0.82.

Grouping never compares all pairs of a large key:

1. texts equal after :func:`normalise` are merged first, by a dictionary: exact and O(n), so 10,000 copies of
   one answer are one representative, and equal texts are always in one group whatever the threshold;
2. with ``same_numbers`` (the default) the numbers a text states are part of the key: in a 42-word answer "pack
   of 12" and "pack of 24" differ in 3 shingles of 40 (J = 0.86), yet they are different facts;
3. a key of fewer than ``exact_below`` representatives is compared all pairs, exactly (as quick as sketching
   them, measured); a larger one is sketched with MinHash and indexed in a MinHashLSH of its own (nothing to
   discard from other keys, and freed when done), which proposes candidate pairs;
4. every candidate pair is checked on the exact shingle sets before it is joined, so no pair below the
   threshold is ever joined directly (a chain a-b-c is one group even where a and c are further apart).

Only step 3's candidates are approximate: a pair at or above the threshold is missed with probability at
most ``MAX_MISS`` (:func:`lsh_params`), far less above it. tests/test_text_dups.py compares the result with
an all-pairs reference.

Cost: O(n) plus one exact check (~0.4 us) per candidate pair. 200,000 synthetic (question, answer) samples in
keys of 1-300 take ~3 s on one core, the same in 20 keys of 10,000 varied texts ~6.5 s. What LSH cannot
make cheap is one key of many distinct texts that are all moderately alike: 10,000 answers filled into one
template (J ~ 0.47 for most pairs) make ~44% of the pairs candidates, ~28 s (64 s joined into one string).
"""
from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass
from itertools import combinations
from typing import Hashable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# The banding keeps the chance that LSH misses a pair sitting exactly at the threshold below this; misses
# fall off steeply above it (about 2e-10 at 0.9 with the defaults). Lower costs more false candidates.
MAX_MISS = 1e-4


@dataclass(frozen=True)
class TextDupConfig:
    """The parameters of :func:`groups_by_text`, by the same names: ``groups_by_text(keys, texts, **asdict(config))``."""

    # Jaccard of trigram sets. At 0.8 two texts of equal length share at least 89% of their shingles each way:
    # a near-verbatim copy (a changed article or a dropped word in a long answer), not a paraphrase. One word
    # substituted mid-text breaks 3 shingles: J = (n - 5) / (n + 1) for n words, >= 0.8 only from 29 words on,
    # so short answers must match nearly word for word. Lower values join templated texts that differ in
    # their one content word.
    threshold: float = 0.8
    # MinHash values per field: the estimate's standard error is about sqrt(J(1 - J) / 128) = 0.035 at 0.8,
    # and 128 leaves enough rows for the banding (25 bands of 5). Only candidates are estimated, so more
    # perms buy fewer false candidates, not accuracy.
    num_perm: int = 128
    # Word trigrams: bigrams ("of the", "is a") are shared by most product sentences and make unrelated texts
    # of one key look alike; 4-grams and up leave a 10-word question with 7 shingles or fewer, where one
    # edit already costs half. Texts shorter than this are one shingle each (see :func:`shingles`).
    shingle_size: int = 3
    # The MinHash permutations: fixed, so a run is reproducible (and changing it reshuffles only LSH's rare misses).
    seed: int = 1
    # Different numbers are different facts ("pack of 12" / "pack of 24", "1.5 V" / "15 V"), however long the
    # text around them: texts whose numbers differ are never joined.
    same_numbers: bool = True
    # A key with fewer distinct texts than this is compared all pairs, exactly. Sketching, indexing and
    # querying a text costs ~110 us, an exact check ~0.4 us: on unrelated texts all pairs costs 25 us a text
    # in keys of 64, 82 at 256, 107 at 512 (one core), so it is as quick up to a few hundred, and exact.
    exact_below: int = 256


DEFAULTS = TextDupConfig()

# ---- the text compared ------------------------------------------------------------------------------------------------
# An apostrophe inside a word is dropped, not split: "don't" and "dont" are one word, not "don t".
_APOSTROPHE = re.compile(r"(?<=\w)['\u2019\u02bc](?=\w)")
# "." and "," survive the table only to be judged here: between two digits they are part of a number.
_STRAY_SEPARATOR = re.compile(r"(?<![0-9])[.,]|[.,](?![0-9])")
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")


class _WordChars(dict):
    """A str.translate table filled on first sight of each character (the whole of Unicode is 1.1M entries):
    letters, digits and combining marks of any script are kept (a mark is part of its word in Devanagari,
    Thai, Arabic...), decimal digits of any script become ASCII digits (their values are what a number says),
    everything else (punctuation, symbols, spaces, controls) becomes a space."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Nd":
            value = str(unicodedata.decimal(char))
        elif category[0] in "LMN" or char in ".,":
            value = char
        else:
            value = " "
        self[code] = value
        return value


_TABLE = _WordChars()


def normalise(text: str) -> str:
    """The text compared: equal outputs mean the same words and numbers in the same order.

    - Unicode NFKC: full-width forms, ligatures and compatibility digits ("１２", "ﬁ", "²") are the characters
      they stand for, so text typed or extracted differently compares equal;
    - casefold (then NFKC again, as casefolding can leave a sequence unnormalised): case carries no meaning in
      a product answer, and casefold also folds "ß" to "ss" where lower() would not;
    - punctuation and symbols become spaces, letters, marks and digits of every script are kept: "Blue!" is
      "blue", "12-pack" is "12 pack", "black/white" is "black white"; an apostrophe within a word is dropped;
    - numbers are kept whole, decimal digits of any script as ASCII and "." or "," between two digits kept
      ("1.5" is not "15"): "pack of 12" and "pack of 24" must differ;
    - whitespace collapsed to single spaces, none at the ends: layout is not content. Whitespace alone is "".
    """
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    text = _APOSTROPHE.sub("", text).translate(_TABLE)
    return " ".join(_STRAY_SEPARATOR.sub(" ", text).split())


def numbers(text: str) -> tuple[str, ...]:
    """The numbers a normalised text states, sorted ("12 x 24 cm" and "24 x 12 cm" state the same ones)."""
    return tuple(sorted(_NUMBER.findall(text)))


def shingles(text: str, k: int = DEFAULTS.shingle_size) -> frozenset[str]:
    """The set of word k-grams of a :func:`normalise`-d text; a text of fewer than ``k`` words is one shingle.

    A short text is its own single shingle, so it is near-equal only to an equal text: in "Yes", "Blue",
    "XL" or "Model 3" every character is the answer, and character grams would make "XL"/"XXL" or
    "Polyester"/"Polyesters" 0.7-0.9 alike. A whole text of fewer than ``k`` words never equals a k-gram of
    another text, so the two kinds cannot be confused. The empty text is the one shingle "", equal to itself.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k!r}")
    words = text.split()
    if len(words) < k:
        return frozenset((" ".join(words),))
    return frozenset(" ".join(words[i:i + k]) for i in range(len(words) - k + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a & b| / |a | b|; 1.0 for two empty sets."""
    inter = len(a & b)
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


# ---- grouping ---------------------------------------------------------------------------------------------------------
def lsh_params(threshold: float, num_perm: int, fields: int = 1, max_miss: float = MAX_MISS) -> tuple[int, int]:
    """(bands, rows of each field per band) for texts of ``fields`` fields: the most rows per band (the fewest
    false candidates) with which a pair whose every field is at the threshold is missed with probability at
    most ``max_miss``. A band of a text with fields is the same rows of each field's MinHash side by side, so
    a pair shares a band only where every field agrees on it: a repeated question does not make every pair
    of answers a candidate. A pair with per-field similarities s_f shares a band with probability
    prod(s_f ** rows) and is missed with probability (1 - that) ** bands.

    datasketch's own optimiser weighs false positives and misses equally and integrates for every (bands,
    rows), about 0.1 s a call; here misses matter (a false candidate only costs a check) and this is exact."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], not {threshold!r}")
    if num_perm < 2:
        raise ValueError(f"num_perm must be at least 2, not {num_perm!r}")
    best = (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):  # at least two bands: MinHashLSH refuses one
        bands = num_perm // rows
        if (1 - threshold ** (fields * rows)) ** bands <= max_miss:
            best = (bands, rows)
    return best


def _fields(i: int, text) -> tuple[str, ...]:
    if isinstance(text, str):
        return (text,)
    if isinstance(text, (tuple, list)) and text and all(isinstance(field, str) for field in text):
        return tuple(text)
    raise TypeError(f"text {i} must be a string or a non-empty tuple of strings, not {text!r}")


def _near(a: tuple[frozenset[str], ...], b: tuple[frozenset[str], ...], threshold: float) -> bool:
    """Every field's exact Jaccard at least ``threshold``."""
    for x, y in zip(a, b):
        inter = len(x & y)
        if inter / (len(x) + len(y) - inter) < threshold:  # shingle sets are never empty: no zero union
            return False
    return True


def _lsh_pairs(sets: list[tuple[frozenset[str], ...]], norms: list[tuple[str, ...]], threshold: float, num_perm: int,
               seed: int) -> list[tuple[int, int]]:
    """Pairs (earlier, later) of positions in ``sets`` that LSH proposes and the exact check accepts."""
    # A field equal in every text of the key (a templated question) agrees in every band: banding on it only
    # costs rows. Band on the others: with one varying field, 25 bands of 5 rows propose a pair of answers at
    # 0.47 with probability 0.44, where 42 bands of 3 rows per field (two fields) would propose it at 0.99.
    varying = [j for j in range(len(norms[0])) if len({norm[j] for norm in norms}) > 1]
    bands, rows = lsh_params(threshold, num_perm, len(varying))
    used = bands * rows
    # One sketch per distinct field text: a key's templated question is hashed once, not once per sample.
    # crc32 of the shingle's bytes is deterministic (str hash is salted per process) and several times quicker
    # than datasketch's default sha1; its collisions only blur the estimate, never the exact check.
    distinct = list({norm[j]: fields[j] for norm, fields in zip(norms, sets) for j in varying}.items())
    sketches = MinHash.generator(([s.encode() for s in shingle_set] for _, shingle_set in distinct),
                                 num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)
    values = {field: sketch.hashvalues[:used].reshape(bands, rows) for (field, _), sketch in zip(distinct, sketches)}

    checked = [tuple(fields[j] for j in varying) for fields in sets]  # the constant fields are equal: J = 1
    lsh = MinHashLSH(num_perm=used * len(varying), params=(bands, rows * len(varying)))
    pairs: list[tuple[int, int]] = []
    for x, norm in enumerate(norms):
        # Band j of the index = band j of each field's MinHash side by side (see lsh_params).
        banded = np.hstack([values[norm[j]] for j in varying]).ravel()
        sketch = LeanMinHash(seed=seed, hashvalues=banded, scheme="affine32")
        for y in lsh.query(sketch):  # only earlier texts are indexed: each pair is checked once
            if _near(checked[y], checked[x], threshold):
                pairs.append((y, x))
        lsh.insert(x, sketch, check_duplication=False)
    return pairs


def _components(n: int, a: list[int], b: list[int]) -> list[list[int]]:
    """Connected components of two or more of the graph on 0..n-1, each sorted, ordered by their first index."""
    if not a:
        return []
    graph = coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(n, n))
    label = connected_components(graph, directed=False)[1]
    order = np.argsort(label, kind="stable")  # by component, then by index
    cut = np.flatnonzero(np.diff(label[order])) + 1
    starts, ends = np.concatenate(([0], cut)), np.concatenate((cut, [n]))
    groups = [order[s:e].tolist() for s, e in zip(starts.tolist(), ends.tolist()) if e - s >= 2]
    groups.sort(key=lambda group: group[0])
    return groups


def groups_by_text(keys: Sequence[Hashable], texts: Sequence[str | Sequence[str]], threshold: float = DEFAULTS.threshold,
                   num_perm: int = DEFAULTS.num_perm, seed: int = DEFAULTS.seed, *, shingle_size: int = DEFAULTS.shingle_size,
                   same_numbers: bool = DEFAULTS.same_numbers, exact_below: int = DEFAULTS.exact_below) -> list[list[int]]:
    """Indices of ``texts`` grouped by connected components of "same key and Jaccard similarity of shingle sets at
    least ``threshold``" (every field, for texts given as tuples of fields such as (question, answer)): only groups
    of two or more, each in increasing order, groups ordered by their first index. Texts equal after
    :func:`normalise` are always in one group; texts of different keys never are. See the module's docstring for
    how, and :class:`TextDupConfig` for the parameters."""
    n = len(texts)
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} texts")
    lsh_params(threshold, num_perm)  # checks threshold and num_perm
    if shingle_size < 1:
        raise ValueError(f"shingle_size must be at least 1, not {shingle_size!r}")
    if n < 2:
        return []
    fields = [_fields(i, text) for i, text in enumerate(texts)]
    if len({len(f) for f in fields}) > 1:
        raise ValueError("every text must have the same number of fields")

    # Exact merging: each distinct normalised text of a key is one representative, its first sample.
    a: list[int] = []
    b: list[int] = []
    cache: dict[str, str] = {}  # templated questions repeat: normalise each distinct string once
    buckets: dict[tuple, dict[tuple[str, ...], int]] = {}
    for i, (key, texts_i) in enumerate(zip(keys, fields)):
        norm = tuple(cache[t] if t in cache else cache.setdefault(t, normalise(t)) for t in texts_i)
        stated = tuple(numbers(t) for t in norm) if same_numbers else ()
        first = buckets.setdefault((key, stated), {}).setdefault(norm, i)
        if first != i:
            a.append(first)
            b.append(i)

    shingled: dict[str, frozenset[str]] = {}
    for reps in buckets.values():
        if len(reps) < 2:  # a key with one distinct text costs its dictionary entry, nothing more
            continue
        norms, ids = list(reps), list(reps.values())
        sets = [tuple(shingled[t] if t in shingled else shingled.setdefault(t, shingles(t, shingle_size)) for t in norm) for norm in norms]
        if len(reps) < exact_below:
            pairs = [(x, y) for x, y in combinations(range(len(sets)), 2) if _near(sets[x], sets[y], threshold)]
        else:
            pairs = _lsh_pairs(sets, norms, threshold, num_perm, seed)
        for x, y in pairs:
            a.append(ids[x])
            b.append(ids[y])
    return _components(n, a, b)
