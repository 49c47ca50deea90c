"""Create and open the store: DuckLake tables plus the app tables, in one catalog database."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from config.settings import StoreConfig  # noqa: F401 - where the store lives (callers import it from here too)
from db.app.engine import write_engine
from db.lake import schema as lake_schema
from db.lake.connection import Lake, shared_lake
from db.storage.locations import Location

MIGRATIONS_DIR = Path(__file__).parent / "app" / "migrations"
_PG_MIGRATION_LOCK = 742_001  # any constant; serialises concurrent `init` on PostgreSQL


@dataclass
class StoreInfo:
    config: StoreConfig
    lake_migrations_applied: list[int]
    app_revision: str | None


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def app_head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def app_current_revision(app_url: str) -> str | None:
    with write_engine(app_url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate_app_tables(app_url: str) -> str | None:
    """Bring the app tables to Alembic's head; concurrent callers wait for each other."""
    engine = write_engine(app_url)
    cfg = _alembic_config()
    with engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite: one migrator at a time
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        return MigrationContext.configure(conn).get_current_revision()


_ready: set[StoreConfig] = set()
_ready_lock = threading.Lock()


def init_store(config: StoreConfig) -> StoreInfo:
    """Create whatever is missing. Running it twice, or from two processes at once, is harmless."""
    lake = shared_lake(config.catalog_url, config.data_path)
    applied = lake_schema.migrate(lake)
    revision = migrate_app_tables(config.app_url)
    with _ready_lock:
        _ready.add(config)
    return StoreInfo(config, applied, revision)


def open_store(config: StoreConfig) -> Lake:
    """The process's lake connection, creating the store on first use so no command needs `init` first."""
    with _ready_lock:
        ready = config in _ready
    if not ready:
        # DuckDB would first meet a missing bucket or refused credentials at a write, deep in a job;
        # one request here names the problem when the store is opened
        Location.of(config.data_path).check_reachable()
        lake = shared_lake(config.catalog_url, config.data_path)
        if lake_schema.applied_version(lake) < lake_schema.LATEST or app_current_revision(config.app_url) != app_head_revision():
            init_store(config)
        with _ready_lock:
            _ready.add(config)
    return shared_lake(config.catalog_url, config.data_path)


def forget_ready() -> None:
    with _ready_lock:
        _ready.clear()
