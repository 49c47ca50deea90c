"""Moving a cut between its two forms without moving it: the value a percentile stands for and the
percentile a value stands for, over a stats table's samples (curation.filters.StatsTable), so that a
curator switching a slider from percentile to value (or back) keeps the same samples."""
from __future__ import annotations

from curation.filters import Condition, FilterConfig


def value_at(table, cond: Condition) -> float | None:
    """The value the percentile condition ``cond`` resolves to (the filter engine's own quantile)."""
    single = Condition(cond.metric, cond.op, None, cond.percentile, model_id=cond.model_id, segment=cond.segment)
    return table.thresholds(FilterConfig([single]))[single.describe()]


def percentile_of(table, cond: Condition, value: float) -> float | None:
    """The percentile (0-100) whose value is ``value``: the inverse of DuckDB's quantile_cont (interpolation
    at (n - 1) * fraction), so ``value_at`` of the result gives ``value`` back and the cut keeps the same
    samples. None when no sample has the stat."""
    col = table.column(cond)
    at_or_below, below_value, above_value, n = table.lake.fetchone(
        f"SELECT count({col}) FILTER (WHERE {col} <= ?), max({col}) FILTER (WHERE {col} <= ?), min({col}) FILTER (WHERE {col} > ?), "
        f"count({col}) FROM {table.name}", [value, value, value])
    return percentile_from_neighbours(int(at_or_below), below_value, above_value, int(n), value)


def percentile_from_neighbours(at_or_below: int, below_value: float | None, above_value: float | None, n: int, value: float) -> float | None:
    """The inverse of quantile_cont from the count of values at or below ``value`` and the nearest values
    on either side of it (pure: the SQL above gathers these)."""
    if n == 0:
        return None
    if n == 1 or at_or_below == 0:
        return 0.0
    if at_or_below == n or above_value is None:
        return 100.0
    i = at_or_below - 1  # index (in sorted order) of the last value <= value
    step = above_value - below_value
    position = i + ((value - below_value) / step if step > 0 else 0.0)
    return max(0.0, min(100.0, 100.0 * position / (n - 1)))
