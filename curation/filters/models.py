"""Which model's scores each stat condition reads: the models that stored a stat, a config resolved to
name one per condition (what a saved filter or snapshot records), and the stats (:class:`StatSpec`) a
resolved config reads, each a column of the stats table."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from db.lake import metrics
from db.lake.connection import at_version

from .grammar import FilterConfig, FilterError, metric_of


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
