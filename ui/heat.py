"""Token-level grounding as HTML: each word (or sub-word piece) of a segment on a background coloured by
its VisAttnScore A(t), with the exact value on hover. Pure functions (no Streamlit): every piece of text
from the data is escaped here, once, before it becomes HTML.

The colour scale is fixed: a token's colour is set by the PERCENTILE of its score among all the token
scores the store holds for that model and segment (breakpoints p0..p100 from ``db.reads.browse.token_percentiles``),
on viridis, a sequential scale that reads the same to colour-blind eyes and in greyscale. So one score has
one colour in every sample, and two tokens a hair apart look alike (the old per-answer min-max stretch
showed them at opposite ends).
"""
from __future__ import annotations

import html
import math
from bisect import bisect_left, bisect_right
from typing import Any, Sequence

# viridis (matplotlib's) at 0, 0.1, ... 1: dark purple (low A(t): little attention to the image) to yellow (high)
STOPS: tuple[tuple[int, int, int], ...] = (
    (68, 1, 84), (72, 36, 117), (65, 68, 135), (53, 95, 141), (42, 120, 142), (33, 145, 140),
    (34, 168, 132), (68, 191, 112), (122, 209, 81), (189, 223, 38), (253, 231, 37),
)
LEGEND_PERCENTILES = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
_PIECE_MARKERS = ("\u2581", "\u0120")  # sentencepiece "▁" and byte-level BPE "Ġ" mark a leading space


def escape(text: object) -> str:
    """Text from the data as inert HTML (tags, quotes and entities shown, never run)."""
    return html.escape("" if text is None else str(text), quote=True)


def colour(position: float) -> tuple[int, int, int]:
    """RGB at ``position`` in [0, 1] on the viridis stops (linear between neighbours)."""
    p = min(1.0, max(0.0, position)) * (len(STOPS) - 1)
    k = min(int(p), len(STOPS) - 2)
    t = p - k
    return tuple(round(x + (y - x) * t) for x, y in zip(STOPS[k], STOPS[k + 1]))  # type: ignore[return-value]


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def own_breaks(values: Sequence[float | None]) -> list[float]:
    """p0..p100 of ``values`` themselves (as DuckDB's quantile_cont): the fallback where the store has no
    percentiles for a segment (nothing else to compare with)."""
    xs = sorted(_finite(values))
    if not xs:
        return []
    out = []
    for p in range(101):
        pos = p / 100 * (len(xs) - 1)
        lo = int(math.floor(pos))
        hi = min(lo + 1, len(xs) - 1)
        out.append(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))
    return out


def percentile_of(value: float, breaks: Sequence[float]) -> float:
    """Where ``value`` stands (0-100) among the store's token scores, from breakpoints p0..p100 (equally
    spaced percentiles, sorted): linear between neighbouring breakpoints; a value equal to a run of tied
    breakpoints gets the middle of the run, so it does not depend on which side of the tie it is read."""
    n = len(breaks) - 1
    if n <= 0:
        return 50.0
    lo, hi = bisect_left(breaks, value), bisect_right(breaks, value)
    if hi - lo > 1:  # several breakpoints equal this value
        return 100.0 * (lo + hi - 1) / 2 / n
    if hi == 0:
        return 0.0
    if lo > n:
        return 100.0
    a, b = breaks[hi - 1], breaks[min(hi, n)]
    frac = 0.0 if b == a else (value - a) / (b - a)
    return 100.0 * min(n, (hi - 1) + frac) / n


def piece_text(piece: str) -> str:
    """A sub-word piece as it reads: its leading-space marker shown as a space."""
    for marker in _PIECE_MARKERS:
        if piece.startswith(marker):
            return " " + piece[len(marker):]
    return piece


