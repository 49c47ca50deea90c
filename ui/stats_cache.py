"""The filter engine's stats table (curation.filters.StatsTable) for the app: built once per version of
the tables it reads and shared by every session (st.cache_resource), and kept on disk as a Parquet file
beside the app's other cached reads, so that a restarted server (or a second server process) loads it
instead of joining every sample with its scores again (~3.5 s at a million samples; loading is a scan of
one file). Gallery's kept/dropped badges and Thresholds open on it.

The file is named by the table's specs and selection and by the last store version that changed a table
it reads (samples, items, scores, exclusions; selections where it is limited to one): a commit to any of
them gives a new name, so the stale file is never read, and the new one replaces it."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import duckdb
import streamlit as st

from curation.filters import StatSpec, StatsTable
from ui import context, warm

# what StatsTable._build reads: a commit to any of these (or to the schema) makes the table stale
TABLES = ("samples", "items", "scores", "exclusions")


def tables_read(selection: str | None) -> tuple[str, ...]:
    return TABLES + (("selections",) if selection else ())


def path_for(home: str, key: str, version: int) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(home) / "cache" / "reads" / f"stats_table-{digest}-{version}.parquet"


def _version_of(file: Path) -> int:
    try:
        return int(file.name.rsplit("-", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return -1


def _save(table: StatsTable, path: Path) -> None:
    """Whole files only (another server process may be loading it). The same table's files of older
    versions are removed, except the newest of them: a loaded table reads its file in place, and a page
    still running on the previous version (here or in another server process) must find it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    table.save(str(tmp))
    os.replace(tmp, path)
    mine = _version_of(path)
    files = [f for f in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*") if not f.name.endswith(".tmp")]
    older = sorted({_version_of(f) for f in files} - {mine})
    for f in files:
        if _version_of(f) in older[:-1]:  # the sorted-value files (.npz) go with their table's file
            f.unlink(missing_ok=True)


# The tables alive per key, oldest first. Each version's table has a name of its own on the shared connection:
# when they shared one, building a new version dropped the table a page (or the cache warmer) was still reading
# ("Table with name _stats_... does not exist"). Two are kept, as two files are: the newest, and the one pages
# still running on the previous version read; an older one is dropped (its memory freed).
KEPT = 2
_alive: dict[tuple[str, str], list[StatsTable]] = {}
_alive_lock = threading.Lock()


def _keep(home: str, key: str, table: StatsTable) -> StatsTable:
    with _alive_lock:
        # the same version loaded again (a cleared cache) took its name back: one entry per name
        tables = [t for t in _alive.get((home, key), []) if t.name != table.name] + [table]
        retired, _alive[(home, key)] = tables[:-KEPT], tables[-KEPT:]
    for old in retired:
        try:
            old.drop()
        except duckdb.Error:  # the connection is gone (a store reopened): nothing left to free
            pass
    return table


@st.cache_resource(show_spinner=False, max_entries=16)
def _table(key: str, version: int, home: str) -> StatsTable:
    spec = json.loads(key)
    specs, selection = [StatSpec(*s) for s in spec["specs"]], spec["selection"]
    path = path_for(home, key, version)
    if path.is_file():
        try:
            return _keep(home, key, StatsTable(context.lake(), specs, selection=selection, saved=str(path), sorted_cache=str(path), tag=str(version)))
        except (duckdb.Error, ValueError):  # unreadable or from an older layout: built again and replaced
            pass
    table = _keep(home, key, StatsTable(context.lake(), specs, selection=selection, sorted_cache=str(path), tag=str(version)))
    # a commit while it was built: its rows may be newer than ``version``; the next run builds that version's
    if context.tables_version(tables_read(selection)) == version:
        try:
            _save(table, path)
        except (OSError, duckdb.Error):  # a full disk: the app still works, only restarts are slower
            pass
    return table


def stats_table(config) -> StatsTable:
    """The stats table for ``config``'s stats and selection (models resolved from the cached model lists:
    a rerun sends no query to find them)."""
    from curation.filters import resolve_models

    specs = resolve_models(context.lake(), config, models_of=lambda metric, segment: context.read("stored_models", metric, segment, False))
    key = json.dumps({"specs": [[s.metric, s.model_id, s.segment] for s in specs], "selection": config.selection})
    warm.note("stats_table", key, config.selection)
    return _warm(key, config.selection)


def _warm(key: str, selection: str | None) -> StatsTable:
    return _table(key, context.tables_version(tables_read(selection)), str(context.settings().home))


warm.register("stats_table", _warm)
