"""The embedding map's reads: the 2-D projections stored (``map_x`` / ``map_y`` rows of the scores table, one
pair per image and projection), every sample's point on one of them as numpy columns, the colours a point
can take (a stored stat, its task, kept / dropped / excluded under a filter, its cluster or near-duplicate
group), the sample of points drawn, the density of all of them, and the samples inside a box or a lasso.

A sample's point is the point of its first image (``json_extract_string(image_ids, '$[0]')``); samples
without an image, or whose first image the projection has no place for, are not on the map. One item's
samples (one per task) share its image and so its place: each point is moved by a small deterministic
jitter (:data:`JITTER` of the map's span at most, from the hash of its sample id) so that they show as a
small cloud instead of one dot, and the same point lands in the same place on every view.

**What is drawn.** At a million samples a browser cannot be sent every point within the page's targets (the
figure of every point alone is ~23 MB), so the page draws a sample of at most N points over a density (a 2-D histogram) of
all of them. The sample is the N points with the smallest hash of their sample id (DuckDB's ``hash()``, the
same for an id on every read with the DuckDB version pinned): the same points come back on every view,
and a new sample joins it only if its hash is among the N smallest, pushing out at most one point, so the
picture never reshuffles. Selections (:meth:`MapPoints.inside_box`, :meth:`MapPoints.inside_polygon`) are
over every point, drawn or not.

Read with one query per store version and projection, kept on disk as an Arrow file beside the app's other
cached reads (:func:`load_points` with ``cache_dir``), so a restarted server loads a file instead.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from db.lake import metrics
from db.lake.connection import Lake, at_version

from .samples_view import first_samples

JITTER = 0.01  # the width of a point's jitter cloud, as a share of the map's larger span
CATEGORICAL = ("cluster", "dup_group")  # stats whose values are numbers of groups, not amounts: coloured by group
MAP_METRICS = ("map_x", "map_y")
FIRST_IMAGE = "json_extract_string(image_ids, '$[0]')"  # a sample's point is its first image's
EMPTY = np.zeros(0, np.int64)


def catalog(lake: Lake, version: int | None = None) -> tuple[list[dict[str, Any]], list["Colour"]]:
    """(:func:`projections`, :func:`colour_options`) from one pass over the scores' kinds (what a page needs of both)."""
    rows = lake.fetchall(
        f"SELECT subject_kind, metric, model_id, segment, count(*), max(created_at) FROM {at_version('scores', version)} "
        "WHERE value IS NOT NULL GROUP BY ALL", [])
    maps = sorted(((m, n, at) for kind, metric, m, segment, n, at in rows if (kind, metric, segment) == ("image", "map_x", "")),
                  key=lambda r: (-(r[2].timestamp() if r[2] else 0.0), r[0]))
    options = []
    for kind, metric, model_id, segment, _, _ in sorted(rows, key=lambda r: (r[1], r[2] or "", r[3] or "")):
        declared = metrics.METRICS.get(metric)
        if declared is None or declared.subject != kind or metric in (*MAP_METRICS, "dup_size", "dup_rank") or (segment or "") not in ("", "answer"):
            continue
        options.append(Colour("stat", metric, model_id or "", segment or ""))
    return [{"model_id": m, "images": int(n), "created": str(at)[:19]} for m, n, at in maps], options


def projections(lake: Lake, version: int | None = None) -> list[dict[str, Any]]:
    """The projections stored, newest first (by the newest ``map_x`` row of each): model_id, images, created."""
    return catalog(lake, version)[0]


def _points_table(lake: Lake, model_id: str, version: int | None) -> pa.Table:
    """Each sample's first image's place on the projection, with the hash of its id: one query, plus a point read
    for the samples stored twice (two units that raced can both write one), which take their first copy as
    every read does (samples_view.first_samples). Not de-duplicated in the query: a window over every sample
    to drop the rare copy cost half of this read (~0.6 s at a million samples)."""
    v = version
    m = ("m AS (SELECT subject_id AS image_id, any_value(value) FILTER (WHERE metric = 'map_x') AS x, "
         "  any_value(value) FILTER (WHERE metric = 'map_y') AS y "
         f"FROM {at_version('scores', v)} WHERE subject_kind = 'image' AND metric IN ('map_x', 'map_y') AND model_id = ? AND segment = '' "
         "GROUP BY subject_id)")
    select = ("SELECT x.sample_id, x.item_id, x.image_id, x.task, m.x, m.y, hash(x.sample_id) AS h "
              "FROM x JOIN m USING (image_id) WHERE isfinite(m.x) AND isfinite(m.y)")
    table = lake.fetch_arrow(f"WITH {m}, x AS (SELECT sample_id, item_id, task, {FIRST_IMAGE} AS image_id FROM {at_version('samples', v)}) {select}",
                             [model_id])
    h = table["h"].to_numpy()
    order = np.argsort(h, kind="stable")
    twice = np.zeros(len(h), bool)
    same = h[order][1:] == h[order][:-1]  # a sample stored twice has its hash twice (as, vanishingly rarely, two ids do)
    twice[order[1:][same]] = twice[order[:-1][same]] = True
    if twice.any():
        ids = pc.unique(table["sample_id"].combine_chunks().filter(pa.array(twice))).to_pylist()
        with lake.probe("_probe_map", "sample_id", ids) as con:
            first = con.execute(
                f"WITH {m}, x AS {first_samples(v, columns=f'sample_id, item_id, task, {FIRST_IMAGE} AS image_id', where='WHERE sample_id IN (SELECT sample_id FROM _probe_map)')} "
                f"{select}", [model_id]).to_arrow_table()
        table = pa.concat_tables([table.filter(pa.array(~twice)), first.cast(table.schema)])
        h = table["h"].to_numpy()
        order = np.argsort(h, kind="stable")
    table = table.set_column(table.schema.get_field_index("task"), "task", table["task"].combine_chunks().dictionary_encode())
    return table.append_column("draw_order", pa.array(order.astype(np.int64)))


