"""The aux stats job's spec (cpu queue): no parameters; OCR characters and boxes per image."""
from __future__ import annotations

from dataclasses import dataclass

from .registry import JobSpec, job_kind


@job_kind("aux_stats")
@dataclass(frozen=True)
class AuxStatsJob(JobSpec):
    QUEUE = "cpu"
