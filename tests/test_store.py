import multiprocessing as mp

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from config.settings import load_settings
from db.app.engine import write_engine
from db.app.models import Base, owned_by_app
from db.lake import schema as lake_schema
from db.lake.connection import Lake, StoreError, catalog_attach_target
from db.store import StoreConfig, app_current_revision, app_head_revision, init_store, open_store

ALL_LAKE_MIGRATIONS = [version for version, _, _ in lake_schema.MIGRATIONS]


def _writer(catalog_url: str, data_path: str, worker: int, n: int, queue) -> None:
    try:
        lake = Lake(catalog_url, data_path)
        for i in range(n):
            run = f"w{worker}-{i}"
            lake.transaction(
                lambda con, run=run: (
                    con.execute("DELETE FROM items WHERE run_id = ?", [run]),
                    con.execute("INSERT INTO items (item_id, title, run_id) VALUES (?, ?, ?)", [f"{run}-a", "t", run]),
                    con.execute("INSERT INTO items (item_id, title, run_id) VALUES (?, ?, ?)", [f"{run}-b", "t", run]),
                )
            )
        queue.put(("ok", worker))
    except Exception as exc:  # report, do not hang the parent
        queue.put(("error", f"{worker}: {exc!r}"))


def _spawned(target, arg_lists, *, timeout: float = 120) -> list:
    """Run ``target(*args, queue)`` in a spawned process per entry of ``arg_lists``, all at once; each puts one
    result on the queue. Returns the results, in the order they came."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue)) for args in arg_lists]
    for p in procs:
        p.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return results


def _concurrent_writes(config: StoreConfig, processes: int = 4, per_process: int = 12) -> None:
    init_store(config)
    results = _spawned(_writer, [(config.catalog_url, config.data_path, w, per_process) for w in range(processes)], timeout=180)
    assert [r for r in results if r[0] != "ok"] == []
    lake = open_store(config)
    assert lake.scalar("SELECT count(*) FROM items") == processes * per_process * 2
    assert lake.scalar("SELECT count(DISTINCT item_id) FROM items") == processes * per_process * 2


@pytest.mark.creates_store
def test_sqlite_store_created_twice_and_shared(home):
    s = load_settings()
    first = init_store(s.store)
    assert first.lake_migrations_applied == ALL_LAKE_MIGRATIONS and first.app_revision == app_head_revision()
    second = init_store(s.store)
    assert second.lake_migrations_applied == []
    lake = open_store(s.store)
    tables = {t for (t,) in lake.fetchall("SHOW TABLES")}
    assert {"sources", "items", "images", "errors", "ocr", "schema_migrations"} <= tables
    assert (home / "catalog.sqlite").exists()
    # a second process-level connection sees the same catalog (DuckLake, not a locked .duckdb file)
    other = Lake(s.catalog_url, s.data_path)
    other.transaction(lambda con: con.execute("INSERT INTO items (item_id, run_id) VALUES ('x', 'r')"))
    assert lake.scalar("SELECT count(*) FROM items WHERE item_id = 'x'") == 1
    assert lake.current_version() >= 3


def test_duckdb_threads_are_the_process_share_of_the_cores(home, monkeypatch):
    """A Lake's DuckDB runs OMP_NUM_THREADS threads where it is set (a worker's or a test process's share of the
    cores), DuckDB's one per core otherwise; an explicit ``threads`` wins."""
    import duckdb

    s = load_settings()
    init_store(s.store)
    threads = lambda lake: lake.scalar("SELECT current_setting('threads')")  # noqa: E731
    default = duckdb.connect().execute("SELECT current_setting('threads')").fetchone()[0]  # one per core DuckDB sees
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads(Lake(s.catalog_url, s.data_path)) == 1
    assert threads(Lake(s.catalog_url, s.data_path, threads=3)) == 3
    for unset in ("", "0", "many"):  # not a count: DuckDB's default
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert threads(Lake(s.catalog_url, s.data_path)) == default
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads(Lake(s.catalog_url, s.data_path)) == default


