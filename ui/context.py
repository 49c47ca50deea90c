"""What every page shares: the store (one DuckDB connection and one SQLAlchemy engine per server process),
the signed-in user, and the server-side permission check in front of every privileged action."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import streamlit as st

from config.settings import Settings, load_settings
from db.app import users
from ui import warm

REFUSED = object()  # what guarded() returns when the action is not allowed
USER_KEY = "_vitpro_signed_in"  # set only by ui/auth.py after a password check; no widget has this key


@st.cache_resource(show_spinner=False)
def _store(home: str) -> tuple[Settings, Any, Any]:
    from db.app.engine import write_engine
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


def blobs():
    """The image store (a folder, or S3 through this machine's cache): image paths to show come from it."""
    from db.storage.blobs import open_blobs

    return open_blobs(settings())


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


def stats_table(config):
    """The filter engine's stats table for ``config``'s stats, built once per version of the tables it reads,
    shared by every session and kept on disk (ui/stats_cache.py): a slider move then costs one aggregate
    query, and a restarted server loads a file instead of rebuilding it."""
    from ui import stats_cache

    return stats_cache.stats_table(config)


def _reads() -> dict[str, Callable[..., Any]]:
    import json

    from curation.filters import FilterConfig
    from curation.filters.models import stored_models  # its own module, as resolve() calls it: one monkeypatch sees both
    from curation.generation.report import build_report
    from db.app import pilots
    from db.lake import exclusions, tags
    from db.reads import browse, overview_stats, quality, queries
    from ui import browse_cache

    return {
        "facets": browse.facets,
        "funnel": overview_stats.funnel,
        "per_task_category": overview_stats.per_task_category,
        "demo_scores": browse.demo_scores,
        # every backend's report at once (one pass): the page's backend switch is then a lookup
        "generation_quality": lambda lk: {k: build_report(*rows).to_dict() for k, rows in quality.rows_by_backend(lk).items()},
        "stored_models": lambda lk, metric, segment, scored_only: stored_models(lk, metric, segment=segment, scored_only=scored_only),
        "browse": lambda lk, kwargs: browse.browse(lk, **dict(kwargs)),
        "sample_record": lambda lk, sample_id, vis, clip: browse.sample_record(lk, sample_id, vis_model=vis, clip_model=clip, blob_root=blobs()),
        # the same record with percentiles from the cached sorted scores (ui/browse_cache.py): Inspect's
        "inspect_record": lambda lk, sample_id, vis, clip: browse.sample_record(lk, sample_id, vis_model=vis, clip_model=clip, blob_root=blobs(),
                                                                                percentile_of=browse_cache.percentile),
        "token_percentiles": lambda lk, model, segment, unit: browse.token_percentiles(lk, model, segment, unit),
        "score_range": lambda lk, model: browse.score_range(lk, model),
        # every sample of a pilot at once (one scan of each table, as for one sample): the next sample is then a lookup
        "pilot_details": lambda lk, sample_ids, vis_model, segment: pilots.sample_details(lk, list(sample_ids), vis_model=vis_model, segment=segment,
                                                                                         blob_root=blobs()),
        "first_images": lambda lk, sample_ids: browse.first_images(lk, list(sample_ids)),
        "excluded_among": lambda lk, sample_ids: browse.excluded_among(lk, list(sample_ids)),
        "metric_of_samples": lambda lk, sample_ids, metric, model: browse.metric_of_samples(lk, list(sample_ids), metric, model),
        "exclusion_of": lambda lk, sample_id: exclusions.current(lk, sample_id),
        "tags_of": lambda lk, sample_ids: tags.tags_of(lk, list(sample_ids)),
        "score_summary": lambda lk: queries.score_summary(lk),
        "filter_kept": lambda lk, config: stats_table(FilterConfig.from_dict(json.loads(config))).report(FilterConfig.from_dict(json.loads(config))).kept,
    }


# The lake tables a read depends on: its key is then the last DuckLake version that changed one of them
# (or the schema), so a scoring job's commits keep what Overview computed from samples and items. A read
# not named here is keyed by the store's version (any commit). A read that starts reading another table
# must name it here, or it would be served from before that table's commits.
_DEPENDS: dict[str, tuple[str, ...]] = {
    "funnel": ("items", "samples", "selections", "scores"),
    "per_task_category": ("items", "samples", "scores"),
    "facets": ("items", "samples"),
    "demo_scores": ("scores",),
    "score_summary": ("scores",),
    "generation_quality": ("items", "samples"),
    "stored_models": ("scores",),
    "score_range": ("scores",),
    "token_percentiles": ("token_scores",),
    "pilot_details": ("samples", "items", "images", "ocr", "token_scores"),
    "filter_kept": ("items", "samples", "scores", "selections", "images", "ocr", "exclusions"),
}
# Aggregates over every sample (seconds at a million samples) that are also kept on disk under VITPRO_HOME,
# as JSON under the same key: a server that restarts, or a second server process, finds them ready.
_PERSIST = frozenset(_DEPENDS)
_DATA_CHANGES = ("tables_inserted_into", "tables_deleted_from", "inlined_insert", "inlined_delete")
_table_versions_seen: dict[tuple[str, int], dict[str, int]] = {}


def _table_versions(current: int) -> dict[str, int] | None:
    """Per lake table, the last DuckLake version that inserted into or deleted from it (``""``: the last
    one that changed anything else, e.g. the schema); read once per store version. None where the catalog
    cannot say (then every read is keyed by the store's version)."""
    from db.lake.connection import ALIAS

    key = (str(settings().home), current)
    if key not in _table_versions_seen:
        try:
            names = dict(lake().fetchall(f"SELECT CAST(table_id AS VARCHAR), table_name FROM __ducklake_metadata_{ALIAS}.ducklake_table"))
            last: dict[str, int] = {"": 0}
            for snap, changes in lake().fetchall(f"SELECT snapshot_id, changes FROM ducklake_snapshots('{ALIAS}') ORDER BY snapshot_id"):
                for kind, ids in (changes or {}).items():
                    for t in (ids if kind in _DATA_CHANGES else [""]):
                        last[names.get(t, t) if t else ""] = snap
        except Exception:  # an older DuckLake without these views: key by the store's version
            last = None
        _table_versions_seen.clear()
        _table_versions_seen[key] = last
    return _table_versions_seen[key]


def _disk(home: str, name: str, version: int, args: tuple) -> Path:
    import hashlib

    digest = hashlib.sha256(repr(args).encode()).hexdigest()[:16]
    return Path(home) / "cache" / "reads" / f"{name}-{digest}-{version}.json"


@st.cache_data(show_spinner=False, max_entries=512)
def _memo(name: str, version: int, home: str, args: tuple) -> Any:
    if name not in _PERSIST:
        return _reads()[name](lake(), *args)
    import json
    import os

    path = _disk(home, name, version, args)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    text = json.dumps(_reads()[name](lake(), *args))
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.json"):  # earlier versions of this read
        old.unlink(missing_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # whole files only: another server process may be reading it
    return json.loads(text)  # the same shapes (lists, not tuples) whether computed now or read back


def tables_version(tables: tuple[str, ...]) -> int:
    """The last store version that changed one of ``tables`` (or the schema); the store's version where the
    catalog cannot say."""
    current = lake().current_version()
    versions = _table_versions(current) if tables else None
    if versions is None:
        return current
    return max(versions.get(t, 0) for t in ("", *tables))


def read_version(name: str) -> int:
    """The version ``name`` is remembered under: the last one that changed a table it reads."""
    return tables_version(_DEPENDS.get(name, ()))


def read(name: str, *args) -> Any:
    """A read of the lake, remembered until the next commit to a table it reads (see _DEPENDS; the store's
    version for the others): a click that changes nothing in the store costs one version lookup, not the
    queries behind the page."""
    if name in _PERSIST:  # the costly ones: built again in the background after the next commit (ui/warm.py)
        warm.note("read", name, *args)
    return _memo(name, read_version(name), str(settings().home), args)


warm.register("read", lambda name, *args: _memo(name, read_version(name), str(settings().home), args))
