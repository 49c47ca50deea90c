"""What every page shares: the store (one DuckDB connection and one SQLAlchemy engine per server process),
the signed-in user, and the server-side permission check in front of every privileged action."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from db import users
from vitpro.settings import Settings, load_settings

REFUSED = object()  # what guarded() returns when the action is not allowed
USER_KEY = "_vitpro_signed_in"  # set only by ui/auth.py after a password check; no widget has this key


@st.cache_resource(show_spinner=False)
def _store(home: str) -> tuple[Settings, Any, Any]:
    from db.app_engine import write_engine
    from db.store import open_store

    s = load_settings()
    return s, open_store(s.store), write_engine(s.app_url)


def store() -> tuple[Settings, Any, Any]:
    """(settings, lake, engine) of this server's store (``VITPRO_HOME`` decides which)."""
    return _store(str(load_settings().home))


def settings() -> Settings:
    return store()[0]


def lake():
    return store()[1]


def engine():
    return store()[2]


def user() -> users.SignedIn | None:
    return st.session_state.get(USER_KEY)


def allowed(action: str) -> bool:
    """Whether to show a control as usable (a courtesy; :func:`guarded` is the check that counts)."""
    u = user()
    return bool(u and u.can(action))


def guarded(action: str, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run ``fn`` if the signed-in user, as the store has them now, may ``action``; otherwise show why
    and return :data:`REFUSED`. Every privileged action of every page goes through here."""
    try:
        users.require(engine(), user(), action)
    except users.Forbidden as exc:
        st.error(f"refused: {exc}")
        return REFUSED
    return fn(*args, **kwargs)


def demo_banner() -> None:
    if read("demo_scores"):
        st.warning("Demo models (tiny, random weights) produced scores shown here: they exercise the pipeline, "
                   "they say nothing about the data.", icon=":material/warning:")


def page_header(title: str, caption: str = "") -> None:
    st.title(title)
    if caption:
        st.caption(caption)
    demo_banner()


def ensure_signed_in() -> users.SignedIn:
    """The signed-in user; a page opened without one stops here (its script never reaches the data)."""
    u = user()
    if u is None:
        st.error("sign in first")
        st.stop()
    return u


@st.cache_resource(show_spinner=False, max_entries=16)
def _stats_table(key: str, version: int, home: str):
    import json

    from curation.filters import StatSpec, StatsTable

    spec = json.loads(key)
    return StatsTable(lake(), [StatSpec(*s) for s in spec["specs"]], selection=spec["selection"])


def stats_table(config):
    """The filter engine's stats table for ``config``'s stats, built once per store version and shared by
    every session (a slider move then costs one aggregate query, not a rebuild)."""
    import json

    from curation.filters import resolve_models

    specs = resolve_models(lake(), config)
    key = json.dumps({"specs": [[s.metric, s.model_id, s.segment] for s in specs], "selection": config.selection})
    return _stats_table(key, lake().current_version(), str(settings().home))


def _reads() -> dict[str, Callable[..., Any]]:
    from curation.filters import stored_models
    from curation.generation.report import build_report
    from db import browse, quality

    return {
        "facets": browse.facets,
        "funnel": browse.funnel,
        "per_task_category": browse.per_task_category,
        "demo_scores": browse.demo_scores,
        "generation_quality": lambda lk, backend: build_report(quality.task_rows(lk, backend), quality.coverage_rows(lk, backend)).to_dict(),
        "stored_models": lambda lk, metric, segment, scored_only: stored_models(lk, metric, segment=segment, scored_only=scored_only),
        "browse": lambda lk, kwargs: browse.browse(lk, **dict(kwargs)),
        "sample_record": lambda lk, sample_id, vis, clip: browse.sample_record(lk, sample_id, vis_model=vis, clip_model=clip, blob_root=settings().blob_path),
        "token_percentiles": lambda lk, model, segment, unit: browse.token_percentiles(lk, model, segment, unit),
        "score_range": lambda lk, model: browse.score_range(lk, model),
        "first_images": lambda lk, sample_ids: browse.first_images(lk, list(sample_ids)),
        "excluded_among": lambda lk, sample_ids: browse.excluded_among(lk, list(sample_ids)),
    }


@st.cache_data(show_spinner=False, max_entries=512)
def _memo(name: str, version: int, home: str, args: tuple) -> Any:
    return _reads()[name](lake(), *args)


def read(name: str, *args) -> Any:
    """A read of the lake, remembered until the next commit to it (the DuckLake version is the key): a click
    that changes nothing in the store costs one version lookup, not the queries behind the page."""
    return _memo(name, lake().current_version(), str(settings().home), args)
