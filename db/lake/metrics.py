"""The stats the scores table holds, declared once: what each one is about, whether it is kept per
segment, and what a page calls it. Filters, summaries and pages read their choices from here; a new
stat is one line below, not a name to teach every reader."""
from __future__ import annotations

from dataclasses import dataclass

from config.registry import Registry

SUBJECTS = ("item", "image", "sample")


@dataclass(frozen=True)
class Metric:
    name: str
    subject: str  # what a filter reads it for: item (CLIPScore), image (OCR), sample (VisAttnScore)
    label: str  # what a page calls it
    has_segment: bool = False  # stored per segment (answer | question | text); '' for the others
    # an image stat's value for a sample with several images: the largest (one readable label is enough), or
    # the smallest (a duplicate group's number: groups of two or more are numbered before images alone)
    per_sample: str = "max"


# "stat" in the lookup error ("unknown stat 'x'; stats are: ..."): what filters and pages call them
METRICS: Registry[Metric] = Registry("stat", key=lambda m: m.name, verb="declared")


def declare(name: str, subject: str, label: str, *, has_segment: bool = False, per_sample: str = "max") -> Metric:
    if subject not in SUBJECTS:
        raise ValueError(f"a metric is about one of {', '.join(SUBJECTS)}, not {subject!r}")
    if per_sample not in ("max", "min"):
        raise ValueError(f"an image stat's value per sample is its max or min over the images, not {per_sample!r}")
    return METRICS.add(Metric(name, subject, label, has_segment, per_sample))


declare("vis_attn", "sample", "VisAttnScore", has_segment=True)
declare("vis_attn_mass", "sample", "image attention mass", has_segment=True)
declare("vis_attn_nosink", "sample", "VisAttnScore without attention sinks", has_segment=True)
declare("vis_attn_dist", "sample", "VisAttnScore, distance-corrected", has_segment=True)
declare("text_tokens", "sample", "text tokens", has_segment=True)
# visual information gain (curation/visual_gain.py): mean over the segment's tokens of log p with the image
# minus log p without it; and the two means themselves (blind_logp: how guessable the text is unseen)
declare("vis_gain", "sample", "visual information gain", has_segment=True)
declare("blind_logp", "sample", "log-probability without the image", has_segment=True)
declare("with_logp", "sample", "log-probability with the image", has_segment=True)
# the VLM judge (curation/judge.py): p(yes) / (p(yes) + p(no)) to "does the image show what the answer says?"
declare("judge_yes", "sample", "VLM judge: probability of yes", has_segment=True)
# the signals combined by a logistic regression fitted on a pilot's labels (curation/calibration.py); its
# model id names the pilot ("pilot:NAME")
declare("grounded_p", "sample", "calibrated probability of grounded")
declare("clip_score", "item", "CLIPScore")
declare("clip_cosine", "item", "CLIP cosine")
declare("ocr_chars", "image", "OCR characters")
declare("ocr_boxes", "image", "OCR boxes")
# near-duplicate images (the dedup job, curation/near_dups.py); model id "METHOD:THRESHOLD", e.g. "phash:12".
# dup_group numbers groups of two or more members first (largest first), then every image alone; dup_size
# counts a group's (item, image) members; dup_rank is a sample's rank among the samples of its task whose
# first image is in the same group, best first by the stat the job was given (dup_rank == 1 keeps one each).
# A sample of several images takes the lowest group number (a group of two or more before an image alone)
# and the largest group size.
declare("dup_group", "image", "near-duplicate group", per_sample="min")
declare("dup_size", "image", "near-duplicate group size")
declare("dup_rank", "sample", "rank within its near-duplicate group")
# the embedding map and diversity (the clusters and map jobs, over the CLIP image embeddings the CLIPScore job
# stores; model id names the embedding model and the method): a k-means cluster number per image; uniqueness,
# 1 - the mean cosine similarity to the image's nearest neighbours (0: a copy of others, up to 1 and beyond: alone);
# map_x / map_y, the image's place on the 2-D map (a projection of the embeddings)
declare("cluster", "image", "k-means cluster", per_sample="min")
declare("uniqueness", "image", "uniqueness (distance to nearest neighbours)")
declare("map_x", "image", "map x")
declare("map_y", "image", "map y")


def get(name: str) -> Metric:
    """The declared metric; KeyError naming the known ones otherwise (config.registry.UnknownName)."""
    return METRICS[name]


def default_segment(name: str, segment: str = "answer") -> str:
    """The segment a condition or query without one means: ``segment`` for a per-segment stat, '' otherwise."""
    return segment if get(name).has_segment else ""


def label(name: str) -> str:
    """What a page calls the stat (its name where it is not declared)."""
    found = METRICS.get(name)
    return found.label if found else name
