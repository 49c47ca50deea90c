"""The filter-and-sort controls that Inspect and Gallery share (the same query, each page its own widget
keys): task, category, text, order, the two scores' models and "scored only"."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from db.reads import browse
from ui import context
from ui.labels import model_labels

TEXT_HELP = ("question, answer, the item's title, description, brand and attributes, a complaint's text, and the OCR text of the "
             "item's images")


@dataclass
class SampleQuery:
    tasks: list[str]
    categories: list[str]
    text: str
    order: str
    vis_model: str | None
    clip_model: str | None
    scored_only: bool
    vis_models: list[str]
    names: dict[str, str]
    facets: dict[str, Any]
    columns: tuple  # the control rows' columns (c1 ... c6), for a page's own controls beside these

    def args(self, **extra) -> tuple[tuple[str, Any], ...]:
        """The browse query as a hashable tuple of (name, value) (a cache key and browse_cache.browse's kwargs)."""
        base = {"vis_model": self.vis_model, "clip_model": self.clip_model, "tasks": tuple(self.tasks), "categories": tuple(self.categories),
                "text": self.text, "order": self.order, "scored_only": bool(self.scored_only and self.vis_model)}
        return tuple({**base, **extra}.items())


def controls(prefix: str) -> SampleQuery:
    """Draw the shared controls inside an open "Filter and sort" expander; widget keys are ``{prefix}_...``."""
    vis_models = context.read("stored_models", "vis_attn", "answer", True)
    clip_models = context.read("stored_models", "clip_score", "", True)
    names = model_labels([*vis_models, *clip_models])
    facets = context.read("facets")
    c1, c2, c3 = st.columns(3)
    tasks = c1.multiselect("Task", facets["task"], key=f"{prefix}_tasks")
    cats = c2.multiselect("Category", facets["category"], key=f"{prefix}_cats")
    text = c3.text_input("Text contains", key=f"{prefix}_text", help=TEXT_HELP)
    c4, c5, c6 = st.columns(3)
    order = c4.selectbox("Order", list(browse.ORDERS), key=f"{prefix}_order")
    vis_model = c5.selectbox("VisAttnScore model", vis_models, key=f"{prefix}_vis", format_func=names.get) if vis_models else None
    clip_model = c6.selectbox("CLIPScore model", clip_models, key=f"{prefix}_clip", format_func=names.get) if clip_models else None
    # on by default wherever anything is scored: half of a fresh store's samples have no VisAttnScore yet
    scored_only = c4.checkbox("Scored only", value=bool(vis_models), key=f"{prefix}_scored", disabled=not vis_models,
                              help="only samples with a VisAttnScore from the chosen model")
    return SampleQuery(tasks, cats, text, order, vis_model, clip_model, scored_only, vis_models, names, facets, (c1, c2, c3, c4, c5, c6))
