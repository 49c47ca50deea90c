"""The recipe stages that are no job: ``sample``, ``filter``, ``pilot`` and ``snapshot`` (``vitpro run``).

Each is a frozen dataclass whose fields are made with :func:`config.fields.param`, like a job's spec, so
a recipe stage is read with :func:`config.fields.build` (every key checked) and ``vitpro stages KIND``
describes it from the same help. They run in the ``vitpro run`` process itself, with the functions the
commands of the same name use (``vitpro sample``, ``vitpro filter save``, ``vitpro pilot create``,
``vitpro snapshot create``): they are quick queries over the store, not work for a worker.

``resolve()`` is what can be checked before anything runs (a condition that cannot be read, a name a
snapshot cannot have); ``run(ctx)`` does the work and returns the stage's outputs, which later stages
may name (``${stages.LABEL.FIELD}``). What a stage needs from the store (scores to filter on, a saved
filter to freeze) is only checked when it runs, since an earlier stage of the same recipe may make it.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from config.fields import FieldError, build, check, param, to_plain
from curation.generation import TASKS
from db.lake.sampling import STRATA, TIME_BUCKETS

SEGMENTS = ("answer", "question", "text")
VERSION = "{version}"  # in a snapshot's name: the DuckLake version of the store's data when it is made


class StageFailed(RuntimeError):
    """A stage that could not do its work; the message says why, for the user."""


@dataclass
class StageContext:
    """What a stage running in process gets: the settings and how to print."""

    settings: Any  # config.settings.Settings
    echo: Callable[[str], None] = print

    def lake(self):
        from db.store import open_store

        return open_store(self.settings.store)

    def engine(self):
        from db.app.engine import write_engine

        self.lake()  # the app tables exist once the store is open
        return write_engine(self.settings.app_url)


class LocalStage:
    """What the in-process stages share."""

    KIND: ClassVar[str]
    SUMMARY: ClassVar[str]
    # what is only known, and checked, when the stage runs (said in the plan of a dry run)
    RUN_TIME_CHECKS: ClassVar[str] = ""

    @classmethod
    def from_fields(cls, values: dict[str, Any]):
        """The stage from a recipe's plain values: an unknown or ill-typed field is refused by name."""
        return build(cls, values, strict=True)

    def resolve(self):
        check(self)
        return self

    def params(self) -> dict[str, Any]:
        return to_plain(self.resolve())

    def planned_outputs(self) -> dict[str, Any]:
        """The outputs known before the stage runs (its fields)."""
        return to_plain(self)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        raise NotImplementedError


# ---- sample -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleStage(LocalStage):
    KIND = "sample"
    SUMMARY = "Stratified sampling: at most N per stratum, deterministic for a seed, written as a named selection (vitpro sample)."
    RUN_TIME_CHECKS = "that there is something to sample"

    by: list[str] = param(choices=STRATA, help="The strata: category, brand, region, issue_type, time, cluster (k-means over the CLIP vectors: `vitpro clusters`).")
    per_stratum: int = param(min=1, help="At most this many per stratum.")
    name: str = param("balanced", help="The selection written (replaced if it exists); later stages name it (selection: NAME).")
    seed: int = param(0, help="The seed of the draw: the same seed, the same selection.")
    of: str = param("samples", choices=("samples", "items"), help="Sample generated samples, or items.")
    time_bucket: str = param("month", choices=tuple(TIME_BUCKETS), help="The bucket of the time stratum.")
    tasks: list[str] | None = param(None, choices=tuple(TASKS), help="Only samples of these tasks.")

    def resolve(self) -> "SampleStage":
        check(self)
        if not self.by:
            raise FieldError("by", f"give at least one stratum: {', '.join(STRATA)}")
        if not self.name.strip():
            raise FieldError("name", "give the selection a name")
        return self

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from db.lake import sampling

        lake = ctx.lake()
        sql, params, names = sampling.stratified(lake, by=list(self.by), per_stratum=self.per_stratum, seed=self.seed, of=self.of,
                                                 time_bucket=self.time_bucket, tasks=list(self.tasks) if self.tasks else None)
        rows = sampling.balance(lake, sql, params, names)
        if not rows:
            raise StageFailed(f"no {self.of} to sample" + (" (generate some first: a generate stage)" if self.of == "samples" else ""))
        before = sum(r[-2] for r in rows)
        written = sampling.write_selection(lake, self.name, sql, params, names, self.seed, self.of, f"recipe-{uuid.uuid4().hex[:8]}")
        ctx.echo(f"selection {self.name!r}: {written} of {before} {self.of} ({len(rows)} strata of {', '.join(self.by)}, at most {self.per_stratum} each, seed {self.seed})")
        return {**to_plain(self), "selected": written, "before": before, "strata": len(rows)}


