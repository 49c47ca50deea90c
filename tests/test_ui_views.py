"""The curator's view kept in the address and through navigation (ui/view_state.py), actions on every tick
and on a whole query in the Gallery, and two tabs of one annotator on one pilot: under Streamlit's AppTest
on a real store (tests/ui_store.py). The same in a real browser: tests/test_ui_browser.py."""
from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from db.app import pilots
from ui import view_state as vs
from ui.context import USER_KEY

from .helpers import excluded_ids
from .test_ui_gallery import _tiles
from .test_ui_pages import ADMIN, ANNA, PAGES, page, texts, ui_store  # noqa: F401 - ui_store is a fixture
from .test_ui_pilot import _pilot, _scored
from .ui_store import SECOND_VIS_MODEL, VIS_MODEL


def opened(name: str, params: dict[str, str], who=ADMIN, **state) -> AppTest:
    """A page opened from an address with this query string (a reload, or a link someone copied)."""
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    at.session_state[USER_KEY] = who
    for key, value in state.items():
        at.session_state[key] = value
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def test_values_cross_the_address_as_their_widgets_expect_them():
    keys = {"n": vs.Key("n", int), "x": vs.Key("x", float), "b": vs.Key("b", bool), "r": vs.Key("r", "range"),
            "l": vs.Key("l", list, ("counting", "matching")), "s": vs.Key("s", str, (">=", "<="))}
    for name, value in (("n", 3), ("x", 45.0), ("b", True), ("b", False), ("r", (0.25, 0.5)), ("l", ["counting", "matching"]), ("s", "<=")):
        assert vs.decode(keys[name], vs.encode(keys[name].kind, value)) == value
    assert vs.encode(float, 45.0) == "45.0" and vs.encode(list, ["a b", "ü"]) == '["a b","ü"]'
    assert vs.decode(keys["x"], "45") == 45.0 and isinstance(vs.decode(keys["x"], "45"), float)  # a hand-typed whole number
    assert vs.decode(keys["l"], '["counting","gone"]') == ["counting"]  # a task no longer in the store is dropped
    for name, text in (("n", "two"), ("b", "yes"), ("r", "[1]"), ("l", "{}"), ("s", "=="), ("x", "nan-ish")):
        with pytest.raises((ValueError, json.JSONDecodeError)):
            vs.decode(keys[name], text)


def test_gallery_view_comes_back_from_the_address_and_goes_into_it(ui_store):
    home, lake, engine = ui_store
    task = lake.scalar("SELECT task FROM samples GROUP BY task ORDER BY count(*) DESC LIMIT 1")
    n = lake.scalar("SELECT count(DISTINCT x.sample_id) FROM samples x JOIN scores v ON v.subject_id = x.sample_id AND v.metric = 'vis_attn' "
                    "AND v.model_id = ? AND v.segment = 'answer' AND v.value IS NOT NULL WHERE x.task = ?", [VIS_MODEL, task])
    assert n > 12
    at = opened("gallery", {"gal_tasks": json.dumps([task]), "gal_size": "12", "gal_page": "2", "gal_vis": VIS_MODEL})
    assert not at.exception
    assert at.multiselect(key="gal_tasks").value == [task] and at.number_input(key="gal_page").value == 2
    assert f"page **2** of **{(n + 11) // 12}**" in texts(at) and f"**{n:,}** samples" in texts(at)
    assert all(f"**{task}**" in tile for tile in _tiles(at).values())
    # what the page shows is in its address; a default (24 per page) is left out of it
    assert at.query_params["gal_page"] == "2" and json.loads(at.query_params["gal_tasks"]) == [task]
    at.selectbox(key="gal_size").select(24).run()
    assert "gal_size" not in at.query_params
    # a tile's Inspect carries the query: Inspect's arrows then step through the same samples
    link = next(str(md.value) for md in at.markdown if "[Inspect](inspect?" in str(md.value))
    assert "insp_tasks=" in link and "insp_vis=" in link
    # a value the page cannot take (a page past the end, an unknown order) is not an error
    odd = opened("gallery", {"gal_tasks": json.dumps([task]), "gal_page": "999", "gal_order": "by magic", "gal_scored": "maybe"})
    assert not odd.exception and odd.number_input(key="gal_page").value == (n + 23) // 24


