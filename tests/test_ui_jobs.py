"""The Jobs page (AppTest, real store): launch forms only for those who may launch, parameters checked before
a job is queued and refusals in the form's terms, and a page that does only the work on screen."""
from __future__ import annotations

import json
import time

from db.app import jobs as jobs_db
from jobs.submit import cancel_job

from .test_ui_pages import ANNA, page, texts, ui_store  # noqa: F401  (ui_store: the module's store fixture)


def _field(at, label_start: str):
    return next(t for t in at.text_input if t.label.startswith(label_start))


def _click(at, label: str):
    return next(b for b in at.button if b.label == label).click().run()


def _errors(at) -> str:
    return "\n".join(e.value for e in at.error)


def _vlm(home, name: str, model_type: str | None):
    folder = home / "typed" / name
    folder.mkdir(parents=True, exist_ok=True)
    if model_type:
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


def test_annotators_see_the_jobs_but_no_launch_form_and_no_cancel_or_retry(ui_store):
    home, lake, engine = ui_store
    queued, _ = jobs_db.create_job(engine, kind="aux_stats", queue="cpu", params={}, launched_by="admin")
    try:
        anna = page("jobs", who=ANNA)
        assert not anna.exception
        assert anna.get("form") == [] and not any(b.label.startswith("Launch") for b in anna.button)
        assert "Launch" not in [h.value for h in anna.subheader] and "Jobs" in [h.value for h in anna.subheader]
        assert f"`{queued}`" in texts(anna)  # the job list is there
        assert not any(b.label in ("Cancel", "Retry") for b in anna.button)
        admin = page("jobs")
        assert len(admin.get("form")) == 1 and "Cancel" in [b.label for b in admin.button]
    finally:
        cancel_job(queued)


def test_ingest_form_says_a_missing_file_is_missing_and_speaks_of_its_own_fields(ui_store, tmp_path):
    home, lake, engine = ui_store
    before = len(jobs_db.list_jobs(engine, limit=500))
    at = page("jobs")
    missing = tmp_path / "nope.csv"
    _field(at, "Source file").input(str(missing))
    _click(at, "Launch ingest")
    assert _errors(at) == f"cannot launch ingest: \"Source file\": source file not found: {missing}"  # was: "no column mapping: pass --map ..."
    real = tmp_path / "listings.csv"
    real.write_text("title,price\nred mug,3\n")
    _field(at, "Source file").input(str(real))
    _click(at, "Launch ingest")
    assert _errors(at) == 'cannot launch ingest: "Column mapping (YAML file; not needed for ABO)": no column mapping: say which column holds which field (field=column)'
    assert "--" not in _errors(at)
    assert len(jobs_db.list_jobs(engine, limit=500)) == before


def test_a_refusal_names_the_forms_label_for_its_field_without_rewriting_messages():
    from config.fields import FieldError
    from jobs.grounding import GroundingJob
    from jobs.ingest import IngestJob
    from ui.spec_widgets import in_form_terms, spec_widget

    class Col:  # records the widget a form would make
        def number_input(self, label, **kw):
            return kw["value"]

    assert spec_widget(Col(), GroundingJob, "batch_size") == 8
    assert in_form_terms(GroundingJob, FieldError("batch_size", "must be at least 1, not 0")) == '"Batch size": must be at least 1, not 0'
    assert in_form_terms(IngestJob, FieldError("delimiter", "one character")) == '"Delimiter" (not on this form): one character'
    assert in_form_terms(IngestJob, ValueError("run `vitpro models make-tiny --family x`")) == "run `vitpro models make-tiny --family x`"


def test_vlm_folders_are_checked_before_queuing_in_the_forms_terms(ui_store):
    home, lake, engine = ui_store
    before = len(jobs_db.list_jobs(engine, limit=500))
    at = page("jobs", launch_tab="VisAttnScore")
    at.text_input(key="vis_model_path").input(str(home / "typed" / "absent"))
    _click(at, "Launch VisAttnScore")
    assert _errors(at) == f'cannot launch grounding: "VLM": there is no folder {home / "typed" / "absent"}'
    at.text_input(key="vis_model_path").input(str(_vlm(home, "weights", None)))
    _click(at, "Launch VisAttnScore")
    assert "is not a model checkpoint (it has no config.json)" in _errors(at) and "vitpro" not in _errors(at)
    at.text_input(key="vis_model_path").input(str(_vlm(home, "bert", "bert")))
    _click(at, "Launch VisAttnScore")
    assert '"VLM": bert is a \'bert\' model, not a VLM family this app supports: ' in _errors(at) and "qwen2_5_vl" in _errors(at)
    train = page("jobs", launch_tab="Training")
    train.text_input(key="train_model_path").input(str(home / "typed" / "bert"))
    _click(train, "Launch training")
    assert _errors(train).startswith('cannot launch train: "Base VLM": bert is a \'bert\' model')
    assert len(jobs_db.list_jobs(engine, limit=500)) == before


