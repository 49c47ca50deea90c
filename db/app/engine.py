"""SQLAlchemy engines for the app tables, one per process and catalog URL.

SQLite note: pysqlite starts transactions lazily, so two processes can both read a unit as free and then
both write. Write transactions therefore begin with ``BEGIN IMMEDIATE`` (take the write lock first) via
:func:`write_engine`; PostgreSQL gets row locks (``FOR UPDATE``) where it matters.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

_engines: dict[tuple[str, int], Engine] = {}
_lock = threading.Lock()


def sqlalchemy_url(catalog_url: str) -> str:
    url = make_url(catalog_url)
    if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return url.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - trivial
        # Let SQLAlchemy's "begin" event below emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: no fsync per commit, still never corrupt; a power cut may undo the last few
        # job-state changes, which lease recovery and idempotent units already handle
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # pragma: no cover - trivial
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def engine_for(catalog_url: str) -> Engine:
    """The process's engine; a forked worker child gets its own (pooled connections do not survive fork)."""
    key = (catalog_url, os.getpid())
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            url = sqlalchemy_url(catalog_url)
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 30}, pool_pre_ping=False)
                _configure_sqlite(engine)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
            _engines[key] = engine
        return engine


def write_engine(catalog_url: str) -> Engine:
    """Same pool; on SQLite its transactions take the write lock at BEGIN."""
    return engine_for(catalog_url).execution_options(sqlite_begin="IMMEDIATE")


def dispose_engines(*, close: bool = True) -> None:
    """Drop every engine. After a fork pass ``close=False``: the parent still owns those connections."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=close)
        _engines.clear()
