"""Inspect's and Gallery's fast reads: the browse index (db/reads/browse_index.py) and the sorted score arrays
behind percentiles, each built once per version of the tables it reads and shared by every session of the
server (st.cache_resource: one copy in memory, not a pickled copy per hit); also kept on disk beside the
app's other cached reads, so a restarted server loads them instead of querying a million samples again."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from db.reads import browse_index
from ui import context, warm

INDEX_TABLES = ("samples", "items", "scores")


def _cache_dir(home: str) -> Path:
    return Path(home) / "cache" / "reads"


@st.cache_resource(show_spinner=False, max_entries=4)
def _index(home: str, version: int, vis_model: str | None, clip_model: str | None, segment: str) -> browse_index.BrowseIndex:
    return browse_index.load_index(context.lake(), vis_model=vis_model, clip_model=clip_model, segment=segment,
                                   version=version, cache_dir=_cache_dir(home))


@st.cache_resource(show_spinner=False, max_entries=16)
def _scores(home: str, version: int, kind: str, metric: str, model: str, segment: str):
    return browse_index.sorted_scores(context.lake(), kind=kind, metric=metric, model=model, segment=segment,
                                      version=version, cache_dir=_cache_dir(home))


def browse(*, vis_model: str | None, clip_model: str | None, segment: str = "answer", **query: Any) -> tuple[int, list[dict[str, Any]]]:
    """db.reads.browse.browse's (count, page) from the index; the page's rows without question and answer unless
    ``with_text``."""
    query.setdefault("with_text", False)
    return query_index(vis_model, clip_model, segment).browse(context.lake(), **query)


def percentile(*, kind: str, metric: str, model: str, segment: str, value: float | None) -> float | None:
    """db.reads.browse.percentile from the cached sorted scores."""
    if value is None:
        return None
    warm.note("sorted_scores", kind, metric, model, segment)
    return browse_index.percentile_of(_sorted(kind, metric, model, segment), value)


def _sorted(kind: str, metric: str, model: str, segment: str):
    return _scores(str(context.settings().home), context.tables_version(("scores",)), kind, metric, model, segment)


def query_index(vis_model: str | None, clip_model: str | None, segment: str) -> browse_index.BrowseIndex:
    warm.note("browse_index", vis_model, clip_model, segment)
    return _index_now(vis_model, clip_model, segment)


def _index_now(vis_model: str | None, clip_model: str | None, segment: str) -> browse_index.BrowseIndex:
    return _index(str(context.settings().home), context.tables_version(INDEX_TABLES), vis_model, clip_model, segment)


# after a commit these are built again in the background (ui/warm.py), not by the first page that asks
warm.register("sorted_scores", _sorted)
warm.register("browse_index", _index_now)


def ids(*, vis_model: str | None, clip_model: str | None, segment: str = "answer", **query: Any) -> list[str]:
    """Every sample id the query matches, in its order (what an action on the whole query acts on)."""
    return query_index(vis_model, clip_model, segment).ids_of(context.lake(), **query)


def position(sample_id: str, *, vis_model: str | None, clip_model: str | None, segment: str = "answer", **query: Any) -> int | None:
    """Where a sample stands in the query's order, or None when the query leaves it out."""
    return query_index(vis_model, clip_model, segment).position(context.lake(), sample_id, **query)
