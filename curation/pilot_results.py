"""A pilot's results, as the command line and the web app both show them: the human labels against
VisAttnScore and CLIPScore (curation/pilot_stats.py), and the accuracy of a saved filter's thresholds."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine

from db.app import pilots, saved_filters
from db.app.models import PilotAdjudication, PilotLabel
from db.lake.connection import Lake
from db.reads.browse import kept_flags, metric_of_samples

from .agreement import Agreement, agreement, by_task
from .calibration import CalibrationError, Fit, fit
from .filters import FilterConfig, stats_for
from .pilot_stats import GROUNDED, NOT_GROUNDED, SKIP, PilotReport, consensus, evaluate
from .pilot_words import group_word


@dataclass
class PilotResults:
    report: PilotReport
    filter_name: str | None
    ungrounded_words: list[tuple[str, int]]
    samples: int
    agreement: Agreement | None = None  # between the annotators, over the whole pilot (curation/agreement.py)
    agreement_by_task: dict[str, Agreement] = field(default_factory=dict)
    combined: Fit | None = None  # the logistic regression over the signals (curation/calibration.py), where it could be fitted


SCORES = ("vis_attn", "clip_score")  # the scores a pilot measures against the human labels (and a filter's thresholds on them)
# measured too, where stored: visual information gain, and how guessable the answer is without the image
GAIN_SIGNALS = ("vis_gain", "blind_logp", "judge_yes")
CALIBRATED = ("vis_attn", "vis_gain", "blind_logp", "judge_yes", "clip_score")  # what the combined score may combine
COMBINED = "combined (5-fold CV)"  # its row in the report: a logistic regression's out-of-fold probabilities


def current_predictions(lake: Lake, config: FilterConfig, sample_ids: list[str], *, stats=None) -> dict[str, tuple[str, dict[str, bool]]]:
    """Per score (vis_attn, clip_score): the filter's conditions on it, and which pilot samples they keep
    now (percentiles over what the filter sees). Raises FilterError where the filter cannot apply.
    ``stats(config)``: the stats table for a config (default: built now; the app passes its cached one)."""
    scored = FilterConfig([c for c in config.conditions if c.metric in SCORES], config.selection, config.segment)
    if not scored.conditions:
        return {}
    # one table for both scores: its rows (every sample of the selection) do not depend on which stats it
    # holds, so each score's conditions keep what a table of that score alone would keep
    table = (stats or (lambda c: stats_for(lake, c)))(scored)
    out = {}
    for metric in SCORES:
        conds = [c for c in scored.conditions if c.metric == metric]
        if not conds:
            continue
        sub = table.resolve(FilterConfig(conds, config.selection, config.segment))  # described with the models it used
        # only the pilot's samples are read back (not a million rows into Python)
        out[metric] = ("; ".join(c.describe() for c in conds), kept_flags(lake, table.kept_sql(sub), list(dict.fromkeys(sample_ids))))
    return out


def results(lake: Lake, engine: Engine, pilot_name: str, filter_name: str | None = None, *, stats=None) -> PilotResults | None:
    """None while nobody has labelled (or settled). A settled verdict replaces the annotators' labels of
    its sample; ``filter_name`` defaults to the only saved filter, if one; ``stats``: as for
    :func:`current_predictions`."""
    p = pilots.get(engine, pilot_name)
    chosen = pilots.samples(engine, p.id)
    by_sample: dict[str, dict[str, str]] = {}
    words: Counter = Counter()
    for row in pilots.labels(engine, p.id):
        by_sample.setdefault(row.sample_id, {})[row.annotator] = row.label
        words.update(group_word(w).lower() for w in (row.ungrounded_words or []))  # "red (2)" counts as "red"
    settled = {sid: v.label for sid, v in pilots.adjudications(engine, p.id).items()}
    if not by_sample and not settled:
        return None
    if filter_name is None:
        saved = saved_filters.list_all(engine)
        filter_name = saved[0].name if len(saved) == 1 else None
    current = {}
    if filter_name:
        config = FilterConfig.from_dict(saved_filters.get(engine, filter_name).config)
        current = current_predictions(lake, config, [x.sample_id for x in chosen], stats=stats)
    values = {"vis_attn": {x.sample_id: x.vis_attn for x in chosen}}
    if any(x.clip_score is not None for x in chosen):
        values["clip_score"] = {x.sample_id: x.clip_score for x in chosen}
    # the other grounding signals of the pilot's VLM, where its grounding run computed them (read now: a
    # pilot drawn before the gain existed is measured on it once it is scored)
    cfg = p.config or {}
    if cfg.get("vis_model"):
        ids = [x.sample_id for x in chosen]
        for metric in GAIN_SIGNALS:
            found = metric_of_samples(lake, ids, metric, cfg["vis_model"], cfg.get("segment", "answer"))
            if found:
                values[metric] = found
    combined = None
    signals = [m for m in CALIBRATED if m in values]
    if len(signals) >= 2:  # the signals together: out-of-fold probabilities, so its AUC is not fitted on the labels it is measured on
        try:
            combined = fit({x.sample_id: {m: values[m].get(x.sample_id) for m in signals} for x in chosen}, decided_labels(by_sample, settled), signals)
            values[COMBINED] = combined.cv_probabilities
        except CalibrationError:
            pass
    return PilotResults(evaluate(values, by_sample, current_predictions=current, settled=settled), filter_name, words.most_common(20), len(chosen),
                        agreement(by_sample), by_task(by_sample, {x.sample_id: x.task for x in chosen}), combined)


def decided_labels(by_sample: dict[str, dict[str, str]], settled: dict[str, str]) -> dict[str, int]:
    """Sample -> 1 (grounded) / 0 (not grounded): the annotators' majority (skips left out, ties dropped),
    an adjudicator's verdict in its place where there is one."""
    truth = {sid: consensus(list(by.values())) for sid, by in by_sample.items()}
    truth.update({sid: lab for sid, lab in settled.items() if lab in (GROUNDED, NOT_GROUNDED)})
    return {sid: 1 if lab == GROUNDED else 0 for sid, lab in truth.items() if lab in (GROUNDED, NOT_GROUNDED)}


