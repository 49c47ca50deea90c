"""The keyboard in Gallery and Inspect (issue 26): J / K move Gallery's mark between tiles, T ticks the
marked tile, O opens it on Inspect with the page's query, X excludes it (or puts it back) with the reason
typed once; Inspect's X does the same for the sample shown. Each key is a button's shortcut, so the
buttons are what is pressed here (the browser test presses the keys themselves)."""
from __future__ import annotations

import streamlit as st

from db.lake import exclusions

from .test_ui_gallery import _tiles
from .test_ui_pages import ANNA, page, texts, ui_store  # noqa: F401 - ui_store is a fixture
from .ui_store import VIS_MODEL


def _marked(at) -> str:
    return next(sid for sid, tile in _tiles(at).items() if "▸ marked" in tile)


def test_gallery_mark_moves_ticks_excludes_and_opens(ui_store, monkeypatch):
    home, lake, engine = ui_store
    at = page("gallery", gal_vis=VIS_MODEL, gal_size=12)
    order = list(_tiles(at))
    assert _marked(at) == order[0] and at.button(key="gal_mark_prev").disabled
    at.button(key="gal_mark_next").click().run()
    at.button(key="gal_mark_next").click().run()
    at.button(key="gal_mark_prev").click().run()
    assert _marked(at) == order[1]

    at.button(key="gal_mark_tick").click().run()  # T
    assert at.checkbox(key=f"gal_sel_{order[1]}").value and "1 ticked" in texts(at)
    at.button(key="gal_mark_tick").click().run()
    assert not at.checkbox(key=f"gal_sel_{order[1]}").value and "0 ticked" in texts(at)

    at.button(key="gal_mark_exclude").click().run()  # X with no reason yet: refused, nothing stored
    assert not at.exception and "type the reason for X first" in texts(at)
    assert exclusions.current(lake, order[1]) is None
    at.text_input(key="gal_key_reason").input("answer not in the image").run()
    try:
        at.button(key="gal_mark_exclude").click().run()
        assert exclusions.current(lake, order[1])["reason"] == "answer not in the image"
        assert "excluded" in _tiles(at)[order[1]] and f"excluded sample {order[1]}" in texts(at)
        at.button(key="gal_mark_exclude").click().run()  # X again: back in the data set
        assert exclusions.current(lake, order[1]) is None and "excluded" not in _tiles(at)[order[1]]
    finally:
        exclusions.restore(lake, [order[1]], by="admin")

    at.button(key="gal_next").click().run()  # → : the next page, the mark on its first tile
    assert _marked(at) == list(_tiles(at))[0]

    went: list[tuple] = []
    monkeypatch.setattr(st, "switch_page", lambda page, query_params=None: went.append((page, dict(query_params))))
    at.button(key="gal_mark_open").click().run()  # O
    assert went == [("views/inspect.py", {"sample": list(_tiles(at))[0], "insp_vis": VIS_MODEL})]


def test_an_annotator_has_the_mark_but_no_exclusion_key(ui_store):
    at = page("gallery", who=ANNA, gal_vis=VIS_MODEL, gal_size=12)
    keys = {b.key for b in at.button}
    assert {"gal_mark_next", "gal_mark_open"} <= keys and "gal_mark_exclude" not in keys and "gal_mark_tick" not in keys


def test_inspect_x_excludes_the_sample_shown_and_puts_it_back(ui_store):
    home, lake, engine = ui_store
    at = page("inspect", insp_vis=VIS_MODEL)
    shown = at.query_params["sample"]
    at.text_input(key="insp_reason").input("blurry photo").run()
    try:
        at.button(key="insp_exclude").click().run()
        assert exclusions.current(lake, shown)["reason"] == "blurry photo"
        assert any("Excluded from the data set by admin" in w.value for w in at.warning) and at.button(key="insp_exclude").label == "Restore (X)"
        at.button(key="insp_exclude").click().run()
        assert exclusions.current(lake, shown) is None and at.button(key="insp_exclude").label == "Exclude (X)"
        at.button(key="insp_next").click().run()  # →, then X: the next one, with the reason kept
        nxt = at.query_params["sample"]
        assert nxt != shown
        at.button(key="insp_exclude").click().run()
        assert exclusions.current(lake, nxt)["reason"] == "blurry photo"
    finally:
        exclusions.restore(lake, [shown, at.query_params["sample"]], by="admin")
    assert "insp_exclude" not in {b.key for b in page("inspect", who=ANNA).button}
