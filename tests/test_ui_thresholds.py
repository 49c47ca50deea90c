"""The Thresholds page, second pass (issue 15): open and edit a saved filter, a cut that survives a switch
between percentile and value, readable per-task cuts, axis titles, margin samples with thumbnails and
Inspect links, the save form hidden from annotators, and no repeated reads on a rerun. AppTest on the real
store of tests/ui_store.py."""
from __future__ import annotations

import json
import re
import threading

from curation.filters import FilterConfig, stats_for
from db.app import saved_filters
from db.lake.connection import Lake

from .test_ui_pages import ANNA, page, texts, ui_store  # noqa: F401  (ui_store is a fixture)
from .ui_store import CLIP_MODEL, VIS_MODEL

VIS = f"VisAttnScore · {VIS_MODEL} · answer"
CLIP = f"CLIPScore · {CLIP_MODEL}"


def kept(at) -> int:
    return int({m.label: m.value for m in at.metric}["kept"].replace(",", ""))


def figure(at, key: str) -> dict:
    chart = next(c for c in at.get("plotly_chart") if c.proto.id.endswith(key))
    return json.loads(chart.proto.spec)


def significant_digits(number: str) -> int:
    mantissa = re.sub(r"e[-+]?\d+$", "", number.lower()).replace("-", "").replace(".", "").lstrip("0")
    return len(mantissa)


def test_a_saved_filter_opens_in_the_widgets_and_saves_back_adjusted(ui_store):
    home, lake, engine = ui_store
    original = saved_filters.get(engine, "ui-filter").config
    try:
        at = page("thresholds")
        at.selectbox(key="thr_from").select("ui-filter").run()
        assert not at.exception
        assert at.multiselect(key="thr_stats").value == [VIS, CLIP]  # vis_attn >= p25; clip_score >= p20 or missing
        assert at.radio(key=f"thr_mode_{VIS}").value == "percentile" and at.slider(key=f"thr_pct_{VIS}").value == 25.0
        assert at.slider(key=f"thr_pct_{CLIP}").value == 20.0
        assert at.checkbox(key=f"thr_miss_{CLIP}").value is True and at.checkbox(key=f"thr_miss_{VIS}").value is False
        assert at.selectbox(key=f"thr_op_{VIS}").value == ">=" and at.checkbox(key=f"thr_pt_{VIS}").value is False
        assert at.text_input(key="thr_name").value == "ui-filter"  # saving puts it back under its own name
        config = FilterConfig.from_dict(original)
        assert kept(at) == stats_for(lake, config).report(config).kept

        at.slider(key=f"thr_pct_{VIS}").set_value(40.0).run()
        at.button[0].click().run()
        assert "replaced filter 'ui-filter'" in texts(at)
        stored = saved_filters.get(engine, "ui-filter").config
        assert {c["metric"]: c["percentile"] for c in stored["conditions"]} == {"vis_attn": 40.0, "clip_score": 20.0}
        assert [c["keep_missing"] for c in stored["conditions"]] == [False, True]
        assert [c["model_id"] for c in stored["conditions"]] == [VIS_MODEL, CLIP_MODEL]

        # a new name adds a filter and leaves the opened one as it is
        at.text_input(key="thr_name").input("ui-filter-2")
        at.button[0].click().run()
        assert "saved filter 'ui-filter-2'" in texts(at)
        assert saved_filters.get(engine, "ui-filter-2").config["conditions"] == stored["conditions"]
        # typing the name of ANOTHER filter warns first; saving again replaces it
        at.slider(key=f"thr_pct_{VIS}").set_value(50.0).run()
        saved_filters.save(engine, "someone-elses", original, "admin")
        at.text_input(key="thr_name").input("someone-elses")
        at.button[0].click().run()
        assert "exists already" in texts(at) and saved_filters.get(engine, "someone-elses").config == original
        at.button[0].click().run()
        assert "replaced filter 'someone-elses'" in texts(at)
        assert saved_filters.get(engine, "someone-elses").config["conditions"][0]["percentile"] == 50.0
    finally:
        saved_filters.save(engine, "ui-filter", original, "admin")
        for name in ("ui-filter-2", "someone-elses"):
            if name in {f.name for f in saved_filters.list_all(engine)}:
                saved_filters.delete(engine, name)


