"""The evaluation job's spec (train queue): a model, or a model plus a trained adapter, on a snapshot's
held-out products; the benchmarks, in-context examples, the judge and the baseline to report against, and
how items are run (how many at once, how the objective benchmark is answered)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.benchmarks import BENCHMARKS, EVAL_BATCH_SIZE, OBJECTIVE_MODES
from trainer.config import TrainConfig

from .names import check_folder_name, check_fresh_folder
from .registry import JobSpec, register


@register("eval")
@dataclass(frozen=True)
class EvalJob(JobSpec):
    """``out`` becomes the evaluation's folder: refused when it holds an earlier evaluation's files."""

    QUEUE = "train"
    CHOICES = {"benchmarks": tuple(BENCHMARKS), "objective_mode": OBJECTIVE_MODES}

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
    batch_size: int = EVAL_BATCH_SIZE  # items generated at once (left-padded; the same greedy answers as one at a time)
    objective_mode: str = "generate"  # the objective benchmark: generate-and-parse, or "logprob" (P(yes) vs P(no))

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
        check_eval_running(self.batch_size, self.objective_mode)
        check_model_folder(self.model)
        out = check_fresh_folder(self.out, "evaluation")
        return {"name": self.name, "snapshot": self.snapshot, "model": str(self.model), "adapter": self.adapter, "benchmarks": benchmarks,
                "config": (self.config or TrainConfig()).to_dict(), "k_shot": int(self.k_shot), "examples": list(self.examples or []),
                "judge": self.judge, "baseline": self.baseline, "limit": self.limit, "out": str(out),
                "batch_size": int(self.batch_size), "objective_mode": self.objective_mode}


def check_eval_running(batch_size: int, objective_mode: str) -> None:
    """How the items are run (shared with the ablation): a batch size of 1 or more, a known objective mode."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"the batch size (items generated at once) must be a whole number of 1 or more, not {batch_size!r}")
    if objective_mode not in OBJECTIVE_MODES:
        raise ValueError(f"the objective mode must be one of {', '.join(OBJECTIVE_MODES)}, not {objective_mode!r}")
