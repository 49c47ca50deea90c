"""A synthetic store of N samples for the web app's bench, built in bulk (INSERT ... SELECT over DuckDB's
range() into the lake's own tables through the project's Lake handle), with the shape of a real one:
8 tasks, 20 categories, catalog items and complaints about them (1-3 images each), VisAttnScore (value and
image mass) for most samples, CLIPScore for most items, per-word grounding for a subset, OCR text, a
stratified selection, a saved filter, a pilot of 200, two users, two snapshots and a few jobs.

Image rows point at a few hundred real small JPEGs (shared by many rows, as duplicate photos are), so
Inspect's images and thumbnails load real files. Run it under a temporary ``VITPRO_HOME``.
"""
from __future__ import annotations

import hashlib
import io

TASKS = ("recognition", "damage_detection", "matching", "attribute_extraction", "counting", "condition_packaging", "comparison", "refusal")
YES_NO_TASKS = ("damage_detection", "matching")  # the objective forms: a yes/no label
CATEGORIES = 20
JPEGS = 300
VIS_MODEL, CLIP_MODEL = "/models/bench/qwen2_vl", "/models/bench/clip-vit-b-32"
SAMPLES_PER_ITEM = 4
PASSWORDS = {"admin": "admin-pass-1", "anna": "annotator-pass-1"}
FILTER = "bench-filter"


def temporary_home(prefix: str):
    """A new, empty VITPRO_HOME in a temporary folder, made this process's settings: every other ``VITPRO_*``
    variable is removed, so the store is the embedded default (SQLite catalog, local files). Its path."""
    import os
    import tempfile
    from pathlib import Path

    home = Path(tempfile.mkdtemp(prefix=prefix)) / "var"
    for key in [k for k in os.environ if k.startswith("VITPRO_")]:
        del os.environ[key]
    os.environ["VITPRO_HOME"] = str(home)
    return home


def _jpegs(blobs, px: int = 96) -> list[tuple[int, str, str]]:
    """(k, blob path relative to the blob root, sha256) of JPEGS real images of ``px`` pixels a side (small by
    default; a catalog photo's size for the training bench), put in the blob store ``blobs`` (db/storage/blobs.py:
    a folder, or S3)."""
    from PIL import Image, ImageDraw

    out = []
    for k in range(JPEGS):
        img = Image.new("RGB", (px, px), ((37 * k) % 256, (91 * k) % 256, (151 * k) % 256))
        ImageDraw.Draw(img).text((8, 40), f"SKU {k}", fill=(255, 255, 255))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=80)
        data = buf.getvalue()
        blobs.put(f"bench/{k}.jpg", data)
        out.append((k, f"bench/{k}.jpg", hashlib.sha256(data).hexdigest()))
    return out


