"""Filters as predicates over stored stats (data-juicer's lesson): nothing is recomputed to re-threshold.

A :class:`FilterConfig` is a list of conditions such as ``vis_attn >= p25`` (a percentile of the data
set, optionally per task), ``clip_score >= 20`` (a value), ``task in recognition,matching`` or
``ocr_chars >= 5``. The engine gathers each sample's stats once into a table (:class:`StatsTable`),
then answers any threshold with SQL aggregates in DuckDB: kept and dropped overall, per task, per
category, histograms. Against a DuckLake version it gives the same answer forever (snapshots).

Where a stat lives: VisAttnScore and token counts on the sample; CLIPScore on the sample's item; OCR
stats on images (a sample takes the largest over its images: one readable label is enough).

Excluded samples (db/exclusions.py, as of the table's DuckLake version) are never kept, whatever the
conditions; reports count them (``excluded``, also inside ``dropped`` so that kept + dropped is still every
sample). Percentile thresholds are computed over every sample with the stat, excluded ones included:
taking one sample out then never moves a cut, so it drops exactly that sample and nothing else.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from db import metrics
from db.exclusions import excluded_sql
from db.lake import at_version
from db.samples_view import BRAND, CATEGORY, product_join

HIST_BINS = 50  # histogram bins kept per stat in the stats table
OPS = (">=", "<=", "!=", "==", ">", "<", "not in", "in")
FIELDS = {
    "task": "s.task",
    "category": CATEGORY,
    "brand": BRAND,
    "region": "coalesce(i.region, '(none)')",
    "issue_type": "coalesce(i.issue_type, '(none)')",
    "item_kind": "i.kind",
    "answer_format": "s.answer_format",
    "backend": "s.backend",
    "label": "coalesce(s.label, '(none)')",
    "answer_chars": "length(s.answer)",
    "question_chars": "length(s.question)",
}
TEXT_FIELDS = {"task", "category", "brand", "region", "issue_type", "item_kind", "answer_format", "backend", "label"}
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|<=|!=|==|>|<|=|not in|in)\s*(.+?)\s*$", re.IGNORECASE)


_SUFFIX = re.compile(r"\s+(per[ _]task|or[ _]missing)$", re.IGNORECASE)


class FilterError(ValueError):
    """A filter that cannot be applied as written (unknown stat, ambiguous model, bad value)."""


def metric_of(name: str) -> metrics.Metric:
    """The declared stat (db.metrics); a FilterError for a name no stat has."""
    try:
        return metrics.get(name)
    except KeyError as exc:
        raise FilterError(exc.args[0]) from None


@dataclass
class Condition:
    metric: str  # a stored metric (scores table) or a field of FIELDS
    op: str
    value: Any = None  # a number, a string, a list (in / not in); None when percentile is set
    percentile: float | None = None  # 0-100: the threshold is this percentile of the stat in the data set
    model_id: str | None = None  # which model's scores, where several models scored the metric
    segment: str | None = None  # VisAttnScore segment (answer by default)
    per_task: bool = False  # percentile within each task
    keep_missing: bool = False  # a sample without this stat passes (default: it is dropped)

    def __post_init__(self):
        if self.op == "=":
            self.op = "=="
        if self.op not in OPS:
            raise FilterError(f"unknown operator {self.op!r}; use one of {', '.join(OPS)}")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise FilterError("a percentile is between 0 and 100")
        if self.op in ("in", "not in") and not isinstance(self.value, list):
            raise FilterError(f"{self.metric} {self.op} needs a list")
        if isinstance(self.value, list) and self.metric not in TEXT_FIELDS:
            try:
                self.value = [float(v) for v in self.value]
            except (TypeError, ValueError):
                raise FilterError(f"{self.metric} {self.op} needs a number list, not {self.value!r}") from None
        if self.is_field and self.metric not in FIELDS:
            raise FilterError(f"unknown field {self.metric!r}")
        if self.metric in TEXT_FIELDS and self.op not in ("==", "!=", "in", "not in"):
            raise FilterError(f"{self.metric} is text: use ==, !=, in or not in")

    @property
    def is_field(self) -> bool:
        return self.metric in FIELDS

    @classmethod
    def parse(cls, text: str, **extra) -> "Condition":
        """``vis_attn >= p25``, ``clip_score >= 20``, ``task in recognition,matching``, ``category != Grocery``,
        ``vis_attn >= p25 per task``, ``ocr_chars >= 5 or missing``."""
        # trailing words: "per task" (percentile within each task), "or missing" (no stat passes)
        words = text.strip()
        while found := _SUFFIX.search(words):  # in either order
            extra["per_task" if found.group(1).lower().startswith("per") else "keep_missing"] = True
            words = words[: found.start()]
        m = _CONDITION.match(words)
        if not m:
            raise FilterError(f"cannot read the condition {text!r}; write e.g. 'vis_attn >= p25' or 'task in recognition,matching'")
        metric, op, raw = m.group(1), m.group(2).lower(), m.group(3)
        if op in ("in", "not in"):
            return cls(metric, op, [v.strip() for v in raw.split(",") if v.strip()], **extra)
        pct = re.fullmatch(r"[pP](\d+(?:\.\d+)?)", raw)
        if pct:
            return cls(metric, op, None, float(pct.group(1)), **extra)
        if metric in TEXT_FIELDS:
            return cls(metric, op, raw, **extra)
        try:
            return cls(metric, op, float(raw), **extra)
        except ValueError:
            raise FilterError(f"{metric} {op} needs a number or a percentile like p25, not {raw!r}") from None

    def describe(self) -> str:
        value = f"p{self.percentile:g}" if self.percentile is not None else (",".join(map(str, self.value)) if isinstance(self.value, list) else self.value)
        extras = [x for x in (f"model={self.model_id}" if self.model_id else "", "per task" if self.per_task else "",
                              "missing passes" if self.keep_missing else "") if x]
        return f"{self.metric} {self.op} {value}" + (f" ({', '.join(extras)})" if extras else "")


@dataclass
class FilterConfig:
    conditions: list[Condition] = field(default_factory=list)
    selection: str | None = None  # only the samples of a named selection (vitpro sample)
    segment: str = "answer"  # default VisAttnScore segment

    def to_dict(self) -> dict[str, Any]:
        return {"conditions": [asdict(c) for c in self.conditions], "selection": self.selection, "segment": self.segment}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FilterConfig":
        return cls([Condition(**c) for c in data.get("conditions", [])], data.get("selection"), data.get("segment", "answer"))

    def describe(self) -> list[str]:
        return [c.describe() for c in self.conditions] + ([f"only selection {self.selection!r}"] if self.selection else [])

    def metrics(self) -> list[Condition]:
        return [c for c in self.conditions if not c.is_field]


@dataclass
class StatSpec:
    metric: str
    model_id: str
    segment: str

    @property
    def column(self) -> str:
        digest = hashlib.sha256(f"{self.metric}|{self.model_id}|{self.segment}".encode()).hexdigest()[:8]
        return f"m_{re.sub(r'[^a-z0-9_]', '_', self.metric.lower())}_{digest}"


def stored_models(lake, metric: str, *, segment: str = "", version: int | None = None, scored_only: bool = False) -> list[str]:
    """The models that stored ``metric`` (for the subjects it is about), sorted; ``scored_only``: only those
    with at least one value (not just "could not be scored" rows)."""
    return [m for (m,) in lake.fetchall(
        f"SELECT DISTINCT model_id FROM {at_version('scores', version)} WHERE metric = ? AND segment = ? AND subject_kind = ?"
        f"{' AND value IS NOT NULL' if scored_only else ''} ORDER BY 1",
        [metric, segment, metric_of(metric).subject],
    )]


def resolve(lake, config: FilterConfig, version: int | None = None, *, models_of=None) -> FilterConfig:
    """A copy of ``config`` in which each stat condition names its model (the one named, or the only one in
    the store: an error if several) and its segment: what a saved filter or snapshot records, so it says
    exactly what it used. ``config`` itself is left as it was. ``models_of(metric, segment)``: what
    :func:`stored_models` says, from a cache (the app keeps it until the next commit to scores: the query
    scans every score)."""
    conditions = []
    for cond in config.conditions:
        if cond.is_field:
            conditions.append(cond)
            continue
        segment = cond.segment if cond.segment is not None else metrics.default_segment(metric_of(cond.metric).name, config.segment)
        models = (models_of(cond.metric, segment) if models_of is not None
                  else stored_models(lake, cond.metric, segment=segment, version=version))
        if cond.model_id:
            if cond.model_id not in models:
                raise FilterError(f"no {cond.metric} scores from model {cond.model_id!r}" + (f"; there are: {', '.join(models)}" if models else ""))
            model = cond.model_id
        elif len(models) == 1:
            model = models[0]
        elif not models:
            raise FilterError(f"no {cond.metric} scores stored" + (f" for segment {segment!r}" if segment else "") + "; score first (vitpro score ...)")
        else:
            raise FilterError(f"{cond.metric} comes from {len(models)} models; name one: {', '.join(models)}")
        conditions.append(replace(cond, model_id=model, segment=segment))
    return FilterConfig(conditions, config.selection, config.segment)


def specs_of(config: FilterConfig) -> list[StatSpec]:
    """The stats a resolved config (:func:`resolve`) reads, each once, in the order of its conditions."""
    specs: list[StatSpec] = []
    for cond in config.metrics():
        spec = StatSpec(cond.metric, cond.model_id, cond.segment)
        if spec not in specs:
            specs.append(spec)
    return specs


def resolve_models(lake, config: FilterConfig, version: int | None = None, *, models_of=None) -> list[StatSpec]:
    """The stats ``config`` reads, each metric's model resolved as :func:`resolve` does (``config`` is not changed)."""
    return specs_of(resolve(lake, config, version, models_of=models_of))


