"""Jobs: launch any kind of job with the engines' defaults, and watch them live (progress, log tail,
errors), with cancel and retry. The page only sends jobs; the workers do the work.

Kept fast (a warm run well under 1 s): only the open launch tab's form runs, and its imports happen there
or on submit; a job's log is read only while its row is expanded; the VLM folder list is read again only
when a checkpoint folder changes.
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from db import jobs as jobs_db
from jobs.registry import choices, kinds
from jobs.submit import cancel_job, check_job, retry_job, submit_job
from ui import context
from ui.job_forms import in_form_terms, scan_signature, vlm_folder_problem, vlm_folders

me = context.ensure_signed_in()
context.page_header("Jobs", "Long work runs on the workers (`vitpro worker`); this page launches and watches it.")
s, lake, engine = context.settings(), context.lake(), context.engine()
models = s.home / "models"


@st.cache_data(show_spinner=False, max_entries=16)
def _vlm_folders(models_dir: str, signature: tuple) -> dict[str, str]:
    """The VLM folders on offer; ``signature`` (names and config.json times) is the cache key."""
    return vlm_folders(Path(models_dir))


@st.cache_data(show_spinner=False, max_entries=16)
def _selection_names(version: int, home: str) -> list[str]:
    from db import sampling

    return [n for n, _kind, _ in sampling.selection_names(lake)]


def _vlm_picker(col, label: str, key: str) -> str:
    """A VLM from the models folder, or any checkpoint folder typed in (which wins when given)."""
    by_label = {name: path for path, name in _vlm_folders(str(models), scan_signature(models)).items()}
    default = next((i for i, path in enumerate(by_label.values()) if Path(path).name == "idefics2"), 0)
    picked = col.selectbox(label, list(by_label), index=default, key=f"{key}_pick") if by_label else None
    typed = col.text_input("or a checkpoint folder (any family of `vitpro models families`)", key=f"{key}_path")
    return typed.strip() or by_label.get(picked, "")


def _snapshot_names() -> list[str]:
    from db import snapshots

    return [x.name for x in snapshots.list_all(engine)]


def _launch(kind: str, build, *, vlm: tuple[str, str] | None = None) -> None:
    """Check the form, build the job's parameters (the engines check them too) and send it; every refusal
    is said in the form's terms. ``vlm``: (folder, field label) of a model folder to check first."""
    problem = vlm_folder_problem(*vlm) if vlm else None
    if problem:
        st.error(f"cannot launch {kind}: {problem}")
        return
    try:
        params = build()
        job = context.guarded("launch_jobs", _send, kind, params)
    except Exception as exc:  # the engines' own checks (bad path, unknown task, ...) and the device check
        st.error(f"cannot launch {kind}: {in_form_terms(kind, str(exc))}")
        return
    if job is context.REFUSED:
        return
    job_id, warnings = job
    st.success(f"launched {kind} job {job_id}")
    for warning in warnings:
        st.warning(warning)


def _send(kind: str, params: dict) -> tuple[str, list[str]]:
    warnings = check_job(kind, params, settings=s)  # raises JobRefused; submit_job checks again for every caller
    return submit_job(kind, params, settings=s, launched_by=me.username), warnings


TABS = ["Ingest", "OCR", "CLIPScore", "Generation", "VisAttnScore", "Aux stats", "Export", "Training", "Evaluation"]


def launch_forms() -> None:
    st.subheader("Launch")
    # on_change="rerun": the tabs keep state and only the open one's form runs (each form reads the store)
    tabs = dict(zip(TABS, st.tabs(TABS, key="launch_tab", on_change="rerun")))
    for label, tab in tabs.items():
        if tab.open is not False:  # None: a Streamlit without lazy tabs runs them all
            with tab:
                FORMS[label]()


