"""Scaling: how each stage's cost grows with the store's size, on two store configurations, in one table.

    python bench/scale.py                            # every stage at its three sizes, embedded and pg+s3
    python bench/scale.py --quick                    # tiny sizes: a smoke test (about two minutes)
    python bench/scale.py --stores embedded --stages threshold,export --sizes 10000,100000,1000000

Stages (no model weights needed), each on a fresh store per size:
  ingest      the ingest job's handlers (plan, units, finalize) run in this process on a catalog CSV with
              real JPEG files (bench/ingest.py's inputs): reading, redaction, content hashing, blob copies
  generate    the generate job with the template backend, run the same way, on items with images
  sampling    stratified sampling (db/lake/sampling.py: stratify, balance table, the selection written)
  threshold   a threshold change as the Thresholds page makes it (bench/filters.py's store and changes):
              the stats table is built once (the first load), then each change of cut is the counts
              overall, per task, per category and two 50-bin histograms; the median of the warm changes
              (20,000,000 samples on embedded only: the change reads the in-memory table either way)
  snapshot    a snapshot created from the saved filter (curation/snapshots.py: freeze and record)
  export      the export job (curation/exports.py write_export) of the snapshot's kept samples as LLaVA
              JSON into a local folder, its units run here; records/s
  ui-*        the web app's Overview, Inspect and Thresholds pages run as Streamlit runs them
              (bench/ui_pages.py's AppTest timing): 'new data' (every read and the stats table again)
              and a click
Stores are built in bulk (bench/synthetic_store.py, bench/filters.py); sizes are samples, except ingest
and generate (items: each runs Python per item, so they get smaller sizes, as the table says).

Store configurations: ``embedded`` (SQLite catalog, local data and blob folders under a temporary
VITPRO_HOME) and ``pg+s3`` (a fresh PostgreSQL database as the catalog, data and blobs in a bucket of an S3
server this script starts: moto_server from the venv).

For each stage and store: the time at each size, throughput where it means something, and the growth
exponent k of time ~ size^k (least squares on log-log). Targets, each printed PASS/FAIL from this run's
figures: threshold change at 20,000,000 samples <= 300 ms; every stage's k <= 1.1; export >= 2,000
records/s; ingest on pg+s3 within 2x of embedded (items/s ratio).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THRESHOLD_TARGET_MS, THRESHOLD_TARGET_AT = 300.0, 20_000_000
K_TARGET, EXPORT_TARGET, INGEST_RATIO_TARGET = 1.1, 2000.0, 2.0
STORES = ("embedded", "pg+s3")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
UI_PAGES = ("overview", "inspect", "thresholds")


# ---- sizes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    name: str
    unit: str  # what a size counts
    sizes: tuple[int, ...]
    quick: tuple[int, ...]
    note: str = ""


STAGES = {
    s.name: s for s in (
        Stage("ingest", "items", (1_000, 3_000, 10_000), (25, 50, 100), "smaller sizes: items of 2 JPEGs, Python per image (decode, hash, copy)"),
        Stage("generate", "items", (500, 1_500, 5_000), (25, 50, 100), "smaller sizes: items, Python per item and task"),
        Stage("sampling", "samples", (10_000, 100_000, 1_000_000), (1_000, 2_000, 4_000)),
        Stage("threshold", "samples", (10_000, 100_000, 1_000_000, THRESHOLD_TARGET_AT), (1_000, 2_000, 4_000, 40_000), "also at 20M"),
        Stage("snapshot", "samples", (10_000, 100_000, 1_000_000), (1_000, 2_000, 4_000)),
        Stage("export", "samples", (10_000, 100_000, 1_000_000), (1_000, 2_000, 4_000), "llava; records = kept samples"),
        Stage("ui", "samples", (10_000, 100_000, 1_000_000), (1_000, 2_000, 4_000), "'new data': every read and the stats table again"),
    )
}
# stages measured on one synthetic store per size (bench/synthetic_store.py), in this order
ON_SYNTHETIC = ("sampling", "snapshot", "export", "ui")


@dataclass
class Figure:
    """One stage at one size on one store."""

    stage: str
    store: str
    size: int
    seconds: float
    records: int | None = None  # what throughput counts (records exported, items ingested)
    extra: dict = field(default_factory=dict)

    @property
    def per_second(self) -> float | None:
        return None if self.records is None or self.seconds <= 0 else self.records / self.seconds


# ---- store configurations -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """moto_server on a free local port, with one bucket; the AWS variables point every client at it."""

    def __init__(self, scratch: Path):
        self.port = free_port()
        self.bucket = f"vitpro-scale-{uuid.uuid4().hex[:8]}"
        self.log = open(scratch / "moto.log", "w")
        self.proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        # The S3 server stands for another machine: on the last core, while ingest runs on the others
        # (stage_ingest), so the server's own CPU time is not taken from the client it serves.
        if len(os.sched_getaffinity(0)) >= 2:
            os.sched_setaffinity(self.proc.pid, {max(os.sched_getaffinity(0))})
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
            os.environ.pop(name, None)
        os.environ.update({"AWS_ACCESS_KEY_ID": "scale", "AWS_SECRET_ACCESS_KEY": "scale-secret", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"moto_server did not start; see {scratch / 'moto.log'}")
                time.sleep(0.2)
        import boto3

        boto3.client("s3").create_bucket(Bucket=self.bucket)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (it runs on this machine's cores, beside the stage it serves)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def s3_supported() -> bool:
    """Whether this checkout's store and blob store take s3:// paths (db/storage/blobs.py is where blob copies go)."""
    return (REPO / "db" / "blobs.py").is_file()


