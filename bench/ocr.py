"""OCR engines and settings against text we know: images/s per process and characters right.

    python bench/ocr.py              # every engine and setting below (about 5 minutes on 2 cores)
    python bench/ocr.py --quick      # the defaults of each engine only

Three sets of photos:
  ABO 1024  the 12 real ABO product photos in ../shared/data/abo-samples (long side 1024 px); what is
            printed on each was transcribed by eye into bench/ocr_truth.json (bags, bulbs, a vitamin jar and
            its dense multilingual labels; one photo has no text at all)
  ABO 400   the same photos scaled to a long side of 400 px (catalog thumbnails), same truth
  demo 512  photos the demo draws (vitpro/demo_data.py: brand, product name and size on a package), the
            truth is what was drawn

Scores per photo, averaged over a set:
  chars     1 - edit distance / longer length, between the truth and the reading, both lower-cased with
            spaces collapsed and their lines sorted (engines read columns in different orders)
  words     F1 of the words (letters and digits) found: glued words ("DARKCHOCOLATE") count as misses
  junk      share of the lines read that hold no word of the truth (read off textures, or illegible print)
Speed: photos per second read by one process (decoding included, models loaded before the clock), and
for the chosen default two processes at once as a worker on 2 cores runs them.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ABO = REPO.parent / "shared" / "data" / "abo-samples"
TRUTH = Path(__file__).with_name("ocr_truth.json")


# ---- scores ---------------------------------------------------------------------------------------------
def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one numpy row at a time (the labels hold ~3,000 characters)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    codes = np.array([ord(c) for c in b])
    cols = np.arange(len(b) + 1)
    prev = cols.copy()
    for i, ch in enumerate(a, 1):
        cur = np.empty_like(prev)
        cur[0] = i
        cur[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (codes != ord(ch)))
        # insertions: cur[j] = min over k <= j of cur[k] + (j - k)
        prev = np.minimum.accumulate(cur - cols) + cols
    return int(prev[-1])


def _lines(text: str) -> str:
    lines = (" ".join(line.split()).casefold() for line in text.split("\n"))
    return "\n".join(sorted(line for line in lines if line))


def char_accuracy(truth: str, read: str) -> float:
    t, r = _lines(truth), _lines(read)
    if not t and not r:
        return 1.0
    return max(0.0, 1.0 - edit_distance(t, r) / max(len(t), len(r)))


def junk_lines(truth: str, read: str) -> tuple[int, int]:
    """(lines sharing no word with the truth, lines) of a reading: what was read off textures."""
    words = set(re.findall(r"\w+", truth.casefold()))
    lines = [line for line in read.split("\n") if line.strip()]
    return sum(not any(w in words for w in re.findall(r"\w+", line.casefold())) for line in lines), len(lines)


def word_f1(truth: str, read: str) -> float:
    t, r = Counter(re.findall(r"\w+", truth.casefold())), Counter(re.findall(r"\w+", read.casefold()))
    if not t and not r:
        return 1.0
    hit = sum((t & r).values())
    if not hit:
        return 0.0
    precision, recall = hit / sum(r.values()), hit / sum(t.values())
    return 2 * precision * recall / (precision + recall)


# ---- photo sets -----------------------------------------------------------------------------------------
def abo_photos(long_side: int | None = None) -> list[tuple[str, bytes, str]]:
    from PIL import Image

    truth = json.loads(TRUTH.read_text())
    out = []
    for key in sorted(k for k in truth if not k.startswith("_")):
        data = (ABO / "images" / key).read_bytes()
        if long_side:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                scale = long_side / max(im.size)
                im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=90)
                data = buf.getvalue()
        out.append((key, data, truth[key]))
    return out


def demo_photos(n: int = 16, seed: int = 7) -> list[tuple[str, bytes, str]]:
    """Undamaged demo packages; the truth is what draw_product prints (brand in capitals, the name
    wrapped at 16 characters, the size)."""
    from vitpro import demo_data

    out = []
    for p in demo_data.make_products(n, random.Random(seed)):
        buf = io.BytesIO()
        demo_data.draw_product(p, "none", random.Random(f"{seed}-{p.product_id}")).save(buf, format="JPEG", quality=90)
        truth = "\n".join([p.brand.upper(), *demo_data._wrap(p.name, 16), p.size])
        out.append((p.product_id, buf.getvalue(), truth))
    return out


# ---- runs -----------------------------------------------------------------------------------------------
class _BeforeEngine:
    """The reading as it was before this bench (rapidocr's defaults, its own 0.5 score cut): the baseline."""

    def __init__(self):
        from rapidocr import RapidOCR

        self._engine = RapidOCR(params={"Global.font_path": "unused-no-drawing.ttf", "Global.log_level": "warning"})

    def read(self, data: bytes):
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            array = np.asarray(im.convert("RGB"))[:, :, ::-1].copy()
        out = self._engine(array)
        return type("R", (), {"text": "\n".join(out.txts or ())})()


def run(engine, photos) -> dict:
    engine.read(photos[0][1])  # models loaded outside the clock
    texts, seconds = {}, 0.0
    for key, data, _ in photos:
        start = time.perf_counter()
        texts[key] = engine.read(data).text
        seconds += time.perf_counter() - start
    junk = [junk_lines(truth, texts[key]) for key, _, truth in photos]
    return {
        "images_per_s": len(photos) / seconds,
        "chars": float(np.mean([char_accuracy(truth, texts[key]) for key, _, truth in photos])),
        "words": float(np.mean([word_f1(truth, texts[key]) for key, _, truth in photos])),
        "junk": sum(j for j, _ in junk) / max(1, sum(n for _, n in junk)),
        "texts": texts,
    }


_worker_engine = None
_worker_photos: list = []


def _init_worker(settings, photos, barrier) -> None:
    global _worker_engine, _worker_photos
    from curation.ocr import get_engine

    _worker_engine, _worker_photos = get_engine(settings), photos
    _worker_engine.read(photos[0][1])  # models loaded before the clock
    barrier.wait()  # both processes ready


def _read_one(i: int) -> None:
    _worker_engine.read(_worker_photos[i][1])


def two_processes(settings, photos) -> float:
    """Images/s of two processes taking the set's photos one at a time (a worker's pool on 2 cores)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    with ctx.Pool(2, initializer=_init_worker, initargs=(settings, photos, barrier)) as pool:
        pool.map(abs, range(2))  # returns once both have passed the barrier
        start = time.perf_counter()
        pool.map(_read_one, range(len(photos)), chunksize=1)
        return len(photos) / (time.perf_counter() - start)


def grid(quick: bool):
    """(row name, engine settings, "before" or ("no space bias", settings)) in table order."""
    from curation.ocr import ENGINES, OcrSettings

    rows = []
    for engine, sides in (("rapidocr", (480, 736, 960)), ("tesseract", (736, 1024, 2048))):
        spec = ENGINES[engine]
        if quick:
            sides = (spec.default_side,)
        for side in sides:
            for threads in (1, 2) if not quick else (1,):
                rows.append((f"{engine} side {side}, {threads} thread(s)", OcrSettings(engine, side=side, threads=threads)))
        if not quick:
            for conf in sorted({0.0, 0.5, 0.7} - {spec.default_min_confidence}):
                rows.append((f"{engine} side {spec.default_side}, min confidence {conf}", OcrSettings(engine, min_confidence=conf)))
        if engine == "rapidocr" and not quick:
            rows.append((f"rapidocr side {spec.default_side}, no space bias", ("no space bias", OcrSettings(engine))))
            rows.append(("rapidocr as before (r1: its defaults)", "before"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="each engine's defaults only")
    parser.add_argument("--json", type=Path, help="also write every figure and reading here")
    args = parser.parse_args()

    import curation.ocr as ocr

    sets = {"ABO 1024": abo_photos(), "ABO 400": abo_photos(400), "demo 512": demo_photos()}
    print(f"machine: {os.cpu_count()} CPU core(s); photos: " + ", ".join(f"{name} {len(p)}" for name, p in sets.items()))
    print(f"{'engine and setting':44} " + " ".join(f"{name + ' img/s':>13} {'chars':>5} {'words':>5} {'junk':>4}" for name in sets))
    results, bias = {}, ocr.SPACE_BIAS
    for name, settings in grid(args.quick):
        row = {}
        for set_name, photos in sets.items():
            if settings == "before":
                engine = _BeforeEngine()
            elif isinstance(settings, tuple):  # the same reading without weighting the space class
                ocr.SPACE_BIAS, engine = 1.0, ocr.RapidOcrEngine(settings[1].resolved())
            else:
                ocr.SPACE_BIAS, engine = bias, ocr.get_engine(settings)
            row[set_name] = run(engine, photos)
        ocr.SPACE_BIAS = bias
        results[name] = row
        print(f"{name:44} " + " ".join(f"{r['images_per_s']:13.2f} {r['chars']:5.2f} {r['words']:5.2f} {r['junk']:4.2f}" for r in row.values()), flush=True)

    default = ocr.OcrSettings().resolved()
    name = f"{default.engine} side {default.side}, {default.threads} thread(s)"
    print(f"\ndefault: {ocr.engine_label(default)} (engine {default.engine}, side {default.side}, threads {default.threads}, "
          f"min confidence {default.min_confidence})")
    for set_name, photos in sets.items():
        r = results[name][set_name]
        both = two_processes(default, photos)
        results[name][set_name]["two_processes_images_per_s"] = both
        print(f"  {set_name:9} {r['images_per_s']:6.2f} img/s per process, {both:6.2f} img/s with 2 processes; "
              f"chars {r['chars']:.2f}, words {r['words']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
