"""Jobs: launch any kind of job with the engines' defaults, and watch them live (progress, log tail,
errors), with cancel and retry. The page only sends jobs; the workers do the work.

Kept fast (a warm run well under 1 s): only the open launch tab's form runs, and its imports happen there
or on submit; a job's log is read only while its row is expanded; the VLM folder list is read again only
when a checkpoint folder changes.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from config.fields import FieldError, info
from db.app import jobs as jobs_db
from jobs.cost import cost_report
from jobs.registry import kinds
from jobs.submit import cancel_job, check_job, retry_job, submit_job
from jobs.timing import duration, timing
from ui import context
from ui.job_forms import scan_signature, vlm_folder_problem, vlm_folders
from ui.labels import md
from ui.spec_widgets import spec_widget

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
    from db.lake import sampling

    return [n for n, _kind, _ in sampling.selection_names(lake)]


def _vlm_picker(col, label: str, key: str) -> str:
    """A VLM from the models folder, or any checkpoint folder typed in (which wins when given)."""
    by_label = {name: path for path, name in _vlm_folders(str(models), scan_signature(models)).items()}
    default = next((i for i, path in enumerate(by_label.values()) if Path(path).name == "idefics2"), 0)
    picked = col.selectbox(label, list(by_label), index=default, key=f"{key}_pick") if by_label else None
    typed = col.text_input("or a checkpoint folder (any family of `vitpro models families`)", key=f"{key}_path")
    return typed.strip() or by_label.get(picked, "")


def _snapshot_names() -> list[str]:
    from db.app import snapshots

    return [x.name for x in snapshots.list_all(engine)]


def _launch(kind: str, build, *, vlm: tuple[str, str] | None = None) -> None:
    """Check the form, build the job's parameters (the spec checks them) and send it; a refusal that names
    a field is said with the form's label for it. ``vlm``: (folder, field label) of a model folder to check first."""
    from jobs.registry import spec_for
    from ui.spec_widgets import in_form_terms

    problem = vlm_folder_problem(*vlm) if vlm else None
    if problem:
        st.error(f"cannot launch {kind}: {problem}")
        return
    try:
        params = build()
        job = context.guarded("launch_jobs", _send, kind, params)
    except Exception as exc:  # the spec's own checks (bad path, unknown task, ...) and the device check
        twin = exc.__cause__ if isinstance(exc.__cause__, jobs_db.DuplicateJob) else None
        if twin is not None and twin.job_id in st.session_state.get(LAUNCHED, ()):
            # a second click on the same Launch (Streamlit cannot grey a button out while its click runs): the
            # store refused the copy; this tab launched the first, so it is shown as launched, not as a failure
            st.success(f"launched {kind} job {twin.job_id}")
            st.caption("the second click on Launch was not queued again: one job")
            return
        st.error(f"cannot launch {kind}: {in_form_terms(spec_for(kind), exc)}")
        return
    if job is context.REFUSED:
        return
    job_id, warnings = job
    st.session_state.setdefault(LAUNCHED, []).append(job_id)
    st.success(f"launched {kind} job {job_id}")
    for warning in warnings:
        st.warning(warning)


LAUNCHED = "jobs_launched_here"  # the jobs this tab's session launched


def _send(kind: str, params: dict) -> tuple[str, list[str]]:
    warnings = check_job(kind, params, settings=s)  # raises JobRefused; submit_job checks again for every caller
    return submit_job(kind, params, settings=s, launched_by=me.username), warnings


TABS = ["Ingest", "OCR", "CLIPScore", "Generation", "VisAttnScore", "Aux stats", "Duplicates & map", "Export", "Training", "Evaluation"]


def launch_forms() -> None:
    st.subheader("Launch")
    # on_change="rerun": the tabs keep state and only the open one's form runs (each form reads the store)
    tabs = dict(zip(TABS, st.tabs(TABS, key="launch_tab", on_change="rerun")))
    for label, tab in tabs.items():
        if tab.open is not False:  # None: a Streamlit without lazy tabs runs them all
            with tab:
                FORMS[label]()