def test_gallery_acts_on_ticks_of_every_page_and_on_the_whole_query(ui_store):
    home, lake, engine = ui_store
    task = lake.scalar("SELECT task FROM samples GROUP BY task ORDER BY count(*) DESC LIMIT 1")
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12, gal_tasks=[task])
    first = list(_tiles(at))
    at.checkbox(key=f"gal_sel_{first[0]}").check().run()
    at.number_input(key="gal_page").set_value(2).run()
    second = list(_tiles(at))
    at.checkbox(key=f"gal_sel_{second[0]}").check().run()
    assert "2 ticked (1 on other pages)" in texts(at)
    at.text_input(key="gal_reason").input("same photo twice")
    at.button(key="FormSubmitter:gal_exclude_form-Exclude").click().run()
    assert "excluded 2 sample(s)" in texts(at) and {first[0], second[0]} <= excluded_ids(lake)
    assert "0 ticked" in texts(at) and not at.checkbox(key=f"gal_sel_{second[0]}").value  # the selection is spent
    # the restored tiles show it on the run that restored them
    at.checkbox(key=f"gal_sel_{second[0]}").check().run()
    at.button(key="FormSubmitter:gal_exclude_form-Restore").click().run()
    assert "restored 1 sample(s)" in texts(at) and ":gray-badge[excluded]" not in _tiles(at)[second[0]]
    from db.lake import exclusions

    exclusions.restore(lake, [first[0]], by="admin")

    # the whole query: said with its count, and nothing happens until the count is confirmed
    matched = lake.scalar("SELECT count(DISTINCT x.sample_id) FROM samples x JOIN scores v ON v.subject_id = x.sample_id AND v.metric = 'vis_attn' "
                          "AND v.model_id = ? AND v.segment = 'answer' AND v.value IS NOT NULL WHERE x.task = ?", [VIS_MODEL, task])
    at.radio(key="gal_scope").set_value("query").run()
    at.text_input(key="gal_reason").input("task under review")
    at.button(key="FormSubmitter:gal_exclude_form-Exclude").click().run()
    assert f"tick 'Yes, act on all {matched:,} samples that match' first" in texts(at) and not excluded_ids(lake)
    at.checkbox(key="gal_confirm_all").check().run()
    at.button(key="FormSubmitter:gal_exclude_form-Exclude").click().run()
    assert f"excluded {matched:,} sample(s)" in texts(at)
    assert len(excluded_ids(lake)) == matched
    assert {r[0] for r in lake.fetchall("SELECT DISTINCT task FROM samples WHERE sample_id IN (SELECT sample_id FROM exclusions)")} == {task}
    at.button(key="FormSubmitter:gal_exclude_form-Restore").click().run()  # the confirmation is asked again for the next action
    assert "first" in texts(at) and len(excluded_ids(lake)) == matched
    at.checkbox(key="gal_confirm_all").check().run()
    at.button(key="FormSubmitter:gal_exclude_form-Restore").click().run()
    assert f"restored {matched:,} sample(s)" in texts(at) and not excluded_ids(lake)


def test_thresholds_cut_comes_back_from_the_address(ui_store):
    at = page("thresholds")
    label = next(s for s in at.multiselect(key="thr_stats").value if s.startswith("VisAttnScore"))
    key = f"thr_pct_{label}"
    at.slider(key=key).set_value(45.0).run()
    assert at.query_params[key] == "45.0"
    kept = next(m.value for m in at.metric if m.label == "kept")
    copied = dict(at.query_params)
    again = opened("thresholds", copied)  # a reload, or the link in another browser
    assert not again.exception and again.slider(key=key).value == 45.0
    assert next(m.value for m in again.metric if m.label == "kept") == kept