def test_a_device_no_live_worker_of_the_queue_has_is_refused_in_the_form(ui_store):
    home, lake, engine = ui_store
    before = len(jobs_db.list_jobs(engine, limit=500))
    jobs_db.touch_worker(engine, "cpu-box:7", "cpu-box", 7, "gpu", "cpu")  # a live gpu-queue worker without a GPU
    try:
        at = page("jobs", launch_tab="VisAttnScore")
        at.text_input(key="vis_model_path").input(str(_vlm(home, "qwen", "qwen2_5_vl")))
        at.text_input(key="vis_device").input("cuda")
        _click(at, "Launch VisAttnScore")
        assert _errors(at).startswith("cannot launch grounding: no live worker of the 'gpu' queue has cuda (live workers: cpu-box:7 cpu)")
        assert len(jobs_db.list_jobs(engine, limit=500)) == before
    finally:
        jobs_db.remove_worker(engine, "cpu-box:7")
    _click(at, "Launch VisAttnScore")  # no live worker at all: queued, since one may start later, with a warning
    assert "launched grounding job" in texts(at)
    assert [w.value for w in at.warning if "no live worker" in w.value] == [
        "no live worker serves the 'gpu' queue: the job waits until one starts on a machine with cuda (`vitpro worker --queues gpu`)"]
    job = jobs_db.list_jobs(engine, limit=1)[0]
    assert job.kind == "grounding" and job.params["device"] == "cuda"
    cancel_job(job.id)


def test_the_page_runs_only_the_open_form_and_reads_logs_of_open_rows_only(ui_store):
    home, lake, engine = ui_store
    made = []
    for i in range(20):
        job_id, _ = jobs_db.create_job(engine, kind="ingest", queue="cpu", params={"source": f"/data/{i}.csv"}, launched_by="admin")
        for k in range(20):
            jobs_db.add_log(engine, job_id, f"{job_id} line {k}")
        made.append(job_id)
    try:
        at = page("jobs")
        assert len(at.get("form")) == 1  # the open tab's form; the other eight do not run
        assert not any("line 19" in c.value for c in at.code)  # collapsed rows read no log
        newest = made[-1]
        at.session_state[f"details_{newest}"] = True
        at.run()
        logs = [c.value for c in at.code if "line" in c.value]
        assert len(logs) == 1 and f"{newest} line 19" in logs[0] and f"{newest} line 4" not in logs[0]  # its last 15 lines
        warm = []
        for _ in range(3):
            t = time.perf_counter()
            at.run()
            warm.append(time.perf_counter() - t)
        assert not at.exception and min(warm) < 1.0, warm
    finally:
        for job_id in made:
            cancel_job(job_id)


def test_the_training_form_sends_its_processes_and_refuses_more_gpus_than_a_worker_has(ui_store, tiny_models):
    from curation import snapshots
    from curation.filters import FilterConfig

    home, lake, engine = ui_store
    snapshots.create(lake, engine, name="train-form", filter_name=None, config=FilterConfig([]), created_by="admin")
    jobs_db.touch_worker(engine, "gpu-box:9", "gpu-box", 9, "train", "cpu,cuda:0,cuda:1")  # a live train worker with two GPUs
    try:
        at = page("jobs", launch_tab="Training")
        at.text_input(key="train_model_path").input(str(tiny_models["idefics2"]))
        at.selectbox(key="train_snap").set_value("train-form")
        at.text_input(key="train_device").input("cuda")
        [x for x in at.number_input if x.label == "Processes (one per GPU)"][0].set_value(4)
        _click(at, "Launch training")
        assert "--nproc 4 needs one cuda device per process, and no live worker of the 'train' queue has 4 (the most any has is 2)" in _errors(at)
        [x for x in at.number_input if x.label == "Processes (one per GPU)"][0].set_value(2)
        _click(at, "Launch training")
        assert "launched train job" in texts(at)
        job = jobs_db.list_jobs(engine, limit=1)[0]
        assert job.kind == "train" and job.params["config"]["nproc"] == 2 and job.params["config"]["device"] == "cuda"
        cancel_job(job.id)
    finally:
        jobs_db.remove_worker(engine, "gpu-box:9")


def test_a_double_click_on_launch_queues_one_job_and_says_launched_both_times(ui_store):
    home, lake, engine = ui_store
    at = page("jobs", launch_tab="VisAttnScore")
    at.text_input(key="vis_model_path").input(str(_vlm(home, "qwen-twice", "qwen2_5_vl")))
    before = len(jobs_db.list_jobs(engine, limit=500))
    _click(at, "Launch VisAttnScore")
    first = jobs_db.list_jobs(engine, limit=1)[0]
    try:
        assert f"launched grounding job {first.id}" in texts(at)
        _click(at, "Launch VisAttnScore")  # the second click of a double click: same form, same values
        assert not at.error and f"launched grounding job {first.id}" in texts(at)
        assert "the second click on Launch was not queued again: one job" in texts(at)
        assert len(jobs_db.list_jobs(engine, limit=500)) == before + 1
        other = page("jobs", launch_tab="VisAttnScore")  # another tab (or person) launching the same: told, not hidden
        other.text_input(key="vis_model_path").input(str(home / "typed" / "qwen-twice"))
        _click(other, "Launch VisAttnScore")
        assert _errors(other).startswith(f"cannot launch grounding: an identical job is already queued: {first.id}")
    finally:
        cancel_job(first.id)


