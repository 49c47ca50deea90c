"""Percentile thresholds on a stat's sorted values: DuckDB's quantile_cont computed in Python, and the
sorted values kept on disk (``.npz``) beside the app's stats table so that a restarted server looks a
percentile up instead of sorting the stat again."""
from __future__ import annotations

import os


def quantile_cont(values, fraction: float) -> float | None:
    """DuckDB's quantile_cont (and numpy's default) on sorted values: interpolate at (n - 1) * fraction."""
    n = len(values)
    if n == 0:
        return None
    h = (n - 1) * fraction
    lo = int(h)
    if lo + 1 >= n or h == lo:
        return float(values[min(lo, n - 1)])
    return float(values[lo] + (h - lo) * (values[lo + 1] - values[lo]))


def read_sorted(path: str | None):
    """(overall sorted, sorted by task then value, their task codes) from a file :func:`write_sorted`
    wrote; None where there is none (or it cannot be read: the caller sorts again)."""
    if path is None:
        return None
    import numpy as np

    try:
        with np.load(path) as f:
            return f["overall"], f["by_task"], f["codes"]
    except (OSError, ValueError, KeyError):
        return None


def write_sorted(path: str | None, overall, by_task, codes) -> None:
    """Keep the sorted values at ``path`` (nothing when None); a failure to write only costs a sort later."""
    import numpy as np

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
