"""The browse index: every sample's few sortable fields (task, category, the two scores of the chosen
models, creation time) as columns in memory, so that Inspect's next sample and Gallery's next page are a
mask and a slice over it (milliseconds) instead of a query that de-duplicates, joins and sorts the whole
samples table (seconds at a million samples). Built with one query per store version and pair of models,
kept on disk as an Arrow file beside the app's other cached reads, so a restarted server loads it.

Also the sorted score arrays behind a score's percentile (a binary search instead of regrouping every score
per call). Same semantics as :func:`db.reads.browse.browse` and :func:`db.reads.browse.percentile` (tests compare them).
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from db.lake.connection import Lake

from . import browse as _browse
from .samples_view import CATEGORY, first_samples, products_sql

NEVER = -(2 ** 63) + 1  # created_at of a sample without one: sorts last when newest come first
DEFAULT_ORDER = "scored first, newest"


def _arrow(lake: Lake, query: str, params: list) -> pa.Table:
    return lake.fetch_arrow(query, params)


def _cached_file(cache_dir: Path | None, name: str, key: tuple, version: int, suffix: str) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{name}-{digest}-{version}{suffix}"


def _store(path: Path, write) -> None:
    """Whole files only (another server process may be reading); earlier versions of the same read removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*" + path.suffix):
        old.unlink(missing_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def _index_table(lake: Lake, vis_model: str | None, clip_model: str | None, segment: str) -> pa.Table:
    vjoin, vparams = _browse._score_join("v", "sample", "vis_attn", vis_model, segment, "x.sample_id")
    cjoin, cparams = _browse._score_join("c", "item", "clip_score", clip_model, "", "x.item_id")
    return _arrow(lake, (
        f"WITH products AS {products_sql()}, "
        f"x AS {first_samples(columns='sample_id, item_id, task, created_at')} "
        f"SELECT x.sample_id, x.task, {CATEGORY} AS category, v.value AS vis, c.value AS clip, "
        f"  coalesce(epoch_us(x.created_at), {NEVER}) AS created "
        f"FROM x JOIN items i USING (item_id) LEFT JOIN products p ON p.external_id = i.product_ref {vjoin} {cjoin} "
        "ORDER BY x.sample_id"), vparams + cparams)


def _with_default_order(table: pa.Table) -> pa.Table:
    """The table as it is written to disk: task and category dictionary-encoded and the default order's
    positions added (a restarted server then neither re-hashes the strings nor sorts a million rows)."""
    for name in ("task", "category"):
        table = table.set_column(table.schema.get_field_index(name), name, table[name].combine_chunks().dictionary_encode())
    order = BrowseIndex(table)._order(DEFAULT_ORDER)
    return table.append_column("default_order", pa.array(order, pa.int64()))


def _floats(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN for NULL, is-NULL mask)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    return pc.fill_null(arr.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False), nulls


class BrowseIndex:
    """One store version's samples for one (VisAttnScore model, CLIPScore model, segment), in sample id order."""

    def __init__(self, table: pa.Table):
        self.ids = table["sample_id"].combine_chunks()
        task, cat = (table[name].combine_chunks() for name in ("task", "category"))
        task, cat = (a if pa.types.is_dictionary(a.type) else a.dictionary_encode() for a in (task, cat))
        self.tasks, self.task_codes = task.dictionary.to_pylist(), task.indices.to_numpy(zero_copy_only=False)
        self.cats, self.cat_codes = cat.dictionary.to_pylist(), cat.indices.to_numpy(zero_copy_only=False)
        self.vis, self.vis_null = _floats(table["vis"])
        self.clip, self.clip_null = _floats(table["clip"])
        self.created = table["created"].to_numpy()
        self._orders: dict[str, np.ndarray] = {}
        if "default_order" in table.column_names:
            self._orders[DEFAULT_ORDER] = table["default_order"].to_numpy()
        self._picks: OrderedDict[tuple, np.ndarray] = OrderedDict()  # recent queries' ordered positions
        self._texts: OrderedDict[str, np.ndarray] = OrderedDict()  # recent text searches' masks
        self._lock = threading.Lock()  # one index serves every session of the server

    def __len__(self) -> int:
        return len(self.ids)

    def _order(self, order: str) -> np.ndarray:
        """Row positions in ``order`` (db.reads.browse.ORDERS); ties by sample id, which is the row order
        (np.lexsort is stable; its last key sorts first)."""
        if order not in self._orders:
            newest = -self.created
            keys = {
                "scored first, newest": (newest, self.vis_null),
                "newest": (newest,),
                "VisAttnScore, lowest first": (self.vis, self.vis_null),
                "VisAttnScore, highest first": (-self.vis, self.vis_null),
                "CLIPScore, lowest first": (self.clip, self.clip_null),
                "CLIPScore, highest first": (-self.clip, self.clip_null),
            }[order]
            self._orders[order] = np.lexsort(keys).astype(np.int64) if len(self) else np.zeros(0, np.int64)
        return self._orders[order]

    def _text_mask(self, lake: Lake, text: str) -> np.ndarray:
        if text not in self._texts:
            clause, params = _browse._search(text)
            found = _arrow(lake, f"SELECT DISTINCT x.sample_id FROM samples x WHERE {clause}", params)["sample_id"]
            self._texts[text] = pc.is_in(self.ids, value_set=found.combine_chunks()).to_numpy(zero_copy_only=False)
            while len(self._texts) > 8:
                self._texts.popitem(last=False)
        return self._texts[text]

    def pick(self, lake: Lake, *, tasks=(), categories=(), text: str = "", order: str = DEFAULT_ORDER,
             scored_only: bool = False, vis_range=None) -> np.ndarray:
        """The positions of the matching samples, in ``order``."""
        order = order if order in _browse.ORDERS else DEFAULT_ORDER
        key = (tuple(tasks), tuple(categories), text.strip(), order, bool(scored_only), tuple(vis_range) if vis_range else None)
        with self._lock:
            if key in self._picks:
                self._picks.move_to_end(key)
                return self._picks[key]
            mask = np.ones(len(self), bool)
            if tasks:
                mask &= np.isin(self.task_codes, [k for k, t in enumerate(self.tasks) if t in set(tasks)])
            if categories:
                mask &= np.isin(self.cat_codes, [k for k, c in enumerate(self.cats) if c in set(categories)])
            if text.strip():
                mask &= self._text_mask(lake, text.strip())
            if scored_only:
                mask &= ~self.vis_null
            lo, hi = vis_range or (None, None)
            if lo is not None:
                mask &= ~self.vis_null & (self.vis >= float(lo))
            if hi is not None:
                mask &= ~self.vis_null & (self.vis <= float(hi))
            perm = self._order(order)
            picked = perm[mask[perm]]
            self._picks[key] = picked
            while len(self._picks) > 32:
                self._picks.popitem(last=False)
            return picked

    def rows(self, lake: Lake, positions: np.ndarray, *, with_text: bool = True) -> list[dict[str, Any]]:
        """browse()'s rows for these positions; question and answer by a point read of just these samples."""
        take = pa.array(np.asarray(positions, np.int64))
        ids = self.ids.take(take).to_pylist()
        out = [{"sample_id": sid, "task": self.tasks[self.task_codes[p]], "category": self.cats[self.cat_codes[p]],
                "question": None, "answer": None,
                "vis_attn": None if self.vis_null[p] else float(self.vis[p]),
                "clip_score": None if self.clip_null[p] else float(self.clip[p])} for sid, p in zip(ids, positions)]
        if with_text and ids:
            with lake.probe("_probe_browse", "sample_id", ids) as con:
                texts = {sid: (q, a) for sid, q, a in con.execute(
                    "SELECT sample_id, question, answer FROM samples SEMI JOIN _probe_browse USING (sample_id) "
                    "QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1").fetchall()}
            for r in out:
                r["question"], r["answer"] = texts.get(r["sample_id"], (None, None))
        return out

    def ids_of(self, lake: Lake, **query) -> list[str]:
        """Every matching sample's id, in the query's order (an action on a whole query)."""
        return self.ids.take(pa.array(self.pick(lake, **query))).to_pylist()

    def position(self, lake: Lake, sample_id: str, **query) -> int | None:
        """Where ``sample_id`` stands in the query's order (0 first), or None when the query leaves it out."""
        where = np.flatnonzero(pc.equal(self.ids, sample_id).to_numpy(zero_copy_only=False))
        if not len(where):
            return None
        at = np.flatnonzero(self.pick(lake, **query) == where[0])
        return int(at[0]) if len(at) else None

    def browse(self, lake: Lake, *, limit: int = 50, offset: int = 0, with_text: bool = True, **query) -> tuple[int, list[dict[str, Any]]]:
        """What :func:`db.reads.browse.browse` returns for the same query (its arguments but the models and segment,
        which the index was built for)."""
        picked = self.pick(lake, **query)
        if limit <= 0:
            return len(picked), []
        offset = max(int(offset), 0)
        return len(picked), self.rows(lake, picked[offset:offset + int(limit)], with_text=with_text)


def load_index(lake: Lake, *, vis_model: str | None, clip_model: str | None, segment: str = "answer",
               version: int, cache_dir: Path | None = None) -> BrowseIndex:
    """The index at ``version`` (the last version that changed samples, items or scores): read from
    ``cache_dir`` where an earlier process built it, else built and written there."""
    path = _cached_file(cache_dir, "browse_index", (vis_model, clip_model, segment), version, ".arrow")
    if path is not None:
        try:
            with pa.memory_map(str(path)) as source:
                return BrowseIndex(pa.ipc.open_file(source).read_all())
        except (OSError, pa.ArrowInvalid):
            pass
    table = _with_default_order(_index_table(lake, vis_model, clip_model, segment))
    if path is not None:
        def write(tmp: Path) -> None:
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        _store(path, write)
    return BrowseIndex(table)


def sorted_scores(lake: Lake, *, kind: str, metric: str, model: str, segment: str, version: int,
                  cache_dir: Path | None = None) -> np.ndarray:
    """Every scored subject's value (one per subject, as db.reads.browse.percentile counts them), sorted."""
    path = _cached_file(cache_dir, "sorted_scores", (kind, metric, model, segment), version, ".npy")
    if path is not None:
        try:
            return np.load(path)
        except (OSError, ValueError):
            pass
    values = lake.fetchnumpy(
        "SELECT any_value(value) AS value FROM scores WHERE subject_kind = ? AND metric = ? AND model_id = ? AND segment = ? "
        "AND value IS NOT NULL GROUP BY subject_id", [kind, metric, model, segment])["value"]
    values = np.sort(np.asarray(values, np.float64))
    if path is not None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to a name
                np.save(f, values)
        _store(path, write)
    return values


def percentile_of(values: np.ndarray, value: float | None) -> float | None:
    """db.reads.browse.percentile from :func:`sorted_scores`: the share (0-100) of subjects below ``value``."""
    if value is None or not len(values):
        return None
    return 100.0 * int(np.searchsorted(values, float(value), side="left")) / len(values)