def test_thresholds_count_unscored_samples_apart_from_those_the_cut_drops(ui_store):
    home, lake, engine = ui_store
    at = page("thresholds")
    label = next(s for s in at.multiselect(key="thr_stats").value if s.startswith("VisAttnScore"))
    from curation.model_ids import public_model_id

    model = next(m for m in (VIS_MODEL, SECOND_VIS_MODEL) if label == f"VisAttnScore · {public_model_id(m)} · answer")
    shown = {m.label: int(m.value.replace(",", "")) for m in at.metric if m.label != "query time"}
    samples = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
    scored = lake.scalar("SELECT count(DISTINCT subject_id) FROM scores WHERE metric = 'vis_attn' AND model_id = ? AND segment = 'answer' "
                         "AND subject_kind = 'sample' AND value IS NOT NULL", [model])
    assert 0 < scored < samples and shown["samples"] == samples
    assert shown["not scored"] == samples - scored  # CLIPScore lets a missing score pass by default; VisAttnScore does not
    assert shown["kept"] + shown["dropped by the cuts"] + shown["not scored"] == samples
    share = next(m for m in at.metric if m.label == "kept").delta
    assert share == f"{100 * shown['kept'] / scored:.1f}% of scored"


def test_a_reload_keeps_the_pilot_and_the_tabs_undo_and_two_tabs_never_overwrite_unseen(ui_store):
    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:4]
    pid = _pilot(lake, engine, "tabs-1", sids)
    _pilot(lake, engine, "tabs-2", sids[:2])  # the newest: what a page without an address opens
    one = page("pilot", who=ANNA, pilot_name="tabs-1")
    tab = one.query_params["tab"]
    assert one.query_params["pilot_name"] == "tabs-1"
    one.button(key="pilot_grounded").click().run()
    assert [(r.sample_id, r.label) for r in pilots.labels(engine, pid, "anna")] == [(sids[0], "grounded")]

    # a reload of tab 1: a new session on the same address, on the same pilot, with its undo history
    reloaded = opened("pilot", {"pilot_name": "tabs-1", "tab": tab}, who=ANNA)
    assert reloaded.selectbox(key="pilot_name").value == "tabs-1" and not reloaded.button(key="pilot_undo").disabled
    # tab 2 (its own address) has no history of tab 1's, and opens where the address says
    two = opened("pilot", {"pilot_name": "tabs-1"}, who=ANNA)
    assert two.query_params["tab"] != tab and two.button(key="pilot_undo").disabled

    # both on sample 1 (tab 2 went back to it): tab 2 saw "grounded"; tab 1 changes it to "skip"
    two.button(key="pilot_prev").click().run()
    reloaded.button(key="pilot_prev").click().run()
    reloaded.button(key="pilot_skip").click().run()
    two.button(key="pilot_not_grounded").click().run()  # over a label tab 2 has not seen: refused and shown
    assert "changed in another tab or session meanwhile (it is now 'skip'); nothing was saved" in texts(two)
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")}[sids[0]] == "skip"
    assert "you said **skip**" in texts(two)
    two.button(key="pilot_not_grounded").click().run()  # now seen: replaced
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")}[sids[0]] == "not_grounded"
    # tab 1's undo would put back "grounded" over tab 2's label: refused, tab 2's label stays
    reloaded.button(key="pilot_undo").click().run()
    assert "not undone" in texts(reloaded) and {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")}[sids[0]] == "not_grounded"
    # tab 2's own undo is its own: back to what it replaced ("skip")
    two.button(key="pilot_undo").click().run()
    assert "undone: sample 1 is back to 'skip'" in texts(two)
    assert {r.sample_id: r.label for r in pilots.labels(engine, pid, "anna")}[sids[0]] == "skip"


def test_inspect_from_a_gallery_tile_keeps_its_query_and_steps_from_the_linked_sample(ui_store):
    from db.reads import browse

    home, lake, engine = ui_store
    task = lake.scalar("SELECT task FROM samples GROUP BY task ORDER BY count(*) DESC LIMIT 1")
    clip = lake.scalar("SELECT min(model_id) FROM scores WHERE metric = 'clip_score' AND value IS NOT NULL")
    total, listed = browse.browse(lake, vis_model=VIS_MODEL, clip_model=clip, tasks=[task], scored_only=True, limit=10)
    assert total >= 5
    # the link a Gallery tile gives for the 4th sample of the Gallery's query
    at = opened("inspect", {"sample": listed[3]["sample_id"], "insp_tasks": json.dumps([task]), "insp_vis": VIS_MODEL})
    assert not at.exception and at.multiselect(key="insp_tasks").value == [task]
    assert "the linked sample" in texts(at)
    at.button(key="insp_next").click().run()  # its neighbour in that query, not the query's first sample
    assert at.query_params["sample"] == listed[4]["sample_id"] and f"sample **5** of **{total:,}**" in texts(at)
    at.button(key="insp_prev").click().run()
    assert at.query_params["sample"] == listed[3]["sample_id"]
    assert json.loads(at.query_params["insp_tasks"]) == [task]  # Inspect's own query is in its address too


def test_results_show_agreement_between_annotators_with_its_n(ui_store):
    from curation import agreement

    home, lake, engine = ui_store
    sids = [sid for sid, _ in _scored(lake)][:12]
    pid = _pilot(lake, engine, "agree", sids)
    for k, sid in enumerate(sids):
        pilots.set_label(engine, pid, sid, "admin", "grounded" if k % 3 else "not_grounded")
        pilots.set_label(engine, pid, sid, "anna", "grounded" if k % 4 else "not_grounded")
    at = page("pilot", pilot_name="agree")
    table = next(df.value for df in at.dataframe if "Krippendorff's α" in df.value.columns)
    expected = agreement.agreement({sid: {"admin": "grounded" if k % 3 else "not_grounded", "anna": "grounded" if k % 4 else "not_grounded"}
                                    for k, sid in enumerate(sids)})
    overall = table.iloc[0]
    assert overall["task"] == "all" and overall["n (α)"] == 12 and overall["Krippendorff's α"] == pytest.approx(round(expected.alpha.value, 3))
    assert overall["Fleiss' κ"] == pytest.approx(round(expected.fleiss.value, 3)) and overall["raters"] == 2
    assert len(table) == 1 + len({lake.scalar("SELECT any_value(task) FROM samples WHERE sample_id = ?", [sid]) for sid in sids})
    assert "not meaningful below 50" in texts(at)


@pytest.mark.parametrize("needle", ["%", "_", "100%", "a_b"])
def test_text_search_takes_like_wildcards_literally(ui_store, needle):
    """`%` and `_` in "Text contains" match themselves, not any text (they were LIKE wildcards)."""
    from db.reads import browse
    from db.reads.browse import SEARCH_ITEM_TEXT

    home, lake, engine = ui_store
    lake.transaction(lambda con: con.execute("UPDATE samples SET question = question || ' (100% cotton, a_b)' WHERE sample_id = "
                                             "(SELECT min(sample_id) FROM samples)"))
    try:
        expected = lake.scalar(
            "SELECT count(DISTINCT x.sample_id) FROM samples x WHERE contains(lower(x.question), ?) OR contains(lower(x.answer), ?) "
            f"OR x.item_id IN (SELECT item_id FROM items WHERE contains(lower({SEARCH_ITEM_TEXT}), ?) "
            "UNION SELECT im.item_id FROM images im JOIN ocr o ON o.sha256 = im.sha256 WHERE contains(lower(o.text), ?))", [needle] * 4)
        total = lake.scalar("SELECT count(DISTINCT sample_id) FROM samples")
        found, _ = browse.browse(lake, vis_model=None, clip_model=None, text=needle, limit=0)
        assert found == expected and 1 <= expected < total
    finally:
        lake.transaction(lambda con: con.execute("UPDATE samples SET question = replace(question, ' (100% cotton, a_b)', '')"))


def test_inspect_says_a_sample_is_excluded_and_why(ui_store):
    from db.lake import exclusions

    home, lake, engine = ui_store
    sid = lake.scalar("SELECT min(sample_id) FROM samples")
    exclusions.exclude(lake, [sid], reason="box photo of another product", by="admin")
    try:
        at = opened("inspect", {"sample": sid})
        assert not at.exception
        warning = next(w.value for w in at.warning if "Excluded from the data set" in w.value)
        assert "by admin" in warning and warning.endswith("box photo of another product")
    finally:
        exclusions.restore(lake, [sid], by="admin")
    assert not [w for w in opened("inspect", {"sample": sid}).warning if "Excluded" in w.value]


def test_overview_funnels_count_items_and_samples_apart(ui_store):
    home, lake, engine = ui_store
    at = page("overview")
    assert not at.exception
    shown = {m.label: int(m.value.replace(",", "")) for m in at.metric}
    items = [shown[k] for k in ("image-text pairs ingested", "with a usable image", "items with generated samples")]
    samples = [shown["samples generated"], shown["samples with VisAttnScore"]]
    assert items == sorted(items, reverse=True) and samples == sorted(samples, reverse=True)  # each a funnel: never wider below
    assert "samples in a stratified selection" not in shown
    assert len([c for c in at.get("plotly_chart")]) >= 2


@pytest.mark.parametrize("name", ["**new** set", "[docs](http://evil.example)", "a_b_c *x*", "`code`", "# head", "1. one", "$x^2$", "<b>hi</b>"])
def test_names_typed_by_users_show_as_typed_in_markdown(name):
    """A snapshot or filter name is escaped wherever Streamlit renders Markdown: no bold, link, heading,
    list, maths or markup comes out of it, and the text reads as typed."""
    import html
    import re

    from markdown_it import MarkdownIt

    from ui.labels import md

    rendered = MarkdownIt("commonmark").render(md(name)).strip()  # CommonMark, as Streamlit's renderer reads it
    assert not re.search(r"<(strong|em|a|code|h1|ol|li|b)\b", rendered), rendered
    assert html.unescape(re.sub(r"</?p>", "", rendered)) == name


def test_a_re_export_is_refused_unless_replace_is_ticked(ui_store):
    from curation import snapshots
    from curation.filters import FilterConfig
    from db.app import jobs as jobs_db
    from db.app import saved_filters

    from .test_ui_snapshots import _by_label, _export

    home, lake, engine = ui_store
    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    snap = snapshots.create(lake, engine, name="re-export", filter_name="ui-filter", config=config, created_by="admin")
    _export(lake, snap, home / "exports", formats=("llava",))
    before = len(jobs_db.list_jobs(engine, limit=100, kind="export"))
    at = page("snapshots", export_name="re-export", manifest_snap="re-export")
    assert "refreshed every 5 s" in texts(at)  # the exports list reads again while an export job runs
    _by_label(at.button, "Export").click().run()
    assert "is exported already in llava; nothing was launched. Tick 'Replace an export that exists'" in texts(at)
    assert len(jobs_db.list_jobs(engine, limit=100, kind="export")) == before  # nothing launched, nothing overwritten
    _by_label(at.checkbox, "Replace an export that exists").check()
    _by_label(at.button, "Export").click().run()
    assert "export job" in texts(at) and len(jobs_db.list_jobs(engine, limit=100, kind="export")) == before + 1
    assert jobs_db.list_jobs(engine, limit=1, kind="export")[0].params["force"] is True


def test_thresholds_exclude_everything_the_cuts_drop(ui_store):
    from db.lake import exclusions

    home, lake, engine = ui_store
    at = page("thresholds")
    dropped_by_cuts = next(int(m.value.replace(",", "")) for m in at.metric if m.label == "dropped by the cuts")
    unscored = next(int(m.value.replace(",", "")) for m in at.metric if m.label == "not scored")
    form = next(b for b in at.button if b.label == "Exclude them")
    form.click().run()
    assert "give a reason" in texts(at) and exclusions.count(lake) == 0
    at.text_input(key="thr_ex_reason").input("below the pilot's threshold")
    next(b for b in at.button if b.label == "Exclude them").click().run()
    assert "tick 'Yes, exclude all" in texts(at) and exclusions.count(lake) == 0
    at.checkbox(key="thr_ex_sure").check()
    next(b for b in at.button if b.label == "Exclude them").click().run()
    assert f"excluded {dropped_by_cuts + unscored:,} sample(s) these cuts dropped" in texts(at)
    assert exclusions.count(lake) == dropped_by_cuts + unscored
    # the page was drawn again: its counts read the store with the exclusions (percentile cuts move over what is left)
    assert next(m for m in at.metric if m.label == "samples").help.startswith(f"{dropped_by_cuts + unscored:,} of them excluded")
    exclusions.restore(lake, [r["sample_id"] for r in exclusions.list_excluded(lake, limit=100_000)], by="admin")


def test_saved_views_open_the_same_page_and_address_for_anyone(ui_store):
    from db.app import saved_views, sessions
    from ui import auth

    from .test_ui_pages import REPO

    home, lake, engine = ui_store
    at = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    at.session_state[auth.TOKEN_KEY] = sessions.create(engine, "admin", user_agent="AppTest")
    at.query_params["gal_page"] = "3"
    at.query_params["tab"] = "0123456789ab"  # a tab's own id: never shared
    at.run()
    assert not at.exception
    at.text_input(key="view_name").input("third page")
    next(b for b in at.button if b.label == "Save view").click().run()
    view = saved_views.get(engine, "third page")
    assert (view.page, view.query, view.created_by) == ("", {"gal_page": "3"}, "admin")
    assert "saved view 'third page'" in texts(at)
    # anyone signed in sees it, as a link to its page with its query string
    anna = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    anna.session_state[auth.TOKEN_KEY] = sessions.create(engine, "anna", user_agent="AppTest")
    anna.run()
    links = [node for node in anna.get("page_link") if node.proto.label == "third page"]
    assert links and "gal_page=3" in links[0].proto.page + str(links[0].proto)
    with pytest.raises(saved_views.ViewError, match="give the view a name"):
        saved_views.save(engine, " ", "gallery", {}, "admin")
    assert saved_views.save(engine, "third page", "gallery", {"gal_page": "4"}, "anna") is True  # replaced, by its new author
    assert saved_views.get(engine, "third page").created_by == "anna"


def test_a_replaced_filter_names_who_saved_it_last_and_keeps_its_history(ui_store):
    from db.app import saved_filters

    home, lake, engine = ui_store
    first = {"conditions": [{"metric": "vis_attn", "op": ">=", "value": None, "percentile": 25.0}]}
    second = {"conditions": [{"metric": "vis_attn", "op": ">=", "value": None, "percentile": 40.0}]}
    assert saved_filters.save(engine, "history", first, "admin") is False
    assert saved_filters.save(engine, "history", second, "anna") is True
    row = saved_filters.get(engine, "history")
    assert (row.created_by, row.updated_by, row.config) == ("admin", "anna", second)
    assert [(h.saved_by, h.config) for h in saved_filters.history(engine, "history")] == [("admin", first), ("anna", second)]


def test_filter_history_from_the_command_line(ui_store, cli):
    from db.app import saved_filters

    home, lake, engine = ui_store
    saved_filters.save(engine, "hist-cli", {"conditions": [{"metric": "vis_attn", "op": ">=", "value": None, "percentile": 25.0}]}, "admin")
    saved_filters.save(engine, "hist-cli", {"conditions": [{"metric": "vis_attn", "op": ">=", "value": None, "percentile": 35.0}]}, "anna")
    out = cli("filter", "history", "hist-cli", check=True).stdout
    lines = [line for line in out.splitlines() if "vis_attn" in line]
    assert len(lines) == 2 and "admin" in lines[0] and "p25" in lines[0] and "anna" in lines[1] and "p35" in lines[1]
    listed = cli("filter", "list", check=True).stdout
    assert "last saved by" in listed and any("hist-cli" in line and "admin" in line and "anna" in line for line in listed.splitlines())
    missing = cli("filter", "history", "nope")
    assert missing.returncode == 2 and "no saved filter 'nope'" in missing.stderr


def test_gallery_tags_the_ticked_samples_and_tiles_and_inspect_show_them(ui_store):
    from db.lake import tags

    home, lake, engine = ui_store
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    ids = list(_tiles(at))
    at.checkbox(key=f"gal_sel_{ids[0]}").check()
    at.checkbox(key=f"gal_sel_{ids[1]}").check().run()
    at.text_input(key="gal_tags_text").input("two words")
    at.button(key="FormSubmitter:gal_tag_form-Tag").click().run()
    assert "is not a tag" in texts(at) and tags.counts(lake) == []
    at.text_input(key="gal_tags_text").input("blurry, needs-review")
    at.button(key="FormSubmitter:gal_tag_form-Tag").click().run()
    assert "tagged 4 (sample, tag) pair(s)" in texts(at)
    tiles = _tiles(at)
    assert ":blue-badge[blurry]" in tiles[ids[0]] and ":blue-badge[needs\\-review]" in tiles[ids[1]] and "badge[blurry]" not in tiles[ids[2]]
    shown = opened("inspect", {"sample": ids[0]})
    assert any("tags:" in str(m.value) and "blurry" in str(m.value) for m in shown.markdown)
    tags.remove(lake, ids[:2], ["blurry", "needs-review"], by="admin")


def test_gallery_turns_pages_from_the_keyboard_and_offers_the_query_as_csv(ui_store):
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    assert at.button(key="gal_prev").disabled and not at.button(key="gal_next").disabled
    first = list(_tiles(at))
    at.button(key="gal_next").click().run()  # → (the button's shortcut)
    assert at.number_input(key="gal_page").value == 2 and not set(_tiles(at)) & set(first)
    at.button(key="gal_prev").click().run()
    assert at.number_input(key="gal_page").value == 1 and list(_tiles(at)) == first
    labels = [node.proto.label for node in at.get("download_button")]
    assert any(label.startswith("Download this query as CSV (") for label in labels)
    pilot_page = page("pilot", pilot_name="ui-pilot")
    assert "Download the labels (CSV)" in [node.proto.label for node in pilot_page.get("download_button")]


def test_every_page_starts_from_the_filter_saved_last(ui_store):
    from db.app import saved_filters

    home, lake, engine = ui_store
    config = saved_filters.get(engine, "ui-filter").config
    saved_filters.save(engine, "a-newer-filter", config, "admin")  # saved last, first by name
    try:
        assert page("gallery", gal_vis=VIS_MODEL).selectbox(key="gal_filter").value == "a-newer-filter"
        assert next(b for b in page("overview").selectbox if b.label.startswith("Final set")).value == "a-newer-filter"
        assert page("pilot", pilot_name="ui-pilot").selectbox(key="pilot_filter").value == "a-newer-filter"
        assert next(b for b in page("snapshots").selectbox if b.label == "Saved filter").value == "a-newer-filter"
    finally:
        saved_filters.delete(engine, "a-newer-filter")


def test_a_notice_tells_the_user_when_a_job_they_launched_ends(ui_store):
    """ui/job_notices.py: on any page, a toast when a job the signed-in user launched ends (others' jobs and
    jobs that ended before the session began are not theirs to be told)."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from db.app import jobs as jobs_db
    from db.app.models import Job

    home, lake, engine = ui_store
    mine, _ = jobs_db.create_job(engine, kind="ocr", queue="cpu", params={"n": 1}, launched_by="admin")
    theirs, _ = jobs_db.create_job(engine, kind="ocr", queue="cpu", params={"n": 2}, launched_by="anna")
    start = datetime.now(timezone.utc)

    def app() -> None:
        import streamlit as st

        from ui import job_notices

        st.session_state["lines"] = job_notices.notices(now=st.session_state["t0"])

    at = AppTest.from_function(app, default_timeout=60)
    at.session_state[USER_KEY] = ADMIN
    at.session_state["t0"] = start
    at.run()
    assert at.session_state["lines"] == []
    with Session(engine) as s, s.begin():
        s.execute(update(Job).where(Job.id.in_([mine, theirs])).values(status="succeeded", finished_at=start + timedelta(seconds=1)))
    at.run()
    assert at.session_state["lines"] == [(f"ocr job {mine} succeeded", "succeeded")]
    at.run()
    assert at.session_state["lines"] == []  # said once
