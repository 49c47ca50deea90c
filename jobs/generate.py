"""The generation job's spec: the backend (an OpenAI-compatible server, a local model, or the rule-based
templates), the tasks and how many pairs. API and template backends run on the ``cpu`` queue, a local
model on ``gpu``."""
from __future__ import annotations

from dataclasses import dataclass, replace

from config.fields import FieldError, about, check, param
from curation.generation import TASKS, HFLocalBackend, OpenAIChatBackend

from .registry import JobSpec, job_kind

BACKENDS = ("openai", "hf", "template")
DEFAULT_ITEMS_PER_UNIT = 25  # an LLM's: a unit is a retry's and a cancel's granularity, and it waits on its answers
# Templates need no model: a unit is cheap, and each unit is one DuckLake commit that every later read of the
# store pays for (bench/scale.py: 3,000 items took 53 s in 25-item units and 7.5 s in 250-item ones).
TEMPLATE_ITEMS_PER_UNIT = 250


@job_kind("generate")
@dataclass(frozen=True)
class GenerateJob(JobSpec):
    backend: str = param(choices=BACKENDS, help="openai: any OpenAI-compatible server (vLLM, TGI, hosted); hf: a local causal LM (gpu queue); "
                                                "template: no LLM, from catalog fields.")
    tasks: list[str] = param(factory=lambda: list(TASKS), choices=TASKS, help="The paper's tasks to generate for.")
    openai: OpenAIChatBackend | None = param(None, help="The openai backend: the server's base URL, the model's name, concurrency, rate limit, ...")
    hf: HFLocalBackend | None = param(None, help="The hf backend: a local causal LM folder, its device and precision.")
    n_pairs: int = param(3, min=1, max=20, help="Pairs asked for per item and task.", label="Pairs per item and task")
    items_per_unit: int | None = param(None, min=1, help="Items per work unit (default: 250 with templates, 25 with an LLM).")
    template_path: str | None = param(None, flag="--template", help="Your own prompt template file.")
    examples_path: str | None = param(None, flag="--examples", help="Your own few-shot examples (JSON, per task).")
    kinds: list[str] | None = param(None, choices=("catalog", "feedback"), flag="--kind", help="Only items of these kinds.")
    limit: int | None = param(None, min=1, help="Only the first N items with images (by id): those done already are skipped, so the same "
                                                "command run twice generates (and pays) once; a larger N goes further.")
    cache: bool = param(True, flag="--cache/--no-cache", help="Reuse a stored answer to the same request (messages, model, sampling settings) "
                                                                "instead of paying for it again; new answers are stored either way.")
    batch: bool = param(False, help="openai: send each unit's requests through the server's Batch API (/v1/files, /v1/batches): about half "
                                     "the price at most providers and no rate limits, answered within the completion window.")
    batch_poll_s: float = param(30.0, min=0.05, help="openai --batch: seconds between two looks at a batch's status.")
    price_in: float | None = param(None, min=0, help="Price per million input (prompt) tokens: the job's cost and the projected cost of what remains.")
    price_out: float | None = param(None, min=0, help="Price per million output (completion) tokens.")
    price: str | None = param(None, help="A named price from your price table (prices.yaml in the store's home, or $VITPRO_PRICES_FILE): "
                                         "sets both prices.")
    currency: str = param("USD", help="The prices' currency (a named price takes its table's).")
    prompt_version: str = param("", derived=True, help="The prompt files' version (the template backend: its templates'); samples carry it.")
    model_id: str = param("", derived=True, help="The backend's model id; samples carry it.")

    def queue(self) -> str:
        return "gpu" if self.backend == "hf" else "cpu"

    def make_backend(self):
        """The backend object this job generates with."""
        from curation.generation import TemplateBackend

        return {"openai": self.openai, "hf": self.hf}.get(self.backend) or TemplateBackend()

    def resolve(self) -> "GenerateJob":
        from curation.generation import PromptTemplate, TemplateBackend

        check(self)
        if not self.tasks:
            raise FieldError("tasks", f"no task given; tasks: {', '.join(TASKS)}")
        try:
            template = PromptTemplate.load(self.template_path, self.examples_path)  # a broken template fails here, not in a worker
        except (OSError, ValueError) as exc:
            raise about("examples_path" if self.examples_path and "example" in str(exc).lower() else "template_path", exc) from None
        if self.backend == "openai" and self.openai is None:
            raise FieldError("openai", "the openai backend needs the server's base URL and the model's name")
        if self.batch and self.backend != "openai":
            raise FieldError("batch", "the Batch API is an OpenAI-compatible server's: use it with the openai backend")
        if self.backend == "hf" and self.hf is None:
            raise FieldError("hf", "the hf backend needs a local causal LM folder")
        prices = self.prices()
        backend = self.make_backend()
        per_unit = self.items_per_unit or (TEMPLATE_ITEMS_PER_UNIT if self.backend == "template" else DEFAULT_ITEMS_PER_UNIT)
        return replace(self, tasks=list(dict.fromkeys(self.tasks)), items_per_unit=per_unit,
                       openai=self.openai if self.backend == "openai" else None, hf=self.hf if self.backend == "hf" else None,
                       prompt_version=template.version if self.backend != "template" else TemplateBackend().model_id,
                       model_id=backend.model_id, price_in=prices.input_per_million if prices else None,
                       price_out=prices.output_per_million if prices else None, currency=prices.currency if prices else self.currency)

    def prices(self):
        """The job's prices (curation/generation/usage.Prices), None without any: a named price is looked up in
        the price table now, so the job records the numbers it was launched with."""
        from curation.generation.usage import PriceError, Prices, named_price, prices_file

        if (self.price_in is None) != (self.price_out is None):
            raise FieldError("price_out" if self.price_out is None else "price_in", "give both prices, input and output (per million tokens)")
        if self.price_in is not None:  # given, or a named price looked up when the job was launched (the name kept beside it)
            return Prices(float(self.price_in), float(self.price_out), self.price or "", self.currency)
        if self.price:
            from config.settings import load_settings

            try:
                return named_price(self.price, prices_file(home=load_settings().home))
            except PriceError as exc:
                raise FieldError("price", str(exc)) from None
        return None
