"""Jobs: launch any kind of job with the engines' defaults, and watch them live (progress, log tail,
errors), with cancel and retry. The page only sends jobs; the workers do the work."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from db import jobs as jobs_db
from db import sampling, snapshots, training
from ui import context
from workers.submit import cancel_job, queue_has_worker, retry_job, submit_job

me = context.ensure_signed_in()
context.page_header("Jobs", "Long work runs on the workers (`vitpro worker`); this page launches and watches it.")
s, lake, engine = context.settings(), context.lake(), context.engine()
models = s.home / "models"


def _vlm_folders() -> dict[str, str]:
    """Checkpoint folders under the models folder that a VLM adapter serves: path -> "name (family)"."""
    from curation.vlm import UnsupportedModel, adapter_for

    found = {}
    for folder in sorted(p for p in models.glob("*") if (p / "config.json").is_file()) if models.is_dir() else []:
        try:
            found[str(folder)] = f"{folder.name} ({adapter_for(folder).title})"
        except (UnsupportedModel, ValueError):  # another kind of model (CLIP, a text LM) or a broken config
            continue
    return found


def _vlm_picker(col, label: str, key: str) -> str:
    """A VLM from the models folder, or any checkpoint folder typed in (which wins when given)."""
    by_label = {name: path for path, name in _vlm_folders().items()}
    default = next((i for i, path in enumerate(by_label.values()) if Path(path).name == "idefics2"), 0)
    picked = col.selectbox(label, list(by_label), index=default, key=f"{key}_pick") if by_label else None
    typed = col.text_input("or a checkpoint folder (any family of `vitpro models families`)", key=f"{key}_path")
    return typed.strip() or by_label.get(picked, "")


def _launch(kind: str, build) -> None:
    """Build the job's parameters (the engines check them) and send it, if this user may launch jobs."""
    try:
        params = build()
    except Exception as exc:  # the engines' own checks: bad path, unknown task, not a model folder, ...
        st.error(f"cannot launch {kind}: {exc}")
        return
    job_id = context.guarded("launch_jobs", submit_job, kind, params, settings=s, launched_by=me.username)
    if job_id is context.REFUSED:
        return
    st.success(f"launched {kind} job {job_id}")
    from workers.jobs import queue_of

    queue = queue_of(kind, params)
    if not queue_has_worker(queue, settings=s):
        st.warning(f"no live worker serves the {queue!r} queue: start one with `vitpro worker --queues {queue}`")


st.subheader("Launch" + ("" if context.allowed("launch_jobs") else " (admins only: you will be refused)"))
snap_names = [x.name for x in snapshots.list_all(engine)]
tabs = st.tabs(["Ingest", "OCR", "CLIPScore", "Generation", "VisAttnScore", "Aux stats", "Export", "Training", "Evaluation"])

with tabs[0], st.form("launch_ingest"):
    from curation.mapping import ColumnMapping

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
        from workers.jobs import ingest as ingest_job

        _launch("ingest", lambda: ingest_job.prepare_params(
            source=source, fmt=None if fmt == "auto" else fmt, mapping=ColumnMapping.from_yaml(mapping) if mapping.strip() else None,
            name=name.strip() or None, image_root=image_root.strip() or None, redact=redact, rows_per_unit=int(rows_per_unit)))

with tabs[1], st.form("launch_ocr"):
    c = st.columns(2)
    batch = c[0].number_input("Images per batch", 1, 1024, 16)
    redact_ocr = c[1].checkbox("Redact personal data in the text read", value=True)
    if st.form_submit_button("Launch OCR"):
        from workers.jobs import ocr as ocr_job

        _launch("ocr", lambda: ocr_job.prepare_params(batch_size=int(batch), redact=redact_ocr))

with tabs[2], st.form("launch_clip"):
    from curation.clip_score import ClipConfig

    default_clip = str(models / "clip") if (models / "clip" / "open_clip_config.json").exists() or (models / "clip").is_dir() else ClipConfig.model
    c = st.columns(4)
    clip_model = c[0].text_input("Model (open_clip name or folder)", value=default_clip)
    pretrained = c[1].text_input("Pretrained tag (names only)", value=ClipConfig.pretrained or "")
    device = c[2].text_input("Device", value=ClipConfig.device)
    clip_batch = c[3].number_input("Batch size", 1, 4096, ClipConfig.batch_size)
    if st.form_submit_button("Launch CLIPScore"):
        from workers.jobs import clip_score as clip_job

        _launch("clip_score", lambda: clip_job.prepare_params(ClipConfig(model=clip_model, pretrained=pretrained or None, device=device, batch_size=int(clip_batch))))

