"""The generation job's spec: the backend (an OpenAI-compatible server, a local model, or the rule-based
templates), the tasks and how many pairs. API and template backends run on the ``cpu`` queue, a local
model on ``gpu``."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from curation.generation import TASKS, HFLocalBackend, OpenAIChatBackend

from .registry import JobSpec, register

DEFAULT_ITEMS_PER_UNIT = 25  # an LLM's: a unit is a retry's and a cancel's granularity, and it waits on its answers
# Templates need no model: a unit is cheap, and each unit is one DuckLake commit that every later read of the
# store pays for (bench/scale.py: 3,000 items took 53 s in 25-item units and 7.5 s in 250-item ones).
TEMPLATE_ITEMS_PER_UNIT = 250


@register("generate")
@dataclass(frozen=True)
class GenerateJob(JobSpec):
    QUEUE = "cpu"
    CHOICES = {"backend": ("openai", "hf", "template"), "tasks": tuple(TASKS)}

    backend: str
    tasks: list[str] | None = None
    openai: OpenAIChatBackend | None = None
    hf: HFLocalBackend | None = None
    n_pairs: int = 3
    items_per_unit: int | None = None  # default: TEMPLATE_ITEMS_PER_UNIT for templates, DEFAULT_ITEMS_PER_UNIT for an LLM
    template_path: str | None = None
    examples_path: str | None = None
    kinds: list[str] | None = None
    limit: int | None = None

    @classmethod
    def queue_for(cls, params: dict[str, Any]) -> str:
        return "gpu" if params["backend"] == "hf" else "cpu"

    def params(self) -> dict[str, Any]:
        from curation.generation import PromptTemplate, TemplateBackend

        backend = self.backend
        tasks = list(self.tasks or TASKS)
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
        template = PromptTemplate.load(self.template_path, self.examples_path)  # a broken template fails here, not in a worker
        per_unit = self.items_per_unit or (TEMPLATE_ITEMS_PER_UNIT if backend == "template" else DEFAULT_ITEMS_PER_UNIT)
        params: dict[str, Any] = {
            "backend": backend, "tasks": tasks, "n_pairs": self.n_pairs, "items_per_unit": per_unit, "template_path": self.template_path,
            "examples_path": self.examples_path, "prompt_version": template.version if backend != "template" else TemplateBackend().model_id,
            "kinds": self.kinds, "limit": self.limit,
        }
        if backend == "openai":
            if self.openai is None:
                raise ValueError("the openai backend needs --base-url and --model")
            params["openai"] = {k: v for k, v in asdict(self.openai).items() if k != "name"}
            params["model_id"] = self.openai.model_id
        elif backend == "hf":
            if self.hf is None:
                raise ValueError("the hf backend needs --model (a local causal LM folder)")
            params["hf"] = {k: v for k, v in asdict(self.hf).items() if k != "name"}
            params["model_id"] = self.hf.model_id
        elif backend == "template":
            params["model_id"] = TemplateBackend().model_id
        else:
            raise ValueError(f"unknown backend {backend!r}; use openai, hf or template")
        return params
