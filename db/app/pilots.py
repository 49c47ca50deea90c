"""Pilot studies in the app tables: draw the samples (from the lake), keep every annotator's labels,
read and write them as CSV. Many annotators label at once: one row per (pilot, sample, annotator),
written with an upsert, so two curators and a page refresh lose nothing."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from db.lake.connection import Lake
from db.reads import samples_view
from db.storage.blobs import as_blobs

from .models import Pilot, PilotAdjudication, PilotAssignment, PilotLabel, PilotLock, PilotSample
from .named_rows import get_named

LABEL_VALUES = ("grounded", "not_grounded", "skip")
VERDICTS = ("grounded", "not_grounded")  # what an adjudicator settles a disagreement as
CSV_COLUMNS = ("pilot", "sample_id", "annotator", "label", "ungrounded_words", "note")


class PilotError(ValueError):
    """A request on a pilot that cannot be done as asked (unknown pilot, bad label file)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def draw(lake: Lake, *, size: int, seed: int, vis_model: str, segment: str = "answer", clip_model: str | None = None, selection: str | None = None) -> list[dict[str, Any]]:
    """``size`` samples scored by the VLM, spread evenly over tasks, and within each task over its
    VisAttnScore deciles: rank within each (task, decile) by md5(seed, id) and order each task's samples
    round-robin over its deciles; then take every task's first, every task's second, ... so the tasks get
    as many each (within one) until a task has no more. Deciles are over all scored samples."""
    chosen = "AND x.sample_id IN (SELECT subject_id FROM selections WHERE name = ? AND subject_kind = 'sample')" if selection else ""
    clip_join = (
        "LEFT JOIN (SELECT subject_id AS item_id, any_value(value) AS clip FROM scores WHERE subject_kind = 'item' "
        "AND metric = 'clip_score' AND model_id = ? GROUP BY subject_id) c ON c.item_id = x.item_id"
        if clip_model else "LEFT JOIN (SELECT NULL AS item_id, NULL AS clip) c ON FALSE"
    )
    sql = (
        "WITH scored AS (SELECT x.sample_id, x.task, v.value AS vis, c.clip FROM samples x "
        "JOIN scores v ON v.subject_kind = 'sample' AND v.subject_id = x.sample_id AND v.metric = 'vis_attn' AND v.model_id = ? "
        f"AND v.segment = ? AND v.value IS NOT NULL {clip_join} WHERE TRUE {chosen}), "
        "deciled AS (SELECT *, ntile(10) OVER (ORDER BY vis, sample_id) AS decile FROM scored), "
        "ranked AS (SELECT *, row_number() OVER (PARTITION BY task, decile ORDER BY md5(CAST(? AS VARCHAR) || ':' || sample_id)) AS k, "
        "md5(CAST(? AS VARCHAR) || ':' || task || ':' || CAST(decile AS VARCHAR)) AS stratum_order FROM deciled), "
        "per_task AS (SELECT *, row_number() OVER (PARTITION BY task ORDER BY k, stratum_order) AS j, "
        "md5(CAST(? AS VARCHAR) || ':' || task) AS task_order FROM ranked) "
        "SELECT sample_id, task, decile, vis, clip FROM per_task ORDER BY j, task_order LIMIT ?"
    )
    params = [vis_model, segment, *([clip_model] if clip_model else []), *([selection] if selection else []), seed, seed, seed, size]
    cols = ["sample_id", "task", "decile", "vis_attn", "clip_score"]
    return [dict(zip(cols, r)) for r in lake.fetchall(sql, params)]


def create(engine: Engine, *, name: str, rows: list[dict[str, Any]], size: int, seed: int, config: dict[str, Any], created_by: str) -> int:
    if not rows:
        raise PilotError("no scored samples to draw from: run vitpro score grounding first")
    with Session(engine) as s, s.begin():
        if s.scalar(select(Pilot.id).where(Pilot.name == name)) is not None:
            raise PilotError(f"a pilot named {name!r} exists already")
        pilot = Pilot(name=name, size=size, seed=seed, config=config, created_by=created_by, created_at=_now())
        s.add(pilot)
        s.flush()
        for position, row in enumerate(rows):
            s.add(PilotSample(pilot_id=pilot.id, sample_id=row["sample_id"], position=position, task=row["task"], decile=row["decile"],
                              vis_attn=row["vis_attn"], clip_score=row["clip_score"]))
        return pilot.id