with tabs[3], st.form("launch_generate"):
    from curation.generation import TASKS

    c = st.columns(3)
    backend = c[0].selectbox("Backend", ["template", "openai"], help="template: rule-based, no LLM; openai: any OpenAI-compatible server")
    gen_tasks = c[1].multiselect("Tasks", list(TASKS), default=list(TASKS))
    n_pairs = c[2].number_input("Pairs per item and task", 1, 20, 3)
    c = st.columns(3)
    base_url = c[0].text_input("LLM base URL (…/v1)", placeholder="http://127.0.0.1:8000/v1")
    llm = c[1].text_input("LLM model name")
    limit = c[2].number_input("At most this many items (0: all)", 0, 10**9, 0)
    if st.form_submit_button("Launch generation"):
        from curation.generation.backends import OpenAIChatBackend
        from workers.jobs import generate as generate_job

        _launch("generate", lambda: generate_job.prepare_params(
            backend=backend, tasks=gen_tasks, n_pairs=int(n_pairs), limit=int(limit) or None,
            openai=OpenAIChatBackend(base_url=base_url, model=llm) if backend == "openai" else None))

with tabs[4], st.form("launch_grounding"):
    from curation.vis_attn import VisAttnConfig

    c = st.columns(4)
    vlm = _vlm_picker(c[0], "VLM", "vis_model")
    on = c[1].selectbox("Score", ["samples", "items"])
    selections = [n for n, kind, _ in sampling.selection_names(lake)]
    selection = c[2].selectbox("Only the selection", [None, *selections], format_func=lambda n: n or "all")
    vis_batch = c[3].number_input("Batch size", 1, 512, 8)
    c = st.columns(4)
    ocr_prompt = c[0].checkbox("OCR text in the prompt")
    sinks = c[1].checkbox("Also without attention sinks", value=True)
    distance = c[2].checkbox("Also distance-corrected", value=True)
    vis_device = c[3].text_input("Device ", value="cpu")
    if st.form_submit_button("Launch VisAttnScore"):
        from workers.jobs import grounding as grounding_job

        _launch("grounding", lambda: grounding_job.prepare_params(
            model=vlm, device=vis_device, batch_size=int(vis_batch), on=on, selection=selection, ocr=ocr_prompt,
            config=VisAttnConfig(exclude_sinks=sinks, distance_correction=distance)))

with tabs[5], st.form("launch_aux"):
    st.caption("OCR characters and boxes per image, text tokens per sample: cheap stats to filter on.")
    if st.form_submit_button("Launch aux stats"):
        from workers.jobs import aux_stats as aux_job

        _launch("aux_stats", aux_job.prepare_params)

with tabs[6], st.form("launch_export"):
    from curation.exports import FORMATS

    c = st.columns(3)
    snap = c[0].selectbox("Snapshot", snap_names, key="export_snap")
    formats = c[1].multiselect("Formats", list(FORMATS), default=list(FORMATS))
    ocr_export = c[2].checkbox("OCR text in the prompt", value=True)
    if st.form_submit_button("Launch export"):
        from workers.jobs import export as export_job

        _launch("export", lambda: export_job.prepare_params(snapshot=snap, formats=formats, out=str(s.home / "exports" / snap), ocr=ocr_export, force=True))

with tabs[7], st.form("launch_train"):
    from trainer.config import preset

    c = st.columns(4)
    train_snap = c[0].selectbox("Snapshot", snap_names, key="train_snap")
    base = _vlm_picker(c[1], "Base VLM", "train_model")
    run_name = c[2].text_input("Run name", value=training.default_name("train"))
    preset_name = c[3].selectbox("Preset", ["paper", "multi_image"], help="paper: r=256, alpha=32, lr 2e-4, batch 8")
    c = st.columns(4)
    r = c[0].number_input("LoRA rank (0: preset's)", 0, 1024, 0)
    lr = c[1].number_input("Learning rate (0: preset's)", 0.0, 1.0, 0.0, format="%.6f")
    max_steps = c[2].number_input("Max steps (0: the epochs')", 0, 10**7, 0)
    train_device = c[3].text_input("Device", value="cpu", key="train_device")
    if st.form_submit_button("Launch training"):
        from workers.jobs import train as train_job

        def _train_params():
            training.check_new_name(engine, run=run_name)
            overrides = {"device": train_device, **({"r": int(r)} if r else {}), **({"learning_rate": float(lr)} if lr else {}),
                         **({"max_steps": int(max_steps)} if max_steps else {})}
            return train_job.prepare_params(snapshot=train_snap, model=base, name=run_name, config=preset(preset_name).with_overrides(**overrides),
                                            out=str(s.home / "runs" / run_name))

        _launch("train", _train_params)

