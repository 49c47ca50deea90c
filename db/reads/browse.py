"""Reads behind the web app's Overview and Inspect pages: SQL aggregates in DuckDB, a page of rows at a
time (never the whole table into pandas), one sample's full record with its scores, percentiles and
per-token grounding."""
from __future__ import annotations

import json
from typing import Any

from db.lake.connection import Lake
from db.storage.blobs import as_blobs

from .samples_view import CATEGORY, first_samples, products_sql

ORDERS = {
    # the default: scored samples first (a fresh store has many samples no VLM has scored yet; opening on
    # one of them shows no grounding at all), newest first within each group
    "scored first, newest": "(v.value IS NULL), x.created_at DESC, x.sample_id",
    "newest": "x.created_at DESC, x.sample_id",
    "VisAttnScore, lowest first": "v.value ASC NULLS LAST, x.sample_id",
    "VisAttnScore, highest first": "v.value DESC NULLS LAST, x.sample_id",
    "CLIPScore, lowest first": "c.value ASC NULLS LAST, x.sample_id",
    "CLIPScore, highest first": "c.value DESC NULLS LAST, x.sample_id",
}


def demo_scores(lake: Lake) -> int:
    """Scores written by demo (tiny, random) models: the app shows a banner while any are on screen."""
    return int(lake.scalar("SELECT count(*) FROM scores WHERE coalesce(TRY_CAST(flags->>'demo_model' AS BOOLEAN), FALSE)") or 0)


def funnel(lake: Lake) -> list[tuple[str, int]]:
    """Raw pairs to scored samples, one count per stage (kept and snapshotted are added by the caller,
    which knows the filter and snapshot)."""
    row = lake.fetchone(
        "SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM items WHERE n_images > 0), "
        "(SELECT count(DISTINCT item_id) FROM samples), (SELECT count(*) FROM samples), "
        "(SELECT count(DISTINCT subject_id) FROM selections WHERE subject_kind = 'sample'), "
        "(SELECT count(DISTINCT subject_id) FROM scores WHERE subject_kind = 'sample' AND metric = 'vis_attn' AND value IS NOT NULL)"
    )
    names = ("image-text pairs ingested", "with a usable image", "items with generated samples", "samples generated",
             "samples in a stratified selection", "samples with VisAttnScore")
    return list(zip(names, (int(v or 0) for v in row)))


def per_task_category(lake: Lake) -> list[dict[str, Any]]:
    """Samples and scored samples per (task, category)."""
    rows = lake.fetchall(
        f"WITH products AS {products_sql()} "
        f"SELECT x.task, {CATEGORY} AS category, count(*) AS samples, "
        "count(*) FILTER (WHERE EXISTS (SELECT 1 FROM scores v WHERE v.subject_kind = 'sample' AND v.subject_id = x.sample_id "
        "  AND v.metric = 'vis_attn' AND v.value IS NOT NULL)) AS scored "
        "FROM samples x JOIN items i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref "
        "GROUP BY ALL ORDER BY 1, 2"
    )
    return [dict(zip(("task", "category", "samples", "scored"), r)) for r in rows]


def facets(lake: Lake) -> dict[str, list[str]]:
    tasks = [t for (t,) in lake.fetchall("SELECT DISTINCT task FROM samples ORDER BY 1")]
    cats = [c for (c,) in lake.fetchall(
        f"WITH products AS {products_sql()} "
        f"SELECT DISTINCT {CATEGORY} FROM samples x JOIN items i USING (item_id) "
        "LEFT JOIN products p ON p.external_id = i.product_ref ORDER BY 1")]
    return {"task": tasks, "category": cats}


