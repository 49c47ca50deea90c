"""Filters as predicates over stored stats (data-juicer's lesson): nothing is recomputed to re-threshold.

A :class:`FilterConfig` is a list of conditions such as ``vis_attn >= p25`` (a percentile of the data
set, optionally per task), ``clip_score >= 20`` (a value), ``task in recognition,matching`` or
``ocr_chars >= 5``. The engine gathers each sample's stats once into a table (:class:`StatsTable`),
then answers any threshold with SQL aggregates in DuckDB: kept and dropped overall, per task, per
category, histograms. Against a DuckLake version it gives the same answer forever (snapshots).

Where a stat lives: VisAttnScore and token counts on the sample; CLIPScore on the sample's item; OCR
stats on images (a sample takes the largest over its images: one readable label is enough).

Excluded samples (db/lake/exclusions.py, as of the table's DuckLake version) are never kept, whatever the
conditions; reports count them (``excluded``, also inside ``dropped`` so that kept + dropped is still every
sample). Percentile thresholds are computed over every sample with the stat, excluded ones included:
taking one sample out then never moves a cut, so it drops exactly that sample and nothing else.

The package, by concern (every name below is importable from ``curation.filters`` itself):

* :mod:`.grammar` -- conditions and a filter's configuration: parsed, checked, described (FilterError,
  Condition, FilterConfig, the fields a condition may name);
* :mod:`.models` -- which model's scores a stat condition reads (stored_models, resolve, StatSpec);
* :mod:`.evaluation` -- the stats table and the SQL (and numpy) that answers a threshold (StatsTable);
* :mod:`.percentiles` -- percentile lookups on sorted values and their cache on disk;
* :mod:`.reports` -- what a filter keeps, as a report (FilterReport) built from the table's counts.
"""
from __future__ import annotations

from .evaluation import HIST_BINS, StatsTable, stats_for
from .grammar import FIELDS, OPS, TEXT_FIELDS, Condition, FilterConfig, FilterError, metric_of
from .models import StatSpec, resolve, resolve_models, specs_of, stored_models
from .reports import FilterReport

__all__ = [
    "FIELDS", "HIST_BINS", "OPS", "TEXT_FIELDS", "Condition", "FilterConfig", "FilterError", "FilterReport", "StatSpec", "StatsTable",
    "metric_of", "resolve", "resolve_models", "specs_of", "stats_for", "stored_models",
]
