"""The web app's pages under Streamlit's AppTest (the page scripts run as a server would run them), on a
real store; plus users, roles, sign-in tokens and the token heat's escaping."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from db.app import pilots, saved_filters, users
from db.app.users import SignedIn
from ui import auth, heat
from ui.context import USER_KEY

from .conftest import REPO, _reset_process_caches
from .ui_store import XSS, XSS_ID, build

PAGES = REPO / "ui" / "views"
ADMIN, ANNA = SignedIn("admin", "admin"), SignedIn("anna", "annotator")


@pytest.fixture(scope="module")
def ui_store(tmp_path_factory):
    home = tmp_path_factory.mktemp("ui") / "var"
    saved = {k: v for k, v in os.environ.items() if k.startswith("VITPRO_")}
    for key in saved:
        del os.environ[key]
    os.environ.update({"VITPRO_HOME": str(home), "VITPRO_LEASE_SECONDS": "4", "VITPRO_USER": "tester"})
    _reset_process_caches()
    try:
        lake, engine = build(tmp_path_factory.mktemp("ui-data"))
        yield home, lake, engine
    finally:
        _reset_process_caches()
        for key in [k for k in os.environ if k.startswith("VITPRO_")]:
            del os.environ[key]
        os.environ.update(saved)


def page(name: str, who: SignedIn | None = ADMIN, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=60)
    if who is not None:
        at.session_state[USER_KEY] = who
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def shown(markdown: str) -> str:
    """Markdown as the reader sees it: backslash escapes (names users typed are escaped, ui/labels.md) undone."""
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|~<>:$&])", r"\1", str(markdown))


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.error] + [s.value for s in at.success]
    parts += [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(shown(p) for p in parts)


def html_blocks(at: AppTest) -> str:
    return "\n".join(str(getattr(node, "body", "")) for node in at.get("html"))


# ---- users, roles and tokens --------------------------------------------------------------------------
def test_passwords_are_hashed_and_roles_decide_what_is_allowed(home):
    from config.settings import load_settings
    from db.app.engine import write_engine
    from db.store import open_store

    s = load_settings()
    open_store(s.store)
    engine = write_engine(s.app_url)
    users.add(engine, "ops", "correct horse", "admin")
    stored = users.list_users(engine)[0].password_hash
    assert "correct horse" not in stored and stored.startswith("scrypt$")
    assert users.authenticate(engine, "ops", "correct horse") == SignedIn("ops", "admin")
    assert users.authenticate(engine, "ops", "wrong horse!") is None
    assert users.authenticate(engine, "nobody", "correct horse") is None
    with pytest.raises(users.UserError, match="exists already"):
        users.add(engine, "ops", "another password", "admin")
    with pytest.raises(users.UserError, match="at least 8"):
        users.add(engine, "short", "abc", "admin")
    with pytest.raises(users.UserError, match="unknown role"):
        users.add(engine, "x", "long enough", "root")
    users.add(engine, "ann", "long enough", "annotator")
    assert users.require(engine, SignedIn("ann", "annotator"), "label").role == "annotator"
    with pytest.raises(users.Forbidden, match="needs an admin"):
        users.require(engine, SignedIn("ann", "annotator"), "launch_jobs")
    # a session that claims admin is checked against the store, not believed
    with pytest.raises(users.Forbidden):
        users.require(engine, SignedIn("ann", "admin"), "export")
    users.set_disabled(engine, "ops")
    assert users.authenticate(engine, "ops", "correct horse") is None
    with pytest.raises(users.Forbidden, match="sign in"):
        users.require(engine, SignedIn("ops", "admin"), "export")


def test_users_add_from_the_command_line(home, cli):
    r = cli("users", "add", "curator", "--role", "admin", "--password-stdin", input="s3cret-pass\n")
    assert r.returncode == 0, r.stderr
    assert "added curator (admin)" in r.stdout
    r = cli("users", "add", "curator", "--password-stdin", input="s3cret-pass\n")
    assert r.returncode == 2 and "exists already" in r.stderr
    r = cli("users", "add", "weak", "--password-stdin", input="123\n")
    assert r.returncode == 2 and "at least 8" in r.stderr
    listing = cli("users", "list").stdout
    assert re.search(r"curator\s+admin\s+active", listing)
    assert cli("users", "disable", "curator").returncode == 0
    assert re.search(r"curator\s+admin\s+disabled", cli("users", "list").stdout)


# ---- the token heat -----------------------------------------------------------------------------------
def test_heat_escapes_text_and_colours_on_viridis():
    block = heat.heat_block(["fine", XSS, "words"], [0.1, 0.0, 0.2])
    assert "<img" not in block and "&lt;img src=x onerror=alert(1)&gt;" in block
    spans = re.findall(r'data-score="([^"]+)" data-pct="[^"]+" title="A\(t\) = ([^ "]+)[^"]*" style="background: rgba\((\d+),(\d+),(\d+)', block)
    assert [(float(a), float(b)) for a, b, *_ in spans] == [(0.1, 0.1), (0.0, 0.0), (0.2, 0.2)]
    colours = [tuple(map(int, c)) for *_, c1, c2, c3 in spans for c in [(c1, c2, c3)]]
    assert colours == [heat.colour(0.5), heat.STOPS[0], heat.STOPS[-1]]  # viridis: middle, lowest, highest (no own range: own percentiles)
    assert "0.2" in heat.legend(heat.own_breaks([0.0, 0.2])) and "no token scores" in heat.legend(None)
    pieces = heat.token_spans(["\u2581Red", "dish", "\u2581mug"], [0.1, 0.2, None], pieces=True)
    assert re.sub(r"<[^>]+>", "", pieces) == " Reddish mug" and 'title="no score"' in pieces


# ---- pages --------------------------------------------------------------------------------------------
def test_pages_stop_without_a_signed_in_user(ui_store):
    for name in ("overview", "inspect", "thresholds", "pilot", "jobs", "snapshots", "training"):
        at = page(name, who=None)
        assert [e.value for e in at.error] == ["sign in first"], name
        assert not at.dataframe and not at.button, name


def test_app_signs_in_only_with_a_live_server_side_session(ui_store):
    from db.app import sessions

    home, lake, engine = ui_store
    at = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60).run()
    assert not at.exception and USER_KEY not in at.session_state
    assert "[Sign in](/login)" in texts(at) and not at.text_input  # the form lives on the server's /login, not here
    token = sessions.create(engine, "anna", user_agent="AppTest")
    at.session_state[auth.TOKEN_KEY] = token  # what the HttpOnly cookie carries in a browser
    at.run()
    assert not at.exception and at.session_state[USER_KEY] == ANNA
    assert '<form method="post" action="/logout"' in html_blocks(at)  # sign-out posts to the server, in this tab
    sessions.revoke(engine, token=token, by="admin")  # revoked: the same cookie opens nothing any more
    # (a fresh AppTest: once st.navigation has picked a page, AppTest reruns only that page, unlike a browser,
    # which reruns ui/app.py on every click; the browser test checks a revocation on an open page)
    again = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    again.session_state[auth.TOKEN_KEY] = token
    again.run()
    assert USER_KEY not in again.session_state and "[Sign in](/login)" in texts(again)
    forged = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    forged.session_state[auth.TOKEN_KEY] = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert USER_KEY not in forged.run().session_state


def test_overview_funnel_counts(ui_store):
    home, lake, engine = ui_store
    at = page("overview")
    assert not at.exception
    metrics = {shown(m.label): m.value for m in at.metric}
    assert metrics["image-text pairs ingested"] == f"{lake.scalar('SELECT count(*) FROM items'):,}"
    assert metrics["samples generated"] == f"{lake.scalar('SELECT count(*) FROM samples'):,}"
    config = saved_filters.get(engine, "ui-filter").config
    from curation.filters import FilterConfig, stats_for

    kept = stats_for(lake, FilterConfig.from_dict(config)).report(FilterConfig.from_dict(config)).kept
    assert metrics["kept by filter 'ui-filter'"] == f"{kept:,}"


def test_overview_shows_the_generation_quality_report(ui_store):
    home, lake, engine = ui_store
    at = page("overview")
    assert not at.exception
    table = next(df.value for df in at.dataframe if "fact coverage" in df.value.columns)
    stored = dict(lake.fetchall("SELECT task, count(*) FROM samples GROUP BY task"))
    assert dict(zip(table["task"], table["samples"])) == stored
    assert set(table["repetition rule"]) <= {"ok", "repeats"}


def test_inspect_shows_the_fields_an_answer_rests_on(ui_store):
    home, lake, engine = ui_store
    sample_id, evidence = lake.fetchone("SELECT sample_id, evidence FROM samples WHERE task = 'counting' AND evidence IS NOT NULL LIMIT 1")
    at = page("inspect", insp_text=lake.scalar("SELECT answer FROM samples WHERE sample_id = ?", [sample_id])[:20], insp_tasks=["counting"])
    assert not at.exception
    shown = next(df.value for df in at.dataframe if "field" in df.value.columns)
    assert list(shown["text"]) == [e["text"] for e in json.loads(evidence)]


def test_inspect_colours_the_answer_and_escapes_html(ui_store):
    home, lake, engine = ui_store
    from tests.ui_store import VIS_MODEL

    at = page("inspect", insp_text="onerror", insp_vis=VIS_MODEL, insp_vis2=None)  # one model's colouring
    assert not at.exception
    assert "sample **1** of **1**" in texts(at)
    body = html_blocks(at)
    assert "<img src" not in body and "&lt;img" in body
    scores = [float(v) for v in re.findall(r'data-score="([^"]+)"', body)]
    stored = json.loads(lake.scalar("SELECT word_scores FROM token_scores WHERE subject_id = ? AND segment = 'answer' AND model_id = ?", [XSS_ID, VIS_MODEL]))
    assert scores == pytest.approx(stored)
    vis = {m.label: m for m in at.metric}["VisAttnScore (answer)"]
    assert vis.value == "0.11" and vis.delta.startswith("percentile ")


def test_inspect_shows_a_second_vlms_grounding_beside_the_first(ui_store):
    from tests.ui_store import SECOND_VIS_MODEL, VIS_MODEL

    home, lake, engine = ui_store
    at = page("inspect", insp_order="VisAttnScore, lowest first", insp_vis=VIS_MODEL)
    assert not at.exception
    assert at.selectbox(key="insp_vis2").value == SECOND_VIS_MODEL  # two models scored: the other one is shown by default
    sample_id = re.search(r"`(\w+)`", texts(at)).group(1)
    metrics = {m.label: m for m in at.metric}
    second = metrics["VisAttnScore (answer), qwen2_5_vl#ocr"]
    stored = lake.scalar("SELECT value FROM scores WHERE subject_id = ? AND model_id = ? AND metric = 'vis_attn' AND segment = 'answer'",
                         [sample_id, SECOND_VIS_MODEL])
    assert second.value == f"{stored:.4g}" and second.delta.startswith("percentile ")
    body = html_blocks(at)
    assert "as qwen2_5_vl#ocr grounds it" in body and body.count("data-score") >= 2
    assert "/models/tiny" not in texts(at) + body  # model pickers and captions show names, not paths
    at.selectbox(key="insp_vis2").select_index(0).run()  # "(no second model)"
    assert "VisAttnScore (answer), qwen2_5_vl#ocr" not in {m.label for m in at.metric}


def test_thresholds_keep_two_models_with_one_folder_name_apart(ui_store):
    from datetime import datetime, timezone

    from db.lake import batches
    from tests.ui_store import SECOND_VIS_MODEL

    home, lake, engine = ui_store
    twin = SECOND_VIS_MODEL.replace("/models/tiny/", "/models/other/")  # same folder name, another model
    sid = lake.fetchone("SELECT subject_id FROM scores WHERE model_id = ? AND metric = 'vis_attn' AND value IS NOT NULL LIMIT 1", [SECOND_VIS_MODEL])[0]
    batches.write_scores(lake, "twin-model", [{"subject_kind": "sample", "subject_id": sid, "metric": "vis_attn", "model_id": twin, "segment": "answer",
                                               "value": 0.5, "flags": None, "run_id": "twin-model", "created_at": datetime.now(timezone.utc)}])
    try:
        at = page("thresholds")
        labels = at.multiselect(key="thr_stats").options
        assert f"VisAttnScore · {SECOND_VIS_MODEL} · answer" in labels and f"VisAttnScore · {twin} · answer" in labels  # neither lost
        assert "VisAttnScore · vlm-a · answer" in labels  # a name nobody else has stays short
    finally:
        lake.execute("DELETE FROM scores WHERE run_id = 'twin-model'")


def test_inspect_steps_with_next_and_previous(ui_store):
    at = page("inspect", insp_order="VisAttnScore, lowest first")
    first = re.search(r"`(\w+)`", texts(at)).group(1)
    at.button(key="insp_next").click().run()
    assert "sample **2** of" in texts(at)
    second = re.search(r"`(\w+)`", texts(at)).group(1)
    assert second != first
    at.button(key="insp_prev").click().run()
    assert re.search(r"`(\w+)`", texts(at)).group(1) == first
    at.toggle(key="insp_q").set_value(True).run()
    assert at.radio(key="insp_unit").set_value("sub-word pieces").run()
    assert not at.exception and "data-score" in html_blocks(at)


def test_thresholds_counts_follow_the_slider_and_save_needs_an_admin(ui_store):
    home, lake, engine = ui_store
    from tests.ui_store import VIS_MODEL

    first = page("thresholds")
    assert len([k for k in first.multiselect(key="thr_stats").value if "VisAttnScore" in k]) == 1  # one of the two VLMs to start with
    at = page("thresholds", thr_stats=[f"VisAttnScore · {VIS_MODEL} · answer", "CLIPScore · clip-a"])
    assert not at.exception
    label = next(sl.key for sl in at.slider if sl.key.startswith("thr_pct_") and "VisAttnScore" in sl.key)
    kept = lambda: int({m.label: m.value for m in at.metric}["kept"].replace(",", ""))  # noqa: E731
    before = kept()
    at.slider(key=label).set_value(60).run()
    after = kept()
    assert after < before
    from curation.filters import FilterConfig, stats_for

    config = FilterConfig.from_dict(saved_filters.get(engine, "ui-filter").config)
    config.conditions[0].percentile = 60.0
    assert after == stats_for(lake, config).report(config).kept  # the engine's count, not a page's own
    at.text_input(key="thr_name").input("from-ui")
    at.button[0].click().run()
    assert "saved filter 'from-ui'" in texts(at)
    saved = saved_filters.get(engine, "from-ui").config
    assert {c["metric"]: c["percentile"] for c in saved["conditions"]} == {"vis_attn": 60.0, "clip_score": 20.0}
    anna = page("thresholds", who=ANNA)  # annotators do not see the save form at all
    assert not anna.exception and "thr_name" not in [t.key for t in anna.text_input] and not anna.button


def test_pilot_labels_are_per_annotator_and_resume_after_a_refresh(ui_store):
    home, lake, engine = ui_store
    pilot = pilots.get(engine, "ui-pilot")
    order = [x.sample_id for x in pilots.samples(engine, pilot.id)]
    at = page("pilot", who=ANNA)
    assert not at.exception
    at.button(key="pilot_grounded").click().run()
    at.button(key="pilot_not_grounded").click().run()
    at.button(key="pilot_skip").click().run()
    mine = {x.sample_id: x.label for x in pilots.labels(engine, pilot.id, annotator="anna")}
    assert mine == {order[0]: "grounded", order[1]: "not_grounded", order[2]: "skip"}
    pilots.set_label(engine, pilot.id, order[3], "admin", "grounded")  # another curator, at the same time
    fresh = page("pilot", who=ANNA)  # a refresh: a new session
    assert "you have labelled 3 of 20" in str([p.text for p in fresh.get("progress")] + [texts(fresh)])
    assert "sample **4** of 20" in texts(fresh) and "not labelled by you yet" in texts(fresh)  # admin's label is not shown to anna
    assert {x.sample_id for x in pilots.labels(engine, pilot.id)} == set(order[:4])


def test_pilot_results_show_roc_auc_and_the_paper_reference(ui_store):
    home, lake, engine = ui_store
    pilot = pilots.get(engine, "ui-pilot")
    chosen = pilots.samples(engine, pilot.id)
    for k, x in enumerate(chosen):
        pilots.set_label(engine, pilot.id, x.sample_id, "bob", "grounded" if (x.vis_attn or 0) > 0.1 or k % 5 == 0 else "not_grounded")
    at = page("pilot", pilot_filter="ui-filter")
    assert not at.exception
    table = next(df.value for df in at.dataframe if "score" in df.value.columns)
    # the two scores, and the two combined by a logistic regression (its AUC cross-validated: curation/calibration.py)
    assert set(table["score"]) == {"vis_attn", "clip_score", "combined (5-fold CV)"}
    assert all(0 <= v <= 1 for v in table["AUC"])
    on_filter = table[table["score"] != "combined (5-fold CV)"]  # the saved filter cuts on the scores, not on the combination
    assert on_filter["accuracy at current thresholds"].notna().all()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("paper: +36%" in json.dumps(c) for c in charts)
    assert any(t.get("name", "").startswith("vis_attn (AUC") for c in charts for t in c["data"])


def test_jobs_page_launches_for_admins_only(ui_store):
    home, lake, engine = ui_store
    from db.app import jobs as jobs_db

    before = len(jobs_db.list_jobs(engine, limit=100))
    anna = page("jobs", who=ANNA, launch_tab="Aux stats")
    assert not anna.exception
    assert anna.get("form") == []  # annotators see no launch form (launching stays guarded on the server)
    assert len(jobs_db.list_jobs(engine, limit=100)) == before
    at = page("jobs", launch_tab="Aux stats")
    [b for b in at.button if b.label == "Launch aux stats"][0].click().run()
    assert "launched aux_stats job" in texts(at)
    assert jobs_db.list_jobs(engine, limit=1)[0].kind == "aux_stats"
    assert jobs_db.list_jobs(engine, limit=1)[0].launched_by == "admin"
    # the duplicates form: its fields are the spec's, a bad stat is refused by its label before anything is queued
    at = page("jobs", launch_tab="Duplicates & map")
    assert [n.value for n in at.number_input if n.label == "Threshold"] == [None]  # empty: the method's own default
    [t for t in at.text_input if t.label == "Rank by"][0].set_value("ocr_chars")
    [b for b in at.button if b.label == "Launch dedup"][0].click().run()
    assert "cannot launch dedup" in texts(at) and "image stat" in texts(at) and jobs_db.list_jobs(engine, limit=1)[0].kind == "aux_stats"
    at = page("jobs", launch_tab="Duplicates & map")
    [b for b in at.button if b.label == "Launch dedup"][0].click().run()
    assert "launched dedup job" in texts(at)
    # clusters and the map read the CLIP vectors: none in this store, so refused before anything is queued, saying why
    [b for b in at.button if b.label == "Launch clusters"][0].click().run()
    assert "cannot launch clusters" in texts(at) and "run `vitpro score clip` first" in texts(at)
    dedup = jobs_db.list_jobs(engine, limit=1)[0]
    assert dedup.kind == "dedup" and dedup.params["method"] == "dhash" and dedup.params["threshold"] == 10 and dedup.params["grouping"] == "dhash:10"
    at = page("jobs", launch_tab="VisAttnScore")
    [b for b in at.button if b.label == "Launch VisAttnScore"][0].click().run()
    assert "cannot launch grounding" in texts(at) and '"VLM": choose a model' in texts(at)  # checked before queuing


def test_jobs_page_offers_the_vlm_folders_of_every_family_and_refuses_others(ui_store, tiny_models):
    import shutil

    home, lake, engine = ui_store
    from db.app import jobs as jobs_db

    for family in ("qwen2_5_vl", "gemma3"):
        shutil.copytree(tiny_models[family], home / "models" / family, dirs_exist_ok=True)
    (home / "models" / "bert").mkdir(exist_ok=True)
    (home / "models" / "bert" / "config.json").write_text('{"model_type": "bert"}')
    at = page("jobs", launch_tab="VisAttnScore")
    pick = at.selectbox(key="vis_model_pick")
    assert list(pick.options) == ["gemma3 (Gemma 3)", "qwen2_5_vl (Qwen2.5-VL)"]  # not bert
    pick.select_index(1)
    [b for b in at.button if b.label == "Launch VisAttnScore"][0].click().run()
    assert "launched grounding job" in texts(at)
    job = jobs_db.list_jobs(engine, limit=1)[0]
    assert job.kind == "grounding" and job.params["model"] == str((home / "models" / "qwen2_5_vl").resolve())
    at.text_input(key="vis_model_path").input(str(home / "models" / "bert"))
    [b for b in at.button if b.label == "Launch VisAttnScore"][0].click().run()
    assert "bert is a 'bert' model, not a VLM family" in texts(at) and "qwen2_5_vl" in texts(at)
    from jobs.submit import cancel_job

    cancel_job(job.id)  # no worker runs here: leave no job waiting for one


def test_snapshots_create_diff_and_export_refusal(ui_store):
    home, lake, engine = ui_store
    from db.app import jobs as jobs_db
    from db.app import snapshots

    at = page("snapshots")
    assert not at.exception
    [b for b in at.button if b.label == "Create snapshot"][0].click().run()
    from db.app import saved_filters

    newest = saved_filters.newest(saved_filters.list_all(engine))  # the page starts from the filter saved last
    assert f"snapshot '{newest}-v" in texts(at)
    snap = snapshots.list_all(engine)[-1]
    assert snap.counts["kept"] > 0 and snap.created_by == "admin"
    anna = page("snapshots", who=ANNA)  # annotators see no admin form at all (tests/test_ui_snapshots.py: the server still refuses)
    assert not anna.exception and not [x for x in anna.button if x.label in ("Export", "Create snapshot", "Rename snapshot")]
    assert len(snapshots.list_all(engine)) == 1
    [b for b in at.button if b.label == "Export"][0].click().run()
    assert "export job" in texts(at) and jobs_db.list_jobs(engine, limit=1)[0].kind == "export"


def test_training_page_without_and_with_runs(ui_store):
    home, lake, engine = ui_store
    at = page("training")
    assert not at.exception and "No training runs yet." in texts(at)
    from db.app import training

    run = training.create_run(engine, name="r1", snapshot="s", base_model="m", config={"lora": {"r": 8}, "learning_rate": 2e-4}, out_dir="/tmp/r1", created_by="admin")
    training.record_steps(engine, run.id, [{"step": k, "epoch": 0.1 * k, "loss": 3.0 - 0.2 * k, "learning_rate": 2e-4, "tokens": 100, "seconds": 0.5} for k in range(1, 6)])
    base = {"objective": {"recognition": {"n": 10, "accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5, "yes_ratio": 0.5, "unparsed": 0}}}
    tuned = {"objective": {"recognition": {"n": 10, "accuracy": 0.7, "precision": 0.7, "recall": 0.7, "f1": 0.7, "yes_ratio": 0.5, "unparsed": 0}}}
    for name, results, baseline in (("e-base", base, None), ("e-tuned", tuned, "e-base")):
        training.create_eval(engine, name=name, snapshot="s", model="m", adapter=None, config={}, baseline=baseline, created_by="admin")
        training.set_eval(engine, name, results=results)
    at = page("training")
    assert not at.exception
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert loss["y"] == pytest.approx([2.8, 2.6, 2.4, 2.2, 2.0])
    table = at.dataframe[1].value
    assert table["accuracy %"].tolist() == [70.0] and table["vs baseline (points)"].tolist() == pytest.approx([20.0])


# Every import statement of every page (at its top or inside its functions: a page script runs on every
# render, in the web server's process), executed in a fresh interpreter without running Streamlit.
_PAGE_IMPORTS = r'''
import ast, json, pathlib, sys
forbidden = set(sys.argv[1].split(","))
found, pages = [], []
for path in [pathlib.Path("ui/app.py"), *sorted(pathlib.Path("ui/views").glob("*.py"))]:
    pages.append(path.as_posix())
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            before = {m.split(".")[0] for m in sys.modules}
            exec(compile(ast.Module([node], []), str(path), "exec"), {"__name__": "page_imports"})
            for root in sorted({m.split(".")[0] for m in sys.modules} - before & forbidden):
                found.append(f"{path}:{node.lineno} {ast.unparse(node)} loads {root}")
print(json.dumps({"pages": pages, "modules": sorted({m.split(".")[0] for m in sys.modules}), "found": found}))
'''
MODEL_LIBRARIES = ("torch", "transformers", "open_clip", "peft", "onnxruntime", "celery")


def test_the_pages_import_no_model_library_nor_celery():
    out = subprocess.run([sys.executable, "-c", _PAGE_IMPORTS, ",".join(MODEL_LIBRARIES)], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.splitlines()[-1])
    assert len(report["pages"]) == 1 + len(list(PAGES.glob("*.py"))) >= 9  # ui/app.py and every page under ui/views/
    assert {"streamlit", "plotly", "curation", "db", "trainer"} <= set(report["modules"])  # the pages' own imports did run
    assert report["found"] == []
    assert not set(report["modules"]) & set(MODEL_LIBRARIES)


def test_two_curators_labelling_at_once_lose_nothing(ui_store):
    import threading

    home, lake, engine = ui_store
    pilot = pilots.get(engine, "ui-pilot")
    order = [x.sample_id for x in pilots.samples(engine, pilot.id)]
    errors: list[BaseException] = []

    def label_all(who: str, value: str) -> None:
        try:
            for sid in order:
                pilots.set_label(engine, pilot.id, sid, who, value, ["word"] if value == "not_grounded" else [])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=label_all, args=("cara", "grounded")), threading.Thread(target=label_all, args=("dan", "not_grounded"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    by = {}
    for row in pilots.labels(engine, pilot.id):
        by.setdefault(row.annotator, {})[row.sample_id] = (row.label, row.ungrounded_words)
    assert by["cara"] == {sid: ("grounded", []) for sid in order}
    assert by["dan"] == {sid: ("not_grounded", ["word"]) for sid in order}


def test_oidc_sign_in_maps_the_providers_email_to_a_store_user(ui_store):
    home, lake, engine = ui_store
    users.add(engine, "carol@example.com", "long enough pw", "annotator")
    oidc = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                     "client_id": "c", "client_secret": "s", "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}}
    at = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    at.secrets = oidc
    at.user = {"is_logged_in": True, "email": "carol@example.com"}
    at.run()
    assert not at.exception
    assert at.session_state[USER_KEY] == SignedIn("carol@example.com", "annotator")  # the role is the store's
    stranger = AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    stranger.secrets = oidc
    stranger.user = {"is_logged_in": True, "email": "mallory@example.com"}
    stranger.run()
    assert USER_KEY not in stranger.session_state
    assert "mallory@example.com is not a user of this store" in texts(stranger)
    assert any(b.label == "Sign out of the organisation's account" for b in stranger.button)


def test_pilot_page_creates_a_pilot_for_admins_only(ui_store):
    home, lake, engine = ui_store
    anna = page("pilot", who=ANNA)  # annotators do not see the create form at all
    assert not anna.exception and "pilot_new_name" not in [t.key for t in anna.text_input]
    assert not [b for b in anna.button if b.label == "Create pilot"]
    at = page("pilot")
    at.text_input(key="pilot_new_name").input("ui-pilot-2")
    at.number_input(key="pilot_new_size").set_value(12)
    [b for b in at.button if b.label == "Create pilot"][0].click().run()
    assert "pilot 'ui-pilot-2': 12 samples drawn" in texts(at)
    made = pilots.get(engine, "ui-pilot-2")
    assert made.created_by == "admin" and made.config["segment"] == "answer" and len(pilots.samples(engine, made.id)) == 12
    at.text_input(key="pilot_new_name").input("ui-pilot-2")
    [b for b in at.button if b.label == "Create pilot"][0].click().run()
    assert "a pilot named 'ui-pilot-2' exists already" in texts(at)