def _score_join(alias: str, kind: str, metric: str, model: str | None, segment: str, key: str) -> tuple[str, list[Any]]:
    if not model:
        return f"LEFT JOIN (SELECT NULL AS subject_id, CAST(NULL AS DOUBLE) AS value) {alias} ON FALSE", []
    return (f"LEFT JOIN (SELECT subject_id, any_value(value) AS value FROM scores WHERE subject_kind = ? AND metric = ? AND model_id = ? "
            f"AND segment = ? GROUP BY subject_id) {alias} ON {alias}.subject_id = {key}", [kind, metric, model, segment])


# What "Text contains" searches: the sample's own text, its item's text and the OCR text of the item's
# images. The OCR and item matches are found once per query as a set of item ids (one scan of each table,
# hash-joined), not tested row by row.
SEARCH_ITEM_TEXT = ("coalesce(title, '') || ' ' || coalesce(description, '') || ' ' || coalesce(brand, '') || ' ' || coalesce(feedback_text, '') || ' ' "
                    "|| coalesce(CAST(attributes AS VARCHAR), '')")


def _search(text: str) -> tuple[str, list[Any]]:
    """Text contains ``text``, literally: ``%`` and ``_`` (LIKE's wildcards) and the escape character
    itself match only themselves ("100%" finds "100%", not "1000")."""
    literal = text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = f"%{literal}%"
    esc = "ESCAPE '\\'"
    return (f"(x.question ILIKE ? {esc} OR x.answer ILIKE ? {esc} OR x.item_id IN ("
            f"SELECT item_id FROM items WHERE {SEARCH_ITEM_TEXT} ILIKE ? {esc} "
            f"UNION SELECT im.item_id FROM images im JOIN ocr o ON o.sha256 = im.sha256 WHERE o.text ILIKE ? {esc}))"), [like] * 4


def browse(lake: Lake, *, vis_model: str | None, clip_model: str | None, tasks: list[str] = (), categories: list[str] = (),
           text: str = "", order: str = "scored first, newest", limit: int = 50, offset: int = 0, segment: str = "answer",
           scored_only: bool = False, vis_range: tuple[float | None, float | None] | None = None) -> tuple[int, list[dict[str, Any]]]:
    """(matching samples, one page of them) with their two scores. ``limit=0`` counts only. ``scored_only``:
    only samples with a VisAttnScore from ``vis_model``; ``vis_range``: (lowest, highest) VisAttnScore kept."""
    vjoin, vparams = _score_join("v", "sample", "vis_attn", vis_model, segment, "x.sample_id")
    cjoin, cparams = _score_join("c", "item", "clip_score", clip_model, "", "x.item_id")
    where, wparams = ["TRUE"], []
    if tasks:
        where.append(f"x.task IN ({', '.join('?' for _ in tasks)})")
        wparams += list(tasks)
    if categories:
        where.append(f"{CATEGORY} IN ({', '.join('?' for _ in categories)})")
        wparams += list(categories)
    if text.strip():
        clause, cparams_ = _search(text)
        where.append(clause)
        wparams += cparams_
    if scored_only:
        where.append("v.value IS NOT NULL")
    lo, hi = vis_range or (None, None)
    if lo is not None:
        where.append("v.value >= ?")
        wparams.append(float(lo))
    if hi is not None:
        where.append("v.value <= ?")
        wparams.append(float(hi))
    base = (
        f"WITH products AS {products_sql()}, "
        f"x AS {first_samples()} "
        f"SELECT x.sample_id, x.task, {CATEGORY} AS category, x.question, x.answer, v.value AS vis, c.value AS clip "
        f"FROM x JOIN items i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref {vjoin} {cjoin} "
        f"WHERE {' AND '.join(where)}"
    )
    params = vparams + cparams + wparams
    total = int(lake.scalar(f"SELECT count(*) FROM ({base})", params) or 0)
    if limit <= 0:
        return total, []
    rows = lake.fetchall(f"{base} ORDER BY {ORDERS.get(order, ORDERS['scored first, newest'])} LIMIT ? OFFSET ?", params + [int(limit), int(offset)])
    cols = ("sample_id", "task", "category", "question", "answer", "vis_attn", "clip_score")
    return total, [dict(zip(cols, r)) for r in rows]


