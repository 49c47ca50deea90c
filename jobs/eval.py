"""The evaluation job's spec (train queue): a model, or a model plus a trained adapter, on a snapshot's
held-out products; the benchmarks, in-context examples, the judge and the baseline to report against."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.benchmarks import BENCHMARKS
from trainer.config import TrainConfig

from .names import check_folder_name, check_fresh_folder
from .registry import JobSpec, register


@register("eval")
@dataclass(frozen=True)
class EvalJob(JobSpec):
    """``out`` becomes the evaluation's folder: refused when it holds an earlier evaluation's files."""

    QUEUE = "train"
    CHOICES = {"benchmarks": tuple(BENCHMARKS)}

    name: str
    snapshot: str
    model: str
    out: str
    adapter: str | None = None
    benchmarks: list[str] | None = None
    config: TrainConfig | None = None
    k_shot: int = 0
    examples: list[str] | None = None
    judge: dict[str, Any] | None = None
    baseline: str | None = None
    limit: int | None = None

    def params(self) -> dict[str, Any]:
        from curation.vlm import check_model_folder

        check_folder_name(self.name, "an evaluation name")
        benchmarks = list(dict.fromkeys(self.benchmarks or ["objective", "attributes"]))
        unknown = [b for b in benchmarks if b not in BENCHMARKS]
        if unknown:
            raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; benchmarks: {', '.join(BENCHMARKS)}")
        if "generative" in benchmarks and not self.judge:
            raise ValueError("the generative benchmark needs an LLM judge: give --judge-url (an OpenAI-compatible chat-completions server)")
        if self.k_shot < 0:
            raise ValueError("k (in-context examples) must be 0 or more")
        check_model_folder(self.model)
        out = check_fresh_folder(self.out, "evaluation")
        return {"name": self.name, "snapshot": self.snapshot, "model": str(self.model), "adapter": self.adapter, "benchmarks": benchmarks,
                "config": (self.config or TrainConfig()).to_dict(), "k_shot": int(self.k_shot), "examples": list(self.examples or []),
                "judge": self.judge, "baseline": self.baseline, "limit": self.limit, "out": str(out)}
