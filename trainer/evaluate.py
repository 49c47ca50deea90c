"""Running a model over an evaluation set, scoring it, and the LLM judge of the generative benchmark.

Latency is measured per item (seconds, as the paper reports it) and memory as the peak over the run: the
CUDA allocator's peak on a GPU, the process's resident-set peak (sampled) on a CPU.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from curation.prompt_layout import ocr_body
from curation.verdicts import parse_yes_no
from curation.vlm import Sample, SampleError, VLMAdapter

from .benchmarks import EvalItem, item_images, prompt_question
from .config import TrainConfig
from .data import load_images
from .metrics import attribute_exact_match, parse_attributes, per_task_metrics

JUDGE_PROMPT_VERSION = "judge-v1"
JUDGE_SYSTEM = (
    "You judge answers about product photos. You are given a question, the ground-truth answer and a model's "
    "prediction. The prediction matches when it states the same facts as the ground truth; wording may differ, "
    "missing or contradicting facts do not match."
)
JUDGE_USER = (
    "Question: {question}\nGround truth: {reference}\nPrediction: {prediction}\n\n"
    "Does the prediction match the ground truth? Reply with yes or no on the first line, then your reasoning."
)
MAX_NEW_TOKENS = {"objective": 4, "generative": 128, "attributes": 160}


@dataclass
class Prediction:
    item: EvalItem
    text: str | None
    seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.item.to_dict(), "prediction": self.text, "seconds": round(self.seconds, 4), "error": self.error}


class PeakMemory:
    """Peak memory over a block, in bytes: CUDA's allocator peak, else the sampled resident-set peak."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            proc = psutil.Process(os.getpid())
            self.peak = proc.memory_info().rss

            def sample():
                while not self._stop.wait(0.005):
                    self.peak = max(self.peak, proc.memory_info().rss)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            self.peak = int(torch.cuda.max_memory_allocated())
        else:
            self._stop.set()
            self._thread.join()
        return False


def load_for_eval(model_dir: str, *, adapter_dir: str | None, config: TrainConfig) -> VLMAdapter:
    """The base model, with a trained LoRA adapter on top when given; image options and 4-bit as for
    training (an ablation changes them one at a time)."""
    from .lora import load_for_training

    adapter = load_for_training(model_dir, config)
    if adapter_dir:
        from peft import PeftModel

        meta = Path(adapter_dir) / "training_config.json"
        if not (Path(adapter_dir) / "adapter_config.json").exists():
            raise FileNotFoundError(f"{adapter_dir} holds no trained adapter (adapter_config.json is missing)")
        if meta.exists():
            base = json.loads(meta.read_text()).get("base_model")
            if base and Path(base).resolve() != Path(model_dir).resolve() and base != model_dir:
                raise ValueError(f"the adapter was trained on {base}, not on {model_dir}")
        adapter.model = PeftModel.from_pretrained(adapter.model, adapter_dir).eval()
    return adapter


def generate(adapter: VLMAdapter, sample: Sample, max_new_tokens: int) -> str:
    import torch

    encoded = adapter.encode_prompt(sample)
    inputs = adapter.collate([encoded])
    with torch.inference_mode():
        out = adapter.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=adapter.tokenizer.pad_token_id, eos_token_id=adapter.stop_token_ids())
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    return adapter.tokenizer.decode(new, skip_special_tokens=True).strip()


def predict(adapter: VLMAdapter, items: list[EvalItem], benchmark: str, blob_root, *, ocr: bool,
            progress: Callable[[int], None] | None = None, check: Callable[[], None] | None = None) -> list[Prediction]:
    """The model's answer to every item; an item that cannot be run (unreadable image, too long) gets an
    error and no answer, and counts as wrong; the rest go on."""
    out: list[Prediction] = []
    for k, item in enumerate(items):
        if check is not None:
            check()
        started = time.perf_counter()
        try:
            images = load_images(blob_root, item_images(item))
            # the OCR texts are the item's own photos', which come after the in-context examples' photos
            own = len(item.blob_paths)
            text = ocr_body(item.ocr_texts, own, first=len(images) - own + 1) if ocr else ""
            sample = Sample(images, prompt_question(item, benchmark), "", text or None)
            answer = generate(adapter, sample, MAX_NEW_TOKENS[benchmark])
            out.append(Prediction(item, answer, time.perf_counter() - started))
        except (SampleError, OSError) as exc:
            out.append(Prediction(item, None, time.perf_counter() - started, getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"))
        if progress is not None:
            progress(k + 1)
    return out


# ---- scoring ------------------------------------------------------------------------------------------
def score_objective(predictions: list[Prediction]) -> dict[str, Any]:
    metrics = per_task_metrics([(p.item.task, p.item.reference, parse_yes_no(p.text)) for p in predictions])
    return {task: m.to_dict() for task, m in metrics.items()}


def score_attributes(predictions: list[Prediction]) -> dict[str, Any]:
    rows = [(parse_attributes(p.item.reference) or {}, parse_attributes(p.text)) for p in predictions]
    return attribute_exact_match(rows)


def judge_requests(predictions: list[Prediction]):
    from curation.generation.backends import GenRequest

    return [
        GenRequest(key=(p.item.item_id, "judge"), task="judge", context=None, messages=[
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_USER.format(question=p.item.question, reference=p.item.reference, prediction=p.text or "(no answer)")},
        ])
        for p in predictions
    ]


def judge(predictions: list[Prediction], backend) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ask the judge about every prediction; (scores per task and overall, verdicts with reasoning).
    A judge answer that says neither yes nor no, or no answer at all, counts as "no match" and is
    recorded as unparsed: a broken judge must not make a model look better."""
    responses = backend.complete(judge_requests(predictions))
    verdicts, per_task = [], {}
    for p, r in zip(predictions, responses):
        first, _, rest = (r.text or "").strip().partition("\n")
        verdict = parse_yes_no(first) if r.text else None
        if verdict is None and r.text:
            verdict = parse_yes_no(r.text)
        verdicts.append({"item_id": p.item.item_id, "task": p.item.task, "verdict": verdict, "reasoning": (rest or first).strip()[:2000],
                         "error": r.error})
        bucket = per_task.setdefault(p.item.task, {"n": 0, "matched": 0, "unparsed": 0})
        bucket["n"] += 1
        bucket["matched"] += verdict == "yes"
        bucket["unparsed"] += verdict is None
    overall = {"n": sum(b["n"] for b in per_task.values()), "matched": sum(b["matched"] for b in per_task.values()),
               "unparsed": sum(b["unparsed"] for b in per_task.values())}
    scores = {t: {**b, "accuracy": b["matched"] / b["n"] if b["n"] else 0.0} for t, b in sorted(per_task.items())}
    scores["overall"] = {**overall, "accuracy": overall["matched"] / overall["n"] if overall["n"] else 0.0}
    return scores, verdicts


def accuracies(results: dict[str, Any]) -> dict[str, float]:
    """Flat accuracy figures of one evaluation (what "relative to a baseline" compares)."""
    flat: dict[str, float] = {}
    for task, m in (results.get("objective") or {}).items():
        flat[f"objective/{task}"] = m["accuracy"]
    for task, m in (results.get("generative") or {}).items():
        flat[f"generative/{task}"] = m["accuracy"]
    for key, m in (results.get("attributes") or {}).items():
        flat[f"attributes/{key}"] = m["accuracy"]
    return flat

