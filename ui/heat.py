"""Token-level grounding as HTML: each word (or sub-word piece) of a segment on a background coloured by
its VisAttnScore A(t), from red (low) through blue to green (high) as the paper's Table 2, with the exact
value on hover. Pure functions (no Streamlit): every piece of text from the data is escaped here, once,
before it becomes HTML.
"""
from __future__ import annotations

import html
import math
from typing import Sequence

LOW, MID, HIGH = (214, 39, 40), (31, 119, 180), (44, 160, 44)  # red, blue, green
_PIECE_MARKERS = ("\u2581", "\u0120")  # sentencepiece "▁" and byte-level BPE "Ġ" mark a leading space


def escape(text: object) -> str:
    """Text from the data as inert HTML (tags, quotes and entities shown, never run)."""
    return html.escape("" if text is None else str(text), quote=True)


def colour(position: float) -> tuple[int, int, int]:
    """RGB at ``position`` in [0, 1] on the red -> blue -> green scale."""
    p = min(1.0, max(0.0, position))
    a, b, t = (LOW, MID, p * 2) if p < 0.5 else (MID, HIGH, (p - 0.5) * 2)
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def scale(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (None, None)


def piece_text(piece: str) -> str:
    """A sub-word piece as it reads: its leading-space marker shown as a space."""
    for marker in _PIECE_MARKERS:
        if piece.startswith(marker):
            return " " + piece[len(marker):]
    return piece


def token_spans(tokens: Sequence[str], scores: Sequence[float | None], *, pieces: bool = False,
                lo: float | None = None, hi: float | None = None) -> str:
    """One ``<span>`` per token, coloured by its score relative to [lo, hi] (default: the segment's own
    range); ``title`` and ``data-score`` carry the exact value. Tokens without a score stay uncoloured."""
    if lo is None or hi is None:
        lo, hi = scale(scores)
    parts = []
    for i, (token, value) in enumerate(zip(tokens, scores)):
        text = piece_text(str(token)) if pieces else str(token)
        lead = " " if (pieces and text.startswith(" ")) or (not pieces and i) else ""
        shown = escape(text.strip() if pieces else text)
        if value is None or not math.isfinite(value) or lo is None:
            parts.append(f'{lead}<span class="tok tok-none" title="no score">{shown}</span>')
            continue
        pos = 0.5 if hi == lo else (value - lo) / (hi - lo)
        r, g, b = colour(pos)
        parts.append(
            f'{lead}<span class="tok" data-score="{value:.6g}" title="A(t) = {value:.6g}" '
            f'style="background: rgba({r},{g},{b},0.35); border-bottom: 3px solid rgb({r},{g},{b});">{shown}</span>'
        )
    return "".join(parts)


def legend(lo: float | None, hi: float | None, steps: int = 9) -> str:
    """A colour bar from the lowest to the highest score shown, with both values."""
    if lo is None:
        return '<div class="heat-legend">no token scores for this segment</div>'
    digits = 4
    while digits < 10 and f"{lo:.{digits}g}" == f"{hi:.{digits}g}" and lo != hi:  # close scores: enough digits to tell them apart
        digits += 1
    cells = "".join(
        f'<span style="display:inline-block;width:22px;height:12px;background:rgb{colour(k / (steps - 1))}"></span>' for k in range(steps)
    )
    return (f'<div class="heat-legend" style="font-size:0.8em;margin:4px 0">'
            f'A(t) low <b>{lo:.{digits}g}</b> {cells} <b>{hi:.{digits}g}</b> high (red: little attention to the image, green: most)</div>')


STYLE = """<style>
.heat { line-height: 2.0; font-size: 1.05em; }
.heat .tok { padding: 1px 2px; border-radius: 3px; cursor: help; }
.heat .tok-none { color: #888; }
</style>"""


def heat_block(tokens: Sequence[str], scores: Sequence[float | None], *, pieces: bool = False, label: str = "") -> str:
    """The coloured text and its legend, ready for ``st.html`` (which runs no script)."""
    lo, hi = scale(scores)
    head = f'<div style="font-weight:600;margin-top:6px">{escape(label)}</div>' if label else ""
    return f'{STYLE}{head}<div class="heat">{token_spans(tokens, scores, pieces=pieces, lo=lo, hi=hi)}</div>{legend(lo, hi)}'
