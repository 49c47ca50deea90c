"""The DuckLake store: DuckDB tables whose data are Parquet files and whose catalog is SQLite or PostgreSQL.

A plain ``.duckdb`` file can be open in one process only, and workers and the UI are separate processes;
DuckLake lets all of them read and write at once (its catalog database orders the commits). Commits are
optimistic: two processes that commit at the same moment may conflict, so every write goes through
:meth:`Lake.transaction`, which retries a conflicting commit with bounded, jittered back-off.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import random
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from urllib.parse import unquote, urlparse

import duckdb
import pyarrow as pa

from db.storage import objects

log = logging.getLogger(__name__)
T = TypeVar("T")

ALIAS = "lake"

# (pip package, file name, name to LOAD). The PyPI packages carry DuckDB's own signed binaries, so the
# store works offline; a tampered file is refused by LOAD.
_EXTENSIONS = {
    "ducklake": ("duckdb_extension_ducklake", "ducklake", "ducklake"),
    "sqlite": ("duckdb_extension_sqlite", "sqlite", "sqlite_scanner"),
    "postgres": ("duckdb_extension_postgres", "postgres", "postgres_scanner"),
    # data files in S3 (VITPRO_DATA_PATH=s3://...)
    "httpfs": ("duckdb_extension_httpfs", "httpfs", "httpfs"),
}

# Messages DuckDB / DuckLake / SQLite give when another process committed first or holds the lock.
_RETRYABLE = (
    "conflict",
    "could not commit",
    "database is locked",
    "database table is locked",
    "busy",
    "could not serialize",
    "deadlock",
    "another transaction",
    # two processes creating tables at once: one may read the other's half-written catalog
    "failed to commit",
    "failed to load ducklake",
)


class StoreError(RuntimeError):
    """A store problem a user can act on (bad URL, missing extension, unreachable catalog)."""


def extension_file(name: str) -> Path:
    package, file_name, _ = _EXTENSIONS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise StoreError(
            f"DuckDB extension package {package!r} is not installed; "
            f"install it with `pip install {package.replace('_', '-')}=={duckdb.__version__}`"
        )
    path = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}" / f"{file_name}.duckdb_extension"
    if not path.exists():
        raise StoreError(
            f"{path} is missing: the package {package!r} must have the same version as duckdb ({duckdb.__version__})"
        )
    return path


def load_extension(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """INSTALL from the pip package's file (once per extension directory), then LOAD by name.

    LOAD of the file path alone does not work for sqlite/postgres: DuckDB derives the entry point from the
    file name, and those files are not named after the extension they hold (``sqlite_scanner``).
    """
    load_name = _EXTENSIONS[name][2]
    # Several processes starting at once on a fresh machine (two workers, two test processes) would each
    # INSTALL into the same folder, and one would LOAD while another writes the file ("not found"). Under
    # the lock, one installs and the others find it installed; a LOAD never meets a file being written.
    with _install_lock():
        if not _installed(con, load_name):
            con.execute(f"INSTALL {_sql_str(str(extension_file(name)))}")
        con.execute(f"LOAD {load_name}")


def _installed(con: duckdb.DuckDBPyConnection, load_name: str) -> bool:
    row = con.execute("SELECT installed FROM duckdb_extensions() WHERE extension_name = ?", [load_name]).fetchone()
    return bool(row and row[0])


@contextmanager
def _install_lock() -> Iterator[None]:
    """An exclusive lock between the processes of this machine (a lock file in the temporary folder)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "vitpro-duckdb-install.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def catalog_attach_target(catalog_url: str) -> tuple[str, str]:
    """Turn a catalog URL into DuckLake's ATTACH string; returns (target, extension needed)."""
    parsed = urlparse(catalog_url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "sqlite":
        # sqlite:///relative/path or sqlite:////absolute/path, as SQLAlchemy spells it
        path = catalog_url.split(":///", 1)[1] if ":///" in catalog_url else ""
        if not path:
            raise StoreError(f"cannot read a file path from catalog URL {catalog_url!r}")
        path = str(Path(path).expanduser().resolve())
        return f"ducklake:sqlite:{path}", "sqlite"
    if scheme in ("postgresql", "postgres"):
        parts = [f"dbname={parsed.path.lstrip('/') or 'postgres'}", f"host={parsed.hostname or '127.0.0.1'}"]
        if parsed.port:
            parts.append(f"port={parsed.port}")
        if parsed.username:
            parts.append(f"user={unquote(parsed.username)}")
        if parsed.password:
            parts.append(f"password={unquote(parsed.password)}")
        return "ducklake:postgres:" + " ".join(parts), "postgres"
    raise StoreError(f"unsupported catalog URL {catalog_url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")


def s3_secret(con: duckdb.DuckDBPyConnection) -> None:
    """Give DuckDB the object store's credentials, read from the standard AWS variables (the same ones
    boto3 reads, see db/storage/objects.py). A temporary secret: it lives in this connection's memory only, never
    in a file, and DuckDB shows it redacted in ``duckdb_secrets()``."""
    env = os.environ
    options = {"TYPE": "s3", "REGION": objects.region()}
    if env.get("AWS_ACCESS_KEY_ID"):
        options["KEY_ID"] = env["AWS_ACCESS_KEY_ID"]
        options["SECRET"] = env.get("AWS_SECRET_ACCESS_KEY", "")
    if env.get("AWS_SESSION_TOKEN"):
        options["SESSION_TOKEN"] = env["AWS_SESSION_TOKEN"]
    url = objects.endpoint_url()
    if url:
        parsed = urlparse(url)
        options["ENDPOINT"] = parsed.netloc or parsed.path
        options["USE_SSL"] = "true" if parsed.scheme == "https" else "false"
        options["URL_STYLE"] = "path"  # MinIO and other self-hosted stores want path-style URLs
    body = ", ".join(f"{k} {v if k in ('TYPE', 'USE_SSL') else _sql_str(v)}" for k, v in options.items())
    try:
        con.execute(f"CREATE OR REPLACE TEMPORARY SECRET vitpro_s3 ({body})")
    except duckdb.Error as exc:
        # the statement holds the secret: report the error without it
        raise StoreError(f"cannot configure DuckDB's S3 access: {_scrub(str(exc))}") from None


def _scrub(text: str) -> str:
    for secret in objects.secret_values():
        text = text.replace(secret, "***")
    return text


def is_retryable(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _RETRYABLE)


def at_version(table: str, version: int | None) -> str:
    """``table`` as it was at a DuckLake version (the current table for None). A subquery, so the caller
    can alias it: DuckDB reads no alias after ``AT (...)``."""
    return f"(SELECT * FROM {table} AT (VERSION => {int(version)}))" if version is not None else table


def _process_share_of_cores() -> int | None:
    """DuckDB's threads in this process: OMP_NUM_THREADS where it is set (a worker sets it to each of its processes'
    share of the cores, as the test processes do), else DuckDB's default of one per core. With a thread per core
    in every worker process, DuckDB oversubscribed the machine as OpenMP did; and a small query pays for the
    threads it cannot use: Inspect's point read of one sample took 97 ms with two threads and 61 ms with one on
    an idle 2-core machine (bench/lake_threads.py). The web app's server sets nothing: its large scans keep every core."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


class Lake:
    """One DuckDB connection with the DuckLake catalog attached as ``lake`` (and made the default)."""

    def __init__(self, catalog_url: str, data_path: str, *, threads: int | None = None):
        self.catalog_url = catalog_url
        self.data_path = data_path
        config: dict[str, Any] = {
            # Never reach for the network: every extension comes from its pip package.
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
        threads = threads or _process_share_of_cores()
        if threads:
            config["threads"] = threads
        ext_dir = os.environ.get("VITPRO_DUCKDB_EXTENSIONS")
        if ext_dir:
            config["extension_directory"] = ext_dir
        self.con = duckdb.connect(config=config)
        self._lock = threading.RLock()
        target, needed = catalog_attach_target(catalog_url)
        try:
            load_extension(self.con, "ducklake")
            load_extension(self.con, needed)
        except duckdb.Error as exc:  # pragma: no cover - only with a broken install
            raise StoreError(f"cannot load DuckDB extensions: {exc}") from exc
        if objects.is_remote(data_path):
            try:
                load_extension(self.con, "httpfs")
            except duckdb.Error as exc:  # pragma: no cover - only with a broken install
                raise StoreError(f"cannot load DuckDB's httpfs extension: {exc}") from exc
            s3_secret(self.con)
        elif "://" not in data_path:
            Path(data_path).mkdir(parents=True, exist_ok=True)
        if needed == "sqlite":
            Path(target.split(":", 2)[2]).parent.mkdir(parents=True, exist_ok=True)
            _prepare_sqlite(target.split(":", 2)[2])
        self._attach(target, data_path)

    def _attach(self, target: str, data_path: str) -> None:
        delay = 0.05
        for attempt in range(12):
            try:
                self.con.execute(
                    f"ATTACH {_sql_str(target)} AS {ALIAS} (DATA_PATH {_sql_str(data_path)})"
                )
                self.con.execute(f"USE {ALIAS}")
                return
            except duckdb.Error as exc:
                # Two processes creating a fresh catalog at once race on its metadata tables.
                if attempt < 11 and (is_retryable(exc) or "already exists" in str(exc).lower()):
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                raise StoreError(f"cannot open the DuckLake catalog {target.split(' password=')[0]}: {exc}") from exc

    # ---- reading -------------------------------------------------------------------------------------
    def execute(self, query: str, params: list | tuple | None = None) -> None:
        """A statement outside the lake's tables (temporary tables, settings): no commit to retry."""
        with self._lock:
            self.con.execute(query, params or [])

    def fetchnumpy(self, query: str, params: list | tuple | None = None) -> dict[str, Any]:
        """Columns as numpy arrays (large numeric reads without a Python object per value)."""
        with self._lock:
            return self.con.execute(query, params or []).fetchnumpy()

    def fetch_arrow(self, query: str, params: list | tuple | None = None):
        """The result as an Arrow table (columnar reads that stay columnar)."""
        with self._lock:
            return self.con.execute(query, params or []).to_arrow_table()

    def fetchdf(self, query: str, params: list | tuple | None = None):
        """The result as a pandas DataFrame (analysis scripts)."""
        with self._lock:
            return self.con.execute(query, params or []).df()

    def fetchall(self, query: str, params: list | tuple | None = None) -> list[tuple]:
        with self._lock:
            return self.con.execute(query, params or []).fetchall()

    def fetchone(self, query: str, params: list | tuple | None = None) -> tuple | None:
        with self._lock:
            return self.con.execute(query, params or []).fetchone()

    @contextmanager
    def probe(self, name: str, column: str, values: list[str]) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, under the lake's lock, with ``values`` as a one-column table ``name`` to join
        against (thousands of ids are one join, not an IN list of parameters)."""
        with self.with_table(name, pa.table({column: pa.array(values, pa.string())})) as con:
            yield con

    @contextmanager
    def with_table(self, name: str, table: pa.Table) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection, under the lake's lock, with the Arrow ``table`` registered as ``name`` (for a join)."""
        with self._lock:
            self.con.register(name, table)
            try:
                yield self.con
            finally:
                self.con.unregister(name)

    def scalar(self, query: str, params: list | tuple | None = None) -> Any:
        row = self.fetchone(query, params)
        return row[0] if row else None

    # ---- writing -------------------------------------------------------------------------------------
    def transaction(self, body: Callable[[duckdb.DuckDBPyConnection], T], *, attempts: int = 10) -> T:
        """Run ``body(con)`` in one transaction; retry the whole body when the commit conflicts.

        ``body`` must be safe to run again (delete-then-insert by run id, anti-joins): after a conflict
        nothing of the failed attempt is kept.
        """
        delay = 0.05
        with self._lock:
            for attempt in range(1, attempts + 1):
                try:
                    self.con.execute("BEGIN TRANSACTION")
                    result = body(self.con)
                    self.con.execute("COMMIT")
                    return result
                except duckdb.Error as exc:
                    try:
                        self.con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    if attempt == attempts or not is_retryable(exc):
                        raise
                    log.info("commit conflict (attempt %d/%d), retrying: %s", attempt, attempts, exc)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)
                except BaseException:
                    try:
                        self.con.execute("ROLLBACK")
                    except duckdb.Error:
                        pass
                    raise
        raise AssertionError("unreachable")

    def current_version(self) -> int:
        """The latest committed DuckLake snapshot id: what a dataset snapshot pins.

        ``current_snapshot()`` reads one id; ``max()`` over ``ducklake_snapshots()`` read every snapshot
        with its change list (3x slower on a long history), and every cached read of the app asks this."""
        return int(self.scalar(f"SELECT id FROM {ALIAS}.current_snapshot()"))

    def close(self) -> None:
        with self._lock:
            self.con.close()


def _prepare_sqlite(path: str) -> None:
    """Create a new catalog file in WAL mode (persistent), so readers go on while a worker commits.

    Only a file that does not exist yet is touched: DuckDB links its own copy of SQLite, and opening a
    file this process's DuckDB already has open through Python's sqlite3 would release DuckDB's POSIX
    locks on close (sqlite.org, "How To Corrupt An SQLite Database File", 2.2.1).
    """
    import sqlite3

    if Path(path).exists():
        return
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


_cache: dict[tuple[str, str], Lake] = {}
_cache_lock = threading.Lock()


def shared_lake(catalog_url: str, data_path: str) -> Lake:
    """One connection per process and store: attaching costs a second, workers reuse it for every batch."""
    key = (catalog_url, data_path)
    with _cache_lock:
        lake = _cache.get(key)
        if lake is None:
            lake = _cache[key] = Lake(catalog_url, data_path)
        return lake


def forget_shared_lakes() -> None:
    """In a forked child: the parent's DuckDB connection is not ours to use or close."""
    with _cache_lock:
        _cache.clear()


def drop_shared_lakes() -> None:
    with _cache_lock:
        for lake in _cache.values():
            try:
                lake.close()
            except Exception:  # pragma: no cover
                pass
        _cache.clear()