def token_spans(tokens: Sequence[str], scores: Sequence[float | None], *, pieces: bool = False,
                breaks: Sequence[float] | None = None) -> str:
    """One ``<span>`` per token, coloured by its score's percentile among ``breaks`` (default: the segment's
    own scores); ``title`` carries the exact value and the percentile, ``data-score`` and ``data-pct``
    them for tests. Tokens without a score stay uncoloured."""
    breaks = list(breaks) if breaks else own_breaks(scores)
    parts = []
    for i, (token, value) in enumerate(zip(tokens, scores)):
        text = piece_text(str(token)) if pieces else str(token)
        lead = " " if (pieces and text.startswith(" ")) or (not pieces and i) else ""
        shown = escape(text.strip() if pieces else text)
        if value is None or not math.isfinite(value) or not breaks:
            parts.append(f'{lead}<span class="tok tok-none" title="no score">{shown}</span>')
            continue
        pct = percentile_of(float(value), breaks)
        r, g, b = colour(pct / 100)
        parts.append(
            f'{lead}<span class="tok" data-score="{value:.6g}" data-pct="{pct:.1f}" title="A(t) = {value:.6g} (percentile {pct:.0f})" '
            f'style="background: rgba({r},{g},{b},0.45); border-bottom: 3px solid rgb({r},{g},{b});">{shown}</span>'
        )
    return "".join(parts)


def _digits(values: Sequence[float]) -> int:
    """Significant digits enough to tell neighbouring legend values apart (close scores need more)."""
    digits = 4
    while digits < 10 and any(f"{a:.{digits}g}" == f"{b:.{digits}g}" and a != b for a, b in zip(values, values[1:])):
        digits += 1
    return digits


def legend(breaks: Sequence[float] | None, *, scope: str = "all stored token scores of this model and segment") -> str:
    """The fixed colour bar: p0, p10 ... p100 of the store's token scores, each with its colour and value."""
    if not breaks:
        return '<div class="heat-legend">no token scores for this segment</div>'
    n = len(breaks) - 1
    shown = [(p, breaks[round(p / 100 * n)]) for p in LEGEND_PERCENTILES]
    digits = _digits([v for _, v in shown])
    cells = "".join(
        f'<span class="heat-cell" style="display:inline-block;text-align:center;min-width:52px;margin-right:2px">'
        f'<span style="display:block;height:12px;background:rgb{colour(p / 100)}"></span>'
        f'<span class="heat-p">p{p}</span><br><span class="heat-v">{v:.{digits}g}</span></span>' for p, v in shown
    )
    return (f'<div class="heat-legend" style="font-size:0.75em;margin:4px 0">{cells}'
            f'<div>colour = percentile of A(t) among {escape(scope)} (dark: little attention to the image, yellow: most)</div></div>')


STYLE = """<style>
.heat, .plain { overflow-wrap: anywhere; word-break: break-word; }  /* a 200-character token or URL wraps, never overflows */
.heat { line-height: 2.0; font-size: 1.05em; }
.heat .tok { padding: 1px 2px; border-radius: 3px; cursor: help; }
.heat .tok-none { color: #888; }
</style>"""


def heat_block(tokens: Sequence[str], scores: Sequence[float | None], *, pieces: bool = False, label: str = "",
               breaks: Sequence[float] | None = None) -> str:
    """The coloured text and its legend, ready for ``st.html`` (which runs no script). ``breaks``: the
    store's p0..p100 for this model and segment; without them the segment's own scores set the scale
    (and the legend says so)."""
    scope = "all stored token scores of this model and segment"
    if not breaks:
        breaks, scope = own_breaks(scores), "this segment's own tokens only (no store-wide scores yet)"
    head = f'<div style="font-weight:600;margin-top:6px">{escape(label)}</div>' if label else ""
    return f'{STYLE}{head}<div class="heat">{token_spans(tokens, scores, pieces=pieces, breaks=breaks)}</div>{legend(breaks, scope=scope)}'


