"""The dedup job's grouping step at scale (issue 28): what `vitpro dedup images` does once the photos are hashed,
and `--method clip` over stored vectors, on synthetic stores of 100,000 and 1,000,000 images.

    python bench/dedup_job.py                         # 100k and 1M images (hash), 25k and 100k vectors (clip); ~6 minutes
    python bench/dedup_job.py --sizes 20000,100000 --clip-sizes 10000,40000      # quicker

Hash: a store (a temporary VITPRO_HOME, the project's own lake) with N items of one photo each, N distinct image
contents with synthetic 64-bit hashes in image_hashes (bench/near_dups.py's: uniform, 5% near-copies 1-4 bits
away, 1% exact copies) and two template-like samples per item whose texts repeat where the photo is a copy. Timed:
the job's finalize as workers/jobs/dedup.py runs it (read the hashes, group them within the job's bits, find the
samples that say the same thing, write dup_group / dup_size / dup_rank for every image and sample), at each
size, with the growth exponent k = log(t2/t1) / log(n2/n1) (target <= 1.2). The naive way, all pairs of hashes
compared (numpy, in row blocks), is timed at 20,000 and extrapolated as n^2 to the largest size.

Clip: N random unit vectors of 512 dimensions around 64 themes, 5% near-copies (cosine ~0.99); groups_by_cosine
at 0.95, at each size, with k; against all pairs (one matrix product per row block) at the smallest size,
checked equal, and extrapolated as n^2. Hashing the photos themselves (about 1 ms each, bench/near_dups.py) is
per image: measured here on up to 400 real photos of ../shared/data and added (n x per image) for the whole job's
growth, beside the grouping step's own.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

TARGET_K = 1.2
TASKS = ("recognition", "matching")


def build_store(n: int, seed: int = 0):
    """A fresh store under a temporary VITPRO_HOME holding n items, images, hashes and 2n samples."""
    from near_dups import synthetic_hashes

    from config.settings import load_settings
    from db.store import init_store, open_store

    home = tempfile.mkdtemp(prefix="vitpro-dedup-bench-")
    os.environ["VITPRO_HOME"] = home
    settings = load_settings()
    init_store(settings.store)
    lake = open_store(settings.store)
    hashes = synthetic_hashes(n, seed).view(np.int64)
    # which content a copy was made from is not known here: equal texts follow equal hashes (exact copies), which
    # is enough to give the text step real groups to find
    import pyarrow as pa

    table = pa.table({"k": pa.array(np.arange(n, dtype=np.int64)), "h": pa.array(hashes)})

    def body(con):
        con.register("_h", table)
        con.execute("INSERT INTO items (item_id, source_id, external_id, kind, title, n_images, run_id, ingested_at) "
                    "SELECT 'item' || k, 'src', 'ext' || k, 'catalog', 'Product ' || (h % 5000), 1, 'bench', now() FROM _h")
        con.execute("INSERT INTO images (image_id, item_id, position, sha256, blob_path, run_id, ingested_at) "
                    "SELECT 'img' || k, 'item' || k, 0, 'sha' || lpad(CAST(k AS VARCHAR), 9, '0'), 'x.jpg', 'bench', now() FROM _h")
        con.execute("INSERT INTO image_hashes (sha256, method, hash, run_id, created_at) "
                    "SELECT 'sha' || lpad(CAST(k AS VARCHAR), 9, '0'), 'dhash-v1', h, 'bench', now() FROM _h")
        for t, task in enumerate(TASKS):
            con.execute(
                "INSERT INTO samples (sample_id, item_id, task, question, answer, answer_format, image_ids, backend, model_id, prompt_version, run_id, created_at) "
                f"SELECT 's{t}-' || k, 'item' || k, '{task}', 'Which product does the photo show? ({task})', 'It is Product ' || (h % 5000) || '.', "
                "'short', json_array('img' || k), 'template', '', 'bench', 'bench', now() FROM _h")
        con.unregister("_h")

    lake.transaction(body)
    return lake, home


def time_finalize(lake, threshold: int = 12) -> dict[str, float]:
    """The dedup job's finalize, step by step, as workers/jobs/dedup.py runs it."""
    from curation.near_dups import groups_by_hash
    from db.lake import dup_stats
    from db.reads import dup_reads
    from workers.jobs.dedup import components, samples_saying_the_same

    ctx = SimpleNamespace(lake=lake, log=lambda *a, **k: None)
    took = {}
    t = time.perf_counter()
    shas, hashes = dup_reads.hashes(lake, "dhash-v1")
    took["read hashes"] = time.perf_counter() - t
    t = time.perf_counter()
    groups = groups_by_hash(hashes, threshold)
    took["group hashes"] = time.perf_counter() - t
    labels = components(len(shas), groups)
    t = time.perf_counter()
    said, n_said = samples_saying_the_same(ctx, shas, labels)
    took["group samples"] = time.perf_counter() - t
    t = time.perf_counter()
    counts = dup_stats.write_groups(lake, model_id=f"dhash:{threshold}", shas=shas, components=labels, run_id="bench", rank=None, sample_groups=said)
    took["write stats"] = time.perf_counter() - t
    took["total"] = sum(took.values())
    took["groups"], took["sample_groups"], took["images"] = counts["groups"], n_said, counts["images"]
    return took


