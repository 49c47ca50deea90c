"""Inspect's fixes (scored samples first, the question's colouring, the store-wide heat scale, readable
model names, search over OCR and item text, permalinks, zoomable images) and the Gallery page, under
Streamlit's AppTest on a real store (tests/ui_store.py)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from db.lake import batches
from db.reads import browse, samples_view
from ui import heat
from ui.context import USER_KEY

from .helpers import excluded_ids as _excluded_ids
from .test_ui_pages import ADMIN, ANNA, PAGES, html_blocks, page, texts, ui_store  # noqa: F401 - ui_store is a fixture
from .ui_store import SECOND_VIS_MODEL, VIS_MODEL

NOW = datetime.now(timezone.utc)


def linked(name: str, sample: str, who=ADMIN, **state) -> AppTest:
    """A page opened from a permalink (``?sample=<id>``)."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.session_state[USER_KEY] = who
    for key, value in state.items():
        at.session_state[key] = value
    at.query_params["sample"] = sample
    return at.run()


def shown_id(at: AppTest) -> str:
    return re.search(r"`(\w+)`", texts(at)).group(1)


def _score(sid: str, model: str, value: float | None, run_id: str, segment: str = "answer") -> dict:
    return {"subject_kind": "sample", "subject_id": sid, "metric": "vis_attn", "model_id": model, "segment": segment,
            "value": value, "flags": None, "run_id": run_id, "created_at": NOW}


def _delete_run(lake, run_id: str) -> None:
    lake.transaction(lambda con: [con.execute(f"DELETE FROM {t} WHERE run_id = ?", [run_id]) for t in ("scores", "token_scores")])


# ---- 1. scored samples first, "scored only" -------------------------------------------------------------
def test_inspect_opens_on_a_scored_sample_and_filters_to_scored_only(ui_store):
    home, lake, engine = ui_store
    at = page("inspect", insp_vis=VIS_MODEL, insp_vis2=None)
    assert not at.exception
    assert at.checkbox(key="insp_scored").value is True  # on by default: scores exist
    scored = lake.scalar("SELECT count(DISTINCT subject_id) FROM scores WHERE model_id = ? AND metric = 'vis_attn' AND segment = 'answer' "
                         "AND value IS NOT NULL AND subject_kind = 'sample'", [VIS_MODEL])
    total = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    assert scored < total
    assert f"of **{scored:,}**" in texts(at)
    assert {m.label: m.value for m in at.metric}["VisAttnScore (answer)"] != "—"
    at.checkbox(key="insp_scored").uncheck().run()
    assert f"of **{total:,}**" in texts(at)
    # the default order still opens on a scored sample with every sample listed
    assert at.selectbox(key="insp_order").value == "scored first, newest"
    assert {m.label: m.value for m in at.metric}["VisAttnScore (answer)"] != "—"
    n, rows = browse.browse(lake, vis_model=VIS_MODEL, clip_model=None, limit=total)
    flags = [r["vis_attn"] is not None for r in rows]
    assert n == total and flags == sorted(flags, reverse=True)  # every scored sample before every unscored one


