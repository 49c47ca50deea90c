"""Test stores built once per test session and copied for every later test that asks for the same one.

Building a store through the real ingest, generation and score writes takes 1.5-2.5 s; about a hundred tests
start from one of a handful of such stores. The first test to ask builds it in its own (empty) home, as
before; the home is then kept as a template, and a later test's empty home becomes a copy of it (~50 ms).
The copy is the same store: the same rows, the same DuckLake snapshots and versions, the same users, jobs
and saved filters; only DuckLake's record of where its data files live is pointed at the new home (DuckLake
stores every data file's path relative to that one absolute path, and refuses a catalog whose recorded path
is not the one it is opened with).

Only an embedded store entirely inside VITPRO_HOME is templated (SQLite catalogs and broker, local data and
blob folders); anything else, or a home that already holds something, is built as before.
"""
from __future__ import annotations

import atexit
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Callable

_root: Path | None = None
_templates: dict[tuple, Path] = {}


def _templates_root() -> Path:
    global _root
    if _root is None:
        _root = Path(tempfile.mkdtemp(prefix="vitpro-test-templates-"))
        atexit.register(shutil.rmtree, _root, True)
    return _root


def _templatable(home: Path) -> bool:
    """Whether this test's store lives entirely in ``home`` with embedded defaults, and is still empty."""
    from config.settings import load_settings

    s = load_settings()
    inside = [s.catalog_url, s.app_url, s.broker_url, s.data_path, str(s.blob_path)]
    if not all(str(home) in part for part in inside) or not s.catalog_url.startswith("sqlite"):
        return False
    return not home.exists() or not any(home.iterdir())


def _point_lake_at(home: Path) -> None:
    """Point the copied DuckLake catalog at the copy's own data folder."""
    from config.settings import load_settings

    con = sqlite3.connect(str(home / "catalog.sqlite"))
    try:
        with con:
            con.execute("UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'", [load_settings().data_path])
    finally:
        con.close()


def built_once(key: tuple, build: Callable[[], object], *, data_dir: Path | None = None) -> None:
    """Make the current VITPRO_HOME the store ``build()`` makes. The first time ``key`` is asked for in this
    session, ``build()`` runs and the home (with ``data_dir``, the files it ingested) is kept; later, both are
    copied in. Open the store afterwards (``open_store``): connections made by ``build`` are closed."""
    from config.settings import load_settings

    from .conftest import _reset_process_caches

    home = load_settings().home
    if not _templatable(home):
        build()
        return
    template = _templates.get(key)
    if template is None:
        build()
        _reset_process_caches()  # every connection closed (and SQLite's WAL checkpointed) before the copy
        template = _templates_root() / f"t{len(_templates)}"
        shutil.copytree(home, template / "home")
        if data_dir is not None and Path(data_dir).exists():
            shutil.copytree(data_dir, template / "data")
        _templates[key] = template
        return
    _reset_process_caches()
    if home.exists():
        home.rmdir()  # empty (checked above)
    shutil.copytree(template / "home", home)
    _point_lake_at(home)
    if data_dir is not None and (template / "data").exists():
        shutil.copytree(template / "data", data_dir, dirs_exist_ok=True)


# ---- the empty store every test starts from ------------------------------------------------------------------
# Creating a store on first use (DuckLake's catalog, the lake's migrations, the app tables' migrations) takes
# ~0.9 s, and most tests begin with it. One is created for real per session; after that, a catalog about to be
# created in a test's home is this one, copied into place just before DuckLake attaches it.

_empty: Path | None = None
_making = False
copying = True  # off for a test marked creates_store (tests/conftest.py)


def empty_template() -> Path:
    """A store created for real by init_store in a home of its own, its connections closed."""
    global _empty, _making
    if _empty is None:
        import os

        from config.settings import load_settings
        from db.store import init_store

        from .conftest import _reset_process_caches

        home = _templates_root() / "empty" / "var"
        saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("VITPRO_")}
        os.environ["VITPRO_HOME"] = str(home)
        _making = True
        try:
            _reset_process_caches()
            init_store(load_settings().store)
            _reset_process_caches()
            for name in ("catalog.sqlite", "app.sqlite"):  # everything in the main files: only they are copied
                con = sqlite3.connect(str(home / name))
                try:
                    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                finally:
                    con.close()
        finally:
            _making = False
            os.environ.pop("VITPRO_HOME")
            os.environ.update(saved)
        _empty = home
    return _empty


def copy_empty_store(catalog_path: str) -> None:
    """Before a SQLite catalog file is created at ``catalog_path`` (db/lake/connection.py's _prepare_sqlite):
    where it is the current test home's own catalog, with a local data folder and the app tables beside it,
    none of them there yet, put the empty store's copy in place. Anything else is created for real."""
    from config.settings import load_settings

    if _making or not copying:
        return
    s = load_settings()
    catalog, data_path = Path(catalog_path), s.data_path
    app = Path(s.app_url.split(":///", 1)[1]) if s.app_url.startswith("sqlite:///") else None
    if catalog.exists() or catalog != s.home / "catalog.sqlite" or "://" in data_path or app is None or app.exists():
        return
    if Path(data_path).exists() and any(Path(data_path).iterdir()):
        return
    empty = empty_template()
    catalog.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty / "catalog.sqlite", catalog)
    shutil.copyfile(empty / "app.sqlite", app)
    shutil.copytree(empty / "lake", data_path, dirs_exist_ok=True)
    _point_lake_at(s.home)
