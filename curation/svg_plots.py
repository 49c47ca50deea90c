"""Small self-contained SVG plots for the command line's outputs (no plotting library needed: the CLI
and the workers stay light, and an SVG opens in any browser)."""
from __future__ import annotations

from html import escape

COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def roc_svg(curves: dict[str, tuple[list[float], list[float], float]], title: str = "ROC", size: int = 360) -> str:
    """``curves``: name -> (false positive rates, true positive rates, AUC)."""
    pad = 40
    inner = size - 2 * pad

    def xy(fpr: float, tpr: float) -> str:
        return f"{pad + fpr * inner:.1f},{pad + (1 - tpr) * inner:.1f}"

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 20 * len(curves)}" font-family="sans-serif" font-size="12">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="white" stroke="#444"/>',
        f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#bbb" stroke-dasharray="4 4"/>',
        f'<text x="{size / 2}" y="{pad - 14}" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<text x="{size / 2}" y="{pad + inner + 28}" text-anchor="middle">false positive rate</text>',
        f'<text x="12" y="{size / 2}" text-anchor="middle" transform="rotate(-90 12 {size / 2})">true positive rate</text>',
    ]
    for k, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        color = COLORS[k % len(COLORS)]
        points = " ".join(xy(f, t) for f, t in zip(fpr, tpr))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{points}"/>')
        y = size + 14 + 20 * k - 10
        parts.append(f'<rect x="{pad}" y="{y - 9}" width="12" height="12" fill="{color}"/>')
        parts.append(f'<text x="{pad + 18}" y="{y + 1}">{escape(name)} (AUC {auc:.3f})</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(counts: list[int], top: int | None = None) -> str:
    """A row of block characters, one per bin, scaled to ``top`` (default: the largest bin)."""
    top = top if top is not None else (max(counts) if counts else 0)
    if not top:
        return " " * len(counts)
    return "".join(BLOCKS[min(len(BLOCKS) - 1, (c * (len(BLOCKS) - 1) + top - 1) // top)] for c in counts)
