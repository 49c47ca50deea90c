"""The Thresholds page's widgets as a saved filter and back: which widget keys hold a condition, and the
session-state values that show a stored FilterConfig in them (for "Start from saved filter")."""
from __future__ import annotations

from typing import Any

from curation.filters import Condition, FilterConfig
from db.lake import metrics

PERCENTILE_STEP = 0.1  # the percentile slider's step: a carried or loaded percentile is rounded to it
VALUE_STEPS = 1000  # the value slider has this many steps over the stat's range


def keys(label: str) -> dict[str, str]:
    """The widget keys of one stat's controls (the stat's label is part of each key)."""
    return {part: f"thr_{part}_{label}" for part in ("mode", "op", "miss", "pt", "pct", "val")}


def default_segment(metric: str, config_segment: str = "answer") -> str:
    """The segment a condition without one means (as curation.filters.resolve reads it; '' for a stat no
    one declared)."""
    return metrics.default_segment(metric, config_segment) if metric in metrics.METRICS else ""


def find_label(cond: Condition, options: dict[str, dict], config_segment: str = "answer") -> str | None:
    """The option (stat label) that ``cond`` thresholds: same metric, model (when the condition names one)
    and segment; None when the store has no such stat."""
    segment = cond.segment if cond.segment is not None else default_segment(cond.metric, config_segment)
    found = [label for label, r in options.items() if r["metric"] == cond.metric and (r["segment"] or "") == (segment or "")
             and (not cond.model_id or r["model_id"] == cond.model_id)]
    return found[0] if len(found) == 1 else None


def widget_state(config: FilterConfig, options: dict[str, dict], selections: list[str]) -> tuple[dict[str, Any], list[dict], list[str]]:
    """(session-state values that show ``config`` in the widgets, conditions the widgets cannot show (fields
    such as ``task in ...``: kept as they are), conditions of stats this store lacks (described))."""
    state: dict[str, Any] = {}
    chosen: list[str] = []
    fixed: list[dict] = []
    missing: list[str] = []
    for cond in config.conditions:
        if cond.is_field:
            fixed.append(FilterConfig([cond]).to_dict()["conditions"][0])
            continue
        label = find_label(cond, options, config.segment)
        if label is None or label in chosen or cond.op not in (">=", "<=") or isinstance(cond.value, list):
            missing.append(cond.describe())
            continue
        chosen.append(label)
        k = keys(label)
        state[k["op"]] = cond.op
        state[k["miss"]] = bool(cond.keep_missing)
        if cond.percentile is not None:
            state[k["mode"]] = "percentile"
            state[k["pct"]] = round(float(cond.percentile), 1)  # the slider's step (PERCENTILE_STEP)
            state[k["pt"]] = bool(cond.per_task)
        else:
            state[k["mode"]] = "value"
            state[k["val"]] = float(cond.value)
            state[k["pt"]] = False
    state["thr_stats"] = chosen
    state["thr_sel"] = config.selection if config.selection in selections else "all samples"
    if config.selection and config.selection not in selections:
        missing.append(f"only selection {config.selection!r}")
    return state, fixed, missing


def value_step(lo: float, hi: float) -> float:
    return (hi - lo) / VALUE_STEPS if hi > lo else 1.0


def on_grid(value: float, lo: float, hi: float) -> float:
    """``value`` rounded to the value slider's grid and kept in its range."""
    step = value_step(lo, hi)
    return min(max(lo + round((value - lo) / step) * step, lo), hi if hi > lo else lo + 1.0)