# ---- 2. the question's colouring ----------------------------------------------------------------------
def test_inspect_colours_the_question_from_a_question_and_answer_row(ui_store):
    """A grounding run over the whole text (segment 'text') stores ONE token row holding question and answer,
    with the positions of each: the question's words are coloured from it."""
    home, lake, engine = ui_store
    model, run = "/models/tiny/idefics2#ocr", "text-row"
    sid, question, answer = lake.fetchone("SELECT sample_id, question, answer FROM samples WHERE sample_id <> 'xss0000000000000000000000' "
                                          "ORDER BY sample_id LIMIT 1")
    other = lake.scalar("SELECT sample_id FROM samples WHERE sample_id NOT IN (?, 'xss0000000000000000000000') ORDER BY sample_id LIMIT 1", [sid])
    q, a = question.split(), answer.split()
    pieces = [" " + w for w in q + a]
    scores = [round(0.01 * (k + 1), 6) for k in range(len(pieces))]
    qpos, apos = list(range(10, 10 + len(q))), list(range(40, 40 + len(a)))
    row = {"subject_kind": "sample", "subject_id": sid, "model_id": model, "segment": "text", "tokens": pieces, "token_ids": list(range(len(pieces))),
           "scores": scores, "mass": scores, "words": q + a, "word_scores": scores,
           "positions": {"segment": qpos + apos, "image": [1, 2], "question": qpos, "answer": apos}, "run_id": run, "created_at": NOW}
    answer_only = {**row, "subject_id": other, "segment": "answer", "tokens": pieces[:1], "scores": scores[:1], "words": ["x"], "word_scores": scores[:1],
                   "positions": {"segment": [40], "question": [10], "answer": [40]}}
    batches.write_scores(lake, run, [_score(sid, model, 0.05, run), _score(sid, model, 0.05, run, "text"), _score(other, model, 0.04, run)],
                         token_scores=[row, answer_only])
    try:
        at = page("inspect", insp_vis=model, insp_vis2=None, insp_order="VisAttnScore, highest first", insp_q=True)
        assert not at.exception and shown_id(at) == sid
        body = html_blocks(at)
        question_html = body[body.index(">Question<"):body.index(">Answer</div>")]
        spans = re.findall(r'class="tok" data-score="([^"]+)"[^>]*>([^<]*)<', question_html)
        assert [w for _, w in spans] == [heat.escape(w) for w in q]  # every question word coloured, in order
        assert [float(v) for v, _ in spans] == pytest.approx(scores[:len(q)])
        at.button(key="insp_next").click().run()  # a sample whose run scored the answer only: said so, in the page's terms
        assert shown_id(at) == other
        assert "has no per-token scores for this question" in texts(at) and "segment 'question' or 'text'" in texts(at)
    finally:
        _delete_run(lake, run)


# ---- 3. the heat scale --------------------------------------------------------------------------------
def test_heat_colours_follow_store_wide_percentiles_on_a_fixed_scale(ui_store):
    home, lake, engine = ui_store
    breaks = browse.token_percentiles(lake, VIS_MODEL, "answer", "words")
    values = np.array([w for (ws,) in lake.fetchall("SELECT word_scores FROM token_scores WHERE model_id = ? AND segment = 'answer'", [VIS_MODEL])
                       for w in json.loads(ws)], dtype=float)
    assert len(breaks) == 101 and breaks == pytest.approx(list(np.percentile(values, range(101))))
    # two tokens a millionth apart look alike; the same score has one colour whichever answer it is in
    mid = float(np.median(values))
    one = heat.token_spans(["a", "b"], [mid, mid + 1e-6], breaks=breaks)
    rgb = [tuple(map(int, c)) for c in re.findall(r"rgba\((\d+),(\d+),(\d+)", one)]
    assert max(abs(x - y) for x, y in zip(*rgb)) <= 1
    other = heat.token_spans(["c", "d", "e"], [0.0, mid, 0.2], breaks=breaks)
    assert re.findall(r"rgba\([^)]+\)", other)[1] == re.findall(r"rgba\([^)]+\)", one)[0]
    assert heat.percentile_of(mid, breaks) == pytest.approx(50, abs=1)
    assert heat.colour(0) == heat.STOPS[0] == (68, 1, 84) and heat.colour(1) == (253, 231, 37)  # viridis, no red/green

    at = page("inspect", insp_vis=VIS_MODEL, insp_vis2=None)
    body = html_blocks(at)
    answer_html = body[body.index(">Answer</div>"):]
    for value, pct in re.findall(r'data-score="([^"]+)" data-pct="([^"]+)"', answer_html):
        assert float(pct) == pytest.approx(heat.percentile_of(float(value), breaks), abs=0.06)  # the store's percentile, not the answer's range
    legend = answer_html[answer_html.index("heat-legend"):]
    assert re.findall(r'class="heat-p">(p\d+)<', legend) == [f"p{p}" for p in range(0, 101, 10)]
    shown = [float(v) for v in re.findall(r'class="heat-v">([^<]+)<', legend)]
    assert shown == pytest.approx([breaks[p] for p in range(0, 101, 10)], rel=1e-3)
    assert "percentile of A(t) among all stored token scores" in legend