def segment_tokens(tokens_by_segment: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The token row of segment ``name`` ("question" or "answer") of one sample: its own row where one was
    stored, else its part of the "text" row (a grounding run over question and answer stores one row, with
    the positions of each), its words regrouped from its pieces. ``segment`` in the result says whose
    store-wide percentiles colour it."""
    own = tokens_by_segment.get(name)
    if own and own.get("tokens"):
        return own
    text = tokens_by_segment.get("text")
    positions = (text or {}).get("positions") or {}
    wanted, order = set(positions.get(name) or ()), positions.get("segment") or []
    if not text or not wanted or len(order) != len(text.get("tokens") or ()):
        return None
    keep = [k for k, p in enumerate(order) if p in wanted]
    pieces = [text["tokens"][k] for k in keep]
    scores = [text["scores"][k] for k in keep]
    from curation.vis_attn import group_words  # pure (torch only inside the scoring functions)

    words, word_scores = group_words([piece_text(str(t)) for t in pieces], scores)
    return {"tokens": pieces, "scores": scores, "words": words, "word_scores": word_scores, "segment": "text"}


# ---- visual information gain: a diverging scale centred at 0 ---------------------------------------------
# PuOr (ColorBrewer's purple-orange, safe for colour-blind eyes): orange where the image makes the token
# less likely, white where it changes nothing, purple where it makes it more likely.
GAIN_STOPS: tuple[tuple[int, int, int], ...] = ((179, 88, 6), (241, 163, 64), (254, 224, 182), (247, 247, 247),
                                               (216, 218, 235), (153, 142, 195), (84, 39, 136))
GAIN_SCALE = 2.0  # nats at the ends of the scale (e^2: the image makes the token ~7x more or less likely); beyond: the end colour


def gain_colour(gain: float, scale: float = GAIN_SCALE) -> tuple[int, int, int]:
    """RGB of a gain on the fixed diverging scale: -scale (orange) .. 0 (white) .. +scale (purple)."""
    p = (min(scale, max(-scale, gain)) + scale) / (2 * scale) * (len(GAIN_STOPS) - 1)
    k = min(int(p), len(GAIN_STOPS) - 2)
    t = p - k
    return tuple(round(x + (y - x) * t) for x, y in zip(GAIN_STOPS[k], GAIN_STOPS[k + 1]))  # type: ignore[return-value]


def gain_block(tokens: Sequence[str], gains: Sequence[float | None], *, pieces: bool = False, label: str = "") -> str:
    """The text coloured by each token's visual information gain on the fixed scale, with its legend; the
    hover gives the exact value in nats. Same scale in every sample: a colour means the same gain."""
    parts = []
    for i, (token, value) in enumerate(zip(tokens, gains)):
        text = piece_text(str(token)) if pieces else str(token)
        lead = " " if (pieces and text.startswith(" ")) or (not pieces and i) else ""
        shown = escape(text.strip() if pieces else text)
        if value is None or not math.isfinite(value):
            parts.append(f'{lead}<span class="tok tok-none" title="no gain">{shown}</span>')
            continue
        r, g, b = gain_colour(float(value))
        parts.append(f'{lead}<span class="tok" data-gain="{value:.6g}" title="gain = {value:+.4g} nats" '
                     f'style="background: rgba({r},{g},{b},0.6); border-bottom: 3px solid rgb({r},{g},{b});">{shown}</span>')
    ends = [-GAIN_SCALE, -GAIN_SCALE / 2, 0.0, GAIN_SCALE / 2, GAIN_SCALE]
    cells = "".join(f'<span class="heat-cell" style="display:inline-block;text-align:center;min-width:52px;margin-right:2px">'
                    f'<span style="display:block;height:12px;background:rgb{gain_colour(v)}"></span><span class="heat-v">{v:+g}</span></span>'
                    for v in ends)
    head = f'<div style="font-weight:600;margin-top:6px">{escape(label)}</div>' if label else ""
    return (f'{STYLE}{head}<div class="heat">{"".join(parts)}</div><div class="heat-legend" style="font-size:0.75em;margin:4px 0">{cells}'
            f'<div>colour = log p(token | image) − log p(token | text alone), in nats (orange: the image makes it less likely, '
            f'purple: more likely; ±{GAIN_SCALE:g} and beyond at the ends)</div></div>')