def test_generation_is_estimated_in_the_form_and_a_jobs_cost_is_shown_with_what_remains(ui_store):
    """The Generation form's Estimate button (nothing sent to the server) and a running LLM job's tokens, cost and
    projected cost of the items left, under its row."""
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from curation.generation import PromptTemplate, build_requests
    from curation.generation.backends import OpenAIChatBackend
    from curation.item_contexts import contexts_for
    from db.app.models import Job
    from db.reads import generation_reads
    from jobs.generate import GenerateJob

    from .fake_llm import FakeChatServer

    home, lake, engine = ui_store
    queued = len(jobs_db.list_jobs(engine, limit=500))
    with FakeChatServer() as srv:
        at = page("jobs", launch_tab="Generation")
        at.selectbox(key="gen_backend").select("openai")
        _field(at, "LLM base URL").input(srv.base_url)
        _field(at, "LLM model name").input("good")
        at.multiselect(key="GenerateJob.tasks").set_value(["recognition"])
        at.number_input(key="GenerateJob.price_in").set_value(0.5)
        at.number_input(key="GenerateJob.price_out").set_value(2.0)
        _click(at, "Estimate the cost")
        assert not at.exception and not at.error, _errors(at)
        spec = GenerateJob.from_params(GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url=srv.base_url, model="good"), tasks=["recognition"],
                                                   price_in=0.5, price_out=2.0).params())
        items = generation_reads.items_to_generate(lake, spec.tasks, "openai", spec.model_id, spec.prompt_version)
        n = len(build_requests(contexts_for(lake, items), ["recognition"], PromptTemplate.load()))
        shown = "\n".join(i.value for i in at.info).replace("\\", "")  # the markdown escapes of md()
        assert f"**Estimate** for {len(items):,} item(s)" in shown and f"- requests: {n:,}" in shown and "- cost: " in shown
        import re

        prompt = int(re.search(r"prompt tokens: ([\d,]+)", shown).group(1).replace(",", ""))
        low, high = (int(x.replace(",", "")) for x in re.search(r"completion tokens: ([\d,]+) to ([\d,]+)", shown).groups())
        assert f"- cost: {(prompt * 0.5 + low * 2.0) / 1e6:.4f} USD to {(prompt * 0.5 + high * 2.0) / 1e6:.4f} USD" in shown  # 0.5 in, 2 out
        assert srv.requests == 0 and len(jobs_db.list_jobs(engine, limit=500)) == queued  # nothing asked, nothing queued
        _field(at, "Named price").input("nope")
        _click(at, "Estimate the cost")
        assert _errors(at) == 'cannot estimate: "Named price": give a named price or the two prices, not both'
        # launched through the Batch API: the job's parameters say so; with the template backend it is refused in the form's terms
        _field(at, "Named price").input("")
        at.checkbox(key="GenerateJob.batch").check()
        _click(at, "Launch generation")
        launched = jobs_db.list_jobs(engine, limit=1)[0]
        try:
            assert not at.error and launched.params["batch"] is True and launched.params["price_in"] == 0.5
        finally:
            cancel_job(launched.id)
        at.selectbox(key="gen_backend").select("template")
        _click(at, "Launch generation")
        assert _errors(at).startswith('cannot launch generate: "Through the Batch API": the Batch API is an OpenAI-compatible server')

    params = GenerateJob(backend="openai", openai=OpenAIChatBackend(base_url="http://127.0.0.1:9/v1", model="m"), tasks=["recognition"],
                         price_in=0.5, price_out=2.0).params()
    job_id, _ = jobs_db.create_job(engine, kind="generate", queue="cpu", params=params, launched_by="admin")
    try:
        with Session(engine) as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id).values(
                status="running", progress_done=25, progress_total=100, counts={"llm_requests": 40, "cache_hits": 10, "prompt_tokens": 400_000,
                                                                               "completion_tokens": 100_000, "failed_timeout": 2}))
        at = page("jobs")
        line = next(c.value.replace("\\", "") for c in at.caption if c.value.replace("\\", "").startswith("LLM: "))
        assert line == ("LLM: 40 requests, 10 from the cache, 2 failed · 400,000 tokens in, 100,000 out · cost 0.4000 USD · "
                        "about 1.2000 USD more for the 75 items left")
    finally:
        cancel_job(job_id)