def _lake_rows(lake, n: int, jpegs: list[tuple[int, str, str]], *, items_only: bool = False) -> None:
    """Every lake table's rows, one INSERT ... SELECT each, in one transaction; ``items_only``: the
    sources, items, images and OCR text only (a store to generate samples on)."""
    import pyarrow as pa

    items = max(1, -(-n // SAMPLES_PER_ITEM))
    catalog = max(1, int(items * 0.7))  # the rest are complaints about a catalog product
    tasks = "[" + ", ".join(f"'{t}'" for t in TASKS) + "]"
    yes_no = "[" + ", ".join(f"'{t}'" for t in YES_NO_TASKS) + "]"
    jpeg_table = pa.table({"k": [j[0] for j in jpegs], "blob_path": [j[1] for j in jpegs], "sha256": [j[2] for j in jpegs]})
    item_id = "substr(md5('item' || CAST({} AS VARCHAR)), 1, 24)".format
    image_id = "substr(md5('img' || CAST({} AS VARCHAR) || '-' || CAST({} AS VARCHAR)), 1, 24)".format

    def body(con):
        con.register("_bench_jpegs", jpeg_table)
        con.execute("SELECT setseed(0.42)")
        con.execute("INSERT INTO sources (source_id, name, uri, format, item_kind, redacted, created_at) "
                    "VALUES ('bench-src', 'bench', 'synthetic', 'csv', 'catalog', TRUE, now())")
        # items: catalog products P<j>, then complaints about product (j * 7919) % catalog
        con.execute(
            "INSERT INTO items (item_id, source_id, external_id, row_number, kind, feedback_type, product_ref, title, description, brand, "
            "  category, attributes, feedback_text, region, event_time, language, n_images, run_id, ingested_at) "
            f"SELECT {item_id('j')}, 'bench-src', 'P' || CAST(j AS VARCHAR), j + 1, kind, "
            "  CASE WHEN kind = 'feedback' THEN 'review' END, "
            "  CASE WHEN kind = 'feedback' THEN 'P' || CAST((j * 7919) % ? AS VARCHAR) END, "
            "  CASE WHEN kind = 'catalog' THEN 'Brand' || CAST(j % 150 AS VARCHAR) || ' item ' || CAST(j AS VARCHAR) END, "
            "  'A product description of item ' || CAST(j AS VARCHAR), 'Brand' || CAST(j % 150 AS VARCHAR), "
            # a skewed category mix: category c gets a share falling with c
            "  CASE WHEN kind = 'catalog' THEN 'category-' || lpad(CAST(CAST(floor(? * pow(random(), 1.6)) AS INTEGER) AS VARCHAR), 2, '0') END, "
            "  to_json(map(['colour', 'size'], ['colour' || CAST(j % 12 AS VARCHAR), 'size' || CAST(j % 5 AS VARCHAR)])), "
            "  CASE WHEN kind = 'feedback' THEN 'the box arrived crushed, item ' || CAST(j AS VARCHAR) END, 'EU', "
            "  TIMESTAMPTZ '2024-01-01' + to_seconds(j * 31), 'en', 1 + j % 3, 'bench', now() "
            "FROM (SELECT range AS j, CASE WHEN range < ? THEN 'catalog' ELSE 'feedback' END AS kind FROM range(?))",
            [catalog, CATEGORIES, catalog, items])
        con.execute(
            "INSERT INTO images (image_id, item_id, position, source_ref, sha256, width, height, format, n_bytes, blob_path, run_id, ingested_at) "
            f"SELECT {image_id('j', 'p')}, {item_id('j')}, p, b.blob_path, b.sha256, 96, 96, 'JPEG', 2000, b.blob_path, 'bench', now() "
            "FROM (SELECT range AS j FROM range(?)) t, LATERAL (SELECT unnest(range(1 + j % 3)) AS p) u "
            "JOIN _bench_jpegs b ON b.k = (j * 31 + p * 7) % ?",
            [items, JPEGS])
        con.execute(
            "INSERT INTO ocr (sha256, engine, text, n_boxes, mean_confidence, run_id, created_at) "
            "SELECT sha256, 'bench-ocr', CASE WHEN k % 3 = 0 THEN '' ELSE 'FRAGILE handle with care lot ' || CAST(k AS VARCHAR) END, "
            "  CASE WHEN k % 3 = 0 THEN 0 ELSE 2 END, 0.9, 'bench', now() FROM _bench_jpegs")
        if items_only:
            con.unregister("_bench_jpegs")
            return
        # samples: SAMPLES_PER_ITEM per item, tasks round-robin; yes/no tasks, a stock refusal, repeated
        # short answers (a repetition report with something to show) and distinct long ones
        con.execute(
            "INSERT INTO samples (sample_id, item_id, task, question, answer, answer_format, image_ids, label, backend, model_id, "
            "  prompt_version, lineage, run_id, created_at) "
            f"SELECT substr(md5('sample' || CAST(i AS VARCHAR)), 1, 24), {item_id('j')}, task, "
            "  'Question about item ' || CAST(j AS VARCHAR) || ' for ' || task || '?', "
            "  CASE WHEN list_contains(" + yes_no + ", task) THEN CASE WHEN r < 0.6 THEN 'Yes' ELSE 'No' END "
            "       WHEN task = 'refusal' THEN 'Unanswerable: the image does not show this.' "
            "       WHEN task = 'counting' THEN CAST(1 + j % 6 AS VARCHAR) "
            "       ELSE 'Brand' || CAST(j % 150 AS VARCHAR) || ' in colour' || CAST(j % 12 AS VARCHAR) || ', size' || CAST(j % 5 AS VARCHAR) || ', as shown' END, "
            "  CASE WHEN list_contains(" + yes_no + ", task) THEN 'yes_no' ELSE 'short' END, "
            f"  to_json(list_transform(range(1 + j % 3), p -> {image_id('j', 'p')})), "
            "  CASE WHEN list_contains(" + yes_no + ", task) THEN CASE WHEN r < 0.6 THEN 'yes' ELSE 'no' END END, "
            "  CASE WHEN i % 10 = 0 THEN 'openai' ELSE 'template' END, CASE WHEN i % 10 = 0 THEN 'gpt-4o-mini' ELSE '' END, 'pv1', "
            "  to_json({'source': 'bench'}), 'bench', TIMESTAMPTZ '2024-06-01' + to_seconds(i) "
            f"FROM (SELECT range AS i, range // {SAMPLES_PER_ITEM} AS j, {tasks}[1 + (range + range // {SAMPLES_PER_ITEM}) % {len(TASKS)}] AS task, random() AS r FROM range(?))",
            [n])
        # VisAttnScore: 85% scored, 7% unscorable (NULL), the rest never scored; image mass beside it
        con.execute(
            "INSERT INTO scores (subject_kind, subject_id, metric, model_id, segment, value, flags, run_id, created_at) "
            "SELECT 'sample', sid, m.metric, ?, 'answer', CASE WHEN u < 0.07 THEN NULL WHEN m.metric = 'vis_attn' THEN 0.2 * v ELSE v END, "
            "  NULL, 'bench', now() "
            "FROM (SELECT substr(md5('sample' || CAST(range AS VARCHAR)), 1, 24) AS sid, random() AS u, random() AS v FROM range(?)) "
            "CROSS JOIN (VALUES ('vis_attn'), ('vis_attn_mass')) m(metric) WHERE u < 0.92",
            [VIS_MODEL, n])
        con.execute(
            "INSERT INTO scores (subject_kind, subject_id, metric, model_id, segment, value, flags, run_id, created_at) "
            f"SELECT 'item', {item_id('range')}, 'clip_score', ?, '', 10 + 30 * random(), NULL, 'bench', now() FROM range(?) WHERE random() < 0.95",
            [CLIP_MODEL, items])
        # per-word grounding (answer and question) for a subset of the scored samples
        con.execute(
            "INSERT INTO token_scores (subject_kind, subject_id, model_id, segment, tokens, token_ids, scores, mass, words, word_scores, positions, run_id, created_at) "
            "SELECT 'sample', x.sample_id, ?, seg, to_json(list_transform(w, t -> '\u2581' || t)), to_json(range(len(w))), "
            "  to_json(sc), to_json(sc), to_json(w), to_json(sc), '{}', 'bench', now() "
            "FROM (SELECT sample_id, question, answer FROM samples WHERE hash(sample_id) % 50 = 0) x "
            "JOIN scores s ON s.subject_id = x.sample_id AND s.metric = 'vis_attn' AND s.value IS NOT NULL, "
            "LATERAL (SELECT unnest(['answer', 'question']) AS seg) g, "
            "LATERAL (SELECT string_split(CASE WHEN seg = 'answer' THEN x.answer ELSE x.question END, ' ') AS w) ws, "
            "LATERAL (SELECT list_transform(w, t -> round(0.2 * random(), 6)) AS sc) scs",
            [VIS_MODEL])
        con.execute(
            "INSERT INTO selections (name, subject_kind, subject_id, stratum, seed, run_id, created_at) "
            "SELECT 'bench-strat', 'sample', x.sample_id, to_json({'task': x.task}), 0, 'bench', now() "
            "FROM samples x WHERE hash(x.sample_id) % 20 = 0")
        con.unregister("_bench_jpegs")

    lake.transaction(body)


def build_items(n_items: int) -> None:
    """The store of ``VITPRO_HOME`` with ``n_items`` items and their images, no samples (bench/scale.py's
    generation stage)."""
    from config.settings import load_settings
    from db.storage.blobs import open_blobs
    from db.store import open_store

    s = load_settings()
    _lake_rows(open_store(s.store), n_items * SAMPLES_PER_ITEM, _jpegs(open_blobs(s)), items_only=True)


def build(n: int, photo_px: int = 96) -> dict[str, float]:
    """Build the store of ``VITPRO_HOME`` with ``n`` samples (photos of ``photo_px`` a side); returns seconds per step."""
    import time

    from config.settings import load_settings
    from curation import snapshots
    from curation.filters import Condition, FilterConfig, resolve
    from db.app import jobs, pilots, saved_filters, users
    from db.app.engine import write_engine
    from db.storage.blobs import open_blobs
    from db.store import open_store

    s = load_settings()
    took: dict[str, float] = {}
    t = time.perf_counter()
    lake = open_store(s.store)
    engine = write_engine(s.app_url)
    _lake_rows(lake, n, _jpegs(open_blobs(s), photo_px))
    took["lake rows"] = time.perf_counter() - t
    t = time.perf_counter()
    users.add(engine, "admin", PASSWORDS["admin"], "admin")
    users.add(engine, "anna", PASSWORDS["anna"], "annotator")
    config = FilterConfig([Condition.parse("vis_attn >= p25"), Condition.parse("clip_score >= p20 or missing")])
    config = resolve(lake, config)
    saved_filters.save(engine, FILTER, config.to_dict(), "admin")
    pilots.draw_and_create(lake, engine, name="bench-pilot", size=200, seed=0, vis_model=VIS_MODEL, clip_model=CLIP_MODEL, created_by="admin")
    for name in ("bench-snap-1", "bench-snap-2"):
        snapshots.create(lake, engine, name=name, filter_name=FILTER, config=FilterConfig.from_dict(config.to_dict()), created_by="admin")
    for kind, queue in (("ingest", "cpu"), ("generate", "cpu"), ("score", "gpu"), ("export", "cpu")):
        jobs.create_job(engine, kind=kind, queue=queue, params={"bench": True}, launched_by="admin")
    took["app rows"] = time.perf_counter() - t
    return took
