"""The calibration job's spec (cpu queue): a logistic regression over the grounding signals, fitted on a
pilot's labels, written as ``grounded_p`` for every sample that has the signals (curation/calibration.py)."""
from __future__ import annotations

from dataclasses import dataclass

from config.fields import param

from .registry import JobSpec, job_kind

SIGNALS = ("vis_attn", "vis_gain", "blind_logp", "judge_yes", "clip_score")


@job_kind("calibrate")
@dataclass(frozen=True)
class CalibrateJob(JobSpec):
    QUEUE = "cpu"

    pilot: str = param(help="The pilot whose labels the fit learns from (its VLM and CLIP model give the signals).")
    signals: list[str] = param(factory=lambda: list(SIGNALS), choices=SIGNALS,
                               help="The signals to combine (those never stored for the pilot's models are left out, and said); "
                                    "a sample without one of them gets no grounded_p.")
    folds: int = param(5, min=2, max=20, help="Cross-validation folds for the combined score's AUC.")
    seed: int = param(0, min=0, help="The folds' shuffle.")