# Each form's widgets come from its spec (ui/spec_widgets.py): labels, help, defaults, choices and bounds
# are the spec's, the same as the command line's options.
def ingest_form() -> None:
    from jobs.ingest import IngestJob

    with st.form("launch_ingest"):
        source = spec_widget(st, IngestJob, "source")
        c = st.columns(3)
        fmt = spec_widget(c[0], IngestJob, "format", format_func=lambda f: f or "auto")
        mapping = spec_widget(c[1], IngestJob, "mapping", label="Column mapping (YAML file; not needed for ABO)")
        name = spec_widget(c[2], IngestJob, "name", label="Source name (default: the file name)")
        c = st.columns(3)
        image_root = spec_widget(c[0], IngestJob, "image_root", label="Image root (relative image paths start here)")
        redact = spec_widget(c[1], IngestJob, "redact")
        rows_per_unit = spec_widget(c[2], IngestJob, "rows_per_unit")
        if st.form_submit_button("Launch ingest"):
            from curation.mapping import ColumnMapping

            def _params():
                try:
                    column_mapping = ColumnMapping.from_yaml(mapping) if mapping.strip() else None
                except (OSError, ValueError) as exc:
                    raise FieldError("mapping", str(exc)) from None
                # on a server, only files under the allowed roots (VITPRO_IMAGE_ROOTS) may be read, as for the images
                return IngestJob(source=source, format=fmt, mapping=column_mapping, name=name.strip() or None, image_root=image_root.strip() or None,
                                 redact=redact, rows_per_unit=int(rows_per_unit), allowed_roots=s.image_roots, source_roots=s.image_roots).params()

            _launch("ingest", _params)


def ocr_form() -> None:
    from jobs.ocr import OcrJob

    with st.form("launch_ocr"):
        c = st.columns(3)
        batch = spec_widget(c[0], OcrJob, "batch_size")
        redact_ocr = spec_widget(c[1], OcrJob, "redact")
        engine = spec_widget(c[2], OcrJob, "engine")
        if st.form_submit_button("Launch OCR"):
            _launch("ocr", lambda: OcrJob(engine=engine, batch_size=int(batch), redact=redact_ocr).params())


def clip_form() -> None:
    from curation.clip_score import ClipConfig
    from jobs.clip_score import ClipScoreJob

    with st.form("launch_clip"):
        c = st.columns(4)
        # a CLIP checkpoint in the models folder is what a machine without the hub can load
        local_clip = {"value": str(models / "clip")} if (models / "clip").is_dir() else {}
        clip_model = spec_widget(c[0], ClipScoreJob, "config.model", label="Model (open_clip name or folder)", **local_clip)
        pretrained = spec_widget(c[1], ClipScoreJob, "config.pretrained", label="Pretrained tag (names only)")
        device = spec_widget(c[2], ClipScoreJob, "config.device")
        clip_batch = spec_widget(c[3], ClipScoreJob, "config.batch_size")
        if st.form_submit_button("Launch CLIPScore"):
            _launch("clip_score", lambda: ClipScoreJob(ClipConfig(model=clip_model, pretrained=pretrained or None, device=device, batch_size=int(clip_batch))).params())