def draw_and_create(lake: Lake, engine: Engine, *, name: str, size: int, seed: int, vis_model: str, clip_model: str | None = None,
                    segment: str = "answer", selection: str | None = None, created_by: str) -> list[dict[str, Any]]:
    """Draw a pilot (see :func:`draw`) and store it with the models and segment it was drawn with; returns
    the rows drawn."""
    rows = draw(lake, size=size, seed=seed, vis_model=vis_model, segment=segment, clip_model=clip_model, selection=selection)
    create(engine, name=name, rows=rows, size=size, seed=seed, created_by=created_by,
           config={"vis_model": vis_model, "clip_model": clip_model, "segment": segment, "selection": selection})
    return rows


def get(engine: Engine, name: str) -> Pilot:
    return get_named(engine, Pilot, name, Pilot.created_at, lambda known: PilotError(f"no pilot {name!r} (pilots: {known})"))


def list_pilots(engine: Engine) -> list[tuple[str, int, int, int]]:
    """(name, samples in it, samples labelled by anyone, annotators). The samples are counted, not read from
    the size asked at creation: a draw can find fewer (186 of 200 asked) and the Gallery can add more."""
    with Session(engine) as s:
        rows = []
        for pilot in s.scalars(select(Pilot).order_by(Pilot.created_at)):
            size = s.scalar(select(func.count()).select_from(PilotSample).where(PilotSample.pilot_id == pilot.id))
            labelled = s.scalar(select(func.count(func.distinct(PilotLabel.sample_id))).where(PilotLabel.pilot_id == pilot.id))
            annotators = s.scalar(select(func.count(func.distinct(PilotLabel.annotator))).where(PilotLabel.pilot_id == pilot.id))
            rows.append((pilot.name, int(size or 0), int(labelled or 0), int(annotators or 0)))
        return rows


def samples(engine: Engine, pilot_id: int) -> list[PilotSample]:
    with Session(engine) as s:
        rows = list(s.scalars(select(PilotSample).where(PilotSample.pilot_id == pilot_id).order_by(PilotSample.position)))
        s.expunge_all()
        return rows


def labels(engine: Engine, pilot_id: int, annotator: str | None = None) -> list[PilotLabel]:
    with Session(engine) as s:
        q = select(PilotLabel).where(PilotLabel.pilot_id == pilot_id)
        if annotator:
            q = q.where(PilotLabel.annotator == annotator)
        rows = list(s.scalars(q.order_by(PilotLabel.sample_id, PilotLabel.annotator)))
        s.expunge_all()
        return rows


@dataclass(frozen=True)
class LabelState:
    """One annotator's label on one sample as it was: what undo puts back."""
    label: str
    ungrounded_words: tuple[str, ...] = ()
    note: str | None = None


def _in_pilot(s: Session, pilot_id: int, sample_id: str) -> None:
    if s.scalar(select(PilotSample.id).where(PilotSample.pilot_id == pilot_id, PilotSample.sample_id == sample_id)) is None:
        raise PilotError(f"sample {sample_id} is not in this pilot")


def _label_row(s: Session, pilot_id: int, sample_id: str, annotator: str) -> PilotLabel | None:
    return s.scalar(select(PilotLabel).where(PilotLabel.pilot_id == pilot_id, PilotLabel.sample_id == sample_id, PilotLabel.annotator == annotator)
                    .with_for_update())


ANY = object()  # ``expected`` left out: write whatever is stored now


class LabelChanged(PilotError):
    """The annotator's label is no longer what the caller last showed them: another tab or session of the
    same user changed it meanwhile. Nothing was written; ``current`` is what is stored now."""

    def __init__(self, sample_id: str, current: LabelState | None):
        self.current = current
        now = "no label" if current is None else repr(current.label.replace("_", " "))
        super().__init__(f"the label on sample {sample_id} was changed in another tab or session meanwhile (it is now {now}); nothing was saved")


def state_of(row: PilotLabel | None) -> LabelState | None:
    """A stored label as a LabelState (None for no label): what a page shows and compares."""
    return None if row is None else LabelState(row.label, tuple(row.ungrounded_words or ()), row.note)


def _check(sample_id: str, row: PilotLabel | None, expected) -> LabelState | None:
    current = state_of(row)
    if expected is not ANY and current != expected:
        raise LabelChanged(sample_id, current)
    return current


