"""What the dedup stage reads: the image contents not hashed yet, the stored hashes, the groupings made (their
model ids, ``METHOD:THRESHOLD``) and the groups of two or more members with who they are."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from db.lake.connection import Lake, at_version


def images_without_hash(lake: Lake, method: str) -> list[tuple[str, str]]:
    """(sha256, blob path) of the stored image contents not hashed with ``method`` yet, in sha256 order."""
    return lake.fetchall(
        "SELECT i.sha256, min(i.blob_path) FROM images i WHERE NOT EXISTS "
        "(SELECT 1 FROM image_hashes h WHERE h.sha256 = i.sha256 AND h.method = ?) GROUP BY i.sha256 ORDER BY i.sha256", [method])


def hashes(lake: Lake, method: str) -> tuple[list[str], np.ndarray]:
    """Every hashed content of ``method``: (sha256s, their 64-bit hashes as uint64), one per content, sha256 order."""
    cols = lake.fetchnumpy("SELECT sha256, min(hash) AS hash FROM image_hashes WHERE method = ? GROUP BY sha256 ORDER BY sha256", [method])
    return [str(s) for s in cols["sha256"]], np.asarray(cols["hash"], dtype=np.int64).view(np.uint64)


def groupings(lake: Lake, version: int | None = None) -> list[str]:
    """The model ids of the groupings stored (``phash:12``), the newest first."""
    return [m for (m,) in lake.fetchall(
        f"SELECT model_id FROM {at_version('scores', version)} WHERE metric = 'dup_group' GROUP BY model_id ORDER BY max(created_at) DESC, model_id")]


def groups(lake: Lake, model_id: str, *, version: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The groups of two or more members of a grouping, by group number (largest first), each
    ``{"group": N, "members": [{"item_id", "source", "external_id", "image_sha256"}, ...]}``: one member per
    (item, image content), members by source, external id and item."""
    v = version
    cap = f"AND gid <= (SELECT max(gid) FROM (SELECT DISTINCT gid FROM m ORDER BY gid LIMIT {int(limit)}))" if limit is not None else ""
    rows = lake.fetchall(
        f"WITH m AS (SELECT CAST(g.value AS BIGINT) AS gid, g.subject_id AS image_id FROM {at_version('scores', v)} g "
        f"  JOIN {at_version('scores', v)} z ON z.subject_kind = 'image' AND z.subject_id = g.subject_id AND z.metric = 'dup_size' "
        "     AND z.model_id = g.model_id AND z.value >= 2 "
        "  WHERE g.subject_kind = 'image' AND g.metric = 'dup_group' AND g.model_id = ?) "
        "SELECT DISTINCT m.gid, im.item_id, s.name, it.external_id, im.sha256 FROM m "
        f"JOIN {at_version('images', v)} im USING (image_id) JOIN {at_version('items', v)} it USING (item_id) "
        f"LEFT JOIN {at_version('sources', v)} s USING (source_id) WHERE true {cap} "
        "ORDER BY m.gid, s.name NULLS LAST, it.external_id NULLS LAST, im.item_id, im.sha256", [model_id])
    out: list[dict[str, Any]] = []
    for gid, item_id, source, external_id, sha in rows:
        if not out or out[-1]["group"] != gid:
            out.append({"group": int(gid), "members": []})
        out[-1]["members"].append({"item_id": item_id, "source": source, "external_id": external_id, "image_sha256": sha})
    # a content used twice by one item is one member: a group can fall to one member here
    return [g for g in out if len(g["members"]) >= 2]


