"""The evaluation job's spec (train queue): a model, or a model plus a trained adapter, on a snapshot's
held-out products; the benchmarks, in-context examples, the judge and the baseline to report against, and
how items are run (how many at once, how the objective benchmark is answered)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from config.fields import FieldError, about, check, param
from db.storage.locations import check_fresh
from trainer.benchmarks import BENCHMARKS, EVAL_BATCH_SIZE, OBJECTIVE_MODES
from trainer.config import TrainConfig

from .names import check_folder_name
from .registry import JobSpec, job_kind


def check_model(model: str) -> None:
    from curation.vlm import check_model_folder

    try:
        check_model_folder(model)
    except ValueError as exc:
        raise about("model", exc) from None


def check_name_and_out(name: str, out: str, what: str) -> str:
    try:
        check_folder_name(name, what)
    except ValueError as exc:
        raise about("name", exc) from None
    try:
        return check_fresh(out, "evaluation")
    except ValueError as exc:
        raise about("out", exc) from None


@job_kind("eval")
@dataclass(frozen=True)
class EvalJob(JobSpec):
    """``out`` becomes the evaluation's folder: refused when it holds an earlier evaluation's files."""

    QUEUE = "train"

    name: str = param(help="The evaluation's name (its folder, what a later evaluation's baseline names).", label="Evaluation name")
    snapshot: str = param(help="The snapshot whose held-out products are evaluated.")
    model: str = param(help="The base VLM checkpoint folder.", label="Base VLM")
    out: str = param(help="The evaluation's folder or s3:// prefix (predictions, results.json).")
    adapter: str | None = param(None, help="A training run's name or an adapter folder (default: the base model alone).")
    benchmarks: list[str] | None = param(factory=lambda: ["objective", "attributes"], choices=BENCHMARKS, flag="--benchmark",
                                  help="objective (yes/no), attributes (exact match), generative (needs a judge).")
    config: TrainConfig | None = param(factory=TrainConfig, help="How the model is loaded and fed (device, dtype, OCR, resolution, holdout, seed).")
    k_shot: int = param(0, min=0, flag="--k", help="In-context examples from the training products per item.")
    examples: list[str] | None = param(factory=list, flag="--example", help="Chosen in-context examples (sample ids) instead of drawn ones.")
    judge: dict[str, Any] | None = param(None, help="The generative benchmark's LLM judge: an OpenAI-compatible backend's settings.")
    baseline: str | None = param(None, help="An earlier evaluation to report against.", label="Report against")
    limit: int | None = param(None, min=1, help="At most this many items per benchmark.")
    batch_size: int = param(EVAL_BATCH_SIZE, min=1, label="Items generated at once",
                            help="Left-padded prompts run together; greedy answers are the same as one at a time.")
    objective_mode: str = param("generate", choices=OBJECTIVE_MODES, label="Objective yes/no answered by",
                                help="generate: the model's answer, parsed (the paper's). logprob: P(yes) against P(no) of the first answer token.")

    def resolve(self) -> "EvalJob":
        check(self)
        benchmarks = list(dict.fromkeys(self.benchmarks or ["objective", "attributes"]))
        if not benchmarks:
            raise FieldError("benchmarks", f"no benchmark given; benchmarks: {', '.join(BENCHMARKS)}")
        if "generative" in benchmarks and not self.judge:
            raise FieldError("judge", "the generative benchmark needs an LLM judge: an OpenAI-compatible chat-completions server")
        check_model(self.model)
        out = check_name_and_out(self.name, self.out, "an evaluation name")
        return replace(self, benchmarks=benchmarks, model=str(self.model), out=out, config=self.config or TrainConfig(), examples=list(self.examples or []))