# ---- 4. readable model names --------------------------------------------------------------------------
def test_model_pickers_show_short_names_and_keep_twins_apart(ui_store):
    home, lake, engine = ui_store
    twin, run = SECOND_VIS_MODEL.replace("/models/tiny/", "/models/other/"), "twin-picker"
    sid = lake.scalar("SELECT subject_id FROM scores WHERE model_id = ? AND metric = 'vis_attn' AND value IS NOT NULL LIMIT 1", [SECOND_VIS_MODEL])
    batches.write_scores(lake, run, [_score(sid, twin, 0.5, run)])
    try:
        at = page("inspect")
        labels = at.selectbox(key="insp_vis").options
        assert sorted(labels) == sorted(["other/qwen2_5_vl#ocr", "tiny/qwen2_5_vl#ocr", "vlm-a"])
        assert not any(label.startswith("/") for label in labels + at.selectbox(key="insp_clip").options)
        assert "/models/" not in texts(at) + html_blocks(at)
    finally:
        _delete_run(lake, run)


# ---- 5. search over OCR and item text -----------------------------------------------------------------
def test_search_finds_ocr_text_and_item_description(ui_store):
    home, lake, engine = ui_store
    item_id, sha = lake.fetchone("SELECT i.item_id, min(im.sha256) FROM items i JOIN images im USING (item_id) JOIN samples x USING (item_id) "
                                 "GROUP BY 1 ORDER BY 1 LIMIT 1")
    other_item = lake.scalar("SELECT item_id FROM samples WHERE item_id <> ? ORDER BY item_id LIMIT 1", [item_id])
    per_item = dict(lake.fetchall("SELECT item_id, count(DISTINCT sample_id) FROM samples GROUP BY 1"))
    lake.transaction(lambda con: con.execute(
        "INSERT INTO ocr (sha256, engine, text, n_boxes, run_id, created_at) VALUES (?, 'test', 'BATCH ZEBRAFROST 42', 1, 'ocr-search', ?)", [sha, NOW]))
    lake.transaction(lambda con: con.execute("UPDATE items SET description = coalesce(description, '') || ' quokkaweave' WHERE item_id = ?", [other_item]))
    try:
        for word, item in (("zebrafrost", item_id), ("QUOKKAWEAVE", other_item)):
            n, rows = browse.browse(lake, vis_model=None, clip_model=None, text=word, limit=100)
            assert n == per_item[item] and {r["sample_id"] for r in rows} == {s for (s,) in lake.fetchall(
                "SELECT DISTINCT sample_id FROM samples WHERE item_id = ?", [item])}
        at = page("inspect", insp_text="zebrafrost", insp_scored=False)
        assert f"of **{per_item[item_id]:,}**" in texts(at)
        assert browse.browse(lake, vis_model=None, clip_model=None, text="%' OR 1=1 --", limit=0)[0] == 0  # bound, not pasted
    finally:
        lake.transaction(lambda con: con.execute("DELETE FROM ocr WHERE run_id = 'ocr-search'"))
        lake.transaction(lambda con: con.execute("UPDATE items SET description = replace(description, ' quokkaweave', '') WHERE item_id = ?", [other_item]))


# ---- 6. permalinks ------------------------------------------------------------------------------------
def test_inspect_permalink_shows_the_sample_and_follows_steps(ui_store):
    home, lake, engine = ui_store
    unscored = lake.scalar("SELECT sample_id FROM samples WHERE sample_id NOT IN (SELECT subject_id FROM scores WHERE metric = 'vis_attn' "
                           "AND value IS NOT NULL) ORDER BY sample_id LIMIT 1")
    at = linked("inspect", unscored)  # even one the "scored only" list would not show
    assert not at.exception and shown_id(at) == unscored
    assert f"[Link to this sample](inspect?sample={unscored})" in texts(at)
    assert at.query_params["sample"] in (unscored, [unscored])
    at.button(key="insp_next").click().run()  # back to the list: the URL follows
    now = shown_id(at)
    assert now != unscored and at.query_params["sample"] in (now, [now])
    at.button(key="insp_next").click().run()
    assert shown_id(at) != now and at.query_params["sample"] in (shown_id(at), [shown_id(at)])
    bad = linked("inspect", "nosuchsample123")
    assert "No sample with id 'nosuchsample123'" in texts(at := bad) and "Showing the list instead" in texts(at)
    assert shown_id(bad) != "nosuchsample123"