with tabs[8], st.form("launch_eval"):
    from trainer.benchmarks import BENCHMARKS

    c = st.columns(4)
    eval_snap = c[0].selectbox("Snapshot", snap_names, key="eval_snap")
    eval_model = _vlm_picker(c[1], "Base VLM", "eval_model")
    runs = [x.name for x in training.list_runs(engine)]
    adapter = c[2].selectbox("Adapter (a training run)", [None, *runs], format_func=lambda n: n or "none: the base model")
    eval_name = c[3].text_input("Evaluation name", value=training.default_name("eval"))
    c = st.columns(4)
    benches = c[0].multiselect("Benchmarks", list(BENCHMARKS), default=["objective", "attributes"])
    baseline = c[1].selectbox("Report against", [None, *[e.name for e in training.list_evals(engine)]], format_func=lambda n: n or "no baseline")
    eval_limit = c[2].number_input("At most this many items per task (0: all)", 0, 10**7, 0)
    eval_device = c[3].text_input("Device", value="cpu", key="eval_device")
    if st.form_submit_button("Launch evaluation"):
        from trainer.config import TrainConfig
        from workers.jobs import evaluate as eval_job

        def _eval_params():
            training.check_new_name(engine, evaluation=eval_name)
            return eval_job.prepare_params(name=eval_name, snapshot=eval_snap, model=eval_model, adapter=adapter, benchmarks=benches,
                                           config=TrainConfig().with_overrides(device=eval_device), baseline=baseline,
                                           limit=int(eval_limit) or None, out=str(s.home / "evals" / eval_name))

        _launch("eval", _eval_params)


STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/sync:", "succeeded": ":green[:material/check_circle:]",
               "failed": ":red[:material/error:]", "cancelling": ":material/block:", "cancelled": ":material/block:"}


@st.fragment(run_every=2)
def live_jobs() -> None:
    st.subheader("Jobs")
    c = st.columns(3)
    status = c[0].selectbox("Status", [None, *STATUS_ICON], format_func=lambda x: x or "any", key="jobs_status")
    kind = c[1].selectbox("Kind", [None, "ingest", "ocr", "clip_score", "generate", "grounding", "aux_stats", "export", "train", "eval", "ablate"],
                          format_func=lambda x: x or "any", key="jobs_kind")
    limit = c[2].number_input("Show", 1, 500, 20, key="jobs_limit")
    rows = jobs_db.list_jobs(engine, limit=int(limit), status=status, kind=kind)
    if not rows:
        st.info("No jobs yet.")
    for job in rows:
        with st.container(border=True):
            top = st.columns([3, 2, 2, 1, 1])
            top[0].markdown(f"{STATUS_ICON.get(job.status, '')} **{job.kind}** `{job.id}`")
            top[1].caption(f"by {job.launched_by} · {job.created_at:%Y-%m-%d %H:%M:%S}")
            total = job.progress_total or 0
            top[2].progress(min(1.0, job.progress_done / total) if total else (1.0 if job.status == "succeeded" else 0.0),
                            text=f"{job.status} {job.progress_done}/{total}")
            if job.status in ("queued", "running") and top[3].button("Cancel", key=f"cancel_{job.id}"):
                result = context.guarded("manage_jobs", cancel_job, job.id, settings=s)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result}")
            if job.status in ("failed", "cancelled") and top[4].button("Retry", key=f"retry_{job.id}"):
                result = context.guarded("manage_jobs", retry_job, job.id, settings=s)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result} unit(s) sent again")
            if job.error:
                st.error(job.error[:2000])
            with st.expander("counts, parameters and log"):
                if job.counts:
                    st.write(", ".join(f"{k} {v}" for k, v in job.counts.items()))
                st.json(job.params, expanded=False)
                tail = jobs_db.log_tail(engine, job.id, 15)
                st.code("\n".join(f"{line.ts:%H:%M:%S} {line.level:<7} {line.message}" for line in tail) or "(no log lines)", language=None)


live_jobs()
