"""The ablation grid (the paper's Tables 5-8): which settings each cell changes, and the table of results.

By default each factor is varied alone from the default setting, as the paper's tables do; ``full=True``
takes every combination. Pure functions; the ablation job runs the cells.
"""
from __future__ import annotations

import itertools
from typing import Any

# factor -> {value as written on the command line: settings it means}
FACTORS: dict[str, dict[str, dict[str, Any]]] = {
    "ocr": {"on": {"ocr": True}, "off": {"ocr": False}},
    "resolution": {"native": {"longest_edge": None}, "224": {"longest_edge": 224}, "378": {"longest_edge": 378},
                   "512": {"longest_edge": 512}, "980": {"longest_edge": 980}},
    "splitting": {"on": {"splitting": True}, "off": {"splitting": False}},
    "4bit": {"off": {"load_4bit": False}, "on": {"load_4bit": True}},
    "flash": {"off": {"flash_attention": False}, "on": {"flash_attention": True}},
    "adapter": {"on": {"adapter": True}, "off": {"adapter": False}},
}
DEFAULTS = {"ocr": "on", "resolution": "native", "splitting": "on", "4bit": "off", "flash": "off", "adapter": "on"}
TASK_COLUMNS = ("AE", "DD", "PM", "overall")


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    """``["ocr=on,off", "resolution=native,224,512"]`` -> {factor: values}; clear errors for typos."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        factor, sep, values = spec.partition("=")
        factor = factor.strip().lower()
        if not sep or factor not in FACTORS:
            raise ValueError(f"grid entries look like FACTOR=v1,v2 with FACTOR one of {', '.join(FACTORS)}; got {spec!r}")
        vals = [v.strip().lower() for v in values.split(",") if v.strip()]
        bad = [v for v in vals if v not in FACTORS[factor]]
        if bad or not vals:
            raise ValueError(f"{factor} takes {', '.join(FACTORS[factor])}; got {values!r}")
        grid[factor] = list(dict.fromkeys(vals))
    return grid


def cells(grid: dict[str, list[str]], *, full: bool = False, defaults: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The settings of every cell, the default first. One factor at a time unless ``full``."""
    base = {**DEFAULTS, **(defaults or {})}
    out = [dict(base)]
    if full:
        factors = list(grid)
        for combo in itertools.product(*(grid[f] for f in factors)):
            cell = {**base, **dict(zip(factors, combo))}
            if cell not in out:
                out.append(cell)
        return out
    for factor, values in grid.items():
        for v in values:
            cell = {**base, factor: v}
            if cell not in out:
                out.append(cell)
    return out


def label(cell: dict[str, str], defaults: dict[str, str] | None = None) -> str:
    base = {**DEFAULTS, **(defaults or {})}
    changed = [f"{k}={v}" for k, v in cell.items() if base.get(k) != v]
    return ", ".join(changed) or "default"


def overrides(cell: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """(TrainConfig overrides, whether the adapter is on) of a cell."""
    settings: dict[str, Any] = {}
    for factor, value in cell.items():
        settings.update(FACTORS[factor][value])
    adapter = settings.pop("adapter", True)
    return settings, adapter


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table like the paper's: accuracy per task in %, the change against the default row in
    points, latency in s/item and peak memory in GB. ``rows``: {label, scores or unavailable, s/item, GB}."""
    default = next((r for r in rows if r["label"] == "default" and r.get("scores")), None)
    head = "| setting | " + " | ".join(TASK_COLUMNS) + " | s/item | peak GB |"
    lines = [head, "|" + "---|" * (len(TASK_COLUMNS) + 3)]
    for r in rows:
        if not r.get("scores"):
            why = str(r.get("unavailable") or "no items").replace("|", "/")
            lines.append(f"| {r['label']} (not run: {why}) | " + " | ".join("-" for _ in TASK_COLUMNS) + " | - | - |")
            continue
        cols = []
        for task in TASK_COLUMNS:
            acc = r["scores"].get(task, {}).get("accuracy")
            if acc is None:
                cols.append("-")
                continue
            text = f"{100 * acc:.1f}"
            if default is not None and r is not default and task in default["scores"]:
                text += f" ({100 * (acc - default['scores'][task]['accuracy']):+.1f})"
            cols.append(text)
        lines.append(f"| {r['label']} | " + " | ".join(cols) + f" | {r['seconds_per_item']:.3f} | {r['peak_memory_gb']:.2f} |")
    return "\n".join(lines)
