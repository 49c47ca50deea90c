"""Writes of the dedup job: the perceptual hash of each image content, then the near-duplicate groups as stats.

The groups are not a table of their own: they are ``dup_group`` / ``dup_size`` rows per image and ``dup_rank``
rows per sample in ``scores`` (model id ``METHOD:THRESHOLD``), so filters, snapshots, time travel and the pages
read them as every other stat. A new grouping replaces the rows of its model id whole, in one transaction.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from .connection import Lake
from .tables import ERRORS, IMAGE_HASHES, SCORES

DUP_METRICS = ("dup_group", "dup_size", "dup_rank")


def write_hashes(lake: Lake, run_id: str, rows: list[dict[str, Any]], errors: list[dict[str, Any]]) -> int:
    """One unit's hashes and error rows (a retried unit replaces what its run wrote); a content already hashed
    with the same method is kept. Returns how many hashes went in."""
    hashes_t, errors_t = IMAGE_HASHES.arrow(rows), ERRORS.arrow(errors)

    def body(con) -> int:
        con.execute("DELETE FROM image_hashes WHERE run_id = ?", [run_id])
        con.execute("DELETE FROM errors WHERE run_id = ?", [run_id])
        con.register("_new_hashes", hashes_t)
        con.register("_new_errors", errors_t)
        try:
            fresh = "NOT EXISTS (SELECT 1 FROM image_hashes h WHERE h.sha256 = n.sha256 AND h.method = n.method)"
            n = con.execute(f"SELECT count(*) FROM _new_hashes n WHERE {fresh}").fetchone()[0]
            con.execute(f"INSERT INTO image_hashes ({IMAGE_HASHES.names()}) SELECT {IMAGE_HASHES.select_list('n')} FROM _new_hashes n WHERE {fresh}")
            con.execute(f"INSERT INTO errors ({ERRORS.names()}) SELECT {ERRORS.select_list('n')} FROM _new_errors n")
            return int(n)
        finally:
            con.unregister("_new_hashes")
            con.unregister("_new_errors")

    return lake.transaction(body)


def write_groups(lake: Lake, *, model_id: str, shas: list[str], components: np.ndarray, run_id: str,
                 rank: tuple[str, str, str, str] | None, missing: str = "not_hashed",
                 sample_groups: tuple[list[str], np.ndarray] | None = None) -> dict[str, int]:
    """Replace the dup_* stats of ``model_id``. ``shas`` are the hashed contents and ``components[k]`` the group
    label of ``shas[k]`` (any integers; a content alone has a label of its own). Every stored image gets
    ``dup_group`` and ``dup_size``; an image whose content is not among ``shas`` (it could not be hashed, or has no
    vector) gets NULL with the hashing error's code in its flags, else ``missing``. Every sample gets ``dup_rank`` among the samples of its task whose first image
    is in the same group, best first by ``rank`` = (metric, subject kind, model id, segment) of a stored stat
    (highest first, samples without it after), then by sample id; a sample without an image is alone (rank 1), one whose first image has no hash gets NULL.
    ``sample_groups`` = (sample ids, a label each): the samples that say the same thing (curation.text_dups) share a
    label, and the rank is within a label instead of within (group, task); a sample not listed is alone.
    Returns the counts a job reports: images, groups (of two or more members), members in them, unhashed images."""
    labels = pa.table({"sha256": pa.array(shas, pa.string()), "comp": pa.array(np.asarray(components, dtype=np.int64))})
    said = pa.table({"sample_id": pa.array(sample_groups[0] if sample_groups else [], pa.string()),
                     "sgroup": pa.array(np.asarray(sample_groups[1] if sample_groups else [], dtype=np.int64))})
    # the partition a sample is ranked in: its text group where one is given, else its photo group and task
    partition = "sgroup" if sample_groups is not None else "gid, task"
    # each sample's first copy (two units that raced can both have written one)
    samples = ("(SELECT sample_id, item_id, task, image_ids FROM samples "
               "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1)")
    if rank is None:
        rank_join, rank_value = "", "CAST(NULL AS DOUBLE)"
        rank_params: list[Any] = []
    else:
        metric, subject, rank_model, segment = rank
        key = "sample_id" if subject == "sample" else "item_id"
        rank_join = (f"LEFT JOIN (SELECT subject_id AS {key}, any_value(value) AS rv FROM scores WHERE subject_kind = ? AND metric = ? "
                     f"AND model_id = ? AND segment = ? GROUP BY subject_id) r USING ({key})")
        rank_value = "r.rv"
        rank_params = [subject, metric, rank_model, segment]
    flags_ok = "CAST(NULL AS JSON)"

    def body(con) -> dict[str, int]:
        con.execute("DELETE FROM scores WHERE metric IN ('dup_group', 'dup_size', 'dup_rank') AND model_id = ?", [model_id])
        con.register("_dup_labels", labels)
        con.register("_dup_said", said)
        try:
            # every image's group: contents grouped in Python; members, sizes and numbers here
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _dup_images AS "
                "WITH m AS (SELECT i.image_id, i.sha256, l.comp FROM (SELECT image_id, min(sha256) AS sha256 FROM images GROUP BY image_id) i "
                "  LEFT JOIN _dup_labels l USING (sha256)), "
                "sz AS (SELECT comp, count(*) AS n, min(sha256) AS first FROM m WHERE comp IS NOT NULL GROUP BY comp), "
                # groups of two or more first, largest first, so that `dedup show` and the filters see small numbers
                "ids AS (SELECT comp, n, row_number() OVER (ORDER BY n >= 2 DESC, n DESC, first) AS gid FROM sz) "
                "SELECT m.image_id, m.sha256, ids.gid, ids.n FROM m LEFT JOIN ids USING (comp)"
            )
            errors = ("(SELECT subject AS sha256, arg_max(code, created_at) AS code FROM errors WHERE stage = 'dedup' GROUP BY subject)")
            for metric, column in (("dup_group", "gid"), ("dup_size", "n")):
                con.execute(
                    f"INSERT INTO scores ({SCORES.names()}) SELECT 'image', d.image_id, ?, ?, '', d.{column}, "
                    f"CASE WHEN d.gid IS NULL THEN json_object('error', coalesce(e.code, ?)) ELSE {flags_ok} END, ?, now() "
                    f"FROM temp._dup_images d LEFT JOIN {errors} e USING (sha256)",
                    [metric, model_id, missing, run_id])
            con.execute(
                f"INSERT INTO scores ({SCORES.names()}) "
                f"WITH s AS (SELECT sample_id, item_id, task, json_extract_string(image_ids, '$[0]') AS image_id FROM {samples}), "
                f"g AS (SELECT s.sample_id, s.task, s.image_id, d.gid, coalesce(sg.sgroup, -row_number() OVER ()) AS sgroup, {rank_value} AS rv "
                f"FROM s LEFT JOIN temp._dup_images d USING (image_id) LEFT JOIN _dup_said sg USING (sample_id) {rank_join}) "
                "SELECT 'sample', sample_id, 'dup_rank', ?, '', "
                "  CASE WHEN image_id IS NULL THEN 1 WHEN gid IS NULL THEN NULL "
                f"       ELSE row_number() OVER (PARTITION BY {partition} ORDER BY rv DESC NULLS LAST, sample_id) END, "
                "  CASE WHEN image_id IS NULL THEN json_object('alone', true) WHEN gid IS NULL THEN json_object('error', ?) "
                "       ELSE CAST(NULL AS JSON) END, ?, now() FROM g",
                [*rank_params, model_id, missing, run_id])
            row = con.execute(
                "SELECT count(*), count(DISTINCT gid) FILTER (WHERE n >= 2), count(*) FILTER (WHERE n >= 2), count(*) FILTER (WHERE gid IS NULL) "
                "FROM temp._dup_images").fetchone()
            con.execute("DROP TABLE IF EXISTS temp._dup_images")
            return {"images": int(row[0]), "groups": int(row[1]), "images_in_groups": int(row[2]), "images_not_hashed": int(row[3])}
        finally:
            con.unregister("_dup_labels")
            con.unregister("_dup_said")

    return lake.transaction(body)
