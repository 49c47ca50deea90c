"""Form widgets made from a job spec's fields (config/fields.py): the label, help, default, choices and
bounds are the spec's, so the Jobs page cannot drift from the command line; and a spec's refusal is said
with the form's own label, found from the field it names (no rewriting of messages).

    batch = spec_widget(col, GroundingJob, "batch_size")           # a number input, min 1, default 8
    sinks = spec_widget(col, GroundingJob, "config.exclude_sinks")  # a checkbox, the spec's label
"""
from __future__ import annotations

from dataclasses import MISSING
from typing import Any

from config.fields import base_type, field_of, info

# the widget each form made for each (spec, field): how an error about a field finds the form's label
_LABELS: dict[tuple[type, str], str] = {}


def spec_widget(col, spec: type, name: str, *, key: str | None = None, label: str | None = None, **overrides: Any):
    """A Streamlit widget in ``col`` for the field ``name`` of ``spec``, holding the field's default."""
    field = info(spec, name)
    label = label or field.label
    _LABELS[(spec, name)] = label
    default = overrides.pop("value", field.default if field.default is not MISSING else None)
    kind = base_type(field.type)
    common = {"help": field.help or None, "key": key or f"{spec.__name__}.{name}", **overrides}
    if field.choices and kind in (list, tuple):
        return col.multiselect(label, list(field.choices), default=list(default or []), **common)
    if field.choices:
        options = list(field.choices) if default is not None else [None, *field.choices]
        return col.selectbox(label, options, index=options.index(default), **common)
    if kind is bool:
        return col.checkbox(label, value=bool(default), **common)
    if kind is int:
        low = int(field.min) if field.min is not None else None
        return col.number_input(label, min_value=low, max_value=int(field.max) if field.max is not None else None, value=default, step=1, **common)
    if kind is float:  # float bounds: a bound written as 0 would make Streamlit's widget take whole numbers only
        as_float = lambda v: None if v is None else float(v)  # noqa: E731
        return col.number_input(label, min_value=as_float(field.min), max_value=as_float(field.max), value=as_float(default), **common)
    return col.text_input(label, value="" if default is None else str(default), **common)


def in_form_terms(spec: type, exc: Exception) -> str:
    """A refusal as the form says it: ``"Batch size": must be at least 1`` for an error about a field the
    form shows; the command line's name never appears. A field the form does not show is named by its
    label and said to be set elsewhere."""
    if not field_of(exc):
        return str(exc)
    label = _LABELS.get((spec, exc.field))
    if label is None:
        try:
            label = info(spec, exc.field).label
        except KeyError:
            return str(exc)
        return f'"{label}" (not on this form): {exc.message}'
    return f'"{label}": {exc.message}'