def pilot_labels(engine: Engine, pilot_name: str) -> tuple[object, dict[str, int]]:
    """(the pilot, its decided labels) as :func:`decided_labels` reads them from the store."""
    p = pilots.get(engine, pilot_name)
    by_sample: dict[str, dict[str, str]] = {}
    for row in pilots.labels(engine, p.id):
        by_sample.setdefault(row.sample_id, {})[row.annotator] = row.label
    return p, decided_labels(by_sample, {sid: v.label for sid, v in pilots.adjudications(engine, p.id).items()})


# ---- disagreements ------------------------------------------------------------------------------------
@dataclass
class Disagreement:
    """A pilot sample whose annotators did not all give the same (non-skip) label."""
    sample_id: str
    position: int
    labels: dict[str, PilotLabel]  # annotator -> their label (skips included, as they were given)
    majority: str | None  # None: split evenly, so it drops out of the results unless settled
    settled: PilotAdjudication | None = None


def disagreements(engine: Engine, pilot_id: int) -> list[Disagreement]:
    """Samples whose annotators disagree, in labelling order, with each one's label, the majority if there
    is one, and the verdict if settled."""
    by_sample: dict[str, dict[str, PilotLabel]] = {}
    for row in pilots.labels(engine, pilot_id):
        by_sample.setdefault(row.sample_id, {})[row.annotator] = row
    verdicts = pilots.adjudications(engine, pilot_id)
    out = []
    for sample in pilots.samples(engine, pilot_id):
        given = by_sample.get(sample.sample_id, {})
        if len({r.label for r in given.values() if r.label != SKIP}) > 1:
            out.append(Disagreement(sample.sample_id, sample.position, given, consensus([r.label for r in given.values()]),
                                    verdicts.get(sample.sample_id)))
    return out