def ingest_form() -> None:
    with st.form("launch_ingest"):
        source = st.text_input("Source file (CSV, JSONL, Parquet, or an ABO listings file)")
        c = st.columns(3)
        fmt = c[0].selectbox("Format", ["auto", "csv", "jsonl", "parquet", "abo"])
        mapping = c[1].text_input("Column mapping (YAML file; not needed for ABO)")
        name = c[2].text_input("Source name (default: the file name)")
        c = st.columns(3)
        image_root = c[0].text_input("Image root (relative image paths start here)")
        redact = c[1].checkbox("Redact personal data before storage", value=True)
        rows_per_unit = c[2].number_input("Rows per work unit", 1, 100000, 500)
        if st.form_submit_button("Launch ingest"):
            from curation.mapping import ColumnMapping
            from jobs.ingest import IngestJob

            # the spec checks the source before anything else; on a server, only files under the
            # allowed roots (VITPRO_IMAGE_ROOTS) may be read, as for the images
            _launch("ingest", lambda: IngestJob(
                source=source, fmt=None if fmt == "auto" else fmt, mapping=ColumnMapping.from_yaml(mapping) if mapping.strip() else None,
                name=name.strip() or None, image_root=image_root.strip() or None, redact=redact, rows_per_unit=int(rows_per_unit),
                allowed_roots=s.image_roots, source_roots=s.image_roots).params())


def ocr_form() -> None:
    with st.form("launch_ocr"):
        c = st.columns(2)
        batch = c[0].number_input("Images per batch", 1, 1024, 16)
        redact_ocr = c[1].checkbox("Redact personal data in the text read", value=True)
        if st.form_submit_button("Launch OCR"):
            from jobs.ocr import OcrJob

            _launch("ocr", lambda: OcrJob(batch_size=int(batch), redact=redact_ocr).params())


def clip_form() -> None:
    from curation.clip_score import ClipConfig

    with st.form("launch_clip"):
        default_clip = str(models / "clip") if (models / "clip").is_dir() else ClipConfig.model
        c = st.columns(4)
        clip_model = c[0].text_input("Model (open_clip name or folder)", value=default_clip)
        pretrained = c[1].text_input("Pretrained tag (names only)", value=ClipConfig.pretrained or "")
        device = c[2].text_input("Device", value=ClipConfig.device)
        clip_batch = c[3].number_input("Batch size", 1, 4096, ClipConfig.batch_size)
        if st.form_submit_button("Launch CLIPScore"):
            from jobs.clip_score import ClipScoreJob

            _launch("clip_score", lambda: ClipScoreJob(ClipConfig(model=clip_model, pretrained=pretrained or None, device=device, batch_size=int(clip_batch))).params())


def generation_form() -> None:
    with st.form("launch_generate"):
        c = st.columns(3)
        backend = c[0].selectbox("Backend", ["template", "openai"], help="template: rule-based, no LLM; openai: any OpenAI-compatible server")
        gen_tasks = c[1].multiselect("Tasks", choices("generate", "tasks"), default=choices("generate", "tasks"))
        n_pairs = c[2].number_input("Pairs per item and task", 1, 20, 3)
        c = st.columns(3)
        base_url = c[0].text_input("LLM base URL (…/v1)", placeholder="http://127.0.0.1:8000/v1")
        llm = c[1].text_input("LLM model name")
        limit = c[2].number_input("At most this many items (0: all)", 0, 10**9, 0)
        if st.form_submit_button("Launch generation"):
            from curation.generation.backends import OpenAIChatBackend
            from jobs.generate import GenerateJob

            _launch("generate", lambda: GenerateJob(
                backend=backend, tasks=gen_tasks, n_pairs=int(n_pairs), limit=int(limit) or None,
                openai=OpenAIChatBackend(base_url=base_url, model=llm) if backend == "openai" else None).params())


def grounding_form() -> None:
    with st.form("launch_grounding"):
        c = st.columns(4)
        vlm = _vlm_picker(c[0], "VLM", "vis_model")
        on = c[1].selectbox("Score", choices("grounding", "on"))
        selection = c[2].selectbox("Only the selection", [None, *_selection_names(lake.current_version(), str(s.home))], format_func=lambda n: n or "all")
        vis_batch = c[3].number_input("Batch size", 1, 512, 8)
        c = st.columns(4)
        ocr_prompt = c[0].checkbox("OCR text in the prompt")
        sinks = c[1].checkbox("Also without attention sinks", value=True)
        distance = c[2].checkbox("Also distance-corrected", value=True)
        vis_device = c[3].text_input("Device", value="cpu", key="vis_device")
        if st.form_submit_button("Launch VisAttnScore"):
            from curation.vis_attn import VisAttnConfig
            from jobs.grounding import GroundingJob

            _launch("grounding", lambda: GroundingJob(
                model=vlm, device=vis_device, batch_size=int(vis_batch), on=on, selection=selection, ocr=ocr_prompt,
                config=VisAttnConfig(exclude_sinks=sinks, distance_correction=distance)).params(), vlm=(vlm, "VLM"))