class MapPoints:
    """Every sample's point on one projection at one store version. Columns, not rows: sample, item and image ids
    as Arrow arrays, x / y / task codes / hashes as numpy arrays; a point's position is its row. ``order``: the
    positions by the hash of the sample id (the first N are the drawn sample)."""

    def __init__(self, table: pa.Table, model_id: str = ""):
        self.model_id = model_id
        self.sample_ids = table["sample_id"].combine_chunks()
        self.item_ids = table["item_id"].combine_chunks()
        self.image_ids = table["image_id"].combine_chunks()
        task = table["task"].combine_chunks()
        task = task if pa.types.is_dictionary(task.type) else task.dictionary_encode()
        self.tasks: list[str] = task.dictionary.to_pylist()
        self.task_codes = task.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        self.raw_x = table["x"].to_numpy().astype(np.float64)
        self.raw_y = table["y"].to_numpy().astype(np.float64)
        self.hash = table["h"].to_numpy().astype(np.uint64)
        self.order = (table["draw_order"].to_numpy().astype(np.int64) if "draw_order" in table.column_names
                      else np.argsort(self.hash, kind="stable"))  # ties (two ids of one 64-bit hash) by row
        self.x, self.y = self._jittered()
        self._lock = threading.Lock()
        self._y_order: np.ndarray | None = None
        self._rank: np.ndarray | None = None
        self._densities: dict[tuple, tuple] = {}

    def __len__(self) -> int:
        return len(self.sample_ids)

    # ---- where points are drawn ------------------------------------------------------------------------
    def _jittered(self) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.raw_x):
            return self.raw_x, self.raw_y
        span = max(float(self.raw_x.max() - self.raw_x.min()), float(self.raw_y.max() - self.raw_y.min())) or 1.0
        # the hash's low bits (the sample is drawn by its high ones: the drawn points' jitter is as random as the rest's)
        u = (self.hash & np.uint64(0xFFFFF)).astype(np.float64) / 0x100000 - 0.5
        v = ((self.hash >> np.uint64(20)) & np.uint64(0xFFFFF)).astype(np.float64) / 0x100000 - 0.5
        return self.raw_x + JITTER * span * u, self.raw_y + JITTER * span * v

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) of the drawn places (jitter included)."""
        if not len(self):
            return 0.0, 1.0, 0.0, 1.0
        return float(self.x.min()), float(self.x.max()), float(self.y.min()), float(self.y.max())

    def drawn(self, limit: int) -> np.ndarray:
        """The positions of the drawn sample, smallest hash first: every point up to ``limit``, else the ``limit``
        with the smallest hash."""
        return self.order[:max(int(limit), 0)]

    def rank(self) -> np.ndarray:
        """Each position's place in ``order`` (< N: among the N drawn)."""
        with self._lock:
            if self._rank is None:
                rank = np.empty(len(self), np.int64)
                rank[self.order] = np.arange(len(self))
                self._rank = rank
            return self._rank

    def by_hash(self, positions: np.ndarray) -> np.ndarray:
        """``positions`` smallest hash first (a few of a selection to show: the same ones every time)."""
        positions = np.asarray(positions, np.int64)
        return positions[np.argsort(self.rank()[positions], kind="stable")]

    def density(self, bins: int = 160) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(counts[y, x], x centres, y centres) of every point on a ``bins`` x ``bins`` grid over the map's bounds."""
        key = (bins,)
        with self._lock:
            if key not in self._densities:
                x0, x1, y0, y1 = self.bounds()
                wx, wy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
                ix = np.clip(((self.x - x0) / wx * bins).astype(np.int64), 0, bins - 1)
                iy = np.clip(((self.y - y0) / wy * bins).astype(np.int64), 0, bins - 1)
                counts = np.bincount(iy * bins + ix, minlength=bins * bins).reshape(bins, bins)
                centres = (np.arange(bins) + 0.5) / bins
                self._densities[key] = (counts, x0 + centres * wx, y0 + centres * wy)
            return self._densities[key]

    # ---- selections over every point ---------------------------------------------------------------------
    def inside_box(self, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        """Positions of every point inside the box (edges included), ascending."""
        lo_x, hi_x, lo_y, hi_y = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
        return np.flatnonzero((self.x >= lo_x) & (self.x <= hi_x) & (self.y >= lo_y) & (self.y <= hi_y))

    def _by_y(self) -> np.ndarray:
        with self._lock:
            if self._y_order is None:
                self._y_order = np.argsort(self.y, kind="stable")
            return self._y_order

    def inside_polygon(self, xs, ys) -> np.ndarray:
        """Positions of every point inside the polygon (a lasso's outline, closed by itself), ascending.

        The even-odd rule (a ray to the right crosses the outline an odd number of times), vectorised per
        edge over only the points in that edge's band of y: the points are sorted by y once, so each edge
        is two binary searches and one comparison over its band, and a lasso of hundreds of edges costs
        about as much as a few passes over the points its outline spans."""
        px, py = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        if len(px) < 3 or not len(self):
            return EMPTY
        order = self._by_y()
        sy, sx = self.y[order], self.x[order]
        # only the points inside the outline's bounding band of y can be inside
        lo_all, hi_all = np.searchsorted(sy, py.min(), "left"), np.searchsorted(sy, py.max(), "right")
        inside = np.zeros(hi_all - lo_all, bool)
        band_y, band_x = sy[lo_all:hi_all], sx[lo_all:hi_all]
        for (ax, ay), (bx, by) in zip(zip(px, py), zip(np.roll(px, -1), np.roll(py, -1))):
            if ay == by:
                continue  # a level edge crosses no horizontal ray
            lo, hi = (ay, by) if ay < by else (by, ay)
            a, b = np.searchsorted(band_y, lo, "left"), np.searchsorted(band_y, hi, "left")  # lo <= y < hi
            if a == b:
                continue
            cross = ax + (band_y[a:b] - ay) * (bx - ax) / (by - ay)
            inside[a:b] ^= band_x[a:b] < cross
        return np.sort(order[lo_all:hi_all][inside])

    def positions_of(self, sample_ids) -> np.ndarray:
        """Positions of these sample ids (those on the map), ascending."""
        if not len(sample_ids):
            return EMPTY
        found = pc.is_in(self.sample_ids, value_set=pa.array(list(sample_ids), pa.string())).to_numpy(zero_copy_only=False)
        return np.flatnonzero(found)

    def ids(self, positions: np.ndarray) -> list[str]:
        """The sample ids at ``positions``."""
        return self.sample_ids.take(pa.array(np.asarray(positions, np.int64))).to_pylist()

    def id_array(self, positions: np.ndarray) -> pa.Array:
        """The same as an Arrow array (a million ids without a Python string each)."""
        return self.sample_ids.take(pa.array(np.asarray(positions, np.int64)))

    def key(self, subject: str) -> pa.Array:
        """The column a stat about ``subject`` (sample, item, image) is joined on."""
        return {"sample": self.sample_ids, "item": self.item_ids, "image": self.image_ids}[subject]


def load_points(lake: Lake, model_id: str, *, version: int | None, cache_dir: Path | None = None) -> MapPoints:
    """Every sample's point on projection ``model_id`` at ``version`` (the last version that changed samples or
    scores): read from ``cache_dir`` where an earlier process wrote it, else queried and written there."""
    path = None
    if cache_dir is not None and version is not None:
        digest = hashlib.sha256(repr(("map_points", model_id)).encode()).hexdigest()[:16]
        path = Path(cache_dir) / f"map_points-{digest}-{int(version)}.arrow"
        try:
            with pa.memory_map(str(path)) as source:
                return MapPoints(pa.ipc.open_file(source).read_all(), model_id)
        except (OSError, pa.ArrowInvalid):
            pass
    table = _points_table(lake, model_id, version)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.arrow"):  # earlier versions of this read
            old.unlink(missing_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)  # whole files only: another server process may be reading it
    return MapPoints(table, model_id)


# ---- colours --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Colour:
    """What the points are coloured by: ``kind`` "task", "status" (kept / dropped / excluded), or "stat" with
    the stat's metric, model and segment."""
    kind: str
    metric: str = ""
    model_id: str = ""
    segment: str = ""

    @property
    def categorical(self) -> bool:
        return self.kind != "stat" or self.metric in CATEGORICAL


@dataclass
class Colours:
    """One value per point: a number (NaN: none), or for categories an integer code (-1: none) with ``labels``
    (and, for numbered groups, each code's group ``numbers``)."""
    values: np.ndarray
    labels: list[str] | None = None
    missing: str = "no value"  # what a point without a value is called
    numbers: np.ndarray | None = None

    @property
    def categorical(self) -> bool:
        return self.labels is not None


STATUS = ["kept", "dropped", "excluded"]


def colour_options(lake: Lake, version: int | None = None) -> list[Colour]:
    """The stored stats a point can be coloured by (each declared stat, model and segment, '' or 'answer'; an image
    stat on the point's image, an item's on its item, a sample's on the sample), the map's own coordinates and the
    near-duplicate sizes and ranks aside. Task and kept / dropped / excluded are the page's own."""
    return catalog(lake, version)[1]


def _by_subject(lake: Lake, query: str, params: list, key: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(value per point, has one) from a query of (subject_id, value), joined on ``key`` in memory."""
    found = lake.fetch_arrow(query, params)
    at = pc.index_in(key, value_set=found.column(0).combine_chunks())
    has = at.is_valid().to_numpy(zero_copy_only=False)
    values = np.full(len(key), np.nan)
    if has.any():
        col = pc.fill_null(found.column(1).combine_chunks().cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        values[has] = col[pc.fill_null(at, 0).to_numpy(zero_copy_only=False)[has]]
    return values, has & ~np.isnan(values)


def stat_values(lake: Lake, points: MapPoints, colour: Colour, *, version: int | None) -> Colours:
    """The stat per point (a sample stat on the sample, an item stat on its item, an image stat on the point's
    image). ``cluster`` and ``dup_group`` come back as categories: a group's number, and for dup_group only
    the groups of two or more (``dup_size`` >= 2 under the same model); the rest are "not in a group"."""
    subject = metrics.get(colour.metric).subject
    scores = at_version("scores", version)
    if colour.metric == "dup_group":
        query = (f"SELECT g.subject_id, any_value(g.value) FROM {scores} g WHERE g.subject_kind = 'image' AND g.metric = 'dup_group' "
                 f"AND g.model_id = ? AND g.segment = ? AND g.subject_id IN (SELECT subject_id FROM {scores} WHERE subject_kind = 'image' "
                 "AND metric = 'dup_size' AND model_id = ? AND value >= 2) GROUP BY g.subject_id")
        params = [colour.model_id, colour.segment, colour.model_id]
    else:
        query = (f"SELECT subject_id, any_value(value) FROM {scores} WHERE subject_kind = ? AND metric = ? AND model_id = ? AND segment = ? "
                 "AND value IS NOT NULL GROUP BY subject_id")
        params = [subject, colour.metric, colour.model_id, colour.segment]
    values, has = _by_subject(lake, query, params, points.key(subject))
    if colour.metric not in CATEGORICAL:
        return Colours(values)
    groups = np.unique(values[has]).astype(np.int64)
    codes = np.full(len(points), -1, np.int32)
    codes[has] = np.searchsorted(groups, values[has].astype(np.int64)).astype(np.int32)
    word = "cluster" if colour.metric == "cluster" else "group"
    return Colours(codes, [f"{word} {g}" for g in groups], "no cluster" if colour.metric == "cluster" else "not a near-duplicate", groups)


def task_values(points: MapPoints) -> Colours:
    """The task per point, the tasks in alphabetical order (a task keeps its colour whatever order the rows came in)."""
    names = sorted(points.tasks)
    recode = np.array([names.index(t) for t in points.tasks], np.int32)
    return Colours(recode[points.task_codes] if len(points.tasks) else points.task_codes.copy(), names)


def status_values(lake: Lake, points: MapPoints, *, kept_sql: str | None, version: int | None = None) -> Colours:
    """kept / dropped / excluded per point. ``kept_sql``: a filter's (sample_id, ..., keep) rows (the filter
    engine's ``StatsTable.kept_sql``); without one, every sample not excluded is "in the data set"."""
    from db.lake import exclusions

    codes = np.zeros(len(points), np.int32)
    if kept_sql is not None:
        kept = lake.fetch_arrow(f"SELECT sample_id FROM ({kept_sql}) WHERE keep", [])
        codes[~pc.is_in(points.sample_ids, value_set=kept.column(0).combine_chunks()).to_numpy(zero_copy_only=False)] = 1
    excluded = lake.fetch_arrow(f"SELECT DISTINCT sample_id FROM ({exclusions.excluded_sql(lake, version)})", [])
    codes[pc.is_in(points.sample_ids, value_set=excluded.column(0).combine_chunks()).to_numpy(zero_copy_only=False)] = 2
    return Colours(codes, list(STATUS) if kept_sql is not None else ["in the data set", "dropped", "excluded"])
