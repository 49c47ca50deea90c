"""The dedup job's spec (cpu queue): perceptual hashes of the stored images not hashed yet, then the near-duplicate
groups of every hashed image and each sample's rank within its group, as stats (``dup_group``, ``dup_size``,
``dup_rank``; model id ``METHOD:THRESHOLD``)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import FieldError, check, param
from curation.dup_keys import grouping_id, method_label  # noqa: F401  (method_label: the handler's and the reports' key)

from .registry import JobSpec, job_kind

HASHES = ("dhash", "phash")  # curation.near_dups.METHODS, named here so the command line need not import numpy and scipy
METHODS = (*HASHES, "clip")  # clip: the CLIP image vectors the CLIPScore job stored, by cosine
# Bits, per hash, from bench/near_dups.py (1,445 real photos) and bench/dedup_job.py (chance pairs at scale):
# dhash at 10 bits keeps recall 0.952 at precision 0.993 on the photos, and its chance pairs stay few up to
# ~240,000 images (uniform hashes: ~5e-9 n^2), where 12 bits' (~1.15e-7 n^2) outnumber the real groups past a
# few hundred thousand; phash at 10 bits loses too many crops (recall 0.945), so it keeps 12.
DEFAULT_THRESHOLDS = {"dhash": 10, "phash": 12}

@job_kind("dedup")
@dataclass(frozen=True)
class DedupJob(JobSpec):
    QUEUE = "cpu"

    # dhash, not curation.near_dups' phash: on the bench's 1,445 photos the two are alike (12 bits: dhash recall 0.985 at
    # precision 0.986, phash 0.977 at 0.984), but on catalog shots on a white background phash moves far more: an ABO
    # photo resized by 2/3 and saved at JPEG quality 60 is 14 bits from its original by phash, 0 by dhash
    method: str = param("dhash", choices=METHODS,
                        help="Perceptual hash: dhash (row gradients, the default: steadier on white-background catalog shots) or "
                             "phash (DCT). On 1,445 real photos at 12 bits: dhash recall 0.985 at precision 0.986, phash 0.977 at 0.984; "
                             "at 10 bits (dhash's default): dhash 0.952 at 0.993.")
    threshold: int | None = param(None, min=0, max=32,
                                  help="Most differing bits of 64 for two photos to be near-duplicates; default: 10 for dhash (recall 0.952 at "
                                       "precision 0.993 on real photos, and few chance pairs up to ~240,000 images), 12 for phash. Raise it on "
                                       "a small catalog to catch more crops; never on a large store: chance pairs grow with its square.")
    min_cosine: float = param(0.95, min=-1.0, max=1.0, label="Least cosine (clip)",
                              help="clip: two photos whose CLIP image vectors have at least this cosine are near-duplicates by meaning "
                                   "(SemDeDup's order of magnitude for ViT-B models; a demo model's cosines mean nothing).")
    embedding_model: str = param("", help="clip: the CLIP model whose stored vectors are compared (`vitpro score clip` stores them); "
                                          "default: the model that embedded the most images.")
    rank_by: str = param("vis_attn", help="The stat that ranks the samples of a task within a group (dup_rank 1 = the highest); "
                                          "'' ranks by sample id. A sample or item stat, e.g. vis_attn, clip_score, grounded_p.")
    batch_size: int = param(256, min=1, label="Images per unit", help="Images hashed per work unit.")
    grouping: str = param("", derived=True, help="The stats' model id: METHOD:THRESHOLD.")

    def resolve(self) -> "DedupJob":
        from db.lake import metrics

        check(self)
        if self.rank_by:
            found = metrics.METRICS.get(self.rank_by)
            if found is None:
                raise FieldError("rank_by", f"unknown stat {self.rank_by!r}; stats are: {', '.join(m for m in metrics.METRICS)}")
            if found.subject not in ("sample", "item") or self.rank_by == "dup_rank":
                raise FieldError("rank_by", f"{self.rank_by} is an {found.subject} stat; rank samples by a sample or item stat")
        threshold = self.threshold if self.threshold is not None or self.method == "clip" else DEFAULT_THRESHOLDS[self.method]
        return replace(self, threshold=threshold, grouping=grouping_id(self.method, self.min_cosine if self.method == "clip" else threshold))

    def check_store(self, settings) -> None:
        """clip reads stored vectors: without any (or without the named model's) the job is refused before it is queued."""
        if self.method == "clip":
            from .clusters import embedding_check

            embedding_check(settings, self.embedding_model)