# ---- 7. zoom and pan ----------------------------------------------------------------------------------
def test_inspect_images_are_zoomable_figures_of_a_small_copy(ui_store):
    import base64
    import io

    from PIL import Image

    at = page("inspect", insp_vis=VIS_MODEL, insp_vis2=None)
    charts = at.get("plotly_chart")
    assert charts, "no zoomable image"
    spec = json.loads(charts[0].proto.spec)
    image = next(t for t in spec["data"] if t["type"] == "image")
    head, data = image["source"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert max(im.size) <= 1600
    assert spec["layout"]["xaxis"]["visible"] is False and spec["layout"]["dragmode"] == "pan"
    assert json.loads(charts[0].proto.config)["scrollZoom"] is True


# ---- 8. the gallery -----------------------------------------------------------------------------------
def _tiles(at: AppTest) -> dict[str, str]:
    """{sample id: the tile's text} from the tiles' Inspect links."""
    return {m.group(1): str(md.value) for md in at.markdown if (m := re.search(r"\[Inspect\]\(inspect\?sample=(\w+)[^)]*\)", str(md.value)))}


def test_gallery_pages_tiles_with_scores_badges_and_links(ui_store):
    from curation.filters import FilterConfig, stats_for
    from db.app import saved_filters

    home, lake, engine = ui_store
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    assert not at.exception
    scored = lake.scalar("SELECT count(DISTINCT subject_id) FROM scores WHERE model_id = ? AND metric = 'vis_attn' AND segment = 'answer' "
                         "AND value IS NOT NULL AND subject_kind = 'sample'", [VIS_MODEL])
    assert at.checkbox(key="gal_scored").value is True and f"**{scored:,}** samples" in texts(at)
    tiles = _tiles(at)
    assert len(tiles) == 12
    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    kept = set(stats_for(lake, config).kept_ids(config))
    for sid, tile in tiles.items():
        value = lake.scalar("SELECT value FROM scores WHERE subject_id = ? AND model_id = ? AND metric = 'vis_attn' AND segment = 'answer'", [sid, VIS_MODEL])
        task = lake.scalar("SELECT any_value(task) FROM samples WHERE sample_id = ?", [sid])
        assert f"**{task}**" in tile and f"VisAttnScore {value:.4g}" in tile and "CLIPScore" in tile
        assert (":green-badge[kept]" if sid in kept else ":red-badge[dropped]") in tile
    # thumbnails: small JPEGs, never the full photo
    assert len(at.get("image")) == 12
    at.number_input(key="gal_page").set_value(2).run()
    second = _tiles(at)
    assert len(second) == 12 and not set(second) & set(tiles) and "page **2** of" in texts(at)
    # a score range narrows the grid to it
    lo, hi = browse.score_range(lake, VIS_MODEL)
    mid = (lo + hi) / 2
    at = page("gallery", gal_vis=VIS_MODEL, gal_range=(lo, mid), gal_size=96)
    inside = lake.scalar("SELECT count(DISTINCT subject_id) FROM scores WHERE model_id = ? AND metric = 'vis_attn' AND segment = 'answer' "
                         "AND value BETWEEN ? AND ?", [VIS_MODEL, lo, mid])
    assert f"**{inside:,}** samples" in texts(at) and 0 < inside < scored


def test_gallery_thumbnails_are_small_and_cached(tmp_path, monkeypatch):
    import io

    from PIL import Image

    from ui import images

    path = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (200, 10, 10)).save(path)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    data = images.thumbnail(str(path))
    with real_open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and max(im.size) == images.THUMB_SIDE
    assert images.thumbnail(str(path)) == data and opened == [str(path)]  # cached by path and mtime: decoded once
    Image.new("RGB", (300, 200), (0, 0, 200)).save(path)
    import os

    os.utime(path, (1, 1))  # a changed file (another mtime) is read again
    assert images.thumbnail(str(path)) != data and len(opened) == 2
    assert images.thumbnail(str(tmp_path / "missing.jpg")) is None