def _pg(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
        con.execute(sql)


def _reset_process_state() -> None:
    """Forget every store this process opened: the next open reads the environment again."""
    from db.app.engine import dispose_engines
    from db.lake.connection import drop_shared_lakes
    from db.store import forget_ready

    drop_shared_lakes()
    dispose_engines()
    forget_ready()


@contextlib.contextmanager
def fresh_store(store: str, scratch: Path, label: str, s3: S3Server | None):
    """A new, empty store of configuration ``store`` for the length of the with block (its settings
    from the environment, as every part of the app reads them)."""
    for key in [k for k in os.environ if k.startswith("VITPRO_")]:
        del os.environ[key]
    home = scratch / f"{store.replace('+', '-')}-{label}"
    os.environ["VITPRO_HOME"] = str(home)
    db = None
    if store == "pg+s3":
        db = f"vitpro_scale_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        _pg(f'CREATE DATABASE "{db}"')
        os.environ["VITPRO_CATALOG"] = f"postgresql://postgres@127.0.0.1:5432/{db}"
        os.environ["VITPRO_DATA_PATH"] = f"s3://{s3.bucket}/{label}/lake/"
        os.environ["VITPRO_BLOB_PATH"] = f"s3://{s3.bucket}/{label}/blobs/"
    _reset_process_state()
    try:
        from config.settings import load_settings
        from db.store import init_store

        settings = load_settings()
        init_store(settings.store)
        yield settings
    finally:
        _reset_process_state()
        if db:
            _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            from db.storage import objects

            objects.delete_prefix(objects.ObjectURL.parse(f"s3://{s3.bucket}/{label}/"))  # moto keeps objects in memory
        shutil.rmtree(home, ignore_errors=True)


# ---- running jobs in this process -----------------------------------------------------------------------
def run_job(kind: str, queue: str, params: dict, settings) -> dict:
    """Every unit of a job run here, one after another, through the workers' own runner (no broker):
    the handlers' cost without worker start-up or queueing. Returns the job's counts."""
    from db.app import jobs
    from db.app.engine import write_engine
    from workers.runtime import execute_unit

    engine = write_engine(settings.app_url)
    job_id, todo = jobs.create_job(engine, kind=kind, queue=queue, params=params, launched_by="bench")
    todo = list(todo)
    while todo:
        sent: list = []
        execute_unit(todo.pop(0)[0], settings=settings, send=sent.extend)
        todo.extend(sent)
    job = jobs.get_job(engine, job_id)
    if job.status != "succeeded":
        raise RuntimeError(f"{kind} job {job.status}: {job.error}")
    return job.counts


# ---- stages ---------------------------------------------------------------------------------------------
def ingest_inputs(scratch: Path, items: int) -> Path:
    """bench/ingest.py's catalog CSV and JPEGs for the largest size (made once; smaller sizes read the
    first rows of the same CSV)."""
    from bench.ingest import make_inputs

    return make_inputs(scratch / "ingest-inputs", items, 2)


def csv_head(src: Path, n: int) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    out = src.with_name(f"catalog-{n}.csv")
    out.write_text("".join(lines[: n + 1]))
    return out


def stage_ingest(settings, n: int, src: Path) -> Figure:

    part = csv_head(src, n)
    cores = os.sched_getaffinity(0)
    if len(cores) >= 2:  # on both stores alike: every core but the one the S3 server has (S3Server)
        os.sched_setaffinity(0, cores - {max(cores)})
    try:
        return _ingest(settings, n, part, src)
    finally:
        os.sched_setaffinity(0, cores)


def _ingest(settings, n: int, part: Path, src: Path) -> Figure:
    from curation.mapping import ColumnMapping
    from jobs.ingest import IngestJob

    cpu = time.process_time()
    mapping = ColumnMapping(columns={"external_id": ["id"], "title": ["title"], "description": ["description"], "brand": ["brand"],
                                     "category": ["category"], "images": ["images"]})
    params = IngestJob(source=str(part), format="csv", mapping=mapping, name="scale", image_root=str(src.parent), redact=True, rows_per_unit=250).params()
    t = time.perf_counter()
    counts = run_job("ingest", "cpu", params, settings)
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    if counts.get("ingested") != n:
        raise RuntimeError(f"ingest stored {counts.get('ingested')} of {n} items: {counts}")
    return Figure("ingest", "", n, took, n, {"images": counts.get("images_ingested"), "cpu s": round(cpu, 2)})


def stage_generate(settings, n: int) -> Figure:
    """Template generation for ``n`` items (the synthetic store's items, its samples not built)."""
    from bench.synthetic_store import build_items
    from jobs.generate import GenerateJob

    build_items(n)
    params = GenerateJob(backend="template").params()
    t = time.perf_counter()
    counts = run_job("generate", "cpu", params, settings)
    took = time.perf_counter() - t
    from db.store import open_store

    samples = int(open_store(settings.store).scalar("SELECT count(*) FROM samples"))
    return Figure("generate", "", n, took, n, {"samples": samples, "items_to_generate": counts.get("items_to_generate")})


def stage_threshold(settings, n: int, repeats: int) -> Figure:
    """bench/filters.py's store and threshold changes; the first change reads the sorted values (the
    first load), the rest are the warm changes a slider makes."""
    from bench.filters import build_store, changes, engine_run

    lake = build_store(n)
    build, times, _, table = engine_run(lake, changes(n=repeats))
    lake.execute(f"DROP TABLE IF EXISTS {table.name}")  # ~100 bytes a sample in memory: freed before the next size
    warm = statistics.median(times[1:])
    return Figure("threshold", "", n, warm, None, {"first load s": build + times[0], "warm max ms": 1000 * max(times[1:]), "changes": len(times) - 1})


def stage_sampling(settings, n: int) -> Figure:
    from db.lake import sampling
    from db.store import open_store

    lake = open_store(settings.store)
    t = time.perf_counter()
    sql, params, names = sampling.stratified(lake, by=["category", "time"], per_stratum=50, seed=7)
    rows = sampling.balance(lake, sql, params, names)
    written = sampling.write_selection(lake, "scale-balanced", sql, params, names, 7, "samples", "scale-sampling")
    took = time.perf_counter() - t
    return Figure("sampling", "", n, took, None, {"strata": len(rows), "selected": written})


def stage_snapshot(settings, n: int):
    from bench.synthetic_store import FILTER
    from curation import snapshots
    from curation.filters import FilterConfig
    from db.app import saved_filters
    from db.app.engine import write_engine
    from db.store import open_store

    lake, engine = open_store(settings.store), write_engine(settings.app_url)
    config = FilterConfig.from_dict(saved_filters.get(engine, FILTER).config)
    t = time.perf_counter()
    snap = snapshots.create(lake, engine, name="scale-snap", filter_name=FILTER, config=config, created_by="admin")
    took = time.perf_counter() - t
    return Figure("snapshot", "", n, took, None, {"kept": snap.counts["kept"]}), snap


def stage_export(settings, n: int, snap, out: Path) -> Figure:
    """The export job for one format, its units run here: the snapshot's samples read at its version
    (blobs in S3 fetched in parallel), then built, validated, written, read back and validated again."""
    from jobs.export import ExportJob

    params = ExportJob(snapshot=snap.name, formats=["llava"], out=str(out), force=True).params()
    t = time.perf_counter()
    counts = run_job("export", "cpu", params, settings)
    took = time.perf_counter() - t
    shutil.rmtree(out, ignore_errors=True)
    return Figure("export", "", n, took, counts.get("records"), {"images": counts.get("images")})


def stage_ui(n: int) -> list[Figure]:
    """Each page's 'new data' visit and a click (bench/ui_pages.py, one run each)."""
    from bench.ui_pages import time_page

    out = []
    for page in UI_PAGES:
        r = time_page(page, 1)
        out.append(Figure(f"ui-{page}", "", n, r["new data"] / 1000, None, {"cold ms": r["cold"], "click ms": r["click"], "rerun ms": r["rerun"]}))
        out.append(Figure(f"ui-{page} click", "", n, r["click"] / 1000, None, {}))
    return out


def on_synthetic(settings, n: int, stages: list[str], scratch: Path, add: Callable) -> None:
    """The stages that read a full store, on one synthetic store of ``n`` samples (built in bulk, not timed)."""
    from bench.synthetic_store import build

    build(n)
    if "sampling" in stages:
        add(stage_sampling(settings, n))
    snap = None
    if "snapshot" in stages or "export" in stages:
        fig, snap = stage_snapshot(settings, n)
        if "snapshot" in stages:
            add(fig)
    if "export" in stages:
        add(stage_export(settings, n, snap, scratch / f"export-{n}"))
    if "ui" in stages:
        for fig in stage_ui(n):
            add(fig)


# ---- one run --------------------------------------------------------------------------------------------
def sizes_of(stage: Stage, args) -> tuple[int, ...]:
    if args.sizes and stage.unit == "samples":
        extra = (THRESHOLD_TARGET_AT,) if stage.name == "threshold" and not args.quick and THRESHOLD_TARGET_AT not in args.sizes else ()
        return tuple(args.sizes) + extra
    return stage.quick if args.quick else stage.sizes


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_store(store: str, stages: list[str], args, scratch: Path, s3: S3Server | None, notes: list[str]) -> list[Figure]:
    """Every chosen stage at each of its sizes on fresh stores of one configuration. A stage that fails
    at a size is noted and the run goes on (the table shows what was measured)."""
    figures: list[Figure] = []
    cpu = [s3.cpu_seconds() if s3 is not None else 0.0]  # the S3 server's CPU time at the last figure

    def add(f: Figure) -> None:
        f.store = store
        if s3 is not None:
            f.extra["s3 server cpu s"] = round(s3.cpu_seconds() - cpu[0], 2)
        cpu[0] = s3.cpu_seconds() if s3 is not None else 0.0
        figures.append(f)
        rate = f" ({f.per_second:,.0f}/s)" if f.per_second else ""
        log(f"{store:>9} {f.stage:<22} {f.size:>11,}  {fmt_time(f.seconds)}{rate}")

    def on_fresh(label: str, body: Callable) -> None:
        try:
            with fresh_store(store, scratch, label, s3) as settings:
                body(settings)
        except Exception as exc:  # one failed size must not lose the rest of a long run
            notes.append(f"{store} {label}: FAILED ({exc.__class__.__name__}: {str(exc)[:300]})")
            log(notes[-1])

    if "ingest" in stages:
        sizes = sizes_of(STAGES["ingest"], args)
        src = ingest_inputs(scratch, max(sizes))
        for n in sizes:
            on_fresh(f"ingest-{n}", lambda settings: add(stage_ingest(settings, n, src)))
    if "generate" in stages:
        for n in sizes_of(STAGES["generate"], args):
            on_fresh(f"generate-{n}", lambda settings: add(stage_generate(settings, n)))
    if "threshold" in stages:
        for n in sizes_of(STAGES["threshold"], args):
            if n > 1_000_000 and store != "embedded" and not args.big_everywhere:
                continue  # the warm change reads an in-memory table: the same on either store (see --big-everywhere)
            on_fresh(f"threshold-{n}", lambda settings: add(stage_threshold(settings, n, args.repeats)))
    synthetic = [s for s in ON_SYNTHETIC if s in stages]
    for n in sorted({n for s in synthetic for n in sizes_of(STAGES[s], args)}):
        here = [s for s in synthetic if n in sizes_of(STAGES[s], args)]
        on_fresh(f"synthetic-{n}", lambda settings: on_synthetic(settings, n, here, scratch, add))
    return figures


# ---- the table ------------------------------------------------------------------------------------------
def growth(points: list[tuple[int, float]]) -> float | None:
    """k of time ~ size^k: the least-squares slope of log(time) on log(size)."""
    pts = [(math.log(n), math.log(t)) for n, t in points if t > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def fmt_size(n: int) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % (div // 10) == 0:
            return f"{n / div:g}{suffix}"
    return str(n)


@dataclass
class Row:
    stage: str
    store: str
    figures: list[Figure]
    k: float | None


def rows_of(figures: list[Figure]) -> list[Row]:
    order = list(dict.fromkeys((f.stage, f.store) for f in figures))
    rows = []
    for stage, store in order:
        figs = sorted((f for f in figures if (f.stage, f.store) == (stage, store)), key=lambda f: f.size)
        rows.append(Row(stage, store, figs, growth([(f.size, f.seconds) for f in figs])))
    return rows


def base_stage(stage: str) -> Stage:
    return STAGES["ui" if stage.startswith("ui-") else stage]


def table(rows: list[Row]) -> list[str]:
    lines = [f"{'stage':<20} {'store':<9} {'unit':<8} {'time at each size':<52} {'throughput (last size)':<24} {'k':>5}  note"]
    lines.append("-" * len(lines[0]))
    for r in rows:
        stage = base_stage(r.stage)
        times = "  ".join(f"{fmt_size(f.size)}: {fmt_time(f.seconds)}" for f in r.figures)
        last = r.figures[-1]
        rate = f"{last.per_second:,.0f} {'records' if r.stage == 'export' else 'items'}/s" if last.per_second else ""
        k = f"{r.k:.2f}" if r.k is not None else "-"
        note = stage.note if not r.stage.endswith("click") else "a widget moved (warm)"
        lines.append(f"{r.stage:<20} {r.store:<9} {stage.unit:<8} {times:<52} {rate:<24} {k:>5}  {note}")
    return lines


def verdicts(rows: list[Row], figures: list[Figure], stores: list[str]) -> list[tuple[str, bool | None, str]]:
    """(target, passed or None where this run has no figure for it, the figure)."""
    out: list[tuple[str, bool | None, str]] = []
    big = [f for f in figures if f.stage == "threshold" and f.size == THRESHOLD_TARGET_AT]
    if big:
        for f in big:
            out.append((f"threshold change at {THRESHOLD_TARGET_AT:,} samples <= {THRESHOLD_TARGET_MS:.0f} ms ({f.store})",
                        f.seconds * 1000 <= THRESHOLD_TARGET_MS, f"{f.seconds * 1000:,.0f} ms (warm median of {f.extra['changes']})"))
    else:
        out.append((f"threshold change at {THRESHOLD_TARGET_AT:,} samples <= {THRESHOLD_TARGET_MS:.0f} ms", None, "not measured in this run"))
    for r in rows:
        if r.k is not None:
            out.append((f"k <= {K_TARGET} for {r.stage} ({r.store})", r.k <= K_TARGET, f"k = {r.k:.3f}"))
    for f in (f for f in figures if f.stage == "export"):
        if f.size == max(g.size for g in figures if g.stage == "export" and g.store == f.store):
            out.append((f"export >= {EXPORT_TARGET:,.0f} records/s ({f.store}, {fmt_size(f.size)} samples)", f.per_second >= EXPORT_TARGET,
                        f"{f.per_second:,.0f} records/s"))
    ingest = {s: [f for f in figures if f.stage == "ingest" and f.store == s] for s in STORES}
    if ingest["embedded"] and ingest["pg+s3"]:
        emb = sum(f.records for f in ingest["embedded"]) / sum(f.seconds for f in ingest["embedded"])
        s3 = sum(f.records for f in ingest["pg+s3"]) / sum(f.seconds for f in ingest["pg+s3"])
        server = sum(f.extra.get("s3 server cpu s", 0) for f in ingest["pg+s3"])
        own = {s: sum(f.extra.get("cpu s", 0) for f in ingest[s]) for s in ("embedded", "pg+s3")}
        out.append((f"ingest on pg+s3 within {INGEST_RATIO_TARGET:g}x of embedded", emb / s3 <= INGEST_RATIO_TARGET,
                    f"embedded {emb:,.0f} items/s, pg+s3 {s3:,.0f} items/s: ratio {emb / s3:.2f}x; CPU-s of this process "
                    f"{own['embedded']:,.0f} embedded, {own['pg+s3']:,.0f} pg+s3, and of the S3 server (on the same cores) {server:,.0f}, "
                    f"in {sum(f.seconds for f in ingest['pg+s3']):,.0f} s"))
    elif "ingest" in {f.stage for f in figures}:
        out.append((f"ingest on pg+s3 within {INGEST_RATIO_TARGET:g}x of embedded", None, "needs both stores in the run"))
    return out


def report(figures: list[Figure], stores: list[str], notes: list[str], started: float) -> str:
    rows = rows_of(figures)
    lines = ["", *table(rows), ""]
    lines += [f"{'PASS' if ok else 'FAIL' if ok is not None else 'n/a '}  {name}: {figure}" for name, ok, figure in verdicts(rows, figures, stores)]
    lines += ["", *notes, f"{os.cpu_count()} CPU core(s); load average {os.getloadavg()[0]:.1f} at the end; whole run {(time.perf_counter() - started) / 60:.1f} min"]
    return "\n".join(lines)


# ---- main -----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stores", default=",".join(STORES), help="comma-separated: embedded, pg+s3")
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated: " + ", ".join(STAGES))
    ap.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")], help="sizes in samples for the sample-sized stages (20M is added to threshold)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    ap.add_argument("--repeats", type=int, default=10, help="threshold changes per size (the first is the first load's)")
    ap.add_argument("--big-everywhere", action="store_true", help="the 20M threshold store on every configuration, not only embedded")
    ap.add_argument("--json", type=Path, help="save the figures here")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = ap.parse_args(argv)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for s in args.stores:
        if s not in STORES:
            ap.error(f"unknown store {s!r}: {', '.join(STORES)}")
    for s in args.stages:
        if s not in STAGES:
            ap.error(f"unknown stage {s!r}: {', '.join(STAGES)}")
    return args


def quiet_streamlit() -> None:
    from streamlit import config, logger

    from bench.ui_pages import scan_components_once

    config.get_config_options()  # parsing the config sets the log level again: parsed first, then quietened
    logger.set_log_level("error")  # AppTest warns "no runtime" on every run
    scan_components_once()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="vitpro-scale-"))
    scratch.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if {"ingest", "generate"} & set(args.stages):
        notes.append("ingest, generate: the job's units one after another in this process (workers.runtime.execute_unit, no broker); "
                     "ingest units of 250 rows, generation in the job's default units (250 items with templates); ingest on every core but the S3 server's")
    if "ui" in args.stages:
        quiet_streamlit()
    figures: list[Figure] = []
    s3 = None
    try:
        for store in args.stores:
            if store == "pg+s3":
                if not s3_supported():
                    notes.append("pg+s3: not run: this checkout has no S3 support for the lake data path and blob store (db/storage/blobs.py)")
                    log(notes[-1])
                    continue
                s3 = S3Server(scratch)
            figures += run_store(store, args.stages, args, scratch, s3, notes)
    finally:
        if s3:
            s3.close()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if any(f.stage == "threshold" and f.size > 1_000_000 for f in figures) and "pg+s3" in {f.store for f in figures} and not args.big_everywhere:
        notes.append("threshold at 20M: embedded only (the warm change reads the in-memory stats table either way; --big-everywhere for both)")
    text = report(figures, args.stores, notes, started)
    print(text)
    if args.json:
        rows = rows_of(figures)
        args.json.write_text(json.dumps({
            "figures": [{**asdict(f), "per_second": f.per_second} for f in figures],
            "k": [{"stage": r.stage, "store": r.store, "k": r.k} for r in rows],
            "verdicts": [{"target": n, "pass": ok, "figure": fig} for n, ok, fig in verdicts(rows, figures, args.stores)],
            "notes": notes, "cpus": os.cpu_count(), "run_minutes": round((time.perf_counter() - started) / 60, 2),
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
