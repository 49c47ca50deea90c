"""Running a model over an evaluation set, scoring it, and the LLM judge of the generative benchmark.

Items are run in batches (left-padded prompts, greedy decoding: the same answers as one at a time) and
streamed: a batch's images are read when it runs. Latency is reported per item (seconds, as the paper
reports it: a batch's wall time divided by its items) and memory as the peak over the run: the CUDA
allocator's peak on a GPU, the process's resident-set peak (sampled) on a CPU.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from curation.prompt_layout import ocr_body
from curation.verdicts import parse_yes_no
from curation.vlm import Encoded, Sample, SampleError, VLMAdapter

# the family's own "yes" and "no" tokens: found in curation (the VLM judge reads the same ones), named here too
from curation.vlm.answer_tokens import ANSWER_SPELLINGS, AnswerTokensError, answer_token_groups  # noqa: F401

from .benchmarks import OBJECTIVE_MODES, EvalItem, item_images, prompt_question
from .config import TrainConfig
from .data import load_images
from .metrics import attribute_exact_match, parse_attributes, per_task_metrics

log = logging.getLogger(__name__)

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
    seconds: float  # the item's share of its batch's wall time
    error: str | None = None
    p_yes: float | None = None  # objective benchmark in logprob mode: P(yes) / (P(yes) + P(no)) of the first answer token

    def to_dict(self) -> dict[str, Any]:
        out = {**self.item.to_dict(), "prediction": self.text, "seconds": round(self.seconds, 4), "error": self.error}
        if self.p_yes is not None:
            out["p_yes"] = round(self.p_yes, 6)
        return out


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
    """The model's greedy answer to one sample."""
    return generate_batch(adapter, [adapter.encode_prompt(sample)], max_new_tokens)[0]


def generate_batch(adapter: VLMAdapter, encoded: list[Encoded], max_new_tokens: int) -> list[str]:
    """Greedy answers to prompts generated together: left-padded (every row's new tokens follow its own
    last prompt token), finished rows padded with ``pad_token_id`` until the longest stops; each answer is
    cut at its first stop token (the family's end-of-turn and EOS)."""
    import torch

    inputs = adapter.collate(encoded, padding_side="left")
    stops = adapter.stop_token_ids()
    with torch.inference_mode():
        out = adapter.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=adapter.pad_token_id, eos_token_id=stops)
    texts = []
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        end = next((k for k, t in enumerate(row) if t in stops), len(row))
        texts.append(adapter.tokenizer.decode(row[:end], skip_special_tokens=True).strip())
    return texts


# ---- the objective benchmark from log-probabilities ---------------------------------------------------
def yes_no_batch(adapter: VLMAdapter, encoded: list[Encoded], groups: dict[str, list[int]]) -> list[tuple[str, float]]:
    """("yes" or "no", p_yes) per prompt from one forward pass: the next-token distribution at the
    prompt's last position, the probability of each answer's tokens summed; p_yes is the "yes" share of
    the two. Run through ``generate`` for one new token, so each family's positions (M-RoPE, left
    padding) are worked out exactly as for generation."""
    import torch

    inputs = adapter.collate(encoded, padding_side="left")
    with torch.inference_mode():
        out = adapter.model.generate(**inputs, max_new_tokens=1, do_sample=False, pad_token_id=adapter.pad_token_id,
                                     output_logits=True, return_dict_in_generate=True)
    probs = torch.softmax(out.logits[0].float(), dim=-1)
    return [yes_no_from_probs(row, groups) for row in probs]


def yes_no_from_probs(probs, groups: dict[str, list[int]]) -> tuple[str, float]:
    """The answer whose tokens hold more of the next-token probability ("no" on a tie), and p_yes."""
    p_yes = float(probs[groups["yes"]].sum())
    p_no = float(probs[groups["no"]].sum())
    share = p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5
    return ("yes" if p_yes > p_no else "no"), share


# ---- running the benchmark ----------------------------------------------------------------------------
def batch_size_for(adapter: VLMAdapter, batch_size: int) -> int:
    """The batch size a family can generate with exactly (batch 1 for a family that cannot, with a log line)."""
    if batch_size > 1 and not adapter.batched_generation:
        log.info("%s: generating one item at a time, not %d (%s)", adapter.family, batch_size, adapter.batched_generation_note)
        return 1
    return max(1, int(batch_size))