def percentile(lake: Lake, *, kind: str, metric: str, model: str, segment: str, value: float | None) -> float | None:
    """Share (0-100) of the scored subjects below ``value``: where it stands in the data set."""
    if value is None:
        return None
    below, n = lake.fetchone(
        "SELECT count(*) FILTER (WHERE value < ?), count(*) FROM (SELECT subject_id, any_value(value) AS value FROM scores "
        "WHERE subject_kind = ? AND metric = ? AND model_id = ? AND segment = ? AND value IS NOT NULL GROUP BY subject_id)",
        [value, kind, metric, model, segment],
    )
    return 100.0 * below / n if n else None


def _loads(value: Any) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None


def _one_sample(lake: Lake, sample_id: str) -> tuple[dict[str, Any], tuple] | None:
    """(samples_view.samples_with_images' row, lineage fields) of one sample by point reads: the samples table
    is scanned once, the item, its images and their OCR by their ids (the joins over whole tables cost a
    second per sample at a million samples). The same choices among copies: the first copy of the
    sample, min() among an image's and an OCR reading's copies."""
    row = lake.fetchone(
        "SELECT task, question, answer, answer_format, label, backend, model_id, prompt_version, lineage, item_id, created_at, evidence, "
        "CAST(image_ids AS VARCHAR[]) FROM samples WHERE sample_id = ? ORDER BY created_at, run_id LIMIT 1", [sample_id])
    if row is None:
        return None
    item = lake.fetchone(
        "SELECT coalesce(i.category, (SELECT min(category) FROM items p WHERE p.kind = 'catalog' AND p.external_id = i.product_ref)), "
        "coalesce(i.title, i.feedback_text), coalesce(i.product_ref, i.external_id, i.item_id), i.kind, s.name, s.uri "
        "FROM items i LEFT JOIN sources s ON s.source_id = i.source_id WHERE i.item_id = ? ORDER BY i.kind, s.name LIMIT 1", [row[9]])
    if item is None:  # as samples_with_images: a sample without its item is not shown
        return None
    image_ids = [i for i in (row[12] or []) if i is not None]
    found: dict[str, tuple[str, str]] = {}
    if image_ids:
        marks = ", ".join("?" for _ in set(image_ids))
        found = {iid: (blob, text or "") for iid, blob, text in lake.fetchall(
            f"WITH im AS (SELECT image_id, min(blob_path) AS blob_path, min(sha256) AS sha256 FROM images WHERE image_id IN ({marks}) GROUP BY image_id) "
            "SELECT im.image_id, im.blob_path, t.text FROM im LEFT JOIN (SELECT sha256, min(text) AS text FROM ocr "
            "  WHERE text IS NOT NULL AND sha256 IN (SELECT sha256 FROM im) GROUP BY sha256) t USING (sha256)", list(set(image_ids)))
            if blob is not None}
    shown = [found[i] for i in image_ids if i in found]
    r = {"sample_id": sample_id, "task": row[0], "question": row[1], "answer": row[2], "answer_format": row[3], "label": row[4],
         "category": item[0], "item_text": item[1], "product": item[2], "blob_paths": [b for b, _ in shown], "ocr_texts": [t for _, t in shown]}
    meta = (row[5], row[6], row[7], row[8], row[9], item[3], None, item[4], item[5], row[10], row[11])
    return r, meta