def test_gallery_bulk_exclude_restore_and_add_to_pilot_for_admins_only(ui_store):
    from db.app import pilots
    from db.lake import exclusions

    home, lake, engine = ui_store
    anna = page("gallery", who=ANNA, gal_vis=VIS_MODEL)
    moving = ("gal_prev", "gal_next", "gal_mark_prev", "gal_mark_next", "gal_mark_open")  # pages and the mark: no change to the store
    assert not anna.exception and "gal_reason" not in [t.key for t in anna.text_input] and not [b for b in anna.button if b.key not in moving]
    assert not [c for c in anna.checkbox if c.key and c.key.startswith("gal_sel_")]

    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    ids = list(_tiles(at))
    at.checkbox(key=f"gal_sel_{ids[0]}").check()
    at.checkbox(key=f"gal_sel_{ids[1]}").check().run()
    at.button(key="FormSubmitter:gal_exclude_form-Exclude").click().run()
    assert "give a reason" in texts(at) and not _excluded_ids(lake) & set(ids)
    at.text_input(key="gal_reason").input("blurred photo")
    at.button(key="FormSubmitter:gal_exclude_form-Exclude").click().run()
    assert not at.exception and "excluded 2 sample(s)" in texts(at)
    assert _excluded_ids(lake) >= {ids[0], ids[1]}
    tiles = _tiles(at)
    assert ":gray-badge[excluded]" in tiles[ids[0]] and ":gray-badge[excluded]" not in tiles[ids[2]]
    at.checkbox(key=f"gal_sel_{ids[0]}").check().run()
    at.button(key="FormSubmitter:gal_exclude_form-Restore").click().run()
    assert "restored 1 sample(s)" in texts(at) and ids[0] not in _excluded_ids(lake) and ids[1] in _excluded_ids(lake)
    exclusions.restore(lake, [ids[1]], by="admin")

    pilot = pilots.get(engine, "ui-pilot")
    before = {p.sample_id for p in pilots.samples(engine, pilot.id)}
    fresh = [sid for sid in ids if sid not in before][:3]
    at.checkbox(key="gal_all").check().run()  # every tile on the page ticked
    assert all(at.checkbox(key=f"gal_sel_{sid}").value for sid in ids)
    at.selectbox(key="gal_pilot").select("ui-pilot")
    at.button(key="FormSubmitter:gal_pilot_form-Add to the pilot").click().run()
    after = {p.sample_id for p in pilots.samples(engine, pilot.id)}
    added = len(set(ids) - before)
    assert f"added {added} sample(s) to pilot 'ui-pilot'" in texts(at) and after == before | set(ids) and len(fresh) <= added