def generation_form() -> None:
    from jobs.generate import GenerateJob

    with st.form("launch_generate"):
        c = st.columns(3)
        backend = c[0].selectbox("Backend", [b for b in GenerateJob.choices_of("backend") if b != "hf"], index=1, help=info(GenerateJob, "backend").help,
                                 key="gen_backend")
        gen_tasks = spec_widget(c[1], GenerateJob, "tasks")
        n_pairs = spec_widget(c[2], GenerateJob, "n_pairs")
        c = st.columns(3)
        base_url = c[0].text_input("LLM base URL (…/v1)", placeholder="http://127.0.0.1:8000/v1")
        llm = c[1].text_input("LLM model name")
        limit = c[2].number_input("At most this many items (0: all)", 0, 10**9, 0, help=info(GenerateJob, "limit").help)
        c = st.columns(4)
        structured = c[0].checkbox("Structured output (JSON schema)", value=False, key="gen_structured",
                                   help="The server is asked for the pairs as JSON of the task's schema (OpenAI's and vLLM's structured outputs).")
        cache = spec_widget(c[1], GenerateJob, "cache", label="Reuse cached answers")
        tokenizer = c[2].text_input("Tokenizer folder (optional)", key="gen_tokenizer",
                                    help="The model's tokenizer: counts tokens where the server sends no usage, and for the estimate.")
        price = spec_widget(c[3], GenerateJob, "price", label="Named price")
        c = st.columns(4)
        price_in = spec_widget(c[0], GenerateJob, "price_in", label="Price in (per M tokens)")
        price_out = spec_widget(c[1], GenerateJob, "price_out", label="Price out (per M tokens)")
        currency = spec_widget(c[2], GenerateJob, "currency")
        use_batch = spec_widget(c[3], GenerateJob, "batch", label="Through the Batch API")
        b = st.columns([1, 1, 4])
        launch = b[0].form_submit_button("Launch generation")
        estimate = b[1].form_submit_button("Estimate the cost", help="Counts the requests and prompt tokens of the whole job and the expected cost, "
                                                                     "without calling the server.")

        def _params():
            from curation.generation.backends import OpenAIChatBackend

            openai = None
            if backend == "openai":
                try:
                    openai = OpenAIChatBackend(base_url=base_url, model=llm, structured=structured, tokenizer=tokenizer.strip() or None)
                except ValueError as exc:
                    raise FieldError("openai", f"LLM base URL: {exc}") from None
            if price.strip() and (price_in is not None or price_out is not None):
                raise FieldError("price", "give a named price or the two prices, not both")
            return GenerateJob(backend=backend, tasks=gen_tasks, n_pairs=int(n_pairs), limit=int(limit) or None, openai=openai, cache=cache, batch=use_batch,
                               price=price.strip() or None, price_in=price_in, price_out=price_out, currency=currency or "USD").params()

        if launch:
            _launch("generate", _params)
        if estimate:
            _estimate_generation(_params)


def _estimate_generation(build) -> None:
    """The Estimate button: jobs/generate_estimate.py, as `vitpro generate --estimate` runs it, shown in the form."""
    from jobs.generate import GenerateJob
    from jobs.generate_estimate import EstimateError, estimate_job
    from ui.spec_widgets import in_form_terms

    try:
        spec = GenerateJob.from_params(build())
        bar = st.progress(0.0, text="rendering the prompts")
        result = estimate_job(spec, context.lake(), progress=lambda done, total: bar.progress(min(1.0, done / max(1, total)),
                                                                                             text=f"rendering the prompts: {done:,} of {total:,} items"))
        bar.empty()
    except (EstimateError, ValueError) as exc:
        st.error(f"cannot estimate: {in_form_terms(GenerateJob, exc)}")
        return
    st.info(f"**Estimate** for {result.items:,} item(s); nothing was sent to the server.\n\n" + "\n".join(f"- {md(line)}" for line in result.estimate.lines()))


def grounding_form() -> None:
    from curation.vis_attn import VisAttnConfig
    from jobs.grounding import GroundingJob

    with st.form("launch_grounding"):
        c = st.columns(4)
        vlm = _vlm_picker(c[0], "VLM", "vis_model")
        on = spec_widget(c[1], GroundingJob, "on")
        selection = c[2].selectbox("Only the selection", [None, *_selection_names(lake.current_version(), str(s.home))], format_func=lambda n: n or "all",
                                   help=info(GroundingJob, "selection").help)
        vis_batch = spec_widget(c[3], GroundingJob, "batch_size")
        c = st.columns(4)
        ocr_prompt = spec_widget(c[0], GroundingJob, "ocr")
        sinks = spec_widget(c[1], GroundingJob, "config.exclude_sinks")
        distance = spec_widget(c[2], GroundingJob, "config.distance_correction")
        vis_device = spec_widget(c[3], GroundingJob, "device", key="vis_device")
        c = st.columns(4)
        signals = spec_widget(c[0], GroundingJob, "signals", key="vis_signals")
        blind_ocr = spec_widget(c[1], GroundingJob, "blind_ocr", key="vis_blind_ocr")
        if st.form_submit_button("Launch VisAttnScore"):
            _launch("grounding", lambda: GroundingJob(
                model=vlm, device=vis_device, batch_size=int(vis_batch), on=on, selection=selection, ocr=ocr_prompt, signals=list(signals),
                blind_ocr=blind_ocr, config=VisAttnConfig(exclude_sinks=sinks, distance_correction=distance)).params(), vlm=(vlm, "VLM"))