def sample_record(lake: Lake, sample_id: str, *, vis_model: str | None, clip_model: str | None, blob_root,
                  percentile_of=None) -> dict[str, Any] | None:
    """Everything Inspect shows of one sample: text, images, OCR, lineage, scores with percentiles, and
    the per-token grounding of each scored segment. ``percentile_of``: what computes a percentile
    (:func:`percentile`'s arguments; the app passes one over cached sorted scores)."""
    percentile_ = percentile_of or (lambda **kw: percentile(lake, **kw))
    found = _one_sample(lake, sample_id)
    if not found:
        return None
    r, meta = found
    out: dict[str, Any] = {
        **{k: r[k] for k in ("sample_id", "task", "question", "answer", "answer_format", "label", "category", "item_text", "product")},
        "images": [str(as_blobs(blob_root).local(b, missing_ok=True)) for b in r["blob_paths"]], "ocr": r["ocr_texts"],
        "lineage": {"backend": meta[0], "generator": meta[1], "prompt_version": meta[2], "item_id": meta[4], "item_kind": meta[5],
                    "source": meta[7], "source_uri": meta[8], "created_at": str(meta[9]), **(_loads(meta[3]) or {})},
        "evidence": _loads(meta[10]), "scores": {}, "tokens": {}, "gains": {},
    }
    if vis_model:
        for segment, value, mass in lake.fetchall(
            "SELECT segment, any_value(value) FILTER (WHERE metric = 'vis_attn'), any_value(value) FILTER (WHERE metric = 'vis_attn_mass') "
            "FROM scores WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? AND metric IN ('vis_attn', 'vis_attn_mass') GROUP BY segment",
            [sample_id, vis_model]):
            out["scores"][f"vis_attn/{segment}"] = {
                "value": value, "mass": mass, "model": vis_model,
                "percentile": percentile_(kind="sample", metric="vis_attn", model=vis_model, segment=segment, value=value)}
        for segment, tokens, scores, words, word_scores, positions in lake.fetchall(
            "SELECT segment, any_value(tokens), any_value(scores), any_value(words), any_value(word_scores), any_value(positions) FROM token_scores "
            "WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? GROUP BY segment", [sample_id, vis_model]):
            # positions: where each token sits in the model's input, and which of those are the question's and
            # the answer's (a "text" row holds both: the page takes the question's tokens out of it)
            out["tokens"][segment] = {"tokens": _loads(tokens) or [], "scores": _loads(scores) or [],
                                      "words": _loads(words) or [], "word_scores": _loads(word_scores) or [],
                                      "positions": _loads(positions) or {}, "segment": segment}
        # the visual information gain (curation/visual_gain.py), where the grounding run computed it
        for segment, value, blind, judged in lake.fetchall(
            "SELECT segment, any_value(value) FILTER (WHERE metric = 'vis_gain'), any_value(value) FILTER (WHERE metric = 'blind_logp'), "
            "any_value(value) FILTER (WHERE metric = 'judge_yes') FROM scores WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? "
            "AND metric IN ('vis_gain', 'blind_logp', 'judge_yes') GROUP BY segment", [sample_id, vis_model]):
            out["scores"][f"vis_gain/{segment}"] = {"value": value, "blind_logp": blind, "model": vis_model}
            out["scores"][f"judge_yes/{segment}"] = {"value": judged, "model": vis_model}  # the VLM judge (curation/judge.py)
        for segment, gain, words, word_gain in lake.fetchall(
            "SELECT segment, any_value(gain), any_value(words), any_value(word_gain) FROM token_gains "
            "WHERE subject_kind = 'sample' AND subject_id = ? AND model_id = ? GROUP BY segment", [sample_id, vis_model]):
            out["gains"][segment] = {"gain": _loads(gain) or [], "words": _loads(words) or [], "word_gain": _loads(word_gain) or []}
    if clip_model:
        value = lake.scalar("SELECT any_value(value) FROM scores WHERE subject_kind = 'item' AND subject_id = ? AND metric = 'clip_score' AND model_id = ?",
                            [meta[4], clip_model])
        out["scores"]["clip_score"] = {"value": value, "model": clip_model,
                                       "percentile": percentile_(kind="item", metric="clip_score", model=clip_model, segment="", value=value)}
    return out


# ---- the heat map's fixed scale ------------------------------------------------------------------------
PERCENTILE_STEPS = tuple(range(0, 101))  # p0, p1, ... p100: a token's colour is its percentile among these


