"""The web app's pages: server time per click on a store, each page run as Streamlit runs it (AppTest),
cold (first visit of the process: stats table built, caches empty) and warm (the next clicks).

    VITPRO_HOME=var python bench/ui_pages.py        # the demo's store (run `make demo` first)

Target: every page answers a click in under a second on the demo data. Also prints, for the Thresholds
page, one slider move against rebuilding the filter engine's stats table on every move (the naive way a
page script would do it), as a ratio. The 2,000,000-sample threshold figure is bench/filters.py's.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAGES = ("overview", "inspect", "thresholds", "pilot", "jobs", "snapshots", "training")


def main() -> int:
    from streamlit.testing.v1 import AppTest

    from curation.filters import FilterConfig, stats_for
    from db import saved_filters
    from db.users import SignedIn
    from ui import context
    from ui.context import USER_KEY

    admin = SignedIn("admin", "admin")
    print(f"store: {context.settings().describe()['catalog']}")
    print(f"{'page':<12}{'cold ms':>10}{'warm ms (median of 5)':>24}")
    worst = 0.0
    for name in PAGES:
        times = []
        for _ in range(6):
            at = AppTest.from_file(str(REPO / "ui" / "pages" / f"{name}.py"), default_timeout=120)
            at.session_state[USER_KEY] = admin
            started = time.perf_counter()
            at.run()
            times.append(1000 * (time.perf_counter() - started))
            if at.exception:
                print(f"{name}: {at.exception[0].value}")
                return 1
        warm = statistics.median(times[1:])
        worst = max(worst, warm)
        print(f"{name:<12}{times[0]:>10.0f}{warm:>24.0f}")
    print(f"slowest warm page: {worst:.0f} ms (target < 1000 ms)")

    filters = saved_filters.list_all(context.engine())
    if filters:
        config = FilterConfig.from_dict(filters[-1].config)
        lake = context.lake()
        table = context.stats_table(config)
        moves, naive = [], []
        for k in range(10):
            cond = next(c for c in config.conditions if c.percentile is not None or isinstance(c.value, float))
            if cond.percentile is not None:
                cond.percentile = 10.0 + 5 * k
            started = time.perf_counter()
            table.summary(config, hist=config.metrics())
            moves.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            stats_for(lake, config).summary(config, hist=config.metrics())
            naive.append(1000 * (time.perf_counter() - started))
        m, n = statistics.median(moves), statistics.median(naive)
        print(f"slider move on filter {filters[-1].name!r}: {m:.1f} ms with the shared stats table, {n:.1f} ms rebuilding it each move: {n / m:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