def sample_groups(lake: Lake, members_sql: str, model_id: str, version: int | None = None) -> dict[str, list[int]]:
    """For the samples ``members_sql`` lists (SQL with a ``sample_id`` column): the groups of two or more members
    their images are in, under grouping ``model_id`` read at ``version``. Samples with no such image are left out."""
    v = version
    rows = lake.fetchall(
        f"WITH x AS (SELECT DISTINCT s.sample_id, u.image_id FROM {at_version('samples', v)} s "
        f"  SEMI JOIN (SELECT sample_id FROM ({members_sql})) m USING (sample_id), "
        "  LATERAL (SELECT unnest(CAST(s.image_ids AS VARCHAR[])) AS image_id) u) "
        f"SELECT x.sample_id, list(DISTINCT CAST(g.value AS BIGINT) ORDER BY CAST(g.value AS BIGINT)) FROM x "
        f"JOIN {at_version('scores', v)} g ON g.subject_kind = 'image' AND g.subject_id = x.image_id AND g.metric = 'dup_group' AND g.model_id = ? "
        f"JOIN {at_version('scores', v)} z ON z.subject_kind = 'image' AND z.subject_id = x.image_id AND z.metric = 'dup_size' "
        "  AND z.model_id = g.model_id AND z.value >= 2 GROUP BY x.sample_id", [model_id, ])
    return {str(s): [int(g) for g in gs] for s, gs in rows}


def sample_texts(lake: Lake, shas: list[str], labels: np.ndarray) -> dict[str, list]:
    """The samples that could say the same thing as another: each (its first copy) whose first image's content is
    among ``shas`` and whose (photo group ``labels[k]``, task) holds at least one other sample. Columns sample_id,
    task, label, question, answer. Every other sample is alone by construction, so it is neither read nor
    compared: at a million photos, nearly all in groups of their own, this is a few percent of the samples,
    found by the database rather than row by row in Python."""
    groups = pa.table({"sha256": pa.array(shas, pa.string()), "label": pa.array(np.asarray(labels, dtype=np.int64))})
    with lake.with_table("_dup_text_labels", groups) as con:
        table = con.execute(
            "WITH s AS (SELECT sample_id, task, question, answer, json_extract_string(image_ids, '$[0]') AS image_id FROM samples "
            "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1), "
            "k AS (SELECT s.sample_id, s.task, l.label, s.question, s.answer FROM s "
            "  JOIN (SELECT image_id, min(sha256) AS sha256 FROM images GROUP BY image_id) i USING (image_id) "
            "  JOIN _dup_text_labels l USING (sha256)), "
            "c AS (SELECT label, task FROM k GROUP BY label, task HAVING count(*) >= 2) "
            "SELECT k.sample_id, k.task, k.label, coalesce(k.question, '') AS question, coalesce(k.answer, '') AS answer "
            "FROM k SEMI JOIN c USING (label, task) ORDER BY k.sample_id").to_arrow_table()
    return {name: table.column(name).to_pylist() for name in table.column_names}


def sample_images(lake: Lake, sample_ids: list[str], version: int | None = None) -> list[tuple[str, str]]:
    """(sample_id, sha256) of the samples' images at ``version``, distinct, sorted."""
    if not sample_ids:
        return []
    with lake.probe("_probe_dup_samples", "sample_id", sample_ids) as con:
        return con.execute(
            f"WITH x AS (SELECT DISTINCT s.sample_id, unnest(CAST(s.image_ids AS VARCHAR[])) AS image_id FROM {at_version('samples', version)} s "
            "  SEMI JOIN _probe_dup_samples USING (sample_id)) "
            f"SELECT DISTINCT x.sample_id, i.sha256 FROM x JOIN {at_version('images', version)} i USING (image_id) ORDER BY 1, 2").fetchall()


def hashes_for(lake: Lake, shas: list[str], method: str) -> dict[str, int]:
    """The stored hash (as an unsigned 64-bit int) of each of ``shas`` that has one for ``method``."""
    if not shas:
        return {}
    with lake.probe("_probe_dup_shas", "sha256", shas) as con:
        rows = con.execute("SELECT sha256, min(hash) FROM image_hashes SEMI JOIN _probe_dup_shas USING (sha256) WHERE method = ? GROUP BY sha256",
                           [method]).fetchall()
    return {sha: int(np.int64(h).view(np.uint64)) for sha, h in rows}