def test_a_saved_filter_keeps_what_the_widgets_cannot_show(ui_store):
    home, lake, engine = ui_store
    from curation.filters import Condition, resolve

    config = FilterConfig([Condition.parse("vis_attn >= 0.05"), Condition.parse("task in counting,recognition"),
                           Condition.parse("ocr_boxes >= 3")])
    config.conditions[0].model_id = VIS_MODEL
    saved_filters.save(engine, "with-fields", {**config.to_dict()}, "admin")
    try:
        at = page("thresholds")
        at.selectbox(key="thr_from").select("with-fields").run()
        assert not at.exception
        assert at.multiselect(key="thr_stats").value == [VIS]
        assert at.radio(key=f"thr_mode_{VIS}").value == "value" and at.slider(key=f"thr_val_{VIS}").value == 0.05
        assert "Also applied, as saved in 'with-fields': task in counting,recognition" in texts(at)
        assert "Not shown" in texts(at) and "ocr_boxes >= 3" in texts(at)  # this store has no OCR boxes
        shown = FilterConfig([config.conditions[0], config.conditions[1]])
        shown = resolve(lake, shown)
        assert kept(at) == stats_for(lake, shown).report(shown).kept  # the task condition is applied, not dropped
    finally:
        saved_filters.delete(engine, "with-fields")


def test_switching_percentile_and_value_keeps_the_cut(ui_store):
    home, lake, engine = ui_store
    at = page("thresholds", thr_stats=[VIS, CLIP])
    at.slider(key=f"thr_pct_{VIS}").set_value(37.0).run()
    before = kept(at)
    cut = float(re.search(r"vis_attn >= p37 \(model=vlm-a\) → ([\d.e-]+)", texts(at)).group(1))
    at.radio(key=f"thr_mode_{VIS}").set_value("value").run()
    assert not at.exception
    value = at.slider(key=f"thr_val_{VIS}").value
    lo, hi = lake.fetchone("SELECT min(value), max(value) FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer'", [VIS_MODEL])
    step = (hi - lo) / 1000
    assert abs(value - cut) <= step / 2 + 1e-4 * abs(cut)  # the value at p37, on the slider's grid
    # within the rounding of the slider: only samples within one step of the cut may change sides
    near = lake.scalar("SELECT count(*) FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer' AND abs(value - ?) <= ?",
                       [VIS_MODEL, cut, step])
    assert abs(kept(at) - before) <= near
    at.radio(key=f"thr_mode_{VIS}").set_value("percentile").run()
    assert at.slider(key=f"thr_pct_{VIS}").value == 37.0 and kept(at) == before  # back without a move: the very cut, no drift
    # once the value was moved, switching back gives that value's percentile (to the slider's 0.1)
    at.radio(key=f"thr_mode_{VIS}").set_value("value").run()
    at.slider(key=f"thr_val_{VIS}").set_value(at.slider(key=f"thr_val_{VIS}").value + 10 * step).run()
    moved = kept(at)
    at.radio(key=f"thr_mode_{VIS}").set_value("percentile").run()
    assert at.slider(key=f"thr_pct_{VIS}").value > 37.0 and abs(kept(at) - moved) <= near + 1