def token_percentiles(lake: Lake, model: str, segment: str, unit: str = "words") -> list[float]:
    """The breakpoints p0..p100 of every token score the store holds for ``model`` and ``segment`` (``unit``
    "words": the word scores, "pieces": the sub-word pieces' scores), so that one score has one colour in
    every sample. Empty when none is stored. One aggregate over the unnested lists (the app keeps it per
    DuckLake version)."""
    column = {"words": "word_scores", "pieces": "scores"}[unit]
    fractions = ", ".join(f"{p / 100:.2f}" for p in PERCENTILE_STEPS)
    row = lake.fetchone(
        f"SELECT quantile_cont(w, [{fractions}]) FROM (SELECT unnest(TRY_CAST({column} AS DOUBLE[])) AS w FROM token_scores "
        "WHERE subject_kind = 'sample' AND model_id = ? AND segment = ?) WHERE isfinite(w)", [model, segment])
    return [float(v) for v in (row[0] or [])] if row else []


def score_range(lake: Lake, model: str | None, segment: str = "answer") -> tuple[float | None, float | None]:
    """(lowest, highest) VisAttnScore of ``model``: the gallery's score-range slider spans it."""
    if not model:
        return None, None
    lo, hi = lake.fetchone("SELECT min(value), max(value) FROM scores WHERE subject_kind = 'sample' AND metric = 'vis_attn' "
                           "AND model_id = ? AND segment = ? AND isfinite(value)", [model, segment])
    return (None, None) if lo is None else (float(lo), float(hi))


def kept_flags(lake: Lake, kept_sql: str, sample_ids: list[str]) -> dict[str, bool]:
    """Whether a saved filter keeps each of a page of samples; ``kept_sql`` is the filter engine's
    (``StatsTable.kept_sql``: sample_id, task, category, keep). Only the page's ids are looked up."""
    if not sample_ids:
        return {}
    marks = ", ".join("?" for _ in sample_ids)
    return {sid: bool(keep) for sid, keep in lake.fetchall(f"SELECT sample_id, keep FROM ({kept_sql}) WHERE sample_id IN ({marks})", list(sample_ids))}


def first_images(lake: Lake, sample_ids: list[str]) -> dict[str, str]:
    """Each sample's first image (blob path relative to the blob root): the gallery's thumbnail. Point reads
    of those samples and images (db/reads/sample_briefs.py), not the export's read that groups every image and
    OCR reading of the asked samples' items first (0.4 s for a page at a million samples)."""
    from .sample_briefs import briefs

    return {sid: b["blob_path"] for sid, b in briefs(lake, list(sample_ids)).items() if b["blob_path"]}


def metric_of_samples(lake: Lake, sample_ids: list[str], metric: str, model_id: str, segment: str = "answer") -> dict[str, float]:
    """One stored per-sample stat (e.g. vis_gain) of a page of samples, by sample id (scored ones only)."""
    if not sample_ids:
        return {}
    marks = ", ".join("?" for _ in sample_ids)
    return dict(lake.fetchall(f"SELECT subject_id, any_value(value) FROM scores WHERE subject_kind = 'sample' AND metric = ? AND model_id = ? "
                              f"AND segment = ? AND value IS NOT NULL AND subject_id IN ({marks}) GROUP BY subject_id",
                              [metric, model_id, segment, *sample_ids]))


def excluded_among(lake: Lake, sample_ids: list[str]) -> set[str]:
    """Which of a page of samples a curator excluded from the data set (db/lake/exclusions.py's log)."""
    from db.lake import exclusions

    if not sample_ids:
        return set()
    marks = ", ".join("?" for _ in sample_ids)
    return {r[0] for r in lake.fetchall(f"SELECT sample_id FROM ({exclusions.excluded_sql(lake)}) WHERE sample_id IN ({marks})", list(sample_ids))}