def set_label(engine: Engine, pilot_id: int, sample_id: str, annotator: str, label: str, ungrounded_words: Iterable[str] = (), note: str | None = None,
              *, expected=ANY) -> LabelState | None:
    """Write or replace one annotator's label for one sample (safe to repeat; others' labels untouched).
    Returns what it replaced (None: there was no label), for :func:`restore_label` to undo it.

    ``expected``: the label the caller last showed (a LabelState, or None for none). When the stored one
    differs, another tab or session changed it: :class:`LabelChanged` is raised and nothing is written, so
    that no one overwrites a label they have not seen."""
    if label not in LABEL_VALUES:
        raise PilotError(f"a label is one of {', '.join(LABEL_VALUES)}, not {label!r}")
    with Session(engine) as s, s.begin():
        _in_pilot(s, pilot_id, sample_id)
        previous = _check(sample_id, _label_row(s, pilot_id, sample_id, annotator), expected)
        _upsert(s, pilot_id, sample_id, annotator, label, list(ungrounded_words), note)
        return previous


def clear_label(engine: Engine, pilot_id: int, sample_id: str, annotator: str, *, expected=ANY) -> bool:
    """Remove one annotator's own label on one sample; False when there was none. ``expected`` as for
    :func:`set_label`."""
    with Session(engine) as s, s.begin():
        row = _label_row(s, pilot_id, sample_id, annotator)
        _check(sample_id, row, expected)
        if row is None:
            return False
        s.delete(row)
        return True


def restore_label(engine: Engine, pilot_id: int, sample_id: str, annotator: str, previous: LabelState | None, *, expected=ANY) -> None:
    """Put a sample's label back as :func:`set_label` found it: the earlier label, or none. ``expected``:
    what the undone action wrote; when the label changed since (another tab), :class:`LabelChanged` and
    nothing is undone."""
    if previous is None:
        clear_label(engine, pilot_id, sample_id, annotator, expected=expected)
    else:
        set_label(engine, pilot_id, sample_id, annotator, previous.label, previous.ungrounded_words, previous.note, expected=expected)


def add_samples(lake: Lake, engine: Engine, pilot_name: str, sample_ids: Iterable[str]) -> int:
    """Append samples to a pilot (after its last position, in the order given); returns how many were new
    (those in it already are left where they are). The task, VisAttnScore (and its decile over all scored
    samples, as :func:`draw` computes it) and CLIPScore come from the lake with the pilot's own models; a
    sample with no score is added without one. Any id not in the store refuses the whole request."""
    wanted = list(dict.fromkeys(str(x) for x in sample_ids))
    pilot = get(engine, pilot_name)
    if not wanted:
        return 0
    cfg = pilot.config or {}
    vis_model, segment, clip_model = cfg.get("vis_model"), cfg.get("segment", "answer"), cfg.get("clip_model")
    marks = ", ".join("?" for _ in wanted)
    sql = (
        "WITH scored AS (SELECT subject_id AS sample_id, value AS vis, ntile(10) OVER (ORDER BY value, subject_id) AS decile FROM ("
        "SELECT v.subject_id, any_value(v.value) AS value FROM scores v JOIN samples x ON x.sample_id = v.subject_id "
        "WHERE v.subject_kind = 'sample' AND v.metric = 'vis_attn' AND v.model_id = ? AND v.segment = ? AND v.value IS NOT NULL "
        "GROUP BY v.subject_id)), "
        "clip AS (SELECT subject_id AS item_id, any_value(value) AS clip FROM scores WHERE subject_kind = 'item' AND metric = 'clip_score' "
        "AND model_id = ? GROUP BY subject_id) "
        f"SELECT x.sample_id, any_value(x.task), any_value(d.decile), any_value(d.vis), any_value(c.clip) FROM samples x "
        f"LEFT JOIN scored d ON d.sample_id = x.sample_id LEFT JOIN clip c ON c.item_id = x.item_id "
        f"WHERE x.sample_id IN ({marks}) GROUP BY x.sample_id"
    )
    found = {r[0]: r for r in lake.fetchall(sql, [vis_model or "", segment, clip_model or "", *wanted])}
    unknown = [sid for sid in wanted if sid not in found]
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise PilotError(f"nothing added to pilot {pilot_name!r}: {len(unknown)} sample id(s) are not in the store: "
                         + ", ".join(unknown[:5]) + more)
    with Session(engine) as s, s.begin():
        s.scalar(select(Pilot.id).where(Pilot.id == pilot.id).with_for_update())  # one appender at a time: positions stay distinct
        have = set(s.scalars(select(PilotSample.sample_id).where(PilotSample.pilot_id == pilot.id)))
        position = (s.scalar(select(func.max(PilotSample.position)).where(PilotSample.pilot_id == pilot.id)) or -1) + 1
        new = [sid for sid in wanted if sid not in have]
        for k, sid in enumerate(new):
            _, task, decile, vis, clip = found[sid]
            s.add(PilotSample(pilot_id=pilot.id, sample_id=sid, position=position + k, task=task, decile=decile,
                              vis_attn=None if vis is None else float(vis), clip_score=None if clip is None else float(clip)))
        if new:
            s.get(Pilot, pilot.id).size += len(new)  # the pilot is now that much bigger than it was drawn
        return len(new)