def aux_form() -> None:
    with st.form("launch_aux"):
        st.caption("OCR characters and boxes per image, text tokens per sample: cheap stats to filter on.")
        if st.form_submit_button("Launch aux stats"):
            from jobs.aux_stats import AuxStatsJob

            _launch("aux_stats", AuxStatsJob().params)


def dedup_form() -> None:
    from jobs.dedup import DedupJob

    with st.form("launch_dedup"):
        st.caption("Near-duplicate photos (the same picture resized, re-encoded, cropped or re-toned under several items): stats "
                   "dup_group, dup_size and dup_rank; a filter `dup_rank == 1` keeps one sample per task and group, and training "
                   "holds out whole groups.")
        c = st.columns(5)
        method = spec_widget(c[0], DedupJob, "method")
        threshold = spec_widget(c[1], DedupJob, "threshold", placeholder="10 (dhash), 12 (phash)")
        min_cosine = spec_widget(c[2], DedupJob, "min_cosine")
        rank_by = spec_widget(c[3], DedupJob, "rank_by")
        batch = spec_widget(c[4], DedupJob, "batch_size")
        if st.form_submit_button("Launch dedup"):
            _launch("dedup", lambda: DedupJob(method=method, threshold=None if threshold is None else int(threshold), min_cosine=float(min_cosine), rank_by=rank_by.strip(),
                                              batch_size=int(batch)).params())
    from jobs.clusters import ClustersJob
    from jobs.map import MapJob

    # both read the CLIP vectors the CLIPScore job stores: refused (said here) before anything is queued where there are none
    with st.form("launch_clusters"):
        st.caption("k-means clusters and uniqueness over the CLIP image vectors: the stats `cluster` (a stratum of `vitpro sample "
                   "--by cluster`) and `uniqueness`.")
        c = st.columns(3)
        k = spec_widget(c[0], ClustersJob, "k")
        neighbours = spec_widget(c[1], ClustersJob, "neighbours")
        if st.form_submit_button("Launch clusters"):
            _launch("clusters", lambda: ClustersJob(k=int(k), neighbours=int(neighbours)).params())
    with st.form("launch_map"):
        st.caption("The 2-D map of the CLIP image vectors that the Map page draws.")
        c = st.columns(3)
        map_method = spec_widget(c[0], MapJob, "method")
        sample_size = spec_widget(c[1], MapJob, "sample_size")
        if st.form_submit_button("Launch map"):
            _launch("map", lambda: MapJob(method=map_method, sample_size=int(sample_size)).params())


def export_form() -> None:
    from jobs.export import ExportJob

    with st.form("launch_export"):
        c = st.columns(3)
        snap = c[0].selectbox("Snapshot", _snapshot_names(), key="export_snap", help=info(ExportJob, "snapshot").help)
        formats = spec_widget(c[1], ExportJob, "formats", label="Formats")
        ocr_export = spec_widget(c[2], ExportJob, "ocr")
        if st.form_submit_button("Launch export"):
            def _params():
                if not snap:
                    raise FieldError("snapshot", "choose one (create one on the Snapshots page)")
                return ExportJob(snapshot=snap, formats=formats, out=s.output("exports", snap), ocr=ocr_export, force=True).params()

            _launch("export", _params)


