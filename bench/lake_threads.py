"""DuckDB threads per process: the process's share of the cores against DuckDB's one per core.

    python bench/lake_threads.py                     # a synthetic store of 20,000 samples (bench/synthetic_store.py)
    python bench/lake_threads.py --samples 200000 --reps 5

A Lake's DuckDB runs OMP_NUM_THREADS threads where it is set (db/lake/connection.py): a worker sets it to
each of its processes' share of the cores, as the test processes do. Before, every process's DuckDB took a
thread per core. On the same store, in one run, connections alternated, medians of --reps:

  point reads   Inspect's read of one sample (db/reads/browse._one_sample) for --points samples: the many
                small queries of pages, units and tests
  stats table   the filter engine's per-sample stats table of the store (curation.filters.stats_for): one
                large scan, which more threads can help
  two at once   the point reads in two processes at the same time (two workers, or two test processes, on
                one machine): wall time of both

Each line prints share / default: below 1 the share is faster.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _lake(threads: int | None):
    from config.settings import load_settings
    from db.lake.connection import Lake

    s = load_settings()
    return Lake(s.catalog_url, s.data_path, threads=threads)


def _points(lake, ids: list[str]) -> float:
    from db.reads import browse

    t = time.perf_counter()
    for sid in ids:
        browse._one_sample(lake, sid)
    return time.perf_counter() - t


def _stats(lake) -> float:
    from curation.filters import Condition, FilterConfig, stats_for

    config = FilterConfig([Condition.parse("vis_attn >= p25")])
    t = time.perf_counter()
    table = stats_for(lake, config, version=lake.current_version())
    lake.scalar(f"SELECT count(*) FROM ({table.kept_sql(config)})")
    took = time.perf_counter() - t
    table.drop()
    return took


def _points_in_a_process(threads: int | None, ids: list[str], queue) -> None:
    queue.put(_points(_lake(threads), ids))


def _two_at_once(threads: int | None, ids: list[str]) -> float:
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    t = time.perf_counter()
    procs = [ctx.Process(target=_points_in_a_process, args=(threads, ids, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for _ in procs:
        queue.get(timeout=600)
    for p in procs:
        p.join()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from bench.synthetic_store import build, temporary_home

    os.environ.pop("OMP_NUM_THREADS", None)  # each connection's threads are set below, not by the environment
    temporary_home("vitpro-bench-threads-")
    from vitpro.local_workers import openmp_threads

    build(args.samples)
    cores = os.cpu_count() or 1
    share = openmp_threads(2)  # two processes on this machine: two workers, or `make test`
    default, shared = _lake(None), _lake(share)
    ids = [r[0] for r in default.fetchall(f"SELECT DISTINCT sample_id FROM samples ORDER BY hash(sample_id) LIMIT {args.points}")]
    threads = default.scalar("SELECT current_setting('threads')")
    print(f"{args.samples:,} samples, {cores} core(s): DuckDB's default of {threads} thread(s) against {share} "
          f"(the share of two processes); medians of {args.reps}")
    rows = {"point reads": ([], []), "stats table": ([], []), "two at once": ([], [])}
    for _ in range(args.reps):
        for k, (lake, threads) in enumerate(((default, None), (shared, share))):
            rows["point reads"][k].append(_points(lake, ids))
            rows["stats table"][k].append(_stats(lake))
            rows["two at once"][k].append(_two_at_once(threads, ids))
    for label, (before, after) in rows.items():
        b, a = statistics.median(before), statistics.median(after)
        extra = f" ({b / len(ids) * 1000:.1f} -> {a / len(ids) * 1000:.1f} ms a sample)" if label == "point reads" else ""
        print(f"  {label:<12} default {b:7.2f} s   share {a:7.2f} s   share / default {a / b:.2f}{extra}")


if __name__ == "__main__":
    main()
