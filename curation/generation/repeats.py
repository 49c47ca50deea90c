"""The repetition rule, held when samples are written (``report.py`` measures it afterwards).

The rule (``report.py``): within a task, an answer that is not a yes/no verdict may be given for at most
``MAX_REPEAT_SHARE`` (2%) of the task's samples about different products. Before a unit writes its samples,
:func:`hold_to_rule` keeps each pair that leaves the rule holding and drops the others, counting them.

How it is held, and why:

* **Products, not samples**: an answer already given for a product may be given again for that product (its
  catalog photo and each complaint's photo rightly share its facts); only a *new* product for an answer counts.
* **One product is never a repeat**: the cap for an answer is ``max(floor, share × samples)`` products with
  ``floor = 1``, so a strict share at the start of a job (a handful of samples, 2% of them below one product)
  drops no answer given for a single product; a second product for the same answer needs 100 samples in
  the task, a third 150. With ``floor = 1`` this is exactly the report's rule (which counts an answer only
  when more than one product shares it), so a written store passes ``vitpro generate report``.
* **Samples so far, not the job's final count**: the task's samples are those stored by earlier units plus
  the ones this unit keeps. The count only grows while a job runs, so what holds when a unit writes holds at
  the end. The price is order: an answer shared by products in the first units of a job is held to a smaller
  cap than it would be at the end. Only answers shared across products are affected, which is what the rule
  is against; a product's own words (titles, quotes) are not shared.
* **Whose samples count**: the products that already have the answer are counted over every backend's
  samples of the task, and the task's samples over this backend's only, so the rule holds both in the
  report of this backend and in the report of all samples together.
* **The same answer text**: answers are compared as stored, as the report compares them.
* **Yes/no verdicts** (a sample with a ``label``) are exempt, as in the report.
* Units that run at the same moment each read the store before either writes: two of them may each add a
  product to the same answer. The report, run after the job, stays the check of the whole store.

A dropped pair is a reject with the reason ``repeated_answer`` (with its question and answer), so it can be
found; its (item, task) stays done, and a rerun does not ask for it again.

Pure functions: the store read is ``db.reads.generation_reads.answer_products``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, NamedTuple, Sequence

from .parse import Reject
from .report import MAX_REPEAT_SHARE

REASON = "repeated_answer"


@dataclass(frozen=True)
class RepeatRule:
    """The repetition rule as the writer holds it."""

    max_share: float = MAX_REPEAT_SHARE  # of the task's samples, the products one answer may be given for
    floor: int = 1  # products an answer may always be given for, however few samples the task has

    def allowed_products(self, task_samples: int) -> int:
        """How many different products one answer may be given for in a task of ``task_samples`` samples."""
        # the epsilon keeps 0.02 * 150 = 3.0000000000000004 (and its kin below) on the right integer
        return max(self.floor, int(self.max_share * task_samples + 1e-9))


@dataclass(frozen=True)
class Candidate:
    """A pair a unit is about to write: its task, answer, whether it is a yes/no verdict, and its product
    (the product key the report counts: the complaint's product_ref, else the item's external id or id)."""

    task: str
    answer: str
    product: str
    verdict: bool = False


class StoredAnswer(NamedTuple):
    """What the store holds of one (task, answer): how many products it is given for (every backend), and
    which of the unit's products are among them. A plain ``(products, known)`` tuple is one too."""

    products: int
    known: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Dropped:
    index: int  # the candidate's place in the list given
    reason: str  # why, in words: the products it would make and the cap


@dataclass
class Held:
    kept: list[int] = field(default_factory=list)  # indexes of the candidates to write, in order
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)


def hold_to_rule(candidates: Sequence[Candidate], stored: Mapping[tuple[str, str], StoredAnswer], task_samples: Mapping[str, int],
                 rule: RepeatRule = RepeatRule()) -> Held:
    """The candidates to keep and those to drop so that no non-verdict answer is given for more products than
    ``rule`` allows. ``stored``: (task, answer) -> what the store holds of it (absent: nothing);
    ``task_samples``: this backend's samples per task already stored. Earlier candidates are kept first."""
    by_task: dict[str, list[int]] = {}
    for k, c in enumerate(candidates):
        by_task.setdefault(c.task, []).append(k)
    dropped: dict[int, str] = {}
    for task, indexes in by_task.items():
        before = task_samples.get(task, 0)
        out: dict[int, str] = {}
        while True:
            # every drop makes the task smaller and the cap no larger; a smaller cap drops a superset, so this settles
            samples = before + len(indexes) - len(out)
            again = _over_cap([(k, candidates[k]) for k in indexes], stored, rule.allowed_products(samples), samples)
            settled = again.keys() == out.keys()
            out = again
            if settled:
                break
        dropped.update(out)
    return Held([k for k in range(len(candidates)) if k not in dropped], [Dropped(k, why) for k, why in sorted(dropped.items())])


def _over_cap(candidates: list[tuple[int, Candidate]], stored: Mapping[tuple[str, str], StoredAnswer], cap: int, samples: int) -> dict[int, str]:
    """One pass in order: each non-verdict candidate that would give its answer to one product more than ``cap``."""
    added: dict[str, set[str]] = {}  # answer -> products this unit gives it for
    out: dict[int, str] = {}
    for k, c in candidates:
        if c.verdict:
            continue
        have, known = stored.get((c.task, c.answer), StoredAnswer(0))
        mine = added.setdefault(c.answer, set())
        if c.product in known or c.product in mine:
            continue  # the same product again: consistency, not repetition
        products = have + len(mine) + 1
        if products > cap:
            out[k] = f"its answer would be given for {products} products; {samples} sample(s) of the task allow {cap}"
        else:
            mine.add(c.product)
    return out


def hold_outcome(outcome, product_of: Mapping[str, str], stored: Mapping[tuple[str, str], StoredAnswer], task_samples: Mapping[str, int],
                 rule: RepeatRule = RepeatRule()):
    """:func:`hold_to_rule` over a :class:`GenerationOutcome`: the outcome with the dropped samples removed,
    each a ``repeated_answer`` reject, and its (item, task) still done with its samples counted down; and
    the number dropped."""
    candidates = [Candidate(s.task, s.answer, product_of.get(s.item_id, s.item_id), s.label is not None) for s in outcome.samples]
    held = hold_to_rule(candidates, stored, task_samples, rule)
    if not held.dropped:
        return outcome, 0
    less: dict[tuple[str, str], int] = {}
    rejects = list(outcome.rejects)
    for d in held.dropped:
        s = outcome.samples[d.index]
        less[(s.item_id, s.task)] = less.get((s.item_id, s.task), 0) + 1
        rejects.append((s.item_id, s.task, Reject(REASON, d.reason, s.question, s.answer), None))
    done = [(i, t, n - less.get((i, t), 0), r + less.get((i, t), 0)) for i, t, n, r in outcome.done]
    return replace(outcome, samples=[outcome.samples[k] for k in held.kept], rejects=rejects, done=done), held.n_dropped