# ---- issue 15: the browse index answers as the query does -----------------------------------------------
def test_browse_index_pages_and_percentiles_match_the_sql_reads(ui_store, tmp_path):
    """Inspect and Gallery step and page over db/reads/browse_index.py (one build per store version, then a mask
    and a slice): every order and filter gives the SQL browse()'s count and rows; the index read back from
    disk gives the same; percentiles from the sorted scores equal percentile()'s; a store write is seen
    once the version moves."""
    from db.reads import browse_index

    home, lake, engine = ui_store
    clip = lake.scalar("SELECT min(model_id) FROM scores WHERE metric = 'clip_score' AND value IS NOT NULL")
    version = lake.current_version()
    built = browse_index.load_index(lake, vis_model=VIS_MODEL, clip_model=clip, version=version, cache_dir=tmp_path)
    loaded = browse_index.load_index(lake, vis_model=VIS_MODEL, clip_model=clip, version=version, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("browse_index-*.arrow"))) == 1 and len(built) == len(loaded) > 20
    task = lake.scalar("SELECT min(task) FROM samples")
    scores = sorted(v for (v,) in lake.fetchall("SELECT value FROM scores WHERE model_id = ? AND metric = 'vis_attn' "
                                               "AND segment = 'answer' AND value IS NOT NULL", [VIS_MODEL]))
    mid = (scores[len(scores) // 4], scores[3 * len(scores) // 4])
    queries = [{}, {"scored_only": True}, {"tasks": (task,)}, {"categories": (built.cats[0],)}, {"vis_range": mid},
               {"text": "zzz-no-such-text"}, {"text": built.rows(lake, [0])[0]["question"].split()[0]}]
    for order in browse.ORDERS:
        for q in queries:
            want = browse.browse(lake, vis_model=VIS_MODEL, clip_model=clip, order=order, limit=1000, **q)
            for index in (built, loaded):
                assert index.browse(lake, order=order, limit=1000, **q) == want, (order, q)
                # a step: the row at one offset, as Inspect's Next reads it
                n, one = index.browse(lake, order=order, limit=1, offset=3, with_text=False, **q)
                assert n == want[0] and [r["sample_id"] for r in one] == [r["sample_id"] for r in want[1][3:4]]
    assert built.browse(lake, limit=0, text="%' OR 1=1 --")[0] == 0  # bound, not pasted

    values = browse_index.sorted_scores(lake, kind="sample", metric="vis_attn", model=VIS_MODEL, segment="answer",
                                        version=version, cache_dir=tmp_path)
    again = browse_index.sorted_scores(lake, kind="sample", metric="vis_attn", model=VIS_MODEL, segment="answer",
                                       version=version, cache_dir=tmp_path)
    assert list(values) == list(again) and len(list(tmp_path.glob("sorted_scores-*.npy"))) == 1
    for v in (scores[0], mid[0], mid[1], scores[-1], scores[-1] + 1, scores[0] - 1):
        assert browse_index.percentile_of(values, v) == pytest.approx(
            browse.percentile(lake, kind="sample", metric="vis_attn", model=VIS_MODEL, segment="answer", value=v))
    assert browse_index.percentile_of(values, None) is None

    # a new score moves the version: the page's index is rebuilt (and the old file replaced)
    no_row = {s for (s,) in lake.fetchall("SELECT sample_id FROM samples WHERE sample_id NOT IN (SELECT subject_id FROM scores "
                                         "WHERE model_id = ? AND metric = 'vis_attn' AND segment = 'answer')", [VIS_MODEL])}
    sid = min(r["sample_id"] for r in built.browse(lake, limit=1000, with_text=False)[1] if r["sample_id"] in no_row)
    batches.write_scores(lake, "idx-test", [_score(sid, VIS_MODEL, -1.0, "idx-test")])
    try:
        fresh = browse_index.load_index(lake, vis_model=VIS_MODEL, clip_model=clip, version=lake.current_version(), cache_dir=tmp_path)
        n, first = fresh.browse(lake, order="VisAttnScore, lowest first", limit=1, scored_only=True)
        assert n == built.browse(lake, limit=0, scored_only=True)[0] + 1 and first[0]["sample_id"] == sid and first[0]["vis_attn"] == -1.0
        assert len(list(tmp_path.glob("browse_index-*.arrow"))) == 1
        # and the page shows it, through the app's caches (keyed by the tables' versions)
        at = page("inspect", insp_vis=VIS_MODEL, insp_vis2=None, insp_order="VisAttnScore, lowest first")
        assert shown_id(at) == sid
    finally:
        _delete_run(lake, "idx-test")


def test_inspect_record_point_reads_match_samples_with_images(ui_store):
    """Inspect reads one sample by point reads (db/reads/browse.py _one_sample), not the whole-table joins of
    samples_view.samples_with_images; both give the same text, category, images and OCR for every sample."""
    home, lake, engine = ui_store
    sha = lake.scalar("SELECT min(sha256) FROM images")
    lake.transaction(lambda con: con.execute(
        "INSERT INTO ocr (sha256, engine, text, n_boxes, run_id, created_at) VALUES (?, 'test', 'LOT 7 handle with care', 1, 'ocr-point', ?)", [sha, NOW]))
    try:
        ids = [s for (s,) in lake.fetchall("SELECT DISTINCT sample_id FROM samples ORDER BY 1")]
        full = {r["sample_id"]: r for r in samples_view.samples_with_images(lake, ids)}
        assert any(len(r["blob_paths"]) > 1 for r in full.values()) and any(any(r["ocr_texts"]) for r in full.values())
        for sid in ids:
            got = browse._one_sample(lake, sid)
            assert (got[0] if got else None) == full.get(sid), sid
        assert browse._one_sample(lake, "no-such-sample") is None
    finally:
        lake.transaction(lambda con: con.execute("DELETE FROM ocr WHERE run_id = 'ocr-point'"))