def test_per_task_cuts_are_a_table_and_labelled_lines_of_four_digits(ui_store):
    home, lake, engine = ui_store
    at = page("thresholds", thr_stats=[VIS, CLIP])
    at.checkbox(key=f"thr_pt_{VIS}").check().run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if list(df.value.columns) == ["task", "cut", "kept", "dropped"])
    tasks = sorted(t for (t,) in lake.fetchall("SELECT DISTINCT task FROM samples"))
    assert list(table["task"]) == tasks
    assert all(significant_digits(v) <= 4 for v in table["cut"]), list(table["cut"])
    # kept + dropped of each task is every sample of that task (this condition alone)
    per_task = dict(lake.fetchall("SELECT task, count(*) FROM samples GROUP BY task"))
    assert {t: k + d for t, k, d in zip(table["task"], table["kept"], table["dropped"])} == per_task
    caption = next(c.value for c in at.caption if c.value.startswith("Cuts:"))
    assert not re.search(r"\d\.\d{5,}", caption)  # no 17-digit floats
    fig = figure(at, f"thr_hist_{VIS}")
    lines = [s for s in fig["layout"]["shapes"] if s["type"] == "line"]
    labels = [a["text"] for a in fig["layout"]["annotations"]]
    assert len(lines) == len(labels) == len(tasks)
    assert sorted(label.split(" ")[0] for label in labels) == tasks  # each line says whose cut it is
    for label, cut in zip(sorted(labels), table["cut"]):
        assert label.split(" ")[1] == cut and significant_digits(cut) <= 4
    # labels of neighbouring cuts (in the order of their values) sit at different heights, four in turn
    by_value = sorted(fig["layout"]["annotations"], key=lambda a: a["x"])
    heights = [a.get("yshift", 0) for a in by_value]
    assert all(heights[k] != heights[k + 1] for k in range(len(heights) - 1)) and len(set(heights)) == min(4, len(heights))


def test_histograms_and_bars_have_axis_titles(ui_store):
    at = page("thresholds", thr_stats=[VIS, CLIP])
    for label in (VIS, CLIP):
        layout = figure(at, f"thr_hist_{label}")["layout"]
        assert layout["xaxis"]["title"]["text"] == label and layout["yaxis"]["title"]["text"] == "samples"
        assert [a["text"].split(" ")[0] for a in layout["annotations"]] == ["cut"]
    for axis in ("task", "category"):
        layout = figure(at, f"thr_bars_{axis}")["layout"]
        assert layout["xaxis"]["title"]["text"] == axis and layout["yaxis"]["title"]["text"] == "samples"


def test_margin_samples_show_thumbnails_and_link_to_inspect(ui_store):
    home, lake, engine = ui_store
    at = page("thresholds", thr_stats=[VIS])
    cut = float(re.search(r"→ ([\d.e-]+)", texts(at)).group(1))
    above = [sid for (sid,) in lake.fetchall(
        "SELECT subject_id FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer' AND value >= ? ORDER BY value, subject_id LIMIT 3",
        [VIS_MODEL, cut])]
    below = [sid for (sid,) in lake.fetchall(
        "SELECT subject_id FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer' AND value < ? ORDER BY value DESC, subject_id LIMIT 3",
        [VIS_MODEL, cut])]
    links = re.findall(r"\[open in Inspect\]\(inspect\?sample=(\w+)\)", texts(at))
    assert links == below + above  # below the cut on the left, above on the right, nearest first
    images = at.get("image")
    assert len(images) == 6  # every demo sample has a photo: a thumbnail each
    assert all(i.proto.imgs[0].url for i in images)


def test_inside_the_app_margin_samples_are_page_links_to_inspect(ui_store):
    """Under st.navigation (as ui/app.py serves the pages) the links are page links: the session goes along."""
    from streamlit.testing.v1 import AppTest

    from ui.context import USER_KEY

    from .conftest import REPO
    from .test_ui_pages import ADMIN

    pages = REPO / "ui" / "views"
    at = AppTest.from_string(
        "import streamlit as st\n"
        f"st.navigation([st.Page({str(pages / 'thresholds.py')!r}, title='Thresholds', default=True), "
        f"st.Page({str(pages / 'inspect.py')!r}, title='Inspect')]).run()\n", default_timeout=60)
    at.session_state[USER_KEY] = ADMIN
    at.session_state["thr_stats"] = [VIS]
    at.run()
    assert not at.exception
    found = [(p.proto.page, p.proto.query_string) for p in at.get("page_link")]
    assert len(found) == 6 and all(page == "inspect" and re.fullmatch(r"sample=\w+", q) for page, q in found), found
    assert "[open in Inspect](inspect?sample=" not in texts(at)