def train_form() -> None:
    from db.app import training
    from jobs.train import TrainJob
    from trainer.config import TrainConfig

    with st.form("launch_train"):
        c = st.columns(4)
        train_snap = c[0].selectbox("Snapshot", _snapshot_names(), key="train_snap", help=info(TrainJob, "snapshot").help)
        base = _vlm_picker(c[1], "Base VLM", "train_model")
        run_name = spec_widget(c[2], TrainJob, "name", value=training.default_name("train"))
        preset_name = c[3].selectbox("Preset", ["paper", "multi_image"], help="paper: r=256, alpha=32, lr 2e-4, batch 8")
        c = st.columns(4)
        r = c[0].number_input("LoRA rank (0: preset's)", 0, 1024, 0)
        lr = c[1].number_input("Learning rate (0: preset's)", 0.0, 1.0, 0.0, format="%.6f")
        max_steps = c[2].number_input("Max steps (0: the epochs')", 0, 10**7, 0)
        train_device = c[3].text_input("Device", value=TrainConfig.device, key="train_device")
        c = st.columns(4)
        nproc = c[0].number_input("Processes (one per GPU)", 1, 64, TrainConfig.nproc,
                                  help="Data-parallel processes on the worker: one per GPU, or gloo processes on a CPU. Each takes the "
                                       "batch size of every micro-batch, so 2 processes of batch 4 train as 1 of batch 8.")
        loader_workers = c[1].number_input("Loader workers per process", 0, 32, TrainConfig.loader_workers,
                                           help="Processes that read and encode examples ahead of the training step.")
        if st.form_submit_button("Launch training"):
            from trainer.config import preset

            def _train_params():
                try:
                    training.check_new_name(engine, run=run_name)
                except training.RunError as exc:
                    raise FieldError("name", str(exc)) from None
                overrides = {"device": train_device, **({"r": int(r)} if r else {}), **({"learning_rate": float(lr)} if lr else {}),
                             **({"max_steps": int(max_steps)} if max_steps else {}), "nproc": int(nproc), "loader_workers": int(loader_workers)}
                return TrainJob(snapshot=train_snap, model=base, name=run_name, config=preset(preset_name).with_overrides(**overrides),
                                out=s.output("runs", run_name)).params()

            _launch("train", _train_params, vlm=(base, "Base VLM"))


def eval_form() -> None:
    from db.app import training
    from jobs.eval import EvalJob
    from trainer.config import TrainConfig

    with st.form("launch_eval"):
        c = st.columns(4)
        eval_snap = c[0].selectbox("Snapshot", _snapshot_names(), key="eval_snap", help=info(EvalJob, "snapshot").help)
        eval_model = _vlm_picker(c[1], "Base VLM", "eval_model")
        runs = [x.name for x in training.list_runs(engine)]
        adapter = c[2].selectbox("Adapter (a training run)", [None, *runs], format_func=lambda n: n or "none: the base model", help=info(EvalJob, "adapter").help)
        eval_name = spec_widget(c[3], EvalJob, "name", value=training.default_name("eval"))
        c = st.columns(4)
        benches = spec_widget(c[0], EvalJob, "benchmarks", label="Benchmarks")
        baseline = c[1].selectbox("Report against", [None, *[e.name for e in training.list_evals(engine)]], format_func=lambda n: n or "no baseline",
                                  help=info(EvalJob, "baseline").help)
        eval_limit = c[2].number_input("At most this many items per task (0: all)", 0, 10**7, 0, help=info(EvalJob, "limit").help)
        eval_device = c[3].text_input("Device", value=TrainConfig.device, key="eval_device")
        c = st.columns(4)
        eval_batch = spec_widget(c[0], EvalJob, "batch_size", key="eval_batch_size")
        objective_mode = spec_widget(c[1], EvalJob, "objective_mode", key="eval_objective_mode")
        if st.form_submit_button("Launch evaluation"):
            def _eval_params():
                try:
                    training.check_new_name(engine, evaluation=eval_name)
                except training.RunError as exc:
                    raise FieldError("name", str(exc)) from None
                return EvalJob(name=eval_name, snapshot=eval_snap, model=eval_model, adapter=adapter, benchmarks=benches,
                               config=TrainConfig().with_overrides(device=eval_device), baseline=baseline,
                               limit=int(eval_limit) or None, batch_size=int(eval_batch), objective_mode=objective_mode,
                               out=s.output("evals", eval_name)).params()

            _launch("eval", _eval_params, vlm=(eval_model, "Base VLM"))


FORMS = {"Ingest": ingest_form, "OCR": ocr_form, "CLIPScore": clip_form, "Generation": generation_form, "VisAttnScore": grounding_form,
         "Aux stats": aux_form, "Duplicates & map": dedup_form, "Export": export_form, "Training": train_form, "Evaluation": eval_form}

# annotators do not see the launch forms at all; launching stays guarded on the server all the same
if context.allowed("launch_jobs"):
    launch_forms()