def test_sqlite_concurrent_writers_retry_conflicts(home):
    s = load_settings()
    _concurrent_writes(s.store)


def test_postgres_store_and_concurrent_writers(pg_url, tmp_path):
    config = StoreConfig(pg_url, str(tmp_path / "lake") + "/", pg_url)
    info = init_store(config)
    assert info.lake_migrations_applied == ALL_LAKE_MIGRATIONS
    assert init_store(config).lake_migrations_applied == []
    assert app_current_revision(pg_url) == app_head_revision()
    _concurrent_writes(config, processes=3, per_process=10)


@pytest.mark.creates_store
def test_app_tables_match_the_models_after_migration(home):
    s = load_settings()
    init_store(s.store)
    with write_engine(s.app_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": owned_by_app}), Base.metadata)
    assert diff == []


def test_lake_migration_path_adds_a_column_and_keeps_rows(home, monkeypatch):
    s = load_settings()
    init_store(s.store)
    lake = open_store(s.store)
    lake.transaction(lambda con: con.execute("INSERT INTO items (item_id, title, run_id) VALUES ('keep', 'kept', 'r')"))
    nxt = lake_schema.LATEST + 1
    later = lake_schema.MIGRATIONS + [(nxt, "items.note", ["ALTER TABLE items ADD COLUMN note VARCHAR"])]
    monkeypatch.setattr(lake_schema, "MIGRATIONS", later)
    monkeypatch.setattr(lake_schema, "LATEST", nxt)
    assert lake_schema.migrate(lake) == [nxt]
    assert lake_schema.migrate(lake) == []
    assert lake.fetchall("SELECT item_id, title, note FROM items") == [("keep", "kept", None)]
    assert lake_schema.applied_version(lake) == nxt


def test_bad_catalog_urls():
    with pytest.raises(StoreError, match="unsupported catalog URL"):
        catalog_attach_target("mysql://x/y")
    target, ext = catalog_attach_target("postgresql://postgres:s3cret@db.example:6543/cat")
    assert ext == "postgres" and target == "ducklake:postgres:dbname=cat host=db.example port=6543 user=postgres password=s3cret"
    with pytest.raises(StoreError, match="cannot open the DuckLake catalog"):
        Lake("postgresql://postgres@127.0.0.1:1/nothing", "/tmp/never/")


def test_a_process_that_writes_the_lake_still_sees_other_processes_jobs(home):
    """Regression: with the app tables inside DuckLake's SQLite file, a process that had committed through
    DuckDB (its own copy of SQLite) stopped seeing rows other processes committed through SQLAlchemy."""
    import subprocess
    import sys

    from db.app import jobs

    s = load_settings()
    assert s.app_url != s.catalog_url and s.app_url.endswith("app.sqlite")
    lake = open_store(s.store)
    engine = write_engine(s.app_url)
    make_job = (
        "from db.app import jobs; from db.app.engine import write_engine; from config.settings import load_settings;"
        "print(jobs.create_job(write_engine(load_settings().app_url), kind='ocr', queue='cpu', params={}, launched_by='x')[0])"
    )
    seen = []
    for round_ in range(3):
        lake.transaction(lambda con, r=round_: con.execute("INSERT INTO items (item_id, run_id) VALUES (?, 'r')", [f"i{r}"]))
        job_id = subprocess.run([sys.executable, "-c", make_job], capture_output=True, text=True, check=True).stdout.strip()
        seen.append(jobs.get_job(engine, job_id) is not None)
    assert seen == [True, True, True]


def test_dedupe_keeps_the_first_copy_with_its_images(home):
    from db.lake import batches

    s = load_settings()
    lake = open_store(s.store)
    t0 = batches.now_utc()
    rows = [("item-1", "run-a", 1), ("item-1", "run-b", 1), ("item-2", "run-b", 2)]
    lake.transaction(lambda con: [
        con.execute("INSERT INTO items (item_id, source_id, run_id, row_number, ingested_at) VALUES (?, 'src', ?, ?, ?)", [i, r, n, t0])
        for i, r, n in rows
    ])
    lake.transaction(lambda con: [
        con.execute("INSERT INTO images (image_id, item_id, run_id) VALUES (?, ?, ?)", [f"{i}/{r}", i, r]) for i, r, _ in rows
    ])
    assert batches.dedupe_items(lake, "src") == 1
    assert sorted(lake.fetchall("SELECT item_id, run_id FROM items")) == [("item-1", "run-a"), ("item-2", "run-b")]
    assert sorted(lake.fetchall("SELECT image_id FROM images")) == [("item-1/run-a",), ("item-2/run-b",)]
    assert batches.dedupe_items(lake, "src") == 0


def _init_in_process(config: StoreConfig, queue) -> None:
    try:
        info = init_store(config)
        queue.put(("ok", info.lake_migrations_applied))
    except Exception as exc:
        queue.put(("error", repr(exc)))


@pytest.mark.parametrize("attempt", range(4))
def test_fresh_store_created_by_several_processes_at_once(home, attempt):
    """A worker's main process and its pool children all open a fresh store at start: they race."""
    s = load_settings()
    results = _spawned(_init_in_process, [(s.store,)] * 3)
    assert [r for r in results if r[0] != "ok"] == []
    # each migration ran exactly once, in whichever process got there first
    assert sorted(v for r in results for v in r[1]) == ALL_LAKE_MIGRATIONS
    lake = open_store(s.store)
    assert lake.scalar("SELECT count(*) FROM schema_migrations") == lake_schema.LATEST


def _load_extensions_in_process(extension_dir: str, barrier, queue) -> None:
    import duckdb

    from db.lake.connection import load_extension

    try:
        con = duckdb.connect(config={"extension_directory": extension_dir, "autoinstall_known_extensions": False})
        barrier.wait(60)  # every process asks at the same moment
        for name in ("ducklake", "sqlite"):
            load_extension(con, name)
        queue.put(("ok", sorted(r[0] for r in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall())))
    except Exception as exc:
        queue.put(("error", repr(exc)))


def test_processes_starting_at_once_on_a_fresh_machine_all_load_the_extensions(tmp_path):
    """Nothing installed yet (a fresh machine's first `make test` runs two test processes; a first `vitpro
    worker` starts several): each process installs the extensions from their pip packages, one at a time, and
    none reads a file another is writing. Without the lock, some of them failed with "not found"."""
    barrier = mp.get_context("spawn").Barrier(4)
    results = _spawned(_load_extensions_in_process, [(str(tmp_path / "ext"), barrier)] * 4)
    assert [r for r in results if r[0] != "ok"] == []
    assert all({"ducklake", "sqlite_scanner"} <= set(r[1]) for r in results)
    assert len(list((tmp_path / "ext").rglob("*.duckdb_extension"))) == 2


def test_a_source_planned_again_unchanged_writes_nothing_and_a_changed_one_is_replaced(home):
    from datetime import datetime, timezone

    from db.lake import batches

    lake = open_store(load_settings().store)
    row = {"source_id": "src-1", "name": "catalog", "uri": "/data/catalog.csv", "format": "csv", "item_kind": "catalog", "file_sha256": "a" * 64,
           "file_bytes": 1234, "mapping": {"columns": {"title": ["name"]}}, "redacted": True, "job_id": "job-1", "run_id": "run-1",
           "created_at": datetime.now(timezone.utc)}
    batches.write_source(lake, row)
    version = lake.current_version()
    batches.write_source(lake, {**row, "job_id": "job-2", "run_id": "run-2"})  # the same file, the same way, by a later job
    assert lake.current_version() == version
    assert lake.fetchall("SELECT job_id, file_sha256 FROM sources") == [("job-1", "a" * 64)]
    for change in ({"file_sha256": "b" * 64}, {"mapping": {"columns": {"title": ["title"]}}}, {"redacted": False}):
        batches.write_source(lake, {**row, **change, "job_id": "job-3"})
        assert lake.current_version() > version
        version = lake.current_version()
        assert lake.fetchall("SELECT count(*), any_value(job_id) FROM sources") == [(1, "job-3")]
        batches.write_source(lake, row)  # back as it was
        version = lake.current_version()
