"""Near-duplicate images (issue 28): accuracy of phash and dhash on real photos, and the grouping's speed.

    python bench/near_dups.py                                  # about two and a half minutes on two cores
    python bench/near_dups.py --originals 100 --sizes 100000,300000 --distances 10   # quicker
    python bench/near_dups.py --photos DIR                     # another folder of photos

Accuracy. The photos: the 1,433 real grocery photos of ../shared/data/grocery-photos (81 products, 3-20
shots of each) and the 12 ABO product photos of ../shared/data/abo-samples; ``--photos`` takes that data
folder, a folder with a photos.csv of the same shape, or any folder of images (product = sub-folder). N
originals drawn among them (seeded) each get six near-duplicates as issue 28 defines them: ``resize`` (50-90%
of the size), ``jpeg`` (re-encoded at quality 50-90), ``crop`` (0-5% off each side, drawn per side),
``tone`` (brightness and contrast each changed by 10-15%, up or down), ``watermark`` (a line of text in a
corner) and ``combined`` (resize, crop, tone, watermark, then JPEG, all drawn as above). Variants are kept
as PNG unless JPEG is the transformation, and hashed from their bytes by curation/near_dups.py's
production path, as the originals are from their files.

Truth: two images are duplicates when they come from the same original, or are byte-identical files
(photos.csv's ``exact_dup_group``: 9 pairs). Different shots of the same product are NOT duplicates: they
are the hard negatives and are counted apart. For each method and threshold t (0..16), over all pairs of
the photos and variants: recall = share of the (original, variant) pairs within t bits; precision = share
of the pairs within t bits that are duplicates. The recommended threshold is the best F1 among those with
recall >= 0.95 and precision >= 0.98 (the issue's target). Then per-transformation recall, the hard
negatives' false-positive rate (pairs of photos of one product), and groups_by_hash's own groups scored
the same way (its groups are connected components: a chain can join more than the pairs do).

Speed. groups_by_hash on synthetic 64-bit hashes at each ``--sizes`` (uniform random hashes; 5% replaced
by copies of others with 1-4 bits flipped, 1% by exact copies), at each ``--distances`` (the recommended
phash threshold among them): time, the growth exponent k = log(t2/t1)/log(n2/n1) between the first and
last size (target <= 1.2), the search plan chosen. Against the naive way (all pairs, numpy-vectorised in
row blocks, then the same connected components), measured at ``--naive-size`` on the same input, checked
equal, and extrapolated (as n^2, said so) to the largest size. Hashing: ms per image of hash_file on the photos.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.near_dups import HashConfig, groups_by_hash, hash_bytes, hash_file, index_plan  # noqa: E402

SHARED_DATA = REPO.parent / "shared" / "data"
METHODS = ("phash", "dhash")
TRANSFORMS = ("resize", "jpeg", "crop", "tone", "watermark", "combined")
THRESHOLDS = range(17)
TARGET_RECALL, TARGET_PRECISION, TARGET_K = 0.95, 0.98, 1.2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
WATERMARKS = ("© shop.example", "SAMPLE", "www.deals-4-u.example", "© 2024 Store")


@dataclass
class Photo:
    path: Path
    product: str
    dup_group: str  # byte-identical files share it; "" for none


# ---- photos -------------------------------------------------------------------------------------------------------------
def load_photos(root: Path) -> list[Photo]:
    if (root / "grocery-photos" / "photos.csv").exists():
        photos = _from_csv(root / "grocery-photos")
        abo = root / "abo-samples" / "images"
        photos += [Photo(p, f"abo-{p.parent.name}", "") for p in sorted(abo.glob("*/*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        return photos
    if (root / "photos.csv").exists():
        return _from_csv(root)
    return [Photo(p, p.parent.name, "") for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]


def _from_csv(folder: Path) -> list[Photo]:
    with open(folder / "photos.csv", newline="") as f:
        return [Photo(folder / row["file"], row["product_id"], row.get("exact_dup_group") or "") for row in csv.DictReader(f)]


# ---- near-duplicates as issue 28 defines them ---------------------------------------------------------------------------
def _encode(image: Image.Image, fmt: str, quality: int = 0) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=quality)
    else:
        image.save(out, "PNG", compress_level=1)  # lossless: only the transformation itself changes the pixels
    return out.getvalue()


def _resize(image: Image.Image, rng: random.Random) -> Image.Image:
    s = rng.uniform(0.5, 0.9)
    return image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), Image.Resampling.LANCZOS)


def _crop(image: Image.Image, rng: random.Random) -> Image.Image:
    w, h = image.size
    left, top, right, bottom = (rng.uniform(0, 0.05) for _ in range(4))
    return image.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


def _tone(image: Image.Image, rng: random.Random) -> Image.Image:
    def factor() -> float:
        return 1 + rng.choice((-1, 1)) * rng.uniform(0.10, 0.15)

    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(factor())).enhance(factor())


def _watermark(image: Image.Image, rng: random.Random) -> Image.Image:
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    size = max(10, round(out.height * rng.uniform(0.04, 0.07)))
    font = ImageFont.load_default(size=size)  # Pillow's own font: no system font needed
    text = rng.choice(WATERMARKS)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font, stroke_width=1)
    margin = round(out.width * 0.02)
    x = margin if rng.random() < 0.5 else max(0, out.width - (x1 - x0) - margin)
    y = margin if rng.random() < 0.5 else max(0, out.height - (y1 - y0) - margin)
    draw.text((x - x0, y - y0), text, font=font, fill=(255, 255, 255), stroke_width=1, stroke_fill=(40, 40, 40))
    return out


def make_variants(image: Image.Image, rng: random.Random) -> dict[str, bytes]:
    image = image.convert("RGB")
    combined = _watermark(_tone(_crop(_resize(image, rng), rng), rng), rng)
    return {
        "resize": _encode(_resize(image, rng), "PNG"),
        "jpeg": _encode(image, "JPEG", rng.randint(50, 90)),
        "crop": _encode(_crop(image, rng), "PNG"),
        "tone": _encode(_tone(image, rng), "PNG"),
        "watermark": _encode(_watermark(image, rng), "PNG"),
        "combined": _encode(combined, "JPEG", rng.randint(50, 90)),
    }


# ---- accuracy -----------------------------------------------------------------------------------------------------------
POS_OV, POS_OTHER, HARD, EASY = range(4)  # pair kinds: (original, its variant); other duplicates; same product; other


def accuracy(photos: list[Photo], n_originals: int, seed: int) -> dict:
    t0 = time.perf_counter()
    hashes = {m: [] for m in METHODS}
    hash_s = {m: 0.0 for m in METHODS}
    for p in photos:
        for m in METHODS:
            t = time.perf_counter()
            hashes[m].append(hash_file(p.path, HashConfig(method=m)))
            hash_s[m] += time.perf_counter() - t
    # One source per photo, byte-identical files sharing the first one's.
    first_of_group: dict[str, int] = {}
    source = [first_of_group.setdefault(p.dup_group, i) if p.dup_group else i for i, p in enumerate(photos)]
    product = [p.product for p in photos]
    kind = ["photo"] * len(photos)
    original = list(range(len(photos)))  # for a variant: the photo it was made from

    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(photos)), min(n_originals, len(photos))))
    for i in chosen:
        with Image.open(photos[i].path) as im:
            variants = make_variants(im, random.Random(f"{seed}-{i}"))
        for name, data in variants.items():
            for m in METHODS:
                hashes[m].append(hash_bytes(data, HashConfig(method=m), name=f"{name} of {photos[i].path.name}"))
            source.append(source[i])
            product.append(product[i])
            kind.append(name)
            original.append(i)
    prep_s = time.perf_counter() - t0

    n = len(source)
    src, prod_codes = np.array(source), np.unique(np.array(product), return_inverse=True)[1]
    kinds, orig = np.array(kind), np.array(original)
    iu, ku = np.triu_indices(n, 1)
    same_source, same_product = src[iu] == src[ku], prod_codes[iu] == prod_codes[ku]
    # (photo i, variant made from i): the positives; the photo always comes first (lower index)
    ov = (kinds[iu] == "photo") & (kinds[ku] != "photo") & (orig[ku] == iu)
    pair_kind = np.where(ov, POS_OV, np.where(same_source, POS_OTHER, np.where(same_product, HARD, EASY)))
    photo_pair = (kinds[iu] == "photo") & (kinds[ku] == "photo")

    out = {"n_photos": len(photos), "n_originals": len(chosen), "n_items": n, "n_pairs": len(iu), "prep_s": prep_s,
           "hash_ms": {m: 1000 * hash_s[m] / len(photos) for m in METHODS}, "methods": {}}
    out["kind_totals"] = np.bincount(pair_kind, minlength=4).tolist()
    out["hard_photo_pairs"] = int(((pair_kind == HARD) & photo_pair).sum())
    for m in METHODS:
        h = np.array(hashes[m], dtype=np.uint64)
        dist = np.bitwise_count(h[iu] ^ h[ku]).astype(np.int64)
        counts = np.bincount(dist * 4 + pair_kind, minlength=65 * 4).reshape(65, 4).cumsum(axis=0)  # [t, kind]: pairs within t
        hard_photo = np.bincount(dist[(pair_kind == HARD) & photo_pair], minlength=65).cumsum()
        rows = []
        for t in THRESHOLDS:
            ov_in, other_in, hard_in, easy_in = counts[t]
            flagged = ov_in + other_in + hard_in + easy_in
            recall = ov_in / out["kind_totals"][POS_OV]
            precision = (ov_in + other_in) / flagged if flagged else 1.0
            rows.append({"t": t, "recall": recall, "recall_all": (ov_in + other_in) / (out["kind_totals"][POS_OV] + out["kind_totals"][POS_OTHER]),
                         "precision": precision, "f1": 2 * recall * precision / (recall + precision) if recall + precision else 0.0,
                         "fp_hard": int(hard_in), "fp_easy": int(easy_in), "hard_photo_fp": int(hard_photo[t])})
        ok = [r for r in rows if r["recall"] >= TARGET_RECALL and r["precision"] >= TARGET_PRECISION]
        best = max(ok or rows, key=lambda r: (r["f1"], -r["t"]))
        t = best["t"]
        ov_dist = {name: dist[ov & (kinds[ku] == name)] for name in TRANSFORMS}
        per_transform = {name: {"recall": float((d <= t).mean()), "median": float(np.median(d)), "p95": float(np.percentile(d, 95)), "max": int(d.max())}
                         for name, d in ov_dist.items()}
        # groups_by_hash's own answer at that threshold, scored over the same pairs
        tg = time.perf_counter()
        groups = groups_by_hash(h.tolist(), t)
        group_s = time.perf_counter() - tg
        label = np.arange(n)
        for g in groups:
            label[g] = g[0]
        together = label[iu] == label[ku]
        tp = int((together & (pair_kind <= POS_OTHER)).sum())
        exact = [i for i, p in enumerate(photos) if p.dup_group]
        exact_pairs = [(i, j) for i in exact for j in exact if i < j and photos[i].dup_group == photos[j].dup_group]
        out["methods"][m] = {
            "rows": rows, "recommended": best, "meets_target": bool(ok), "per_transform": per_transform,
            "groups": {"n": len(groups), "largest": max(map(len, groups), default=0), "seconds": group_s,
                       "recall": int((together & ov).sum()) / out["kind_totals"][POS_OV], "precision": tp / int(together.sum()) if together.any() else 1.0,
                       "hard_fp": int((together & (pair_kind == HARD)).sum()), "easy_fp": int((together & (pair_kind == EASY)).sum())},
            "exact_pairs_equal": sum(hashes[m][i] == hashes[m][j] for i, j in exact_pairs), "exact_pairs": len(exact_pairs),
        }
    return out


# ---- speed --------------------------------------------------------------------------------------------------------------
def synthetic_hashes(n: int, seed: int) -> np.ndarray:
    """Uniform random 64-bit hashes; 5% replaced by copies of others with 1-4 distinct bits flipped, 1% by exact copies."""
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    k = n // 20
    flips = rng.integers(1, 5, size=k)
    bits = np.argsort(rng.random((k, 64)), axis=1)[:, :4]  # 4 distinct bits per row; the first `flips` are used
    used = np.arange(4)[None, :] < flips[:, None]
    mask = np.bitwise_or.reduce(np.where(used, np.uint64(1) << bits.astype(np.uint64), np.uint64(0)), axis=1)
    targets = rng.choice(n, size=k + n // 100, replace=False)
    h[targets[:k]] = h[rng.integers(0, n, size=k)] ^ mask
    h[targets[k:]] = h[rng.integers(0, n, size=n // 100)]
    return h


def naive_groups(h: np.ndarray, d: int, rows: int = 1024) -> list[list[int]]:
    """All pairs, vectorised in row blocks, then connected components: what groups_by_hash avoids."""
    n = len(h)
    a, b = [], []
    for r0 in range(0, n, rows):
        i, k = np.nonzero(np.bitwise_count(h[r0:r0 + rows, None] ^ h[None, :]) <= d)
        keep = r0 + i < k
        a.append(r0 + i[keep])
        b.append(k[keep])
    a, b = np.concatenate(a), np.concatenate(b)
    label = connected_components(coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(n, n)), directed=False)[1]
    members: dict[int, list[int]] = {}
    for i, lab in enumerate(label.tolist()):
        members.setdefault(lab, []).append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def speed(sizes: list[int], distances: list[int], naive_size: int, seed: int) -> dict:
    out = {"runs": [], "naive": []}
    inputs = {n: synthetic_hashes(n, seed) for n in sorted(set(sizes) | {naive_size})}
    for d in distances:
        for n in sizes:
            hashes = inputs[n].tolist()  # the API takes Python ints: their conversion is timed too
            t = time.perf_counter()
            groups = groups_by_hash(hashes, d)
            seconds = time.perf_counter() - t
            plan = index_plan(len(np.unique(inputs[n])), d)
            out["runs"].append({"n": n, "d": d, "seconds": seconds, "groups": len(groups), "plan": plan.describe()})
            print(f"  groups_by_hash  n={n:>9,}  d={d:>2}  {seconds:7.2f} s  {len(groups):>7,} groups  ({plan.describe()})", flush=True)
        h = inputs[naive_size]
        t = time.perf_counter()
        ours = groups_by_hash(h.tolist(), d)
        ours_s = time.perf_counter() - t
        t = time.perf_counter()
        naive = naive_groups(h, d)
        naive_s = time.perf_counter() - t
        out["naive"].append({"n": naive_size, "d": d, "seconds": naive_s, "ours_seconds": ours_s, "equal": ours == naive})
        print(f"  naive all-pairs n={naive_size:>9,}  d={d:>2}  {naive_s:7.2f} s  (groups_by_hash {ours_s:.2f} s, same groups: {ours == naive})", flush=True)
    return out


# ---- report -------------------------------------------------------------------------------------------------------------
def growth(runs: list[dict], d: int) -> tuple[float, float, float, int, int]:
    rs = sorted((r for r in runs if r["d"] == d), key=lambda r: r["n"])
    a, b = rs[0], rs[-1]
    k = math.log(b["seconds"] / a["seconds"]) / math.log(b["n"] / a["n"]) if b["n"] != a["n"] else float("nan")
    return k, a["seconds"], b["seconds"], a["n"], b["n"]


def report(acc: dict, spd: dict | None, recommended_d: int) -> None:
    print(f"\nACCURACY: {acc['n_photos']:,} real photos + {acc['n_originals']} originals x {len(TRANSFORMS)} near-duplicates = {acc['n_items']:,} images, "
          f"{acc['n_pairs']:,} pairs ({acc['prep_s']:.0f} s to make and hash them)")
    tot = acc["kind_totals"]
    print(f"  pairs: {tot[POS_OV]:,} (original, variant) positives; {tot[POS_OTHER]:,} other duplicates (variants of one original, byte-identical files); "
          f"{tot[HARD]:,} hard negatives (same product, different shot; {acc['hard_photo_pairs']:,} of them photo-photo); {tot[EASY]:,} other negatives")
    for m in METHODS:
        r = acc["methods"][m]
        print(f"\n  {m}: threshold (max differing bits) -> recall of (original, variant) pairs, recall of all duplicate pairs, precision over all pairs,"
              " false positives (hard = same product), hard-negative photo pairs flagged")
        print("     t  recall  rec.all  precision     F1   FP hard  FP easy  hard photo pairs flagged")
        for row in r["rows"]:
            mark = " <- recommended" if row["t"] == r["recommended"]["t"] else ""
            print(f"    {row['t']:>2}  {row['recall']:6.3f}  {row['recall_all']:7.3f}  {row['precision']:9.4f}  {row['f1']:6.3f}  {row['fp_hard']:>7,}  {row['fp_easy']:>7,}"
                  f"  {row['hard_photo_fp']:>5,} / {acc['hard_photo_pairs']:,} = {row['hard_photo_fp'] / max(1, acc['hard_photo_pairs']):.4%}{mark}")
        print(f"    byte-identical pairs hashing equal: {r['exact_pairs_equal']} of {r['exact_pairs']}")

    print("\n  Recommended threshold per method (best F1 among t with recall >= 0.95 and precision >= 0.98):")
    for m in METHODS:
        r = acc["methods"][m]
        b, g = r["recommended"], r["groups"]
        verdict = "meets the target" if r["meets_target"] else "NO threshold meets the target; best F1 shown"
        print(f"    {m}: t = {b['t']:>2}  recall {b['recall']:.3f}  precision {b['precision']:.4f}  F1 {b['f1']:.3f}  ({verdict}); hard negatives flagged "
              f"{b['hard_photo_fp']} of {acc['hard_photo_pairs']:,} photo pairs ({b['hard_photo_fp'] / max(1, acc['hard_photo_pairs']):.3%})")
        print(f"           groups_by_hash at t = {b['t']}: {g['n']} groups (largest {g['largest']}), pair recall {g['recall']:.3f}, pair precision {g['precision']:.4f} "
              f"(FP pairs: {g['hard_fp']} hard, {g['easy_fp']} easy; chains can join more than the pairs do), {g['seconds'] * 1000:.0f} ms")

    print("\n  Recall per transformation at each method's recommended threshold, and the distance (bits) original -> variant:")
    print("    transformation   " + "   ".join(f"{m} t={acc['methods'][m]['recommended']['t']:>2}: recall  median  p95  max" for m in METHODS))
    for name in TRANSFORMS:
        cells = []
        for m in METHODS:
            p = acc["methods"][m]["per_transform"][name]
            cells.append(f"{'':>12}{p['recall']:6.3f}  {p['median']:6.1f}  {p['p95']:3.0f}  {p['max']:3d}")
        print(f"    {name:<16}" + "   ".join(cells))
    for m in METHODS:
        pt = acc["methods"][m]["per_transform"]
        hardest = min(pt, key=lambda k: (pt[k]["recall"], -pt[k]["p95"]))
        print(f"    hardest for {m}: {hardest} (recall {pt[hardest]['recall']:.3f}, p95 distance {pt[hardest]['p95']:.0f} bits)")

    print("\nSUMMARY")
    print(f"  {'figure':<58} {'value':>22}  target")
    for m in METHODS:
        b = acc["methods"][m]["recommended"]
        print(f"  {m + ' recommended threshold':<58} {b['t']:>22}")
        print(f"  {m + ' recall / precision there':<58} {b['recall']:>10.3f} / {b['precision']:<9.4f}  >= 0.95 / >= 0.98: "
              f"{'PASS' if acc['methods'][m]['meets_target'] else 'FAIL'}")
        print(f"  {m + ' hard negatives flagged (photo pairs, same product)':<58} {b['hard_photo_fp'] / max(1, acc['hard_photo_pairs']):>22.3%}")
        print(f"  {m + ' hashing, ms per image (hash_file, real photos)':<58} {acc['hash_ms'][m]:>22.2f}")
    if spd:
        for d in sorted({r["d"] for r in spd["runs"]}):
            for r in sorted((r for r in spd["runs"] if r["d"] == d), key=lambda r: r["n"]):
                label = f"groups_by_hash n={r['n']:,} d={d}"
                print(f"  {label:<58} {r['seconds']:>20.2f} s")
            k, _, t2, n1, n2 = growth(spd["runs"], d)
            label = f"growth exponent k, n={n1:,} -> {n2:,}, d={d}" + (" (recommended)" if d == recommended_d else "")
            print(f"  {label:<58} {k:>22.2f}  <= {TARGET_K}: {'PASS' if k <= TARGET_K else 'FAIL'}")
            nv = next(x for x in spd["naive"] if x["d"] == d)
            label = f"naive all-pairs n={nv['n']:,} d={d} (measured, same groups: {nv['equal']})"
            print(f"  {label:<58} {nv['seconds']:>20.2f} s  vs groups_by_hash {nv['ours_seconds']:.2f} s: x{nv['seconds'] / nv['ours_seconds']:.1f}")
            extrapolated = nv["seconds"] * (n2 / nv["n"]) ** 2
            label = f"naive at n={n2:,} d={d}, EXTRAPOLATED as n^2 from n={nv['n']:,}"
            print(f"  {label:<58} {extrapolated:>20.0f} s  vs groups_by_hash measured {t2:.1f} s: x{extrapolated / t2:.0f}")

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=SHARED_DATA, help="the shared data folder, a folder with photos.csv, or a folder of images")
    parser.add_argument("--originals", type=int, default=300, help="photos that get near-duplicates made")
    parser.add_argument("--sizes", default="100000,1000000", help="numbers of synthetic hashes for the speed test")
    parser.add_argument("--distances", default="4,8,10,rec", help="max_distance values timed; 'rec' = the recommended phash threshold")
    parser.add_argument("--naive-size", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    photos = load_photos(args.photos)
    if len(photos) < 2:
        sys.exit(f"no photos found under {args.photos}")
    print(f"Accuracy: {len(photos):,} photos from {args.photos}, {args.originals} originals x {len(TRANSFORMS)} variants ...", flush=True)
    acc = accuracy(photos, args.originals, args.seed)
    rec = acc["methods"]["phash"]["recommended"]["t"]
    spd = None
    if not args.skip_speed:
        distances = sorted({rec if x.strip() == "rec" else int(x) for x in args.distances.split(",")})
        sizes = [int(x) for x in args.sizes.split(",")]
        print(f"Speed: groups_by_hash at n = {', '.join(f'{n:,}' for n in sizes)}, d = {', '.join(map(str, distances))} ...", flush=True)
        spd = speed(sizes, distances, args.naive_size, args.seed)
    report(acc, spd, rec)


if __name__ == "__main__":
    main()