# ---- disagreements and their adjudication ---------------------------------------------------------------
def adjudicate(engine: Engine, pilot_id: int, sample_id: str, label: str, settled_by: str, note: str | None = None) -> None:
    """Settle a sample as grounded or not grounded; the verdict replaces the annotators' labels in the
    results. Settling again changes the verdict."""
    if label not in VERDICTS:
        raise PilotError(f"a verdict is one of {', '.join(VERDICTS)}, not {label!r}")
    with Session(engine) as s, s.begin():
        _in_pilot(s, pilot_id, sample_id)
        row = s.scalar(select(PilotAdjudication).where(PilotAdjudication.pilot_id == pilot_id, PilotAdjudication.sample_id == sample_id))
        note = (note or "").strip() or None
        if row is None:
            s.add(PilotAdjudication(pilot_id=pilot_id, sample_id=sample_id, label=label, settled_by=settled_by, note=note, settled_at=_now()))
        else:
            row.label, row.settled_by, row.note, row.settled_at = label, settled_by, note, _now()


def unsettle(engine: Engine, pilot_id: int, sample_id: str) -> bool:
    """Withdraw a verdict (the annotators' labels count again); False when there was none."""
    with Session(engine) as s, s.begin():
        return s.execute(delete(PilotAdjudication).where(PilotAdjudication.pilot_id == pilot_id, PilotAdjudication.sample_id == sample_id)).rowcount > 0


def adjudications(engine: Engine, pilot_id: int) -> dict[str, PilotAdjudication]:
    """sample id -> its verdict."""
    with Session(engine) as s:
        rows = list(s.scalars(select(PilotAdjudication).where(PilotAdjudication.pilot_id == pilot_id)))
        s.expunge_all()
        return {r.sample_id: r for r in rows}


def _upsert(s: Session, pilot_id: int, sample_id: str, annotator: str, label: str, words: list[str], note: str | None) -> None:
    row = s.scalar(select(PilotLabel).where(PilotLabel.pilot_id == pilot_id, PilotLabel.sample_id == sample_id, PilotLabel.annotator == annotator))
    if row is None:
        s.add(PilotLabel(pilot_id=pilot_id, sample_id=sample_id, annotator=annotator, label=label, ungrounded_words=words, note=note, updated_at=_now()))
    else:
        row.label, row.ungrounded_words, row.note, row.updated_at = label, words, note, _now()


