"""The Map page (issue 28): its cold read and figure, and a click, at 1,000,000 samples, against the naive way.

    python bench/map_page.py                      # 1,000,000 samples (about 3 minutes to build the store)
    python bench/map_page.py --samples 100000     # quicker
    python bench/map_page.py --keep               # keep the store (its folder is printed)

Builds a synthetic store (bench/synthetic_store.py: 1,000,000 samples over 250,000 items with 1-3 real JPEGs
each), then adds what the map and clusters jobs would write for every image: a projection (map_x, map_y: 12
Gaussian blobs), an older projection (the page's picker), a k-means cluster, a uniqueness and near-duplicate
groups (dup_group / dup_size, 1 image in 10 in a group of two or more). Every sample's point is its first
image's, so the map has one point per sample (four per item, jittered apart).

Ours (db/reads/map_reads.py and ui/views/map.py): one query for every point's columns (kept on disk per
store version), a figure of the 50,000 points with the smallest hash over a density of all points;
selections by numpy over every point. Naive: the same query fetched as rows, every point drawn (one trace
per task, lists of floats as a plotting script would pass them), a box or lasso selection by a Python loop
over every point (the lasso's loop timed on 100,000 points and scaled).

Timed, each the median of --reps:

- the page itself as Streamlit runs it (AppTest, as bench/ui_pages.py does): **new data** (its caches and
  the files under VITPRO_HOME/cache/reads removed: the first view after a job wrote new scores), **cold**
  (a fresh server process: in-memory caches cleared, the disk copy there), a **colour change** (task →
  CLIPScore) and a **box selection** (over a quarter of the map: every point inside counted and listed);
- the same steps without Streamlit, ours against naive: the read, the figure (built and serialised to the
  JSON the browser is sent, whose size is printed), a colour change, a box and a lasso over every point.

Targets (issue 28): cold <= 2 s and a click <= 1 s at 1,000,000 samples; each figure is marked PASS or FAIL.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROJECTION, OLDER = "tsne@ViT-B-32:openai", "pca@ViT-B-32:openai"
CLUSTERS, KMEANS = 12, "kmeans12@ViT-B-32:openai"
DEDUP = "dhash:12"
COLD_TARGET_S, CLICK_TARGET_S = 2.0, 1.0
DRAWN = 50_000  # the page's default number of points drawn (ui/views/map.py)


def add_map_rows(lake, *, projection: str = PROJECTION, older: str | None = OLDER) -> int:
    """What the map, clusters and dedup jobs write for every image of the store, in bulk (one transaction):
    map_x / map_y (12 Gaussian blobs on a circle; the older projection a plain Gaussian), cluster (the
    blob), uniqueness, dup_group / dup_size. Returns the number of images."""
    cols = "subject_kind, subject_id, metric, model_id, segment, value, flags, run_id, created_at"

    def body(con):
        con.execute("SELECT setseed(0.17)")
        con.execute(
            "CREATE TEMP TABLE _map_img AS SELECT image_id, CAST(hash(image_id) % ? AS INTEGER) AS c, sqrt(-2 * ln(1 - random())) AS r, "
            "random() AS a, random() AS u, random() AS d FROM (SELECT DISTINCT image_id FROM images)", [CLUSTERS])
        place = f"10 * cos(2 * pi() * c / {CLUSTERS}) + 1.4 * r * cos(2 * pi() * a)", f"10 * sin(2 * pi() * c / {CLUSTERS}) + 1.4 * r * sin(2 * pi() * a)"
        con.execute(
            f"INSERT INTO scores ({cols}) SELECT 'image', image_id, m.metric, ?, '', CASE WHEN m.metric = 'map_x' THEN {place[0]} ELSE {place[1]} END, "
            "NULL, 'bench-map', TIMESTAMPTZ '2025-02-01' FROM _map_img CROSS JOIN (VALUES ('map_x'), ('map_y')) m(metric)", [projection])
        if older:
            con.execute(
                f"INSERT INTO scores ({cols}) SELECT 'image', image_id, m.metric, ?, '', CASE WHEN m.metric = 'map_x' THEN r * cos(2 * pi() * a) "
                "ELSE r * sin(2 * pi() * a) END, NULL, 'bench-map-old', TIMESTAMPTZ '2025-01-01' FROM _map_img "
                "CROSS JOIN (VALUES ('map_x'), ('map_y')) m(metric)", [older])
        con.execute(f"INSERT INTO scores ({cols}) SELECT 'image', image_id, 'cluster', ?, '', c, NULL, 'bench-map', now() FROM _map_img", [KMEANS])
        con.execute(f"INSERT INTO scores ({cols}) SELECT 'image', image_id, 'uniqueness', ?, '', u, NULL, 'bench-map', now() FROM _map_img", [KMEANS])
        # near-duplicates: 1 image in 10 is in a group of 2-5 (numbered first), every other image alone
        con.execute(
            "CREATE TEMP TABLE _map_dup AS SELECT image_id, CASE WHEN d < 0.1 THEN CAST(floor(d * 100000) AS INTEGER) END AS g FROM _map_img")
        con.execute(
            f"INSERT INTO scores ({cols}) SELECT 'image', image_id, m.metric, ?, '', CASE WHEN m.metric = 'dup_group' THEN "
            "coalesce(g, 10000 + row_number() OVER ()) ELSE CASE WHEN g IS NULL THEN 1 ELSE count(*) OVER (PARTITION BY g) END END, "
            "NULL, 'bench-map', now() FROM _map_dup CROSS JOIN (VALUES ('dup_group'), ('dup_size')) m(metric)", [DEDUP])
        n = con.execute("SELECT count(*) FROM _map_img").fetchone()[0]
        con.execute("DROP TABLE _map_img")
        con.execute("DROP TABLE _map_dup")
        return int(n)

    return lake.transaction(body)


# ---- the page, as Streamlit runs it --------------------------------------------------------------------------
def _ms(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _open(page: str = "map", **state):
    from streamlit.testing.v1 import AppTest

    from db.app.users import SignedIn
    from ui.context import USER_KEY

    at = AppTest.from_file(str(REPO / "ui" / "views" / f"{page}.py"), default_timeout=600)
    at.session_state[USER_KEY] = SignedIn("admin", "admin")
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _checked(at, what: str):
    if at.exception:
        raise RuntimeError(f"{what}: {at.exception[0].value}")
    return at


def select_box(at, box: tuple[float, float, float, float]):
    """A box selection sent to the chart as the browser sends it (the chart's widget state: the JSON event)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    chart = at.get("plotly_chart")[0]
    states = at._tree.get_widget_states()
    state = WidgetState()
    state.id = chart.proto.id
    x0, x1, y0, y1 = box
    state.string_value = json.dumps({"selection": {"points": [], "point_indices": [], "lasso": [],
                                                   "box": [{"xref": "x", "yref": "y", "x": [x0, x1], "y": [y0, y1]}]}})
    states.widgets.append(state)
    return at._run(states)


def page_times(reps: int, box, clip_label: str) -> tuple[dict[str, list[float]], str]:
    """New data, cold, a colour change, a box selection, kept / dropped / excluded, and the Gallery showing the selection;
    and the cold view's figure as sent to the browser."""
    from bench.ui_pages import clear_caches
    from ui import context, warm

    out: dict[str, list[float]] = {k: [] for k in ("new data", "after job", "warming", "cold", "colour 1st", "colour", "box", "status", "gallery",
                                                   "json MB", "selected")}
    for _ in range(reps):
        warm.forget()  # only what this page asks for is warmed below
        for disk, key in ((True, "new data"), (True, "after job"), (False, "cold")):
            clear_caches(disk)
            if key == "after job":  # as a few seconds after a job's commit: the server's warmer (ui/warm.py) done first
                out["warming"].append(_ms(lambda: warm.warm_now(context.lake().current_version()))[0])
            s, at = _ms(_open().run)
            out[key].append(s)
            _checked(at, key)
        at_spec = at.get("plotly_chart")[0].proto.spec  # the cold view's figure, as the browser is sent it
        out["json MB"].append(len(at_spec) / 1e6)
        for k, label in enumerate((clip_label, "task", clip_label)):  # the first move reads the stat; the next ones find it read
            s, at = _ms(lambda: at.selectbox(key="map_colour").select(label).run())
            out["colour 1st" if k == 0 else "colour"].append(s)
            _checked(at, "colour")
        s, at = _ms(lambda: select_box(at, box))
        _checked(at, "box")
        out["box"].append(s)
        head = " ".join(h.value for h in at.subheader)
        out["selected"].append(float(head.split("Selection: ")[1].split(" ")[0].replace(",", "")))
        at.selectbox(key="map_colour").select("kept / dropped / excluded").run()  # the filter's stats table built once (ui/warm.py does it after a job)
        at.selectbox(key="map_colour").select("task").run()
        s, at = _ms(lambda: at.selectbox(key="map_colour").select("kept / dropped / excluded").run())
        _checked(at, "status")
        out["status"].append(s)
        handed = _handoff(at)
        _checked(_open("gallery").run(), "gallery")  # the Gallery's own index, as its first visit builds it
        s, gal = _ms(_open("gallery", gal_only=handed, gal_scored=False).run)
        _checked(gal, "gallery with the selection")
        out["gallery"].append(s)
    return out, at_spec


def _handoff(at) -> dict:
    """What "Open in Gallery" puts in the session (the page's own callback, run through its button without switching page)."""
    import streamlit as st

    switched = []
    real = st.switch_page
    st.switch_page = lambda page, **kw: switched.append(page)
    try:
        at.button(key="map_open").click().run()
    finally:
        st.switch_page = real
    assert switched == ["views/gallery.py"], switched
    return at.session_state["gal_only"]


# ---- ours against naive, step by step --------------------------------------------------------------------------
def naive_times(lake, model: str, clip_model: str, box, lasso, placed) -> dict[str, float]:
    """Every point drawn, as a plotting script would: the points' rows, one trace per task of Python lists, the
    figure serialised; a colour change re-reads the stat as rows and rebuilds the figure; a selection is a
    Python loop over every point (``placed``: (sample id, x, y) of every point where ours draws it, jitter
    included, so that both select the same samples)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from db.reads import map_reads

    out: dict[str, float] = {}
    t = time.perf_counter()
    rows = lake.fetchall(
        "WITH m AS (SELECT subject_id AS image_id, any_value(value) FILTER (WHERE metric = 'map_x') AS x, any_value(value) FILTER (WHERE metric = 'map_y') AS y "
        "FROM scores WHERE subject_kind = 'image' AND metric IN ('map_x', 'map_y') AND model_id = ? AND segment = '' GROUP BY subject_id), "
        f"x AS (SELECT sample_id, item_id, task, {map_reads.FIRST_IMAGE} AS image_id FROM samples "
        "  QUALIFY row_number() OVER (PARTITION BY sample_id ORDER BY created_at, run_id) = 1) "
        "SELECT x.sample_id, x.item_id, x.task, m.x, m.y FROM x JOIN m USING (image_id) WHERE isfinite(m.x) AND isfinite(m.y)", [model])
    out["read"] = time.perf_counter() - t
    t = time.perf_counter()
    by_task: dict[str, tuple[list, list]] = {}
    for _, _, task, x, y in rows:
        xs, ys = by_task.setdefault(task, ([], []))
        xs.append(x)
        ys.append(y)
    fig = go.Figure([go.Scattergl(x=xs, y=ys, mode="markers", name=task) for task, (xs, ys) in by_task.items()])
    text = pio.to_json(fig, validate=False)
    out["figure"] = time.perf_counter() - t
    out["json MB"] = len(text) / 1e6
    # every point again, as numpy arrays (plotly sends them as typed arrays): the least a figure of every point weighs
    import numpy as np

    t = time.perf_counter()
    typed = pio.to_json(go.Figure([go.Scattergl(x=np.asarray(xs, np.float64), y=np.asarray(ys, np.float64), mode="markers", name=task)
                                   for task, (xs, ys) in by_task.items()]), validate=False)
    out["typed figure"] = time.perf_counter() - t
    out["typed MB"] = len(typed) / 1e6
    out["typed spec"] = typed
    t = time.perf_counter()
    clip = dict(lake.fetchall("SELECT subject_id, any_value(value) FROM scores WHERE subject_kind = 'item' AND metric = 'clip_score' AND model_id = ? "
                              "GROUP BY subject_id", [clip_model]))
    colour = [clip.get(item, float("nan")) for _, item, _, _, _ in rows]
    fig = go.Figure([go.Scattergl(x=[r[3] for r in rows], y=[r[4] for r in rows], mode="markers", marker=dict(color=colour, colorscale="Viridis"))])
    pio.to_json(fig, validate=False)
    out["colour"] = time.perf_counter() - t
    x0, x1, y0, y1 = box
    t = time.perf_counter()
    chosen = [sid for sid, x, y in placed if x0 <= x <= x1 and y0 <= y <= y1]
    out["box"] = time.perf_counter() - t
    out["box n"] = len(chosen)
    xs, ys = lasso
    part = placed[:100_000]
    t = time.perf_counter()
    inside = 0
    for _, px, py in part:
        hit = False
        for k in range(len(xs)):
            ax, ay, bx, by = xs[k], ys[k], xs[(k + 1) % len(xs)], ys[(k + 1) % len(xs)]
            if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                hit = not hit
        inside += hit
    out["lasso"] = (time.perf_counter() - t) * len(placed) / len(part)
    return out


def ours_steps(lake, model: str, version: int, box, lasso) -> dict[str, float]:
    """The read and the selections of db/reads/map_reads.py by themselves (the page's figure is in the page's times)."""
    from db.reads import map_reads

    out: dict[str, float] = {}
    out["read"], points = _ms(lambda: map_reads.load_points(lake, model, version=version))
    with tempfile.TemporaryDirectory(prefix="map-bench-") as cache:
        map_reads.load_points(lake, model, version=version, cache_dir=Path(cache))
        out["read from disk"], points = _ms(lambda: map_reads.load_points(lake, model, version=version, cache_dir=Path(cache)))
    out["box"], chosen = _ms(lambda: points.inside_box(*box))
    out["box n"] = len(chosen)
    points.inside_polygon(*lasso)  # the sort by y, once per store version
    out["lasso"], inside = _ms(lambda: points.inside_polygon(*lasso))
    out["lasso n"] = len(inside)
    return out


def _fmt(s: float) -> str:
    return f"{s * 1000:,.1f} ms" if s < 0.01 else f"{s * 1000:,.0f} ms"


def browser_times(specs: dict[str, str], reps: int) -> dict[str, float]:
    """Seconds plotly.js takes in Debian's chromium (headless, software WebGL) to parse each figure's JSON and draw
    it (two animation frames after Plotly.newPlot resolves); the transfer to the browser is not counted."""
    import plotly
    from playwright.sync_api import sync_playwright

    script = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--headless=new", "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_content("<html><body><div id='g' style='width:1100px;height:640px'></div></body></html>")
        page.add_script_tag(path=str(script))
        for name, text in specs.items():
            page.evaluate("(t) => { window._spec = t; }", text)  # handed over once: the timing below is the browser's own work
            times = [page.evaluate("""async () => { Plotly.purge('g'); const t0 = performance.now(); const f = JSON.parse(window._spec);
                await Plotly.newPlot('g', f.data, f.layout); await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
                return performance.now() - t0; }""") / 1000 for _ in range(reps)]
            out[name] = statistics.median(times)
        browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic store (its folder is printed)")
    ap.add_argument("--browser", action="store_true", help="also time plotly.js drawing both figures in Debian's chromium (/usr/bin/chromium)")
    args = ap.parse_args()
    from streamlit import logger

    logger.set_log_level("error")  # AppTest warns "no runtime" on every run
    import jobs.registry  # noqa: F401 - see bench/ui_pages.py: before a page puts ui/views on sys.path
    from bench.synthetic_store import CLIP_MODEL
    from bench.ui_pages import scan_components_once, synthetic
    from config.settings import load_settings
    from db.reads import map_reads
    from db.store import open_store

    scan_components_once()
    t = time.perf_counter()
    home, _ = synthetic(args.samples, args.keep)
    lake = open_store(load_settings().store)
    images = add_map_rows(lake)
    print(f"built {args.samples:,} samples, {images:,} images with their map rows in {time.perf_counter() - t:.0f} s", flush=True)

    version = lake.current_version()
    points = map_reads.load_points(lake, PROJECTION, version=version)
    x0, x1, y0, y1 = points.bounds()
    box = (x0, (x0 + x1) / 2, y0, (y0 + y1) / 2)  # a quarter of the map
    theta = [2 * math.pi * k / 60 for k in range(60)]
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4
    lasso = ([cx + r * (1 + 0.4 * (k % 2)) * math.cos(a) for k, a in enumerate(theta)],  # a 60-edge star, concave at every other corner
             [cy + r * (1 + 0.4 * (k % 2)) * math.sin(a) for k, a in enumerate(theta)])
    clip_label = f"CLIPScore · {CLIP_MODEL.rsplit('/', 1)[-1]}"

    timed, spec = page_times(args.reps, box, clip_label)
    page = {k: statistics.median(v) for k, v in timed.items()}
    ours = ours_steps(lake, PROJECTION, version, box, lasso)
    naive = naive_times(lake, PROJECTION, CLIP_MODEL, box, lasso, list(zip(points.sample_ids.to_pylist(), points.x.tolist(), points.y.tolist())))
    assert naive["box n"] == ours["box n"] == page["selected"], (naive["box n"], ours["box n"], page["selected"])  # the same samples selected

    n = len(points)
    print(f"\n{n:,} points on the map ({args.samples:,} samples); medians of {args.reps}; {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    print("\nThe page as Streamlit runs it (AppTest; ours draws at most 50,000 points, over a density of all beyond that):")
    print(f"  {'new data (first view after a job, nothing rebuilt yet)':<70} {_fmt(page['new data']):>10}  "
          f"({'within' if page['new data'] <= COLD_TARGET_S else 'over'} 2 s; the server's warmer rebuilds it in the background: "
          f"{_fmt(page['warming'])})")
    rows = [("after job (the warmer done, as seconds after a job's commit)", page["after job"], COLD_TARGET_S),
            ("cold (fresh server process, store unchanged)", page["cold"], COLD_TARGET_S),
            ("click: colour task -> CLIPScore (first move)", page["colour 1st"], CLICK_TARGET_S),
            ("click: colour change (read before)", page["colour"], CLICK_TARGET_S),
            (f"click: box over a quarter of the map ({page['selected']:,.0f} samples)", page["box"], CLICK_TARGET_S),
            ("click: colour by kept / dropped / excluded (stats table on disk)", page["status"], CLICK_TARGET_S),
            ("Gallery showing the selection (its index built)", page["gallery"], CLICK_TARGET_S)]
    failed = 0
    for label, s, target in rows:
        ok = s <= target
        failed += not ok
        print(f"  {label:<70} {_fmt(s):>10}  target {target:.0f} s  {'PASS' if ok else 'FAIL'}")
    print(f"  figure sent to the browser: {page['json MB']:.1f} MB")

    naive_cold = naive["read"] + naive["figure"]
    print("\nOurs against naive (every point drawn from rows, selections by a Python loop):")
    print(f"  {'step':<52} {'ours':>10} {'naive':>10} {'ratio':>8}")
    for label, a, b in (("cold: points read + figure (ours: the page, cold)", page["cold"], naive_cold),
                        ("new data: the same with nothing cached", page["new data"], naive_cold),
                        ("colour change (ours: the page's click)", page["colour"], naive["colour"]),
                        (f"box selection over all {n:,} points", ours["box"], naive["box"]),
                        ("lasso (60 edges) over all points (naive: 100k scaled)", ours["lasso"], naive["lasso"])):
        print(f"  {label:<52} {_fmt(a):>10} {_fmt(b):>10} {b / a:>7.1f}x")
    print(f"  points read: {_fmt(ours['read'])} from the store, {_fmt(ours['read from disk'])} from the disk copy; naive rows {_fmt(naive['read'])}")
    print(f"  figure sent to the browser: {page['json MB']:.1f} MB against {naive['json MB']:.1f} MB (every point as lists) or "
          f"{naive['typed MB']:.1f} MB (as typed arrays, built in {_fmt(naive['typed figure'])})")
    if args.browser:
        drawn = browser_times({"ours": spec, "every point": naive["typed spec"]}, args.reps)
        print(f"  plotly.js in chromium (software WebGL), parse + first draw: ours {_fmt(drawn['ours'])}, every point {_fmt(drawn['every point'])} "
              f"({drawn['every point'] / drawn['ours']:.1f}x; the transfer of {naive['typed MB']:.0f} MB not counted)")
    print(f"\n{'PASS' if not failed else 'FAIL'}: {len(rows) - failed} of {len(rows)} page figures within target "
          f"(cold <= {COLD_TARGET_S:.0f} s, click <= {CLICK_TARGET_S:.0f} s)")
    if not args.keep:
        import shutil

        shutil.rmtree(Path(home).parent, ignore_errors=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