def hashing_seconds_per_image(limit: int = 400) -> tuple[float, int]:
    """Seconds per image of the job's own hashing (curation.near_dups.hash_file, dhash) on real photos: the grocery set's
    and the ABO listings' in ../shared/data (what a unit does per image, before the grouping)."""
    from curation.near_dups import HashConfig, hash_file

    root = REPO.parent / "shared" / "data"
    photos = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:limit]
    if not photos:
        return float("nan"), 0
    config = HashConfig(method="dhash")
    t = time.perf_counter()
    for p in photos:
        hash_file(p, config)
    return (time.perf_counter() - t) / len(photos), len(photos)


def naive_hash_seconds(n: int, threshold: int = 12, seed: int = 0) -> float:
    from near_dups import naive_groups, synthetic_hashes

    h = synthetic_hashes(n, seed)
    t = time.perf_counter()
    naive_groups(h, threshold)
    return time.perf_counter() - t


def planted_vectors(n: int, dim: int = 512, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    themes = rng.normal(size=(64, dim))
    v = themes[rng.integers(64, size=n)] + rng.normal(size=(n, dim)) * 1.5
    copies = rng.choice(n, n // 20, replace=False)
    v[copies] = v[rng.integers(0, n, size=len(copies))] + rng.normal(size=(len(copies), dim)) * 0.15
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def naive_cosine_groups(v: np.ndarray, min_cosine: float, rows: int = 2048) -> list[list[int]]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = [], []
    for r0 in range(0, len(v), rows):
        i, k = np.nonzero(v[r0:r0 + rows] @ v.T >= min_cosine)
        keep = r0 + i != k
        a.append(r0 + i[keep])
        b.append(k[keep])
    a, b = np.concatenate(a), np.concatenate(b)
    label = connected_components(coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(v), len(v))), directed=False)[1]
    members: dict[int, list[int]] = {}
    for i, lab in enumerate(label.tolist()):
        members.setdefault(lab, []).append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def growth(n1: int, t1: float, n2: int, t2: float) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="images for the hash grouping (two or more)")
    ap.add_argument("--clip-sizes", default="25000,100000", help="vectors for the clip grouping (two or more)")
    ap.add_argument("--naive-size", type=int, default=20000)
    ap.add_argument("--threshold", type=int, default=None, help="bits (default: the dedup job's default)")
    args = ap.parse_args()
    from jobs.dedup import DEFAULT_THRESHOLDS

    threshold = DEFAULT_THRESHOLDS["dhash"] if args.threshold is None else args.threshold
    sizes = [int(x) for x in args.sizes.split(",")]
    clip_sizes = [int(x) for x in args.clip_sizes.split(",")]

    print(f"HASH: the dedup job's finalize (dhash within {threshold} bits), per step", flush=True)
    runs = []
    for n in sizes:
        t = time.perf_counter()
        lake, home = build_store(n)
        built = time.perf_counter() - t
        took = time_finalize(lake, threshold)
        runs.append((n, took))
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in took.items() if k not in ("total", "groups", "sample_groups", "images"))
        print(f"  n={n:>9,}  total {took['total']:7.2f} s  ({steps}); {took['groups']:,} photo groups, {took['sample_groups']:,} sample groups "
              f"(store built in {built:.0f} s)", flush=True)
    naive = naive_hash_seconds(args.naive_size, threshold)
    n_big, big = runs[-1][0], runs[-1][1]
    naive_big = naive * (n_big / args.naive_size) ** 2
    k = growth(runs[0][0], runs[0][1]["total"], n_big, big["total"])
    k_group = growth(runs[0][0], runs[0][1]["group hashes"], n_big, big["group hashes"])
    print(f"  naive all pairs of hashes at {args.naive_size:,}: {naive:.2f} s -> {naive_big:,.0f} s extrapolated (n^2) to {n_big:,}: "
          f"{naive_big / big['total']:,.0f}x the job's whole finalize")
    print(f"  growth k (whole finalize) = {k:.2f}  [{'PASS' if k <= TARGET_K else 'FAIL'} k <= {TARGET_K}]; grouping the hashes alone k = {k_group:.2f}")
    per_image, n_photos = hashing_seconds_per_image()
    if n_photos:
        # the whole job: every photo hashed once (units, linear; one worker process here), then the finalize above
        totals = [(n, n * per_image + took["total"]) for n, took in runs]
        kj = growth(totals[0][0], totals[0][1], totals[-1][0], totals[-1][1])
        print(f"  the whole job (hashing measured on {n_photos} real photos: {per_image * 1000:.2f} ms each, one process; then the finalize): "
              + ", ".join(f"{n:,} images {t:,.0f} s" for n, t in totals)
              + f"; growth k = {kj:.2f}  [{'PASS' if kj <= TARGET_K else 'FAIL'} k <= {TARGET_K}]; the grouping's share at the largest: "
              f"{big['total'] / totals[-1][1]:.0%}")

    from curation.embedding_groups import groups_by_cosine

    print("\nCLIP: groups_by_cosine at 0.95 on 512-d unit vectors (5% near-copies)", flush=True)
    clip_runs = []
    for n in clip_sizes:
        v = planted_vectors(n)
        t = time.perf_counter()
        groups = groups_by_cosine(v, 0.95)
        seconds = time.perf_counter() - t
        clip_runs.append((n, seconds, v, groups))
        print(f"  n={n:>9,}  {seconds:7.2f} s  {len(groups):,} groups", flush=True)
    n0, _, v0, ours0 = clip_runs[0]
    t = time.perf_counter()
    naive0 = naive_cosine_groups(v0, 0.95)
    naive_s = time.perf_counter() - t
    pairs = lambda groups: {(a, b) for g in groups for a in g for b in g if a < b}  # noqa: E731
    found, truth = pairs(ours0), pairs(naive0)
    recall = len(found & truth) / max(1, len(truth))
    n_last, s_last = clip_runs[-1][0], clip_runs[-1][1]
    naive_last = naive_s * (n_last / n0) ** 2
    kc = growth(n0, clip_runs[0][1], n_last, s_last)
    print(f"  all pairs at {n0:,}: {naive_s:.2f} s (pairs found by the cluster search: {recall:.3f} of all pairs' {len(truth):,}, "
          f"none invented: {found <= truth}); extrapolated (n^2) to {n_last:,}: {naive_last:.0f} s, {naive_last / s_last:.1f}x ours")
    print(f"  growth k = {kc:.2f}  [{'PASS' if kc <= TARGET_K else 'FAIL'} k <= {TARGET_K}]")


if __name__ == "__main__":
    main()