class StatsTable:
    """Every sample's fields and stats in one temporary DuckDB table; thresholds are then aggregates."""

    def __init__(self, lake, specs: list[StatSpec], *, version: int | None = None, selection: str | None = None,
                 saved: str | None = None, sorted_cache: str | None = None):
        """``saved``: a Parquet file written by :meth:`save` for the same specs, selection and data, read in
        place (a view over the file) instead of gathering the stats again: the app keeps one per store
        version on disk, so a restarted server opens a file instead of joining every sample with its scores.
        The file must stay where it is while the table is used. Raises ValueError where the file does not
        hold this table's columns (the caller then builds it).

        ``sorted_cache``: a path prefix under which each stat's sorted values (what percentiles are looked
        up in) are kept as ``.npz`` files: read where present, written when first computed."""
        self.lake = lake
        self.specs = specs
        self.version = version
        self.sorted_cache = sorted_cache
        key = json.dumps([[s.metric, s.model_id, s.segment] for s in specs] + [version, selection])
        self.name = "_stats_" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if saved is None:
            self._build(selection)
        else:
            self._load(saved)
        self._derive()

    def columns(self) -> list[str]:
        """Every column the table has, in order (what a saved copy must hold)."""
        stats = [s.column for s in self.specs]
        return ["sample_id", "item_id", *FIELDS, "_excluded", *stats, "_task_code", "_category_code", *(f"_bin_{c}" for c in stats)]

    def save(self, path: str) -> None:
        """Write the table as Parquet to ``path`` (the caller makes it atomic: a temporary name, then a rename)."""
        self.lake.execute(f"COPY {self.name} TO {_literal(str(path))} (FORMAT parquet)")

    def _drop(self) -> None:
        """This table's name freed, whether a table (built) or a view (loaded) holds it now."""
        kinds = {k for (k,) in self.lake.fetchall(
            "SELECT 'TABLE' FROM duckdb_tables() WHERE temporary AND table_name = ? UNION ALL "
            "SELECT 'VIEW' FROM duckdb_views() WHERE temporary AND view_name = ?", [self.name, self.name])}
        for kind in kinds:
            self.lake.execute(f"DROP {kind} IF EXISTS {self.name}")

    def _load(self, path: str) -> None:
        # A view, not a copy: copying a million rows into memory cost ~0.6 s per server start, and a scan
        # of the columnar file costs a slider move ~15 ms more than a scan of the in-memory table.
        self._drop()
        self.lake.execute(f"CREATE TEMP VIEW {self.name} AS SELECT * FROM read_parquet({_literal(str(path))})")
        found = [r[0] for r in self.lake.fetchall(f"DESCRIBE {self.name}")]
        if found != self.columns():
            self._drop()
            raise ValueError(f"{path} holds other columns than this stats table")

    def _build(self, selection: str | None) -> None:
        v = self.version
        fields = ", ".join(f"{expr} AS {name}" for name, expr in FIELDS.items())
        joins, params = [], []
        for spec in self.specs:
            kind = metric_of(spec.metric).subject
            if kind == "sample":
                joins.append(
                    f"LEFT JOIN (SELECT subject_id AS sample_id, any_value(value) AS {spec.column} FROM {at_version('scores', v)} "
                    f"WHERE subject_kind = 'sample' AND metric = ? AND model_id = ? AND segment = ? GROUP BY subject_id) USING (sample_id)"
                )
            elif kind == "item":
                joins.append(
                    f"LEFT JOIN (SELECT subject_id AS item_id, any_value(value) AS {spec.column} FROM {at_version('scores', v)} "
                    f"WHERE subject_kind = 'item' AND metric = ? AND model_id = ? AND segment = ? GROUP BY subject_id) USING (item_id)"
                )
            else:  # image stats: the largest over the sample's images
                joins.append(
                    f"LEFT JOIN (SELECT x.sample_id, max(sc.value) AS {spec.column} FROM "
                    f"(SELECT sample_id, unnest(CAST(image_ids AS VARCHAR[])) AS image_id FROM {at_version('samples', v)}) x "
                    f"JOIN {at_version('scores', v)} sc ON sc.subject_kind = 'image' AND sc.subject_id = x.image_id "
                    f"AND sc.metric = ? AND sc.model_id = ? AND sc.segment = ? GROUP BY x.sample_id) USING (sample_id)"
                )
            params += [spec.metric, spec.model_id, spec.segment]
        chosen = ""
        if selection:
            chosen = f"WHERE s.sample_id IN (SELECT subject_id FROM {at_version('selections', v)} WHERE name = ? AND subject_kind = 'sample')"
        excluded = f"(SELECT DISTINCT sample_id FROM ({excluded_sql(self.lake, v)}))"
        base = (
            f"SELECT s.sample_id, s.item_id, {fields}, ex.sample_id IS NOT NULL AS _excluded FROM {at_version('samples', v)} s "
            f"JOIN {at_version('items', v)} i USING (item_id) {product_join(v)} "
            f"LEFT JOIN {excluded} ex ON ex.sample_id = s.sample_id {chosen}"
        )
        stats = [s.column for s in self.specs]
        # One statement: the gathered rows (materialized once as a CTE), integer codes for task and category
        # (grouping on integers) and each stat's histogram bin over its range, written once. At a million
        # samples a second rewrite of the table to add the codes cost ~40% of the build, and sorting the wide
        # rows by task ~3 s more for per-task thresholds only ~50 ms faster per slider move: not sorted.
        # one row: each stat's range (no stats: a constant row, not one per sample)
        ranges = f"SELECT {', '.join(f'min({c}) AS lo_{k}, max({c}) AS hi_{k}' for k, c in enumerate(stats))} FROM g" if stats else "SELECT 1 AS _none"
        bins = "".join(
            # the same arithmetic as a literal bin width: (hi - lo) / bins, or 1 when every value is equal
            f", CASE WHEN g.{c} IS NOT NULL THEN least(CAST(floor((g.{c} - r.lo_{k}) / (CASE WHEN r.hi_{k} > r.lo_{k} "
            f"THEN (r.hi_{k} - r.lo_{k}) / {HIST_BINS} ELSE 1.0 END)) AS INTEGER), {HIST_BINS - 1}) END AS _bin_{c}"
            for k, c in enumerate(stats)
        )
        gathered = (
            f"WITH g AS MATERIALIZED (SELECT {', '.join(['b.*', *stats])} FROM ({base}) b {' '.join(joins)}), "
            f"r AS ({ranges}), "
            "tc AS (SELECT task, CAST(row_number() OVER (ORDER BY task) AS INTEGER) AS _task_code FROM (SELECT DISTINCT task FROM g)), "
            "cc AS (SELECT category, CAST(row_number() OVER (ORDER BY category) AS INTEGER) AS _category_code FROM (SELECT DISTINCT category FROM g)) "
            f"SELECT g.*, tc._task_code, cc._category_code{bins} FROM g JOIN tc USING (task) JOIN cc USING (category) CROSS JOIN r"
        )
        self._drop()
        self.lake.execute(f"CREATE TEMP TABLE {self.name} AS {gathered}", [*([selection] if selection else []), *params])

    def _derive(self) -> None:
        """What the evaluation keeps beside the table, read from the table itself (built or loaded alike)."""
        stats = [s.column for s in self.specs]
        self._ranges: dict[str, tuple[float | None, float | None]] = {}
        if stats:
            row = self.lake.fetchone(f"SELECT {', '.join(f'min({c}), max({c})' for c in stats)} FROM {self.name}")
            self._ranges = {c: (row[2 * k], row[2 * k + 1]) for k, c in enumerate(stats)}
        self._tasks = dict(self.lake.fetchall(f"SELECT DISTINCT _task_code, task FROM {self.name}"))
        self._categories = dict(self.lake.fetchall(f"SELECT DISTINCT _category_code, category FROM {self.name}"))
        self._sorted: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._cache: dict[tuple[str, float, bool], Any] = {}
        self._totals: dict[str, dict[tuple, tuple[int, int]]] = {}  # summary()'s counts that no cut changes, by its bins
        self._arrays: dict[str, Any] = {}  # columns read into numpy once, for changes of cut in memory (_kept_in_memory)

    def resolve(self, config: FilterConfig) -> FilterConfig:
        """A copy of ``config`` whose stat conditions name the model and segment of this table's column for
        them (a condition that names neither reads the table's only column of its stat)."""
        return FilterConfig([self._resolved(c, config.segment) for c in config.conditions], config.selection, config.segment)

    def _resolved(self, cond: Condition, default_segment: str = "answer") -> Condition:
        if cond.is_field or (cond.model_id is not None and cond.segment is not None):
            return cond
        segment = cond.segment if cond.segment is not None else metrics.default_segment(metric_of(cond.metric).name, default_segment)
        found = [s.model_id for s in self.specs if (s.metric, s.segment) == (cond.metric, segment) and cond.model_id in (None, s.model_id)]
        if len(found) != 1:
            raise FilterError(f"{cond.metric} is not in this stats table" if not found else f"{cond.metric} comes from several models here; name one")
        return replace(cond, model_id=found[0], segment=segment)

    def column(self, cond: Condition) -> str:
        if cond.is_field:
            return cond.metric
        cond = self._resolved(cond)
        for spec in self.specs:
            if (spec.metric, spec.model_id, spec.segment) == (cond.metric, cond.model_id, cond.segment):
                return spec.column
        raise FilterError(f"{cond.metric} is not in this stats table")

    # ---- evaluating ------------------------------------------------------------------------------------
    # A threshold change is the interactive case (a slider in the app): percentiles are computed once per
    # (stat, percentile) and kept, then every count and histogram comes from ONE pass over the kept samples
    # (GROUPING SETS), with the thresholds as literals. bench/filters.py times it on 2,000,000 samples.
    def _sorted_values(self, col: str):
        """The stat's non-missing values sorted, overall and per task (read once): any percentile is then
        a lookup, computed exactly as DuckDB's quantile_cont does."""
        if col not in self._sorted:
            import numpy as np

            kept = self._read_sorted(col)
            if kept is None:
                data = self.lake.fetchnumpy(f"SELECT _task_code, {col} AS v FROM {self.name} WHERE {col} IS NOT NULL ORDER BY _task_code, {col}")
                codes, values = np.asarray(data["_task_code"], dtype=np.int64), np.asarray(data["v"], dtype=float)
                kept = np.sort(values, kind="stable"), values, codes
                self._write_sorted(col, *kept)
            overall, by_task, codes = kept
            per_task = {}
            for code, task in self._tasks.items():
                lo, hi = np.searchsorted(codes, code, "left"), np.searchsorted(codes, code, "right")
                per_task[task] = by_task[lo:hi]
            self._sorted[col] = (overall, per_task)
        return self._sorted[col]

    def _sorted_path(self, col: str) -> str | None:
        return None if self.sorted_cache is None else f"{self.sorted_cache}.{col}.npz"

    def _read_sorted(self, col: str):
        """(overall sorted, sorted by task then value, their task codes) from the sorted cache; None where absent."""
        path = self._sorted_path(col)
        if path is None:
            return None
        import numpy as np

        try:
            with np.load(path) as f:
                return f["overall"], f["by_task"], f["codes"]
        except (OSError, ValueError, KeyError):
            return None

    def _write_sorted(self, col: str, overall, by_task, codes) -> None:
        import os

        import numpy as np

        path = self._sorted_path(col)
        if path is None:
            return
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, overall=overall, by_task=by_task, codes=codes)
            os.replace(tmp, path)  # whole files only: another server process may be reading it
        except OSError:  # a full disk: only the next server start is slower
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _quantiles(self, config: FilterConfig) -> None:
        """Compute (and keep) every percentile threshold the config needs that is not known yet."""
        for cond in self.resolve(config).conditions:
            if cond.percentile is None:
                continue
            key = (self.column(cond), cond.percentile, cond.per_task)
            if key in self._cache:
                continue
            overall, per_task = self._sorted_values(key[0])
            fraction = cond.percentile / 100.0
            if cond.per_task:
                self._cache[key] = {task: _quantile_cont(values, fraction) for task, values in per_task.items()}
            else:
                self._cache[key] = _quantile_cont(overall, fraction)

    def _threshold(self, cond: Condition) -> Any:
        return self._cache[(self.column(cond), cond.percentile, cond.per_task)]

    def _keep_predicate(self, config: FilterConfig, alias: str = "x") -> str:
        config = self.resolve(config)
        self._quantiles(config)
        predicates = []
        for cond in config.conditions:
            col = f"{alias}.{self.column(cond)}"
            op = {"==": "=", "in": "IN", "not in": "NOT IN"}.get(cond.op, cond.op)
            if cond.percentile is not None and cond.per_task:
                # one AND per task, OR'ed: DuckDB evaluates this ~2x faster than a CASE on the task code
                # (~0.13 s against ~0.28 s a change at 2,000,000 samples). A task without a cut compares
                # with NULL, as the CASE's ELSE did: keep_missing decides for its samples.
                # Every task gets its term, one with no value of the stat too (NULL): without one, its
                # samples would be FALSE in every term and dropped whatever keep_missing says.
                cuts = self._threshold(cond)
                test = " OR ".join(f"({alias}._task_code = {code} AND {col} {op} {'NULL' if cuts.get(t) is None else _literal(cuts[t])})"
                                   for code, t in sorted(self._tasks.items())) or "NULL"
            else:
                if cond.percentile is not None:
                    value = self._threshold(cond)
                    rhs = "NULL" if value is None else _literal(value)
                elif isinstance(cond.value, list):
                    rhs = "(" + ", ".join(_literal(v) for v in cond.value) + ")" if cond.value else None
                else:
                    rhs = _literal(cond.value)
                if rhs is None:  # an empty list: nothing is in it
                    test = "FALSE" if cond.op == "in" else "TRUE"
                else:
                    test = f"{col} {op} {rhs}"
            predicates.append(f"coalesce({test}, {'TRUE' if cond.keep_missing else 'FALSE'})")
        # an excluded sample is out whatever the conditions say
        return " AND ".join([f"NOT {alias}._excluded", *predicates])

    def kept_sql(self, config: FilterConfig) -> str:
        """SQL of (sample_id, task, category, keep) for every sample."""
        return f"SELECT x.sample_id, x.task, x.category, {self._keep_predicate(config)} AS keep FROM {self.name} x"

    def thresholds(self, config: FilterConfig) -> dict[str, Any]:
        """The value each percentile condition resolved to (per task where asked), keyed by the condition
        with its model named."""
        config = self.resolve(config)
        self._quantiles(config)
        out: dict[str, Any] = {}
        for cond in config.conditions:
            if cond.percentile is not None:
                value = self._threshold(cond)
                out[cond.describe()] = dict(sorted(value.items())) if cond.per_task else value
        return out

    def value_range(self, cond: Condition) -> tuple[float | None, float | None]:
        """(lowest, highest) value of the condition's stat over the samples (None, None when none has it)."""
        return self._range(self.column(cond))

    def margin(self, cond: Condition, threshold: float, n: int = 3) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The ``n`` samples just at or above ``threshold`` and the ``n`` just below it, nearest first:
        what a curator reads to judge where a cut falls."""
        col = self.column(cond)
        # excluded samples are out of the data set: no use judging a cut on them
        above = self.lake.fetchall(f"SELECT sample_id, {col} FROM {self.name} WHERE {col} >= ? AND NOT _excluded ORDER BY {col}, sample_id LIMIT ?", [threshold, n])
        below = self.lake.fetchall(f"SELECT sample_id, {col} FROM {self.name} WHERE {col} < ? AND NOT _excluded ORDER BY {col} DESC, sample_id LIMIT ?", [threshold, n])
        return above, below

    def _range(self, col: str) -> tuple[float | None, float | None]:
        if col not in self._ranges:
            self._ranges[col] = self.lake.fetchone(f"SELECT min({col}), max({col}) FROM {self.name}")
        return self._ranges[col]

    def summary(self, config: FilterConfig, hist: list[Condition] = (), bins: int = HIST_BINS) -> tuple["FilterReport", dict[str, list[tuple[float, int, int]]]]:
        """Kept/dropped overall, per task and per category, and a histogram (with kept counts) of each stat in
        ``hist``, in one pass over the kept samples (GROUPING SETS on integer codes and precomputed bins; the
        counts no cut changes come from one pass per table)."""
        config = self.resolve(config)
        keep = self._keep_predicate(config)
        bin_exprs, ranges = [], []
        for cond in (self._resolved(c, config.segment) for c in hist):
            col = self.column(cond)
            lo, hi = self._range(col)
            width = (hi - lo) / bins if lo is not None and hi > lo else 1.0
            ranges.append((col, lo, width))
            if lo is None:
                bin_exprs.append("CAST(NULL AS INTEGER)")
            elif bins == HIST_BINS and not cond.is_field:
                bin_exprs.append(f"x._bin_{col}")
            else:  # least() skips NULLs: test for them first
                bin_exprs.append(f"CASE WHEN x.{col} IS NOT NULL THEN least(CAST(floor((x.{col} - {_literal(lo)}) / {_literal(width)}) AS INTEGER), {bins - 1}) END")
        binned = "".join(f", {e} AS _b{k}" for k, e in enumerate(bin_exprs))
        sets = ["(_task_code, _category_code)"] + [f"(_b{k})" for k in range(len(bin_exprs))]
        bin_cols = [f"_b{k}" for k in range(len(bin_exprs))]

        def grouped(aggregates: str, where: str = "") -> list[tuple]:
            return self.lake.fetchall(
                f"SELECT {', '.join(f'GROUPING(_b{k})' for k in range(len(bin_exprs))) + ', ' if bin_exprs else ''}"
                f"_task_code, _category_code{''.join(', ' + c for c in bin_cols)}, {aggregates} "
                f"FROM (SELECT x._task_code, x._category_code{binned}, x._excluded FROM {self.name} x {where}) "
                f"GROUP BY GROUPING SETS ({', '.join(sets)})"
            )

        # What a cut does not change (every sample's task, category, bins, exclusion) is counted once per
        # table and bins; a change then groups only the kept samples: ~30% less per change than counting
        # both in every pass, as the filter runs before the grouping.
        totals = self._totals.get(binned)
        if totals is None:
            totals = self._totals[binned] = {tuple(r[:-2]): r[-2:] for r in grouped("count(*), count(*) FILTER (WHERE _excluded)")}
        kept_of = self._kept_in_memory(config, [c for c, _, _ in ranges]) if bins == HIST_BINS else None
        if kept_of is None:  # a condition on a text field, or histograms of other bins: in SQL
            kept_of = {tuple(r[:-1]): r[-1] for r in grouped("count(*)", f"WHERE {keep}")}
        rows = [(*key, kept_of.get(key, 0), total, excluded_n) for key, (total, excluded_n) in totals.items()]
        nb = len(bin_exprs)
        tasks: dict[str, list[int]] = {}
        categories: dict[str, list[int]] = {}
        excluded: dict[str, int] = {}
        hists: list[dict[int, tuple[int, int]]] = [{} for _ in range(nb)]
        for row in rows:
            flags, task_code, category_code, values = row[:nb], row[nb], row[nb + 1], row[nb + 2: 2 * nb + 2]
            kept_n, total, excluded_n = int(row[-3]), int(row[-2]), int(row[-1])
            grouped = [k for k, f in enumerate(flags) if f == 0]
            if grouped:
                if values[grouped[0]] is not None:  # samples without the stat are in no bin
                    hists[grouped[0]][int(values[grouped[0]])] = (total, kept_n)
                continue
            for table, key in ((tasks, self._tasks[task_code]), (categories, self._categories[category_code])):
                counts = table.setdefault(key, [0, 0])
                counts[0] += kept_n
                counts[1] += total - kept_n
            if excluded_n:
                excluded[self._tasks[task_code]] = excluded.get(self._tasks[task_code], 0) + excluded_n
        kept = sum(c[0] for c in tasks.values())
        dropped = sum(c[1] for c in tasks.values())
        per_task = sorted((t, k, d) for t, (k, d) in tasks.items())
        per_category = sorted(((c, k, d) for c, (k, d) in categories.items()), key=lambda r: (-r[1], r[0]))
        report = FilterReport(kept, dropped, per_task, per_category, self.thresholds(config), sum(excluded.values()), dict(sorted(excluded.items())))
        histograms = {}
        for k, (col, lo, width) in enumerate(ranges):
            histograms[col] = [] if lo is None else [(lo + b * width, *hists[k].get(b, (0, 0))) for b in range(bins)]
        return report, histograms

    # ---- a change of cut, in memory -----------------------------------------------------------------
    def _array(self, expr: str, dtype) -> Any:
        """One column of the table as a numpy array, read once: the table never changes once built."""
        import numpy as np

        if expr not in self._arrays:
            column = self.lake.fetch_arrow(f"SELECT {expr} AS v FROM {self.name}").column(0)
            self._arrays[expr] = np.ascontiguousarray(column.to_numpy(), dtype=dtype)
        return self._arrays[expr]

    def _kept_in_memory(self, config: FilterConfig, hist_cols: list[str]) -> dict[tuple, int] | None:
        """The kept counts summary() groups, keyed as its GROUPING SETS query keys them, computed with numpy
        over columns read once; None when a condition is not a comparison of a stat (those stay in SQL).

        Why: at 20,000,000 samples DuckDB's pass (the keep test, then three groupings) took ~0.5 s a change
        with global cuts and ~1.9 s with per-task cuts (an OR of one AND per task) on 2 cores; here a change
        is a few vectorised comparisons and bincounts on small integer codes. Same semantics as the SQL:
        a comparison with a missing value (or with a task that has no cut) is NULL, and coalesce() turns
        it into the condition's keep_missing."""
        import numpy as np

        ops = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal, "!=": np.not_equal}
        if any(c.is_field or c.op not in ops or isinstance(c.value, list) for c in config.conditions) or any(col not in self._ranges for col in hist_cols):
            return None
        self._quantiles(config)
        task = self._array("_task_code", np.int64)
        keep = self._array("NOT coalesce(_excluded, FALSE)", np.bool_).copy()
        for cond in config.conditions:
            col = self.column(cond)
            values = self._array(f"coalesce({col}, 'NaN'::DOUBLE)", np.float64)
            valid = self._array(f"{col} IS NOT NULL AND NOT isnan({col})", np.bool_)  # read once, as the values
            if cond.percentile is not None and cond.per_task:
                by_code = np.full(max(self._tasks, default=0) + 1, np.nan)
                codes = {t: code for code, t in self._tasks.items()}
                for t, v in self._threshold(cond).items():
                    if v is not None and t in codes:
                        by_code[codes[t]] = v
                rhs = by_code[task]
                valid = valid & ~np.isnan(by_code)[task]  # a task with no cut compares with NULL
            else:
                value = self._threshold(cond) if cond.percentile is not None else cond.value
                if value is None:
                    rhs, valid = 0.0, np.zeros_like(valid)
                else:
                    rhs = float(value)
            with np.errstate(invalid="ignore"):
                test = ops[cond.op](values, rhs)
            test &= valid
            keep &= (test | ~valid) if cond.keep_missing else test
        rows = np.flatnonzero(keep)
        n_cat = max(self._categories, default=0) + 1  # the codes the table holds, known since it was built
        pair = self._array(f"_task_code * {n_cat} + _category_code", np.int64)
        nb = len(hist_cols)
        out: dict[tuple, int] = {}
        pairs = np.bincount(pair[rows], minlength=(max(self._tasks, default=0) + 1) * n_cat)
        for code in np.flatnonzero(pairs):
            out[(*([1] * nb), int(code // n_cat), int(code % n_cat), *([None] * nb))] = int(pairs[code])
        for k, col in enumerate(hist_cols):
            bins = self._array(f"coalesce(_bin_{col}, -1) + 1", np.int64)  # 0: no value
            counts = np.bincount(bins[rows], minlength=HIST_BINS + 1)
            for b in np.flatnonzero(counts):
                flags = [0 if j == k else 1 for j in range(nb)]
                key_bins = [None] * nb
                key_bins[k] = None if b == 0 else int(b - 1)
                out[(*flags, None, None, *key_bins)] = int(counts[b])
        return out

    def report(self, config: FilterConfig) -> "FilterReport":
        return self.summary(config)[0]

    def kept_ids(self, config: FilterConfig) -> list[str]:
        return [r[0] for r in self.lake.fetchall(f"SELECT sample_id FROM ({self.kept_sql(config)}) WHERE keep ORDER BY sample_id")]

    def histogram(self, cond: Condition, config: FilterConfig, bins: int = 50) -> list[tuple[float, int, int]]:
        """``bins`` rows of (bin start, samples, kept samples) over the stat's range, for plots with the cut
        drawn (empty when no sample has the stat)."""
        return self.summary(config, [cond], bins)[1][self.column(self._resolved(cond, config.segment))]


def _quantile_cont(values, fraction: float) -> float | None:
    """DuckDB's quantile_cont (and numpy's default) on sorted values: interpolate at (n - 1) * fraction."""
    n = len(values)
    if n == 0:
        return None
    h = (n - 1) * fraction
    lo = int(h)
    if lo + 1 >= n or h == lo:
        return float(values[min(lo, n - 1)])
    return float(values[lo] + (h - lo) * (values[lo + 1] - values[lo]))


def _literal(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # From a string: DuckDB reads a bare 0.0150455016573396 as a DECIMAL, rounded to its scale, and a
        # sample exactly at a cut could then fall on the wrong side of it.
        return f"CAST('{float(value)!r}' AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class FilterReport:
    kept: int
    dropped: int
    per_task: list[tuple[str, int, int]]
    per_category: list[tuple[str, int, int]]
    thresholds: dict[str, Any]
    excluded: int = 0  # samples not kept because a curator excluded them (counted in dropped too)
    per_task_excluded: dict[str, int] = field(default_factory=dict)  # the same, per task (tasks with none left out)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stats_for(lake, config: FilterConfig, *, version: int | None = None) -> StatsTable:
    return StatsTable(lake, resolve_models(lake, config, version), version=version, selection=config.selection)