# ---- filter -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FilterStage(LocalStage):
    KIND = "filter"
    SUMMARY = "Save (or replace) a named filter: conditions over stored scores and fields (vitpro filter save)."
    RUN_TIME_CHECKS = "that the scores its conditions name are stored, and from which model"

    name: str = param(help="The saved filter's name (replaced if it exists); a snapshot stage freezes it (filter: NAME).")
    where: list[str] = param(help="The conditions, all of which must hold: 'vis_attn >= p25', 'clip_score >= p20 or missing', "
                                  "'task in recognition,matching', 'vis_attn >= p30 per task'.")
    models: dict[str, str] | None = param(None, help="METRIC: MODEL_ID, which model's scores a metric uses where several models scored it.")
    per_task: bool = param(False, help="Percentiles within each task instead of the whole data set.")
    keep_missing: bool = param(False, help="A sample without a score passes that condition (default: it is dropped).")
    selection: str | None = param(None, help="Only the samples of this named selection (a sample stage's name).")
    segment: str = param("answer", choices=SEGMENTS, help="The VisAttnScore segment.")

    def config(self):
        """The filter as the engine takes it; FieldError naming the condition that cannot be read."""
        from curation.filters import Condition, FilterConfig, FilterError, metric_of

        models = dict(self.models or {})
        conditions = []
        for i, text in enumerate(self.where):
            try:
                cond = Condition.parse(str(text))
                if not cond.is_field:
                    metric_of(cond.metric)  # a stat no metric has: refused now, not after the stages before it
            except FilterError as exc:
                raise FieldError(f"where[{i}]", str(exc)) from None
            if self.per_task and cond.percentile is not None:
                cond.per_task = True
            if self.keep_missing and not cond.is_field:
                cond.keep_missing = True
            if cond.metric in models:
                cond.model_id = models[cond.metric]
            conditions.append(cond)
        unused = sorted(set(models) - {c.metric for c in conditions})
        if unused:
            raise FieldError("models", f"names {', '.join(unused)}, which no condition uses")
        return FilterConfig(conditions, self.selection, self.segment)

    def resolve(self) -> "FilterStage":
        check(self)
        if not self.name.strip():
            raise FieldError("name", "give the filter a name")
        if not self.where:
            raise FieldError("where", "give at least one condition, e.g. 'vis_attn >= p25'")
        self.config()
        return self

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from curation.filters import FilterError, stats_for
        from db.app import saved_filters

        lake = ctx.lake()
        config = self.config()
        try:
            table = stats_for(lake, config)
            config = table.resolve(config)  # each metric's model named: what is saved
            report = table.report(config)
        except FilterError as exc:
            raise StageFailed(f"cannot filter: {exc}") from None
        replaced = saved_filters.save(ctx.engine(), self.name, config.to_dict(), ctx.settings.user)
        ctx.echo(f"{'replaced' if replaced else 'saved'} filter {self.name!r} ({'; '.join(config.describe())}): "
                 f"kept {report.kept} of {report.kept + report.dropped} sample(s)")
        return {**to_plain(self), "kept": report.kept, "dropped": report.dropped, "conditions": [c.describe() for c in config.conditions],
                "model_ids": {c.metric: c.model_id for c in config.metrics()}}


# ---- pilot --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PilotStage(LocalStage):
    KIND = "pilot"
    SUMMARY = "Draw a pilot to label: N scored samples spread over tasks and VisAttnScore deciles (vitpro pilot create)."
    RUN_TIME_CHECKS = "that samples scored by the VLM are stored"

    name: str = param(help="The pilot's name (vitpro pilot label NAME).")
    size: int = param(200, min=2, max=100_000, help="Samples to draw (the paper: 200).")
    seed: int = param(0, help="The seed of the draw.")
    vis_model: str | None = param(None, help="The VisAttnScore model id (a grounding stage's model_id); default: the only one stored.")
    clip_model: str | None = param(None, help="The CLIPScore model id; default: the only one stored (none: the pilot measures VisAttnScore alone).")
    segment: str = param("answer", choices=SEGMENTS, help="The VisAttnScore segment.")
    selection: str | None = param(None, help="Draw only from this named selection.")

    def resolve(self) -> "PilotStage":
        check(self)
        if not self.name.strip():
            raise FieldError("name", "give the pilot a name")
        return self

    def exists(self, ctx: StageContext) -> dict[str, Any] | None:
        """The outputs of a pilot of this name made before, or None."""
        from db.app import pilots

        try:
            found = pilots.get(ctx.engine(), self.name)
        except pilots.PilotError:
            return None
        return {**to_plain(self), "drawn": len(pilots.samples(ctx.engine(), found.id))}

    def _model(self, lake, metric: str, segment: str, given: str | None, *, required: bool) -> str | None:
        from curation.filters import stored_models

        models = stored_models(lake, metric, segment=segment, scored_only=True)
        if given:
            if given not in models:
                raise StageFailed(f"no {metric} scores from {given!r}" + (f"; there are: {', '.join(models)}" if models else ""))
            return given
        if len(models) == 1:
            return models[0]
        if not models:
            if required:
                raise StageFailed(f"no {metric} scores stored" + (f" for segment {segment!r}" if segment else "") + ": a grounding stage comes first")
            return None
        field = "vis_model" if metric == "vis_attn" else "clip_model"
        raise StageFailed(f"{metric} comes from {len(models)} models; name one ({field}: ...): {', '.join(models)}")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from db.app import pilots

        lake = ctx.lake()
        vis = self._model(lake, "vis_attn", self.segment, self.vis_model, required=True)
        clip = self._model(lake, "clip_score", "", self.clip_model, required=False)
        try:
            rows = pilots.draw_and_create(lake, ctx.engine(), name=self.name, size=self.size, seed=self.seed, vis_model=vis, clip_model=clip,
                                          segment=self.segment, selection=self.selection, created_by=ctx.settings.user)
        except pilots.PilotError as exc:
            raise StageFailed(str(exc)) from None
        ctx.echo(f"pilot {self.name!r}: {len(rows)} sample(s) to label (vitpro pilot label {self.name})")
        return {**to_plain(self), "vis_model": vis, "clip_model": clip, "drawn": len(rows)}