STATUS_ICON = {"queued": ":material/schedule:", "running": ":material/sync:", "succeeded": ":green[:material/check_circle:]",
               "failed": ":red[:material/error:]", "cancelling": ":material/block:", "cancelled": ":material/block:"}


@st.fragment(run_every=2)
def cost_line(cost) -> str:
    """One line under a generation job: its tokens, its cost so far and the projected cost of the items left."""
    t, parts = cost.totals, []
    parts.append(f"LLM: {t.requests:,} requests" + (f", {t.cached:,} from the cache" if t.cached else "")
                 + (f", {sum(t.failures.values()):,} failed" if t.failures else ""))
    parts.append(f"{t.prompt_tokens:,} tokens in, {t.completion_tokens:,} out" + (" (partly estimated)" if t.estimated else ""))
    if cost.cost is not None:
        parts.append(f"cost {cost.cost:,.4f} {cost.prices.currency}")
        if cost.projected_remaining:
            parts.append(f"about {cost.projected_remaining:,.4f} {cost.prices.currency} more for the {cost.items_total - cost.items_done:,} items left")
    else:
        parts.append("no price given")
    return " · ".join(parts)


def live_jobs() -> None:
    st.subheader("Jobs")
    c = st.columns(3)
    status = c[0].selectbox("Status", [None, *STATUS_ICON], format_func=lambda x: x or "any", key="jobs_status")
    kind = c[1].selectbox("Kind", [None, *kinds()], format_func=lambda x: x or "any", key="jobs_kind")
    limit = c[2].number_input("Show", 1, 500, 20, key="jobs_limit")
    rows = jobs_db.list_jobs(engine, limit=int(limit), status=status, kind=kind)
    st.caption(f"as of {datetime.now(timezone.utc):%H:%M:%S} UTC · refreshed every 2 s")
    if not rows:
        st.info("No jobs yet.")
    manage = context.allowed("manage_jobs")  # annotators watch; only those who may manage jobs get the buttons
    for job in rows:
        with st.container(border=True):
            top = st.columns([3, 2, 2, 1, 1])
            top[0].markdown(f"{STATUS_ICON.get(job.status, '')} **{job.kind}** `{job.id}`")
            took = timing(job.status, job.started_at, job.finished_at, job.progress_done, job.progress_total or 0)
            top[1].caption(f"by {job.launched_by} · {job.created_at:%Y-%m-%d %H:%M:%S}"
                           + (f" · {'ran' if job.finished_at else 'running for'} {duration(took.elapsed_s)}" if took.elapsed_s is not None else "")
                           + (f" · about {duration(took.eta_s)} left" if took.eta_s is not None else ""))
            total = job.progress_total or 0
            top[2].progress(min(1.0, job.progress_done / total) if total else (1.0 if job.status == "succeeded" else 0.0),
                            text=f"{job.status} {job.progress_done}/{total}")
            if manage and job.status in ("queued", "running") and top[3].button("Cancel", key=f"cancel_{job.id}"):
                result = context.guarded("manage_jobs", cancel_job, job.id, settings=s, by=me.username)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result}")
            if manage and job.status in ("failed", "cancelled") and top[4].button("Retry", key=f"retry_{job.id}"):
                result = context.guarded("manage_jobs", retry_job, job.id, settings=s, by=me.username)
                if result is not context.REFUSED:
                    st.toast(f"{job.id}: {result} unit(s) sent again")
            cost = cost_report(job)
            if cost is not None and cost.totals.any():
                st.caption(md(cost_line(cost)))
            if job.error:
                st.error(job.error[:2000])
            # a stateful expander: its body (parameters and a log query) runs only while it is open
            details = st.expander("counts, parameters and log", key=f"details_{job.id}", on_change="rerun")
            if details.open is not False:
                with details:
                    if job.counts:
                        st.write(", ".join(f"{k} {v}" for k, v in job.counts.items()))
                    if cost is not None:
                        st.text("\n".join(cost.lines()))
                    st.json(job.params, expanded=False)
                    tail = jobs_db.log_tail(engine, job.id, 15)
                    st.code("\n".join(f"{line.ts:%H:%M:%S} {line.level:<7} {line.message}" for line in tail) or "(no log lines)", language=None)


live_jobs()
