"""Reading a snapshot's rows at 1M samples, before and after the member list (issue 24, part 6).

    python bench/snapshot_rows.py                      # a synthetic store of 1,000,000 samples (bench/synthetic_store.py)
    python bench/snapshot_rows.py --samples 100000     # smaller
    VITPRO_HOME=var python bench/snapshot_rows.py --existing SNAPSHOT   # a snapshot of an existing store

Before: every consumer rebuilt the snapshot's filter at its DuckLake version (``stats_for`` + ``kept_sql``,
the ids hashed against the record) to learn which samples it holds; the functions below named ``old_*``
are that code as it was. After: the snapshot's member list (``snapshot_members``), read by
``curation.snapshots``. In one run, on the same store and snapshot, medians of --reps:

  ids      the snapshot's (sample_id, task) sorted (``kept``), and its ids alone (``member_ids``: each
           export unit, snapshot_rows, eval_rows)
  rows     the ids, then the first --rows samples with images, OCR text and product (what a reader that
           pages through the snapshot, e.g. a streamed training window, pays for its first window)
  diff     the per-task diff of the store's two snapshots (the Snapshots page, `vitpro snapshot diff`)
  backfill what a snapshot made before lists costs once: the rebuild plus writing its list

``--full`` also times ``snapshot_rows`` of every sample (the training run, the evaluation; minutes at 1M).
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# ---- the old path: the code every reader ran before member lists -------------------------------------
def old_kept(lake, snap) -> list[tuple[str, str]]:
    from curation.filters import FilterConfig, stats_for

    config = FilterConfig.from_dict(snap.filter_config)
    table = stats_for(lake, config, version=snap.lake_version)
    rows = lake.fetchall(f"SELECT sample_id, task FROM ({table.kept_sql(config)}) WHERE keep ORDER BY sample_id")
    if hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest() != snap.counts.get("kept_sha256"):
        raise RuntimeError(f"snapshot {snap.name!r} no longer gives its samples")
    return [(r[0], r[1]) for r in rows]


def old_kept_sql(lake, snap) -> str:
    from curation.filters import FilterConfig, stats_for

    config = FilterConfig.from_dict(snap.filter_config)
    kept_sql = stats_for(lake, config, version=snap.lake_version).kept_sql(config)
    found = lake.scalar(f"SELECT sha256(coalesce(string_agg(sample_id, chr(10) ORDER BY sample_id), '')) FROM ({kept_sql}) WHERE keep")
    if found != snap.counts.get("kept_sha256"):
        raise RuntimeError(f"snapshot {snap.name!r} no longer gives its samples")
    return f"SELECT sample_id, any_value(task) AS task FROM ({kept_sql}) WHERE keep GROUP BY sample_id"


def _diff_of(lake, left: str, right: str) -> list[tuple]:
    return lake.fetchall(
        f"SELECT coalesce(r.task, l.task) AS task, count(*) FILTER (WHERE l.sample_id IS NULL), "
        f"count(*) FILTER (WHERE r.sample_id IS NULL), count(*) FILTER (WHERE l.sample_id IS NOT NULL AND r.sample_id IS NOT NULL) "
        f"FROM ({left}) l FULL OUTER JOIN ({right}) r ON l.sample_id = r.sample_id GROUP BY 1 ORDER BY 1")


def old_diff(lake, a, b) -> dict[str, dict[str, int]]:
    rows = _diff_of(lake, old_kept_sql(lake, a), old_kept_sql(lake, b))
    return dict(sorted((t, {"added": int(x), "removed": int(y), "unchanged": int(z)}) for t, x, y, z in rows))


# ---- timing ---------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], reps: int, digest: Callable[[Any], Any]) -> tuple[float, Any]:
    """Median seconds of ``reps`` calls, and ``digest`` of the last call's result. Results are dropped (and
    collected) between calls: half a million rows kept alive from one side made Python's garbage collector
    walk them during the other side's timing (18 s against 29 s for the same read)."""
    times, kept = [], None
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
        kept = digest(result)
        del result
    return statistics.median(times), kept


def _digest(value: Any) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


def _rows_digest(rows: list[dict[str, Any]]) -> str:
    return _digest([(r["sample_id"], r["task"], r["blob_paths"], r["ocr_texts"]) for r in rows])