def aux_form() -> None:
    with st.form("launch_aux"):
        st.caption("OCR characters and boxes per image, text tokens per sample: cheap stats to filter on.")
        if st.form_submit_button("Launch aux stats"):
            from jobs.aux_stats import AuxStatsJob

            _launch("aux_stats", AuxStatsJob().params)


def export_form() -> None:
    with st.form("launch_export"):
        c = st.columns(3)
        snap = c[0].selectbox("Snapshot", _snapshot_names(), key="export_snap")
        formats = c[1].multiselect("Formats", choices("export", "formats"), default=choices("export", "formats"))
        ocr_export = c[2].checkbox("OCR text in the prompt", value=True)
        if st.form_submit_button("Launch export"):
            from jobs.export import ExportJob

            def _params():
                if not snap:
                    raise ValueError('choose a "Snapshot" (create one on the Snapshots page)')
                return ExportJob(snapshot=snap, formats=formats, out=s.output("exports", snap), ocr=ocr_export, force=True).params()

            _launch("export", _params)


def train_form() -> None:
    from db import training
    from trainer.config import TrainConfig

    with st.form("launch_train"):
        c = st.columns(4)
        train_snap = c[0].selectbox("Snapshot", _snapshot_names(), key="train_snap")
        base = _vlm_picker(c[1], "Base VLM", "train_model")
        run_name = c[2].text_input("Run name", value=training.default_name("train"))
        preset_name = c[3].selectbox("Preset", ["paper", "multi_image"], help="paper: r=256, alpha=32, lr 2e-4, batch 8")
        c = st.columns(4)
        r = c[0].number_input("LoRA rank (0: preset's)", 0, 1024, 0)
        lr = c[1].number_input("Learning rate (0: preset's)", 0.0, 1.0, 0.0, format="%.6f")
        max_steps = c[2].number_input("Max steps (0: the epochs')", 0, 10**7, 0)
        train_device = c[3].text_input("Device", value="cpu", key="train_device")
        c = st.columns(4)
        nproc = c[0].number_input("Processes (one per GPU)", 1, 64, TrainConfig.nproc,
                                  help="Data-parallel processes on the worker: one per GPU, or gloo processes on a CPU. Each takes the "
                                       "batch size of every micro-batch, so 2 processes of batch 4 train as 1 of batch 8.")
        loader_workers = c[1].number_input("Loader workers per process", 0, 32, TrainConfig.loader_workers,
                                           help="Processes that read and encode examples ahead of the training step.")
        if st.form_submit_button("Launch training"):
            from jobs.train import TrainJob
            from trainer.config import preset

            def _train_params():
                training.check_new_name(engine, run=run_name)
                overrides = {"device": train_device, **({"r": int(r)} if r else {}), **({"learning_rate": float(lr)} if lr else {}),
                             **({"max_steps": int(max_steps)} if max_steps else {}), "nproc": int(nproc), "loader_workers": int(loader_workers)}
                return TrainJob(snapshot=train_snap, model=base, name=run_name, config=preset(preset_name).with_overrides(**overrides),
                                out=s.output("runs", run_name)).params()

            _launch("train", _train_params, vlm=(base, "Base VLM"))


def default_eval_batch_size() -> int:
    from jobs.eval import EvalJob

    return int(EvalJob.batch_size)  # the spec's default