# ---- snapshot -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotStage(LocalStage):
    KIND = "snapshot"
    SUMMARY = "Freeze what a saved filter keeps now, at the store's DuckLake version (vitpro snapshot create)."
    RUN_TIME_CHECKS = "that the saved filter exists and keeps samples"

    name: str = param(help="The snapshot's name; {version} in it stands for the DuckLake version of the store's data when it is made "
                           "(demo-v{version}): a re-run on unchanged data finds the same snapshot.")
    filter: str = param(help="The saved filter to freeze (a filter stage's name, or one saved before).")

    def resolve(self) -> "SnapshotStage":
        from db.app.snapshots import SnapshotError, check_name

        check(self)
        try:
            check_name(self.name.replace(VERSION, "0"))
        except SnapshotError as exc:
            raise FieldError("name", str(exc)) from None
        return self

    def planned_outputs(self) -> dict[str, Any]:
        out = to_plain(self)
        if VERSION in self.name:
            out.pop("name")  # known when it runs
        return out

    def final_name(self, ctx: StageContext) -> str:
        # the data's version, not the newest commit: a snapshot's own member list is a commit of its own, after which
        # the same data would otherwise get a new name on every re-run
        from db.lake.snapshot_members import data_version

        return self.name.replace(VERSION, str(data_version(ctx.lake()))) if VERSION in self.name else self.name

    def _outputs(self, snap) -> dict[str, Any]:
        return {**to_plain(self), "name": snap.name, "kept": snap.counts.get("kept"), "dropped": snap.counts.get("dropped"),
                "lake_version": snap.lake_version}

    def exists(self, ctx: StageContext) -> dict[str, Any] | None:
        from curation import snapshots

        try:
            return self._outputs(snapshots.get(ctx.engine(), self.final_name(ctx)))
        except snapshots.SnapshotError:
            return None

    def recall(self, ctx: StageContext) -> dict[str, Any] | None:
        """The snapshot this stage made on an earlier run, for a run resumed after it (--from): the one of
        its name, or with {version} in it, the newest whose name fits."""
        from curation import snapshots

        if VERSION not in self.name:
            return self.exists(ctx)
        pattern = re.compile(re.escape(self.name).replace(re.escape(VERSION), r"\d+"))
        found = [s for s in snapshots.list_all(ctx.engine()) if pattern.fullmatch(s.name)]
        return self._outputs(max(found, key=lambda s: s.lake_version)) if found else None

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from curation import snapshots
        from curation.filters import FilterConfig, FilterError
        from db.app import saved_filters

        engine = ctx.engine()
        try:
            row = saved_filters.get(engine, self.filter)
        except saved_filters.UnknownFilter as exc:
            raise StageFailed(str(exc.args[0])) from None
        name = self.final_name(ctx)
        try:
            snap = snapshots.create(ctx.lake(), engine, name=name, filter_name=self.filter, config=FilterConfig.from_dict(row.config),
                                    created_by=ctx.settings.user)
        except (snapshots.SnapshotError, FilterError) as exc:
            raise StageFailed(str(exc)) from None
        ctx.echo(f"snapshot {snap.name!r}: {snap.counts['kept']} sample(s) kept of {snap.counts['kept'] + snap.counts['dropped']} "
                 f"at DuckLake version {snap.lake_version}")
        return self._outputs(snap)


LOCAL_STAGES: dict[str, type[LocalStage]] = {cls.KIND: cls for cls in (SampleStage, FilterStage, PilotStage, SnapshotStage)}
