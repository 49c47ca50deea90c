"""The Map page (issue 28): every sample at its first image's place on a stored 2-D projection, coloured by
task, a stat, a cluster, a near-duplicate group or kept / dropped / excluded; a sample of the points drawn
over a density of all of them; box, lasso and clicked-point selections over every point, opened in the
Gallery, excluded, tagged or added to a pilot with the Gallery's store calls and permission checks.

On the web app's test store (tests/ui_store.py) with map_x / map_y, cluster and dup_group / dup_size rows
written here as the map, clusters and dedup jobs write them: each image on a grid (10 apart), so that what
a box or a lasso holds is known without the code under test. A selection is sent to the page as the browser
sends it (the chart's widget state, a JSON event)."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.proto.WidgetStates_pb2 import WidgetState

from db.app import pilots
from db.lake import batches, tags
from db.reads import map_reads

from .helpers import excluded_ids
from .test_ui_gallery import _tiles
from .test_ui_pages import ANNA, page, texts, ui_store  # noqa: F401 - ui_store is a fixture
from .ui_store import CLIP_MODEL

# ids as the map and clusters jobs make them (METHOD@the embedding model, here a local folder the page must not show)
PROJ, OLD_PROJ, KMEANS, DEDUP = "tsne@/models/clip-test", "pca@/models/clip-test", "kmeans:3@/models/clip-test", "dhash:12"
RUN = "map-test"
NOW = datetime.now(timezone.utc)
COLS = 5  # images on a grid COLS wide, 10 apart


def _row(image_id: str, metric: str, model: str, value: float, created=NOW) -> dict:
    return {"subject_kind": "image", "subject_id": image_id, "metric": metric, "model_id": model, "segment": "", "value": value,
            "flags": None, "run_id": RUN, "created_at": created}


def _places(lake) -> dict[str, tuple[float, float]]:
    """Each image's place; the last image has none (one the map job could not embed): its samples are not on the map."""
    images = [i for (i,) in lake.fetchall("SELECT DISTINCT image_id FROM images ORDER BY 1")]
    return {image: (10.0 * (k % COLS), 10.0 * (k // COLS)) for k, image in enumerate(images[:-1])}


def write_map(lake) -> dict[str, tuple[float, float]]:
    """The rows the map, clusters and dedup jobs would write (once per store); returns each image's place."""
    places = _places(lake)
    if lake.scalar("SELECT count(*) FROM scores WHERE run_id = ?", [RUN]):
        return places
    rows = []
    for k, (image, (x, y)) in enumerate(places.items()):
        rows += [_row(image, "map_x", PROJ, x), _row(image, "map_y", PROJ, y)]
        rows += [_row(image, "map_x", OLD_PROJ, -y, NOW - timedelta(days=30)), _row(image, "map_y", OLD_PROJ, x, NOW - timedelta(days=30))]
        rows.append(_row(image, "cluster", KMEANS, float(k % 3)))
        # images 0-1: a group of two, 2-4: a group of three, the rest alone (groups numbered first, then images alone)
        group, size = (0, 2) if k < 2 else (1, 3) if k < 5 else (k, 1)
        rows += [_row(image, "dup_group", DEDUP, float(group)), _row(image, "dup_size", DEDUP, float(size))]
    batches.write_scores(lake, RUN, rows)
    return places


def drop_map(lake) -> None:
    lake.transaction(lambda con: con.execute("DELETE FROM scores WHERE run_id = ?", [RUN]))


def samples_at(lake, places) -> dict[str, tuple[str, float, float]]:
    """{sample: (task, x, y)} of every sample whose first image has a place, read independently of map_reads."""
    out = {}
    for sid, task, image_ids in lake.fetchall("SELECT sample_id, any_value(task), any_value(CAST(image_ids AS VARCHAR)) FROM samples GROUP BY 1"):
        first = (json.loads(image_ids) or [None])[0] if image_ids else None
        if first in places:
            out[sid] = (task, *places[first])
    return out


def _decode(value) -> np.ndarray:
    """A plotly array as the figure's JSON holds it: a list, or a typed array ({dtype, bdata})."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def said(at) -> str:
    """What the page says, its headings included."""
    return texts(at) + "\n" + "\n".join(h.value for h in at.subheader)


def spec(at) -> dict:
    return json.loads(at.get("plotly_chart")[0].proto.spec)


def scatter(at) -> dict[str, dict]:
    """{trace name: trace} of the chart's scatter traces."""
    return {t["name"]: t for t in spec(at)["data"] if t["type"] == "scattergl"}


def select(at, *, box=(), lasso=(), points=()):
    """Send the chart a selection as the browser does: its widget state, the JSON event Streamlit's front end writes."""
    chart = at.get("plotly_chart")[0]
    states = at._tree.get_widget_states()
    state = WidgetState()
    state.id = chart.proto.id
    state.string_value = json.dumps({"selection": {
        "points": [{"curve_number": c, "point_number": i, "point_index": i} for c, i in points], "point_indices": [i for _, i in points],
        "box": [{"xref": "x", "yref": "y", "x": [x0, x1], "y": [y0, y1]} for x0, x1, y0, y1 in box],
        "lasso": [{"xref": "x", "yref": "y", "x": list(xs), "y": list(ys)} for xs, ys in lasso]}})
    states.widgets.append(state)
    return at._run(states)


def _inside(px: float, py: float, xs, ys) -> bool:
    """Point in polygon, one point at a time (the even-odd rule written plainly): what the vectorised one must equal."""
    inside = False
    for k in range(len(xs)):
        ax, ay, bx, by = xs[k], ys[k], xs[(k + 1) % len(xs)], ys[(k + 1) % len(xs)]
        if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
            inside = not inside
    return inside


# ---- the reads ----------------------------------------------------------------------------------------------
def test_points_are_first_images_places_with_a_small_fixed_jitter(ui_store):
    home, lake, engine = ui_store
    places = write_map(lake)
    assert [p["model_id"] for p in map_reads.projections(lake)] == [PROJ, OLD_PROJ]  # the newest first
    expected = samples_at(lake, places)
    total = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    points = map_reads.load_points(lake, PROJ, version=lake.current_version())
    ids = points.sample_ids.to_pylist()
    assert 20 < len(points) < total and sorted(ids) == sorted(expected)  # the samples without a place are not on the map
    assert len(set(points.image_ids.to_pylist())) < len(points)  # an item's samples share their image: coinciding places
    span = max(v for _, x, y in expected.values() for v in (x, y))
    for k, sid in enumerate(ids):
        task, x, y = expected[sid]
        assert points.tasks[points.task_codes[k]] == task and (points.raw_x[k], points.raw_y[k]) == (x, y)
        assert 0 < abs(points.x[k] - x) + abs(points.y[k] - y) and abs(points.x[k] - x) <= map_reads.JITTER * span / 2 + 1e-9
    # the drawn sample: the N smallest hashes of the id (DuckDB's), the same on every read
    hashes = dict(lake.fetchall("SELECT sample_id, hash(sample_id) FROM (SELECT DISTINCT sample_id FROM samples)"))
    by_hash = sorted(ids, key=hashes.get)
    assert points.ids(points.drawn(10)) == by_hash[:10] and points.ids(points.drawn(10_000)) == by_hash
    again = map_reads.load_points(lake, PROJ, version=lake.current_version())
    assert again.ids(again.drawn(10)) == by_hash[:10] and {s: x for s, x in zip(again.sample_ids.to_pylist(), again.x)} == dict(zip(ids, points.x))
    assert points.ids(points.by_hash(np.arange(len(points))[::-1])) == by_hash
    # a sample more or less changes the drawn sample by that sample alone: nothing reshuffles
    table = pa.table({"sample_id": points.sample_ids, "item_id": points.item_ids, "image_id": points.image_ids, "task": points.sample_ids,
                      "x": points.raw_x, "y": points.raw_y, "h": points.hash})
    for gone in (by_hash[3], by_hash[15]):
        fewer = map_reads.MapPoints(table.filter(pa.array([s != gone for s in ids])))
        assert fewer.ids(fewer.drawn(10)) == [s for s in by_hash if s != gone][:10]
    # the density counts every point once
    counts, xc, yc = points.density(16)
    assert counts.sum() == len(points) and counts.shape == (16, 16) and xc[0] < xc[-1]
    # read at a store version: the map as it was then, whatever came after
    before, moved = lake.current_version(), points.image_ids[0].as_py()
    shift = lambda d: lake.transaction(lambda con: con.execute(  # noqa: E731
        "UPDATE scores SET value = value + ? WHERE run_id = ? AND subject_id = ? AND metric = 'map_x' AND model_id = ?", [d, RUN, moved, PROJ]))
    shift(100.0)
    try:
        then, now = (map_reads.load_points(lake, PROJ, version=v) for v in (before, lake.current_version()))
        at_then, at_now = (dict(zip(p.image_ids.to_pylist(), p.raw_x)) for p in (then, now))
        assert at_then[moved] == places[moved][0] and at_now[moved] == places[moved][0] + 100.0
    finally:
        shift(-100.0)


def test_a_sample_stored_twice_is_one_point_at_its_first_copy(ui_store):
    """Two units that raced can both write a sample: the map shows it once, where its first copy's image is."""
    home, lake, engine = ui_store
    places = write_map(lake)
    sid, first = next((s, json.loads(v)[0]) for s, v in lake.fetchall("SELECT sample_id, CAST(image_ids AS VARCHAR) FROM samples ORDER BY 1")
                      if json.loads(v) and json.loads(v)[0] in places)
    other = next(i for i in places if i != first)
    lake.transaction(lambda con: con.execute(
        "INSERT INTO samples SELECT sample_id, item_id, task, question, answer, answer_format, to_json([?]), label, backend, model_id, "
        "prompt_version, lineage, 'map-twice', created_at + INTERVAL 1 HOUR, NULL FROM samples WHERE sample_id = ?", [other, sid]))
    try:
        points = map_reads.load_points(lake, PROJ, version=None)
        ids = points.sample_ids.to_pylist()
        assert ids.count(sid) == 1 and len(ids) == len(set(ids)) == len(samples_at(lake, places))
        k = ids.index(sid)
        assert points.image_ids[k].as_py() == first and (points.raw_x[k], points.raw_y[k]) == places[first]
        assert sorted(points.ids(points.drawn(len(points)))) == sorted(ids)
    finally:
        lake.transaction(lambda con: con.execute("DELETE FROM samples WHERE run_id = 'map-twice'"))


def test_box_and_lasso_select_every_point_inside():
    """Against one point at a time, on 20,000 random points (many more than a lasso's edges), with concave outlines."""
    rng = np.random.default_rng(0)
    n = 20_000
    table = pa.table({"sample_id": [f"s{k}" for k in range(n)], "item_id": [f"i{k}" for k in range(n)], "image_id": [f"m{k}" for k in range(n)],
                      "task": ["t"] * n, "x": rng.normal(0, 3, n), "y": rng.normal(0, 3, n), "h": pa.array(np.arange(n, dtype=np.uint64))})
    points = map_reads.MapPoints(table)
    x, y = points.x, points.y
    assert list(points.inside_box(1.5, -2.0, 3.0, -1.0)) == [k for k in range(n) if -2.0 <= x[k] <= 1.5 and -1.0 <= y[k] <= 3.0]
    theta = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    star = ((2 + 3 * (np.arange(200) % 2)) * np.cos(theta), (2 + 3 * (np.arange(200) % 2)) * np.sin(theta))
    shapes = [([0, 6, 0], [0, 0, 6]),  # a triangle
              ([-4, 4, 4, 0, 0, -4], [-4, -4, 0, 0, 4, 4]),  # an L (concave)
              star,  # 200 edges, most of them concave corners
              ([-1, 1, 1, -1, -1, 1], [-1, -1, 1, 1, -1, -1])]  # an outline that runs over itself
    for xs, ys in shapes:
        want = [k for k in range(n) if _inside(x[k], y[k], list(xs), list(ys))]
        assert list(points.inside_polygon(xs, ys)) == want and want
    assert len(points.inside_polygon([0, 1], [0, 1])) == 0  # not an area


def test_colours_are_the_stored_values_of_each_point(ui_store):
    from curation.filters import Condition, FilterConfig, stats_for
    from db.lake import exclusions

    home, lake, engine = ui_store
    places = write_map(lake)
    points = map_reads.load_points(lake, PROJ, version=None)
    images, items, ids = points.image_ids.to_pylist(), points.item_ids.to_pylist(), points.sample_ids.to_pylist()
    order = {image: k for k, image in enumerate(places)}
    options = map_reads.colour_options(lake)
    assert {(c.metric, c.model_id) for c in options} >= {("cluster", KMEANS), ("dup_group", DEDUP), ("clip_score", CLIP_MODEL)}
    assert not {c.metric for c in options} & {"map_x", "map_y", "dup_size"}
    clusters = map_reads.stat_values(lake, points, map_reads.Colour("stat", "cluster", KMEANS), version=None)
    assert clusters.labels == ["cluster 0", "cluster 1", "cluster 2"]
    assert [clusters.labels[c] for c in clusters.values] == [f"cluster {order[i] % 3}" for i in images]
    groups = map_reads.stat_values(lake, points, map_reads.Colour("stat", "dup_group", DEDUP), version=None)
    assert groups.labels == ["group 0", "group 1"] and list(groups.numbers) == [0, 1]  # images alone are in no group
    assert [None if c < 0 else groups.labels[c] for c in groups.values] == [
        "group 0" if order[i] < 2 else "group 1" if order[i] < 5 else None for i in images]
    clip = map_reads.stat_values(lake, points, map_reads.Colour("stat", "clip_score", CLIP_MODEL), version=None)
    stored = dict(lake.fetchall("SELECT subject_id, value FROM scores WHERE metric = 'clip_score' AND model_id = ?", [CLIP_MODEL]))
    assert clip.labels is None and np.isnan(clip.values).any()  # some items have none
    assert [None if np.isnan(v) else v for v in clip.values] == [stored.get(i) for i in items]

    config = FilterConfig([Condition.parse("clip_score >= p50")])
    table = stats_for(lake, config)
    out = ids[:3]
    exclusions.exclude(lake, out, reason="map test", by="admin")
    try:
        kept = set(table.kept_ids(config))
        status = map_reads.status_values(lake, points, kept_sql=table.kept_sql(config))
        assert [status.labels[c] for c in status.values] == [
            "excluded" if s in out else "kept" if s in kept else "dropped" for s in ids]
        plain = map_reads.status_values(lake, points, kept_sql=None)
        assert {status.labels[c] for c in plain.values} <= {"kept", "excluded"} and list(plain.values == 2) == [s in out for s in ids]
    finally:
        exclusions.restore(lake, out, by="admin")


# ---- the page -------------------------------------------------------------------------------------------
def test_a_store_without_a_projection_says_which_command_makes_one(ui_store):
    home, lake, engine = ui_store
    drop_map(lake)
    at = page("map")
    assert not at.exception and "No map yet" in texts(at) and "`vitpro map --local`" in texts(at)
    assert not at.get("plotly_chart")


def test_the_page_draws_every_point_coloured_by_task_stat_cluster_and_status(ui_store):
    from curation.filters import FilterConfig, stats_for
    from db.app import saved_filters

    home, lake, engine = ui_store
    places = write_map(lake)
    expected = samples_at(lake, places)
    at = page("map")
    assert not at.exception
    assert f"Drawn: all **{len(expected):,}** samples" in texts(at)
    assert at.selectbox(key="map_proj").value == PROJ
    assert [o.split(" · ")[0] for o in at.selectbox(key="map_proj").options] == ["tsne@clip-test", "pca@clip-test"]  # the newest first, no path
    assert "k-means cluster · kmeans:3@clip-test" in at.selectbox(key="map_colour").options
    assert not [o for o in at.selectbox(key="map_proj").options + at.selectbox(key="map_colour").options if "/models/" in o]
    traces = scatter(at)
    by_task: dict[str, list] = {}
    for sid, (task, x, y) in expected.items():
        by_task.setdefault(task, []).append(x)
    assert set(traces) == set(by_task) and not [t for t in spec(at)["data"] if t["type"] == "heatmap"]
    for task, trace in traces.items():  # each task's trace holds its samples' points (within the jitter of their images' places)
        assert sorted(np.round(_decode(trace["x"]) / 10) * 10) == sorted(by_task[task])

    at.selectbox(key="map_colour").select("k-means cluster · kmeans:3@clip-test").run()
    order = {image: k for k, image in enumerate(places)}
    firsts = {sid: json.loads(v)[0] for sid, v in lake.fetchall("SELECT sample_id, any_value(CAST(image_ids AS VARCHAR)) FROM samples GROUP BY 1")
              if v and json.loads(v)}
    want = {f"cluster {c}": sum(1 for s in expected if order[firsts[s]] % 3 == c) for c in range(3)}
    assert {name: len(_decode(t["x"])) for name, t in scatter(at).items()} == want

    at.selectbox(key="map_colour").select(f"near-duplicate group · {DEDUP}").run()
    sizes = {name: len(_decode(t["x"])) for name, t in scatter(at).items()}
    assert sizes == {"group 0": sum(1 for s in expected if order[firsts[s]] < 2), "group 1": sum(1 for s in expected if 2 <= order[firsts[s]] < 5),
                     "not a near-duplicate": sum(1 for s in expected if order[firsts[s]] >= 5)}

    at.selectbox(key="map_colour").select(f"CLIPScore · {CLIP_MODEL}").run()
    trace = scatter(at)[f"CLIPScore · {CLIP_MODEL}"]
    clip = dict(lake.fetchall("SELECT subject_id, value FROM scores WHERE metric = 'clip_score' AND model_id = ?", [CLIP_MODEL]))
    item_of = dict(lake.fetchall("SELECT sample_id, any_value(item_id) FROM samples GROUP BY 1"))
    values = sorted(clip[item_of[s]] for s in expected if item_of[s] in clip)
    shown = np.sort(_decode(trace["marker"]["color"]).astype(float))
    assert len(shown) == len(values) and np.allclose(shown, values, rtol=1e-6)  # float32 on the wire
    assert trace["marker"]["cmin"] == pytest.approx(min(values)) and trace["marker"]["colorscale"]
    assert len(_decode(scatter(at)["no value"]["x"])) == sum(1 for s in expected if item_of[s] not in clip)

    at.selectbox(key="map_colour").select("kept / dropped / excluded").run()
    assert at.selectbox(key="map_filter").value == "ui-filter" and not at.selectbox(key="map_filter").disabled
    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    kept = set(stats_for(lake, config).kept_ids(config)) & set(expected)
    sizes = {name: len(_decode(t["x"])) for name, t in scatter(at).items()}
    assert sizes == {"kept": len(kept), "dropped": len(expected) - len(kept)}


def test_a_sample_is_drawn_over_the_density_of_every_point(ui_store):
    """Past the number drawn, the same N points (smallest hash) over a density that counts them all."""
    home, lake, engine = ui_store
    write_map(lake)
    lake.transaction(lambda con: con.execute(
        "INSERT INTO samples SELECT 'cp' || lpad(CAST(r.range AS VARCHAR), 6, '0') || '-' || x.sample_id, item_id, task, question, answer, "
        "answer_format, image_ids, label, backend, model_id, prompt_version, lineage, 'map-copies', created_at, NULL "
        "FROM (SELECT * FROM samples WHERE json_array_length(image_ids) > 0 ORDER BY sample_id LIMIT 60) x CROSS JOIN range(200) r"))
    try:
        points = map_reads.load_points(lake, PROJ, version=None)
        assert len(points) > 10_000
        at = page("map", map_drawn=10_000)
        assert not at.exception and f"a sample of **10,000** of the **{len(points):,}** samples" in texts(at)
        data = spec(at)["data"]
        density = next(t for t in data if t["type"] == "heatmap")
        z = _decode(density["z"]).astype(float)
        assert round(float(np.expm1(z[~np.isnan(z)]).sum())) == len(points)  # log1p(count) per cell: every point counted once
        drawn = np.sort(np.concatenate([_decode(t["x"]) for t in data if t["type"] == "scattergl"]))
        assert len(drawn) == 10_000 and np.allclose(drawn, np.sort(points.x[points.drawn(10_000)].astype(np.float32)))
    finally:
        lake.transaction(lambda con: con.execute("DELETE FROM samples WHERE run_id = 'map-copies'"))


def test_a_box_selection_opens_in_the_gallery_and_is_excluded_tagged_and_added_to_a_pilot(ui_store, monkeypatch):
    home, lake, engine = ui_store
    places = write_map(lake)
    expected = samples_at(lake, places)
    inside = {s for s, (_, x, y) in expected.items() if x <= 10 and y <= 10}  # grid places (0|10, 0|10); the jitter is far smaller than 5
    assert 0 < len(inside) < len(expected)
    at = page("map")
    assert "Nothing selected" in texts(at)
    at = select(at, box=[(-5.0, 15.0, -5.0, 15.0)])
    assert not at.exception and f"Selection: {len(inside):,} samples" in said(at)
    assert f"{len(inside):,} of them drawn" in texts(at)

    went = []
    monkeypatch.setattr(st, "switch_page", lambda target, **kw: went.append(target))
    at.button(key="map_open").click().run()
    assert went == ["views/gallery.py"]
    handed = at.session_state["gal_only"]
    assert set(handed["ids"].to_pylist()) == inside and f"the {len(inside):,} samples selected on the Map (1 box)" == handed["label"]
    gallery = page("gallery", gal_only=handed, gal_size=96, gal_scored=False)
    assert not gallery.exception and f"**{len(inside):,}** samples" in texts(gallery) and set(_tiles(gallery)) == inside
    assert "Showing only the" in texts(gallery)
    gallery.button(key="gal_only_clear").click().run()
    assert f"**{lake.scalar('SELECT count(DISTINCT sample_id) FROM samples'):,}** samples" in texts(gallery)

    before = excluded_ids(lake)
    at.button(key="FormSubmitter:map_exclude_form-Exclude").click().run()
    assert "give a reason" in texts(at) and excluded_ids(lake) == before
    at.text_input(key="map_reason").input("wrong photos")
    at.button(key="FormSubmitter:map_exclude_form-Exclude").click().run()
    try:
        assert not at.exception and f"excluded {len(inside):,} sample(s)" in texts(at)
        assert excluded_ids(lake) - before == inside
        # the selection outlives the redraw and a change of colour (a new chart, whose own selection starts empty)
        at.selectbox(key="map_colour").select("kept / dropped / excluded").run()
        assert f"Selection: {len(inside):,} samples" in said(at) and len(_decode(scatter(at)["excluded"]["x"])) == len(inside)
    finally:
        from db.lake import exclusions

        exclusions.restore(lake, list(inside), by="admin")

    at.text_input(key="map_tags_text").input("map-corner")
    at.button(key="FormSubmitter:map_tag_form-Tag").click().run()
    try:
        assert {s for s, t in tags.tags_of(lake, list(expected)).items() if "map-corner" in t} == inside
    finally:
        tags.remove(lake, list(inside), ["map-corner"], by="admin")

    # a lasso (a triangle) replaces the box: the samples whose place is below the line x + y = 22
    lasso = ([-5.0, 27.0, -5.0], [-5.0, -5.0, 27.0])
    under = {s for s, (_, x, y) in expected.items() if _inside(x, y, *lasso)}
    assert under == {s for s, (_, x, y) in expected.items() if x + y <= 20} and under != inside
    at = select(at, lasso=[lasso])
    assert f"Selection: {len(under):,} samples" in said(at) and "By 1 lasso" in texts(at)
    pilot = pilots.get(engine, "ui-pilot")
    had = {p.sample_id for p in pilots.samples(engine, pilot.id)}
    at.selectbox(key="map_pilot").select("ui-pilot")
    at.button(key="FormSubmitter:map_pilot_form-Add to the pilot").click().run()
    assert {p.sample_id for p in pilots.samples(engine, pilot.id)} == had | under
    assert f"added {len(under - had):,} sample(s) to pilot 'ui-pilot'" in texts(at)

    at.button(key="map_clear").click().run()
    assert "Nothing selected" in texts(at)


def test_a_clicked_point_shows_its_photo_beside_the_map(ui_store):
    home, lake, engine = ui_store
    write_map(lake)
    at = page("map")
    data = spec(at)["data"]
    curve = next(k for k, t in enumerate(data) if t["type"] == "scattergl")
    points = map_reads.load_points(lake, PROJ, version=None)
    x = _decode(data[curve]["x"])[2]
    clicked = points.ids(np.flatnonzero(np.isclose(points.x, x)))[0]  # the trace's third point, found by its place
    at = select(at, points=[(curve, 2)])
    assert not at.exception and f"`{clicked}`" in texts(at) and f"[Inspect](inspect?sample={clicked})" in texts(at)
    assert at.get("imgs") or at.get("image")  # its thumbnail
    assert "Selection: 1 sample" in said(at) and "1 clicked point" in texts(at)


def test_annotators_see_the_map_and_open_a_selection_but_have_no_actions(ui_store):
    home, lake, engine = ui_store
    write_map(lake)
    at = select(page("map", who=ANNA), box=[(-5.0, 15.0, -5.0, 15.0)])
    assert not at.exception and "Selection:" in said(at) and at.button(key="map_open")
    assert not [b for b in at.button if b.key and b.key.startswith("FormSubmitter:")]
    assert "map_reason" not in [t.key for t in at.text_input] and "map_tags_text" not in [t.key for t in at.text_input]


def test_another_projection_is_offered_and_drawn(ui_store):
    home, lake, engine = ui_store
    places = write_map(lake)
    at = page("map")
    at.selectbox(key="map_proj").select(OLD_PROJ).run()
    xs = np.concatenate([_decode(t["x"]) for t in scatter(at).values()])
    want = sorted(-y for _, x, y in samples_at(lake, places).values())  # the older projection: (-y, x)
    assert sorted(np.round(xs / 10) * 10) == want


def test_hovering_a_point_serves_its_photo_from_the_figure_the_page_drew(ui_store):
    """The hover thumbnail's address names (figure, trace, index): the page registers each figure it draws, and the
    server's answer is the first image of the sample at that place, a JPEG of at most 192 px; anything else is a 404."""
    import io

    from PIL import Image

    from ui import map_hover

    home, lake, engine = ui_store
    write_map(lake)
    at = page("map")
    assert not at.exception
    mounted = [json.loads(e.proto.json or "{}") for e in at.get("bidi_component") if e.proto.component_name == "vitpro_map_hover"]
    assert len(mounted) == 1 and mounted[0]["chart"] == "st-key-map_chart"
    key = mounted[0]["key"]
    data = spec(at)["data"]
    points = map_reads.load_points(lake, PROJ, version=None)
    firsts = dict(lake.fetchall("SELECT x.sample_id, any_value(i.blob_path) FROM samples x JOIN images i "
                                "ON i.image_id = json_extract_string(x.image_ids, '$[0]') GROUP BY 1"))
    checked = 0
    for curve, trace in enumerate(data):
        if trace["type"] != "scattergl":
            continue
        xs, ys = _decode(trace["x"]), _decode(trace["y"])
        for index in range(len(xs)):
            at_place = np.flatnonzero(np.isclose(points.x, xs[index]) & np.isclose(points.y, ys[index]))
            assert len(at_place) == 1
            blobs, image = map_hover.image_of(key, curve, index)
            assert image == firsts[points.ids(at_place)[0]]  # the point's own sample's first image
            checked += 1
    assert checked == len(samples_at(lake, places=_places(lake)))
    curve = next(k for k, t in enumerate(data) if t["type"] == "scattergl")
    answers = [map_hover.thumbnail_response(key, str(curve), str(i)) for i in range(len(_decode(data[curve]["x"])))]
    for i, (status, body) in enumerate(answers):
        blobs, image = map_hover.image_of(key, curve, i)
        if blobs.local(image).is_file():
            assert status == 200
            with Image.open(io.BytesIO(body)) as im:
                assert im.format == "JPEG" and max(im.size) <= map_hover.THUMB_SIDE
        else:  # the test store's broken blob: said, not a server error
            assert (status, body) == (404, b"image file missing")
    assert [s for s, _ in answers].count(200) >= 2
    n = len(_decode(data[curve]["x"]))
    for args in ((key, str(curve), str(n)), (key, str(len(data)), "0"), (key, str(curve), "-1"), (key, "x", "0"), ("unknown", str(curve), "0"),
                 (None, None, None), (key, str(curve), "9" * 40)):
        assert map_hover.thumbnail_response(*args)[0] == 404, args
