"""curation/text_dups.py: the text compared (normalise, shingles), near-duplicate groups of question/answer texts
within a key (equal after normalisation, numbers, keys, chains, the threshold on measured pairs, fields), the
result equal to an all-pairs exact-Jaccard reference on random product texts on both paths (all pairs and
MinHash + LSH), the LSH banding, and what is refused."""
from __future__ import annotations

import math
import random
from dataclasses import asdict
from itertools import combinations

import pytest

from curation.text_dups import MAX_MISS, TextDupConfig, groups_by_text, jaccard, lsh_params, normalise, numbers, shingles

LSH = {"exact_below": 0}  # every key with two distinct texts or more through MinHash + LSH
EXACT = {"exact_below": 10**9}  # every key all pairs, exactly


@pytest.mark.parametrize("text, expected", [
    ("Pack of 12 AA Batteries!!", "pack of 12 aa batteries"),
    ("PACK  of\t１２\nAA batteries.", "pack of 12 aa batteries"),  # full-width digits, tabs and line breaks
    ("ＳＴＡＩＮＬＥＳＳ ﬁnish", "stainless finish"),  # full-width letters, a ligature
    ("Straße", "strasse"),  # casefold, not lower()
    ("1.5 V, not 15 V.", "1.5 v not 15 v"),  # a decimal point stays inside its number, a full stop goes
    ("3,000 mAh; 12-pack", "3,000 mah 12 pack"),
    ("Don’t / don't / dont", "dont dont dont"),
    ("black/white (unisex)", "black white unisex"),
    ("१२ हिन्दी", "12 हिन्दी"),  # Devanagari digits as ASCII, the vowel signs and virama (marks) kept
    ("«Café» — 100 %", "café 100"),
    ("", ""),
    (" \t\n ", ""),
    ("?!...", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def test_numbers_and_shingles():
    assert numbers("pack of 12 aa batteries 1.5 v") == ("1.5", "12")
    assert numbers("12 x 24 cm") == numbers("24 x 12 cm") == ("12", "24")
    assert shingles("pack of 12 aa batteries") == {"pack of 12", "of 12 aa", "12 aa batteries"}
    assert shingles("pack of 12 aa batteries", k=2) == {"pack of", "of 12", "12 aa", "aa batteries"}
    # Shorter than k words: the whole text is the one shingle, so short answers match only when equal.
    assert shingles("yes") == {"yes"}
    assert shingles("navy blue") == {"navy blue"}
    assert shingles("") == {""}
    assert jaccard(shingles("pack of 12"), shingles("pack of 24")) == 0.0
    assert jaccard(shingles("blue"), shingles("navy blue")) == 0.0
    # "A pack of ..." adds one shingle to three: 3/4, below the default threshold of 0.8.
    assert jaccard(shingles("pack of 12 aa batteries"), shingles("a pack of 12 aa batteries")) == 0.75


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_equal_after_normalisation_group(path):
    texts = ["Pack of 12 AA batteries.", "pack of １２ aa   batteries", "Blue", "PACK OF 12 AA BATTERIES!!", "blue!", "Yes", "No", "BLUE"]
    assert groups_by_text(["k"] * len(texts), texts, **path) == [[0, 1, 3], [2, 4, 7]]


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_different_numbers_do_not_group(path):
    assert groups_by_text(["k"] * 3, ["Pack of 12", "Pack of 24", "Pack of 12 AA batteries"], **path) == []
    # In a long answer one number is one word of 40: the shingles alone would call the two the same.
    words = " ".join(_words(36))
    a, b = f"A pack of 12 AA batteries {words}", f"A pack of 24 AA batteries {words}"
    assert jaccard(shingles(normalise(a)), shingles(normalise(b))) == 37 / 43  # 3 shingles of 40 hold the number
    assert groups_by_text(["k", "k"], [a, b], **path) == []
    assert groups_by_text(["k", "k"], [a, b], same_numbers=False, **path) == [[0, 1]]
    assert groups_by_text(["k", "k"], [a, a.replace("12", "１２")], **path) == [[0, 1]]


@pytest.mark.parametrize("path", [{}, LSH])
def test_different_keys_never_group(path):
    keys = [(7, "recognition"), (7, "attribute_extraction"), (8, "recognition"), (7, "recognition"), (8, "recognition")]
    assert groups_by_text(keys, ["Blue"] * 5, **path) == [[0, 3], [2, 4]]
    assert groups_by_text([1, 2, 3], ["Blue", "blue", "BLUE"], **path) == []


def _words(n: int) -> list[str]:
    """n distinct words without digits: "waa", "wba", ..."""
    return [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(n)]


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_chain(path):
    """a-b and b-c are near, a-c is not: one group all the same."""
    words = _words(40)
    a = " ".join(words)
    b = " ".join(words[:10] + ["changed"] + words[11:])
    c = " ".join(words[:10] + ["changed"] + words[11:30] + ["again"] + words[31:])
    sa, sb, sc = (shingles(normalise(t)) for t in (a, b, c))
    assert jaccard(sa, sb) == jaccard(sb, sc) == 35 / 41  # one word replaced: 3 shingles of 38 on each side
    assert jaccard(sa, sc) == 32 / 44 < 0.8
    unrelated = "a small wooden toy train"
    assert groups_by_text(["k"] * 4, [a, unrelated, c, b], **path) == [[0, 2, 3]]
    assert groups_by_text(["k"] * 2, [a, c], **path) == []


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_threshold_on_a_measured_pair(path):
    a = "This stainless steel water bottle keeps drinks cold for a whole day and fits most cup holders in a car"
    b = "This stainless steel water bottle keeps drinks cold for a whole day and fits all cup holders in the car"
    j = jaccard(shingles(normalise(a)), shingles(normalise(b)))
    assert j == 13 / 23  # 18 shingles each, 5 of them touched by the two replaced words
    assert groups_by_text(["k", "k"], [a, b], threshold=j, **path) == [[0, 1]]
    assert groups_by_text(["k", "k"], [a, b], threshold=math.nextafter(j, 1.0), **path) == []
    assert groups_by_text(["k", "k"], [a, b], **path) == []  # the default 0.8


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_question_and_answer_as_fields(path):
    """Joined, a ten-word question outweighs a one-word answer; as fields, each must be near-equal on its own."""
    q = "What is the colour of the product shown in this image?"
    joined = [f"{q} Blue", f"{q} Red"]
    assert jaccard(*(shingles(normalise(t)) for t in joined)) == 9 / 11  # above 0.8: "Blue" and "Red" would be one
    assert groups_by_text(["k", "k"], joined, **path) == [[0, 1]]
    assert groups_by_text(["k"] * 4, [(q, "Blue"), (q, "Red"), (q + "  ", "blue."), (q.upper(), "RED")], **path) == [[0, 2], [1, 3]]
    # Same answer, different questions: not near either.
    assert groups_by_text(["k", "k"], [("What colour is it?", "Blue"), ("What colour is the lid?", "Blue")], **path) == []


@pytest.mark.parametrize("path", [{}, LSH, EXACT])
def test_empty_and_whitespace_texts(path):
    texts = ["", "   ", "Blue", "\t\n", "?!", "blue", ""]
    assert groups_by_text(["k"] * 6 + ["other"], texts, **path) == [[0, 1, 3, 4], [2, 5]]
    assert groups_by_text(["k", "k"], [("", ""), (" ", "")], **path) == [[0, 1]]
    assert groups_by_text(["k", "k"], [("Is it blue?", ""), ("Is it blue?", "Yes")], **path) == []
    assert groups_by_text([], []) == []
    assert groups_by_text(["k"], ["Blue"]) == []


# ---- against all pairs, on random product texts ---------------------------------------------------------------------------------
ADJECTIVES = "black white blue red green grey stainless wooden plastic cotton leather compact large small rechargeable waterproof".split()
NOUNS = "battery bottle kettle lamp shoe toy charger cable mug bag jacket watch speaker towel pan lid strap handle".split()
FILLER = ("with and for the a of in is this product designed daily use home travel kitchen outdoor durable light strong easy clean soft "
          "grip set includes made from keeps fits most holds warm cold gift box pair ideal everyday quality").split()
QUESTIONS = ["What is the product shown in this image?", "Describe the item in the photo.", "What is the item made of?"]


def _random_text(rng: random.Random) -> str:
    n = rng.choice([1, 2, 3, 5, 8, 12, 20, 30, 45])
    words = [rng.choice(ADJECTIVES), rng.choice(NOUNS)] + [rng.choice(FILLER + ADJECTIVES + NOUNS) for _ in range(n)]
    if rng.random() < 0.15:
        words[rng.randrange(len(words))] = str(rng.choice([2, 4, 6, 12, 24]))
    return " ".join(words[:n])


def _edit(rng: random.Random, text: str) -> str:
    """A near-copy: one or two small edits (case, punctuation, a word replaced, dropped or added)."""
    words = text.split()
    for _ in range(rng.choice([1, 1, 2])):
        i = rng.randrange(len(words))
        op = rng.random()
        if op < 0.25:
            words[i] = words[i].upper() + rng.choice([",", ".", "!", ""])
        elif op < 0.5 and len(words) > 1:
            del words[i]
        elif op < 0.75:
            words.insert(i, rng.choice(FILLER))
        else:
            words[i] = rng.choice(FILLER)
    return " ".join(words)


def _corpus(seed: int, n: int, fields: bool) -> tuple[list, list]:
    rng = random.Random(seed)
    keys, texts = [], []
    for _ in range(n):
        key = rng.choice(["a", "b", "c"])
        same_key = [t for k, t in zip(keys, texts) if k == key]
        if same_key and rng.random() < 0.4:
            original = rng.choice(same_key)
            text = (original[0], _edit(rng, original[1])) if fields else _edit(rng, original)
        else:
            text = (rng.choice(QUESTIONS), _random_text(rng)) if fields else _random_text(rng)
        keys.append(key)
        texts.append(text)
    return keys, texts


def _normalised(text) -> tuple[str, ...]:
    return tuple(normalise(t) for t in ((text,) if isinstance(text, str) else text))


def _stated(text) -> tuple:
    return tuple(numbers(t) for t in _normalised(text))


def _reference(keys, texts, threshold=0.8) -> tuple[list[list[int]], list[tuple[int, int, float]]]:
    """All pairs, exactly: the components and every pair with its similarity (same key and same numbers)."""
    parent = list(range(len(texts)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    stated = [_stated(t) for t in texts]
    sets = [tuple(shingles(t) for t in _normalised(text)) for text in texts]
    pairs = []
    for i, j in combinations(range(len(texts)), 2):
        if keys[i] == keys[j] and stated[i] == stated[j]:
            s = min(jaccard(x, y) for x, y in zip(sets[i], sets[j]))
            pairs.append((i, j, s))
            if s >= threshold:
                parent[root(i)] = root(j)
    components: dict[int, list[int]] = {}
    for i in range(len(texts)):
        components.setdefault(root(i), []).append(i)
    return sorted(c for c in components.values() if len(c) >= 2), pairs


@pytest.mark.parametrize("fields", [False, True])
def test_equal_to_all_pairs_reference(fields):
    keys, texts = _corpus(seed=3, n=360, fields=fields)
    expected, pairs = _reference(keys, texts)
    # The corpus holds what the test is about: many pairs at or above the threshold, well above it, and
    # pairs just below it. Its keys are small enough for all pairs at the default settings: LSH runs them too.
    assert sum(s >= 0.9 for _, _, s in pairs) >= 30  # 36 and 42 (plain texts and fields)
    assert sum(0.8 <= s < 0.9 for _, _, s in pairs) >= 30  # 56 and 38
    assert sum(0.6 <= s < 0.8 for _, _, s in pairs) >= 50  # 90 and 101
    for path in ({}, LSH, EXACT):
        got = groups_by_text(keys, texts, **path)
        assert got == expected
    # Pairs well above the threshold are found whatever the seed of the permutations, and no group joins two
    # reference components (no pair below the threshold is joined directly).
    for seed in range(1, 6):
        got = groups_by_text(keys, texts, seed=seed, **LSH)
        group_of = {i: g for g, group in enumerate(got) for i in group}
        assert all(i in group_of and group_of[i] == group_of.get(j) for i, j, s in pairs if s >= 0.9)
        assert all(any(set(group) <= set(component) for component in expected) for group in got)


def test_lsh_params():
    assert lsh_params(0.8, 128) == (25, 5)
    assert lsh_params(0.8, 128, fields=2) == (42, 3)
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        for fields in (1, 2, 3):
            bands, rows = lsh_params(threshold, 128, fields)
            assert bands * rows <= 128 and bands >= 2
            assert (1 - threshold ** (fields * rows)) ** bands <= MAX_MISS
            assert (1 - threshold ** (fields * (rows + 1))) ** (128 // (rows + 1)) > MAX_MISS  # the most rows that keep the bound
    assert lsh_params(1.0, 128) == (2, 64)


def test_config_gives_the_defaults():
    keys, texts = _corpus(seed=5, n=120, fields=True)
    assert groups_by_text(keys, texts, **asdict(TextDupConfig())) == groups_by_text(keys, texts)
    assert asdict(TextDupConfig()) == {"threshold": 0.8, "num_perm": 128, "shingle_size": 3, "seed": 1, "same_numbers": True, "exact_below": 256}
    with pytest.raises(AttributeError):
        TextDupConfig().threshold = 0.5  # frozen


def test_refusals():
    with pytest.raises(ValueError, match="2 keys for 3 texts"):
        groups_by_text(["k", "k"], ["a", "b", "c"])
    with pytest.raises(ValueError, match="same number of fields"):
        groups_by_text(["k", "k"], ["a", ("a", "b")])
    with pytest.raises(TypeError, match="text 1"):
        groups_by_text(["k", "k"], ["a", None])
    with pytest.raises(TypeError, match="text 0"):
        groups_by_text(["k", "k"], [(), ()])
    for threshold in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            groups_by_text(["k", "k"], ["a", "b"], threshold=threshold)
    with pytest.raises(ValueError, match="num_perm"):
        groups_by_text(["k", "k"], ["a", "b"], num_perm=1)
    with pytest.raises(ValueError, match="shingle_size"):
        groups_by_text(["k", "k"], ["a", "b"], shingle_size=0)