def test_annotators_do_not_see_the_save_form(ui_store):
    at = page("thresholds", who=ANNA)
    assert not at.exception and "Save as a named filter" not in [s.value for s in at.subheader]
    assert not at.get("form") and not at.button
    assert at.selectbox(key="thr_from").options[0] == "(a new filter)"  # opening a saved filter to read it is fine


def test_a_rerun_reads_nothing_again(ui_store, monkeypatch):
    """A rerun that moves no cut sends no aggregate, margin or summary query (they are remembered per
    store version), and a moved cut sends no grouping at all (the counts of a cut are computed in memory
    from columns read once) and the margins of that cut only."""
    at = page("thresholds", thr_stats=[VIS, CLIP])
    sent: list[str] = []

    def record(query: str) -> None:
        # only the page's own queries: AppTest runs the script in a thread of Streamlit's; a thread an earlier
        # test left running in this process (seen once in a full run: 11 extra version lookups) is not the page
        if threading.current_thread().name.startswith("ScriptRunner"):
            sent.append(" ".join(query.split()))

    for name in ("fetchall", "fetchone", "fetchnumpy", "fetch_arrow", "execute"):
        original = getattr(Lake, name)
        monkeypatch.setattr(Lake, name, lambda lake, query, params=None, _o=original: (record(query), _o(lake, query, params))[1])
    at.run()
    assert not [q for q in sent if "quantile_cont" in q or "_stats_" in q or "selections" in q], sent
    assert 1 <= len(sent) <= 5, sent  # version lookups and the stats table's model check (ui/context.py)
    sent.clear()
    at.slider(key=f"thr_pct_{VIS}").set_value(45.0).run()
    on_table = [q for q in sent if "_stats_" in q]
    assert not [q for q in on_table if "GROUPING SETS" in q]
    assert len([q for q in on_table if "LIMIT" in q]) == 2  # below and above the moved cut; CLIPScore's are remembered
    assert len(on_table) <= 2 + 6  # and, the first time, the columns a cut reads (codes, exclusions, stats, bins)
    sent.clear()
    at.slider(key=f"thr_pct_{VIS}").set_value(55.0).run()
    assert [q for q in sent if "_stats_" in q and "LIMIT" not in q] == []  # a second move reads no column again
    assert not [q for q in sent if "quantile_cont" in q]


def test_sample_briefs_are_what_the_full_sample_read_says(ui_store):
    """The margin strip's point read (db/reads/sample_briefs.py) against samples_view.samples_with_images."""
    from db.reads import sample_briefs, samples_view

    home, lake, engine = ui_store
    ids = [sid for (sid,) in lake.fetchall("SELECT sample_id FROM samples ORDER BY sample_id LIMIT 12")]
    full = {r["sample_id"]: (r["task"], r["question"], (r["blob_paths"] or [None])[0]) for r in samples_view.samples_with_images(lake, ids)}
    brief = sample_briefs.briefs(lake, ids + ["no-such-sample"])
    assert {sid: (b["task"], b["question"], b["blob_path"]) for sid, b in brief.items()} == full and len(full) == 12
    assert sample_briefs.briefs(lake, []) == {}


def test_score_kinds_agree_with_the_score_summary(ui_store):
    from db.reads import queries, score_kinds

    home, lake, engine = ui_store
    summary = [{k: r[k] for k in score_kinds.COLUMNS} for r in queries.score_summary(lake)]
    assert score_kinds.score_kinds(lake) == summary and summary


def test_value_mode_from_the_start_opens_at_the_25th_percentile(ui_store):
    home, lake, engine = ui_store
    at = page("thresholds", thr_stats=[VIS], **{f"thr_mode_{VIS}": "value"})
    assert not at.exception
    value = at.slider(key=f"thr_val_{VIS}").value
    samples = [v for (v,) in lake.fetchall("SELECT value FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer' AND value IS NOT NULL "
                                          "AND subject_id IN (SELECT sample_id FROM samples)", [VIS_MODEL])]
    lo, hi = min(samples), max(samples)
    expected = lake.scalar("SELECT quantile_cont(v, 0.25) FROM (SELECT unnest(?) AS v)", [samples])
    assert abs(value - expected) <= (hi - lo) / 1000 / 2 + 1e-12