def export_csv(engine: Engine, pilot: Pilot) -> str:
    """Every annotator's labels (the import format). A pilot with no labels yet gives one row per sample,
    in labelling order, with the label left blank: fill it in and import it (blank rows are left out)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    found = labels(engine, pilot.id)
    for row in found:
        writer.writerow([pilot.name, row.sample_id, row.annotator, row.label, json.dumps(row.ungrounded_words or []), row.note or ""])
    if not found:
        for sample in samples(engine, pilot.id):
            writer.writerow([pilot.name, sample.sample_id, "", "", "[]", ""])
    return out.getvalue()


@dataclass
class ImportResult:
    written: int
    annotators: list[str]
    blank: int = 0  # rows with no label (a template row not filled in): left out


def import_csv(engine: Engine, pilot: Pilot, text: str, *, default_annotator: str | None = None) -> ImportResult:
    """All rows are checked first; one bad row (unknown sample, bad label, broken words list) refuses the
    whole file with the row numbers, and nothing changes. A row of a pilot sample with the label left
    blank (the template :func:`export_csv` writes before any label) is left out and counted."""
    reader = csv.DictReader(io.StringIO(text))
    missing = {"sample_id", "label"} - set(reader.fieldnames or [])
    if missing:
        raise PilotError(f"the CSV needs the column(s) {', '.join(sorted(missing))}; it has {', '.join(reader.fieldnames or []) or 'none'}")
    known = {r.sample_id for r in samples(engine, pilot.id)}
    rows, problems = [], []
    blank = 0
    for n, record in enumerate(reader, start=2):
        sample_id = (record.get("sample_id") or "").strip()
        label = (record.get("label") or "").strip()
        if not label and sample_id in known:  # a sample of the exported template not labelled (yet)
            blank += 1
            continue
        annotator = (record.get("annotator") or "").strip() or default_annotator
        if record.get("pilot") and record["pilot"].strip() not in ("", pilot.name):
            problems.append(f"row {n}: pilot {record['pilot']!r} is not {pilot.name!r}")
        if sample_id not in known:
            problems.append(f"row {n}: sample {sample_id!r} is not in pilot {pilot.name!r}")
        if label not in LABEL_VALUES:
            problems.append(f"row {n}: label {label!r} is not one of {', '.join(LABEL_VALUES)}")
        if not annotator:
            problems.append(f"row {n}: no annotator (add the column or pass --annotator)")
        try:
            words = json.loads(record.get("ungrounded_words") or "[]")
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise ValueError
        except ValueError:
            problems.append(f"row {n}: ungrounded_words must be a JSON list of words")
            words = []
        rows.append((sample_id, annotator, label, words, (record.get("note") or "").strip() or None))
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise PilotError("nothing imported: " + "; ".join(problems[:10]) + more)
    with Session(engine) as s, s.begin():
        for sample_id, annotator, label, words, note in rows:
            _upsert(s, pilot.id, sample_id, annotator, label, words, note)
    return ImportResult(len(rows), sorted({r[1] for r in rows}), blank)


def sample_details(lake: Lake, sample_ids: list[str], *, vis_model: str | None, segment: str, blob_root) -> dict[str, dict[str, Any]]:
    """What a labeller needs to see per sample: question, answer, image files, OCR text and the words the
    VLM looked at least (lowest A(t) first)."""
    out: dict[str, dict[str, Any]] = {}
    for r in samples_view.samples_with_images(lake, sample_ids):
        out[r["sample_id"]] = {"task": r["task"], "question": r["question"], "answer": r["answer"], "title": r["item_text"], "category": r["category"],
                               "images": [str(as_blobs(blob_root).local(b, missing_ok=True)) for b in r["blob_paths"]], "ocr": r["ocr_texts"], "weakest": []}
    marks = ", ".join("?" for _ in sample_ids)
    if vis_model and sample_ids:
        for sid, words, scores in lake.fetchall(
            "SELECT subject_id, any_value(words), any_value(word_scores) FROM token_scores WHERE subject_kind = 'sample' "
            f"AND model_id = ? AND segment = ? AND subject_id IN ({marks}) GROUP BY subject_id",
            [vis_model, segment, *sample_ids],
        ):
            try:
                pairs = [(w, float(v)) for w, v in zip(json.loads(words), json.loads(scores)) if v is not None and any(ch.isalnum() for ch in str(w))]  # words, not punctuation
            except (TypeError, ValueError):
                continue
            if sid in out:
                out[sid]["weakest"] = sorted(pairs, key=lambda p: p[1])[:5]
    return out


# ---- who labels what: assignments, locks, guidelines ----------------------------------------------------
def assign(engine: Engine, pilot_id: int, annotators: Iterable[str], overlap: int = 1) -> dict[str, int]:
    """Give each of the pilot's samples to ``overlap`` of ``annotators`` (Argilla's "minimum submitted"),
    spread evenly: sample k goes to annotators k*overlap ... k*overlap + overlap - 1 (modulo their number),
    so every annotator gets the same number within one and every pair of annotators shares samples (what
    agreement is measured on). Replaces the pilot's earlier assignments; labels already given stay.
    Returns {annotator: samples assigned}."""
    people = list(dict.fromkeys(a.strip() for a in annotators if a and a.strip()))
    if not people:
        raise PilotError("name the annotators to assign (--annotators ann,bob)")
    if not 1 <= overlap <= len(people):
        raise PilotError(f"each sample can be labelled by 1 to {len(people)} of these {len(people)} annotator(s), not {overlap}")
    order = [x.sample_id for x in samples(engine, pilot_id)]
    now = _now()
    given = {a: 0 for a in people}
    with Session(engine) as s, s.begin():
        s.execute(delete(PilotAssignment).where(PilotAssignment.pilot_id == pilot_id))
        for k, sid in enumerate(order):
            for j in range(overlap):
                who = people[(k * overlap + j) % len(people)]
                s.add(PilotAssignment(pilot_id=pilot_id, sample_id=sid, annotator=who, assigned_at=now))
                given[who] += 1
        pilot = s.get(Pilot, pilot_id)
        pilot.config = {**(pilot.config or {}), "overlap": overlap, "annotators": people}
    return given


def assignments(engine: Engine, pilot_id: int) -> dict[str, set[str]]:
    """{annotator: the samples assigned to them}; empty when the pilot has none (everyone labels everything)."""
    out: dict[str, set[str]] = {}
    with Session(engine) as s:
        for sid, who in s.execute(select(PilotAssignment.sample_id, PilotAssignment.annotator).where(PilotAssignment.pilot_id == pilot_id)):
            out.setdefault(who, set()).add(sid)
    return out


def queue(engine: Engine, pilot_id: int, annotator: str) -> list[str]:
    """The samples ``annotator`` is to label, in the pilot's order: those assigned to them, or every sample
    when the pilot has no assignments."""
    order = [x.sample_id for x in samples(engine, pilot_id)]
    given = assignments(engine, pilot_id)
    if not given:
        return order
    mine = given.get(annotator, set())
    return [sid for sid in order if sid in mine]


def progress(engine: Engine, pilot_id: int) -> list[tuple[str, int, int]]:
    """(annotator, samples to label, labelled of those) for everyone assigned or with a label."""
    given = assignments(engine, pilot_id)
    everyone = len(samples(engine, pilot_id))
    done: dict[str, set[str]] = {}
    for row in labels(engine, pilot_id):
        done.setdefault(row.annotator, set()).add(row.sample_id)
    people = sorted(set(given) | set(done))
    return [(a, len(given[a]) if given else everyone, len(done.get(a, set()) & given[a]) if given else len(done.get(a, set()))) for a in people]


LOCK_SECONDS = 120  # a sample on an annotator's screen is kept from others this long (renewed while shown)


def claim(engine: Engine, pilot_id: int, sample_id: str, annotator: str, seconds: int = LOCK_SECONDS) -> str | None:
    """Take (or renew) ``annotator``'s lock on a sample they have on screen, dropping their locks on the
    pilot's other samples (one reads one sample at a time: the one before is free again); returns None, or
    the name of the other annotator whose unexpired lock holds it (then nothing changes)."""
    now = _now()
    with Session(engine) as s, s.begin():
        row = s.scalar(select(PilotLock).where(PilotLock.pilot_id == pilot_id, PilotLock.sample_id == sample_id).with_for_update())
        if row is not None and row.annotator != annotator and _aware(row.expires_at) > now:
            return row.annotator
        s.execute(delete(PilotLock).where(PilotLock.pilot_id == pilot_id, PilotLock.annotator == annotator, PilotLock.sample_id != sample_id))
        until = now + timedelta(seconds=seconds)
        if row is None:
            s.add(PilotLock(pilot_id=pilot_id, sample_id=sample_id, annotator=annotator, expires_at=until))
        else:
            row.annotator, row.expires_at = annotator, until
    return None


def release(engine: Engine, pilot_id: int, annotator: str) -> None:
    """Drop every lock ``annotator`` holds in the pilot (they moved on, or labelled it)."""
    with Session(engine) as s, s.begin():
        s.execute(delete(PilotLock).where(PilotLock.pilot_id == pilot_id, PilotLock.annotator == annotator))


def locked_by_others(engine: Engine, pilot_id: int, annotator: str) -> dict[str, str]:
    """{sample: who has it on screen} for the unexpired locks of other annotators."""
    now = _now()
    with Session(engine) as s:
        rows = s.execute(select(PilotLock.sample_id, PilotLock.annotator, PilotLock.expires_at).where(
            PilotLock.pilot_id == pilot_id, PilotLock.annotator != annotator)).all()
    return {sid: who for sid, who, until in rows if _aware(until) > now}


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)  # SQLite hands timestamps back without their zone


def set_guidelines(engine: Engine, pilot_id: int, text: str) -> None:
    """What annotators are told before they label (shown on the Pilot page and by `vitpro pilot label`)."""
    with Session(engine) as s, s.begin():
        pilot = s.get(Pilot, pilot_id)
        pilot.config = {**(pilot.config or {}), "guidelines": (text or "").strip()}