def item_sample(item: EvalItem, benchmark: str, blob_root, *, ocr: bool) -> Sample:
    """The item as the adapter's Sample, its images read now (the in-context examples' first)."""
    images = load_images(blob_root, item_images(item))
    # the OCR texts are the item's own photos', which come after the in-context examples' photos
    own = len(item.blob_paths)
    text = ocr_body(item.ocr_texts, own, first=len(images) - own + 1) if ocr else ""
    return Sample(images, prompt_question(item, benchmark), "", text or None)


def _error(exc: Exception) -> str:
    return getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"


def predict(adapter: VLMAdapter, items: Iterable[EvalItem], benchmark: str, blob_root, *, ocr: bool, batch_size: int = 1,
            objective_mode: str = "generate", group_by_length: bool = True, progress: Callable[[int], None] | None = None,
            check: Callable[[], None] | None = None, on_prediction: Callable[[Prediction], None] | None = None) -> list[Prediction]:
    """The model's answer to every item, in the items' order, ``batch_size`` items at a time (greedy
    decoding: the same answers as one at a time). ``group_by_length``: batches are made of items of like
    size (image count, then text length: known without reading an image), so that little of a batch is
    padding; an item's answer does not depend on its batch. Items are streamed: a batch's images are read,
    encoded, run and dropped before the next batch's are read. An item that cannot be run (unreadable
    image, too long) gets an error and no answer, and counts as wrong; the rest of its batch goes on. An
    item's seconds are its batch's wall time divided by the batch's items. ``objective_mode`` "logprob"
    answers the objective benchmark from the probabilities of "yes" and "no" after the prompt (``p_yes``
    per item) instead of generating. ``on_prediction`` sees each prediction as it is made (in the order
    the batches run), so that they can be written as they come."""
    if objective_mode not in OBJECTIVE_MODES:
        raise ValueError(f"objective mode must be one of {', '.join(OBJECTIVE_MODES)}, not {objective_mode!r}")
    logprob = benchmark == "objective" and objective_mode == "logprob"
    groups = answer_token_groups(adapter) if logprob else None
    size = batch_size_for(adapter, batch_size)
    items = list(items)  # the items' text and blob paths only: images are read per batch
    order = list(range(len(items)))
    if group_by_length and size > 1:
        order.sort(key=lambda i: _size_key(items[i], benchmark, ocr))
    out: dict[int, Prediction] = {}
    for start in range(0, len(order), size):
        if check is not None:
            check()
        chunk = order[start:start + size]
        started = time.perf_counter()
        answers, errors = _run_batch(adapter, [items[i] for i in chunk], benchmark, blob_root, ocr=ocr, groups=groups)
        seconds = (time.perf_counter() - started) / len(chunk)
        for k, i in enumerate(chunk):
            text, p_yes = answers.get(k, (None, None))
            out[i] = Prediction(items[i], text, seconds, errors.get(k), p_yes)
            if on_prediction is not None:
                on_prediction(out[i])
        if progress is not None:
            progress(len(out))
    return [out[i] for i in range(len(items))]


def _size_key(item: EvalItem, benchmark: str, ocr: bool) -> tuple[int, int]:
    """How long an item's prompt is, roughly, before its images are read: its image count, then its text."""
    text = len(prompt_question(item, benchmark)) + (sum(len(t or "") for t in item.ocr_texts) if ocr else 0)
    return len(item_images(item)), text


def _run_batch(adapter: VLMAdapter, chunk: list[EvalItem], benchmark: str, blob_root, *, ocr: bool,
               groups: dict[str, list[int]] | None) -> tuple[dict[int, tuple[str, float | None]], dict[int, str]]:
    """(answer and p_yes, error) by position in the chunk. The batch's images and pixel values live in this
    call only: they are gone before the next batch's are read."""
    encoded: dict[int, Encoded] = {}
    errors: dict[int, str] = {}
    for k, item in enumerate(chunk):
        try:
            encoded[k] = adapter.encode_prompt(item_sample(item, benchmark, blob_root, ocr=ocr))
        except (SampleError, OSError) as exc:
            errors[k] = _error(exc)
    if not encoded:
        return {}, errors
    if groups is not None:
        results = yes_no_batch(adapter, list(encoded.values()), groups)
    else:
        results = [(text, None) for text in generate_batch(adapter, list(encoded.values()), MAX_NEW_TOKENS[benchmark])]
    return dict(zip(encoded, results)), errors


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