def eval_form() -> None:
    from db import training

    with st.form("launch_eval"):
        c = st.columns(4)
        eval_snap = c[0].selectbox("Snapshot", _snapshot_names(), key="eval_snap")
        eval_model = _vlm_picker(c[1], "Base VLM", "eval_model")
        runs = [x.name for x in training.list_runs(engine)]
        adapter = c[2].selectbox("Adapter (a training run)", [None, *runs], format_func=lambda n: n or "none: the base model")
        eval_name = c[3].text_input("Evaluation name", value=training.default_name("eval"))
        c = st.columns(4)
        benches = c[0].multiselect("Benchmarks", choices("eval", "benchmarks"), default=["objective", "attributes"])
        baseline = c[1].selectbox("Report against", [None, *[e.name for e in training.list_evals(engine)]], format_func=lambda n: n or "no baseline")
        eval_limit = c[2].number_input("At most this many items per task (0: all)", 0, 10**7, 0)
        eval_device = c[3].text_input("Device", value="cpu", key="eval_device")
        c = st.columns(4)
        eval_batch = c[0].number_input("Items generated at once", 1, 1024, default_eval_batch_size(), key="eval_batch_size",
                                       help="Left-padded prompts run together; greedy answers are the same as one at a time.")
        objective_mode = c[1].selectbox("Objective yes/no answered by", choices("eval", "objective_mode"), key="eval_objective_mode",
                                        help="generate: the model's answer, parsed (the paper's). logprob: P(yes) against P(no) of the "
                                             "first answer token, one forward pass.")
        if st.form_submit_button("Launch evaluation"):
            from jobs.eval import EvalJob
            from trainer.config import TrainConfig

            def _eval_params():
                training.check_new_name(engine, evaluation=eval_name)
                return EvalJob(name=eval_name, snapshot=eval_snap, model=eval_model, adapter=adapter, benchmarks=benches,
                               config=TrainConfig().with_overrides(device=eval_device), baseline=baseline,
                               limit=int(eval_limit) or None, batch_size=int(eval_batch), objective_mode=objective_mode,
                               out=s.output("evals", eval_name)).params()

            _launch("eval", _eval_params, vlm=(eval_model, "Base VLM"))


FORMS = {"Ingest": ingest_form, "OCR": ocr_form, "CLIPScore": clip_form, "Generation": generation_form, "VisAttnScore": grounding_form,
         "Aux stats": aux_form, "Export": export_form, "Training": train_form, "Evaluation": eval_form}

# annotators do not see the launch forms at all; launching stays guarded on the server all the same
if context.allowed("launch_jobs"):
    launch_forms()


STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/sync:", "succeeded": ":green[:material/check_circle:]",
               "failed": ":red[:material/error:]", "cancelling": ":material/block:", "cancelled": ":material/block:"}


@st.fragment(run_every=2)
def live_jobs() -> None:
    st.subheader("Jobs")
    c = st.columns(3)
    status = c[0].selectbox("Status", [None, *STATUS_ICON], format_func=lambda x: x or "any", key="jobs_status")
    kind = c[1].selectbox("Kind", [None, *kinds()], format_func=lambda x: x or "any", key="jobs_kind")
    limit = c[2].number_input("Show", 1, 500, 20, key="jobs_limit")
    rows = jobs_db.list_jobs(engine, limit=int(limit), status=status, kind=kind)
    if not rows:
        st.info("No jobs yet.")
    manage = context.allowed("manage_jobs")  # annotators watch; only those who may manage jobs get the buttons
    for job in rows:
        with st.container(border=True):
            top = st.columns([3, 2, 2, 1, 1])
            top[0].markdown(f"{STATUS_ICON.get(job.status, '')} **{job.kind}** `{job.id}`")
            top[1].caption(f"by {job.launched_by} · {job.created_at:%Y-%m-%d %H:%M:%S}")
            total = job.progress_total or 0
            top[2].progress(min(1.0, job.progress_done / total) if total else (1.0 if job.status == "succeeded" else 0.0),
                            text=f"{job.status} {job.progress_done}/{total}")
            if manage and job.status in ("queued", "running") and top[3].button("Cancel", key=f"cancel_{job.id}"):
                result = context.guarded("manage_jobs", cancel_job, job.id, settings=s)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result}")
            if manage and job.status in ("failed", "cancelled") and top[4].button("Retry", key=f"retry_{job.id}"):
                result = context.guarded("manage_jobs", retry_job, job.id, settings=s)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result} unit(s) sent again")
            if job.error:
                st.error(job.error[:2000])
            # a stateful expander: its body (parameters and a log query) runs only while it is open
            details = st.expander("counts, parameters and log", key=f"details_{job.id}", on_change="rerun")
            if details.open is not False:
                with details:
                    if job.counts:
                        st.write(", ".join(f"{k} {v}" for k, v in job.counts.items()))
                    st.json(job.params, expanded=False)
                    tail = jobs_db.log_tail(engine, job.id, 15)
                    st.code("\n".join(f"{line.ts:%H:%M:%S} {line.level:<7} {line.message}" for line in tail) or "(no log lines)", language=None)


live_jobs()
