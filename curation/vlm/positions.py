"""Which tokens of the processor's ``input_ids`` hold a character span of the rendered prompt.

The processor expands each image placeholder into the image's tokens (as many as that image needs: Qwen's
dynamic resolution, LLaVA-OneVision's tiles, IDEFICS3's crops) and tokenizes the expanded text with
offsets. Two exact ways back from a span of the rendered (unexpanded) text to token positions:

* the processor reports where it replaced each placeholder (``text_replacement_offsets``): a character
  after a replacement moves by what the replacements before it added;
* a processor that does not (IDEFICS2's) still leaves the text after the last image untouched: the
  tokens of that tail are the same whether the images are expanded or not, so they are found from the end
  of ``input_ids`` by tokenizing the rendered text on its own. The tails are compared token by token and
  a mismatch is an error, never a guess.
"""
from __future__ import annotations

import bisect
from typing import Callable, Sequence


class PositionError(ValueError):
    pass


def tokens_overlapping(offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Token positions whose characters overlap ``[start, end)``; zero-width tokens (specials) never do."""
    start, end = span
    return [k for k, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def shift_by_replacements(span: tuple[int, int], replacements: Sequence[dict]) -> tuple[int, int]:
    """A span of the rendered text as a span of the expanded text (``replacements``: the processor's
    ``text_replacement_offsets`` of this sample, in text order)."""
    for r in replacements:
        if r["span"][0] < span[1] and r["span"][1] > span[0]:
            raise PositionError("a span overlaps an image placeholder")
    ends = [r["span"][1] for r in replacements]
    # new_span is in expanded coordinates: its end minus the old end is what all replacements so far added
    gained = [0] + [r["new_span"][1] - r["span"][1] for r in replacements]
    start, end = span
    return start + gained[bisect.bisect_right(ends, start)], end + gained[bisect.bisect_right(ends, end)]


def positions_from_replacements(offsets, spans: dict[str, tuple[int, int]], replacements) -> dict[str, list[int]]:
    return {name: tokens_overlapping(offsets, shift_by_replacements(span, replacements)) for name, span in spans.items()}


def positions_from_tail(ids: Sequence[int], spans: dict[str, tuple[int, int]], tail_start: int,
                        tokenize: Callable[[str], tuple[list[int], list[tuple[int, int]]]], text: str) -> dict[str, list[int]]:
    """Positions for spans that all lie after character ``tail_start`` (the end of the last image
    placeholder): the rendered text is tokenized on its own and its tokens from ``tail_start`` on must be
    the last tokens of ``ids``."""
    if any(span[0] < tail_start for span in spans.values()):
        raise PositionError("a span lies before the last image: the processor reports no replacement offsets to place it")
    plain_ids, plain_offsets = tokenize(text)
    first_tail = next((k for k, (a, b) in enumerate(plain_offsets) if a >= tail_start and b > a), len(plain_ids))
    tail = list(plain_ids[first_tail:])
    if not tail or list(ids[len(ids) - len(tail):]) != tail:
        raise PositionError("the text after the images is tokenized differently once the images are expanded")
    shift = len(ids) - len(plain_ids)
    return {name: [k + shift for k in tokens_overlapping(plain_offsets, span)] for name, span in spans.items()}