def synthetic(n: int) -> Path:
    """A fresh VITPRO_HOME with ``n`` synthetic samples and two snapshots (embedded defaults)."""
    from bench.synthetic_store import build, temporary_home

    home = temporary_home(f"vitpro-bench-snap-{n}-")
    t = time.perf_counter()
    took = build(n)
    print(f"built {n:,} samples in {time.perf_counter() - t:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + f") at {home}",
          flush=True)
    return home


def _unlist(lake, snap) -> None:
    lake.transaction(lambda con: (con.execute("DELETE FROM snapshot_members WHERE snapshot_id = ?", [snap.id]),
                                  con.execute("DELETE FROM snapshot_member_lists WHERE snapshot_id = ?", [snap.id])))


def run(name: str, other: str | None, reps: int, n_rows: int, full: bool) -> list[tuple[str, float, float]]:
    from config.settings import load_settings
    from curation import snapshots
    from db.app.engine import write_engine
    from db.reads import samples_view
    from db.store import open_store

    s = load_settings()
    lake, engine = open_store(s.store), write_engine(s.app_url)
    snap = snapshots.get(engine, name)
    print(f"snapshot {snap.name!r}: {snap.counts['kept']:,} samples at DuckLake version {snap.lake_version}; {os.cpu_count()} CPU(s)", flush=True)
    snapshots.kept(lake, snap)  # listed (backfilled here if the store predates lists), and the list's files read once
    out: list[tuple[str, float, float]] = []

    def compare(label: str, old: Callable[[], Any], new: Callable[[], Any], digest: Callable[[Any], Any] = _digest) -> None:
        t_old, r_old = timed(old, reps, digest)
        t_new, r_new = timed(new, reps, digest)
        if r_old != r_new:
            raise AssertionError(f"{label}: the member list gives another result than the filter")
        out.append((label, t_old, t_new))
        print(f"  {label:<34} before {t_old:8.3f} s   after {t_new:8.3f} s   {t_old / t_new:8.1f}x", flush=True)

    compare("ids with tasks (kept)", lambda: old_kept(lake, snap), lambda: snapshots.kept(lake, snap))
    compare("ids (member_ids)", lambda: [i for i, _ in old_kept(lake, snap)], lambda: snapshots.member_ids(lake, snap))
    compare(f"ids + rows of the first {n_rows:,}",
            lambda: samples_view.samples_with_images(lake, [i for i, _ in old_kept(lake, snap)][:n_rows], version=snap.lake_version),
            lambda: samples_view.samples_with_images(lake, snapshots.member_ids(lake, snap)[:n_rows], version=snap.lake_version), _rows_digest)
    if other:
        b = snapshots.get(engine, other)
        snapshots.kept(lake, b)
        compare(f"diff {snap.name} -> {b.name}", lambda: old_diff(lake, snap, b), lambda: snapshots.diff(lake, snap, b))
    if full:
        compare("snapshot_rows (every sample)",
                lambda: samples_view.samples_with_images(lake, [i for i, _ in old_kept(lake, snap)], version=snap.lake_version),
                lambda: snapshots.snapshot_rows(lake, engine, snap.name), _rows_digest)
    # once, not a median: a snapshot made before lists, listed on its first read
    _unlist(lake, snap)
    t = time.perf_counter()
    snapshots.member_ids(lake, snap)
    print(f"  {'backfill (first read, once)':<34} {time.perf_counter() - t:8.3f} s", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000, help="build a synthetic store of N samples (default 1,000,000)")
    ap.add_argument("--existing", metavar="SNAPSHOT", help="no synthetic store: this snapshot of $VITPRO_HOME's store")
    ap.add_argument("--other", metavar="SNAPSHOT", help="the snapshot to diff against (synthetic store: its second snapshot)")
    ap.add_argument("--rows", type=int, default=10_000, help="samples read with their images and text (default 10,000)")
    ap.add_argument("--reps", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--full", action="store_true", help="also snapshot_rows of every sample, before and after")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic store (its folder is printed)")
    args = ap.parse_args()
    home = None
    if args.existing:
        name, other = args.existing, args.other
    else:
        home = synthetic(args.samples)
        name, other = "bench-snap-1", args.other or "bench-snap-2"
    try:
        rows = run(name, other, args.reps, args.rows, args.full)
    finally:
        if home is not None and not args.keep:
            import shutil

            shutil.rmtree(home.parent, ignore_errors=True)
    print(f"\nmedian of {args.reps}; load average {os.getloadavg()[0]:.1f} at the end (other work on the machine inflates every figure)")
    for label, before, after in rows:
        print(f"{label:<36} {before:8.3f} s -> {after:8.3f} s  ({before / after:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
