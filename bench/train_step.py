"""Tokens per second and peak memory of one LoRA training step, with and without gradient checkpointing.

    python bench/train_step.py                 # the tiny IDEFICS2 on the CPU (what CI machines have)
    python bench/train_step.py --idefics2-8b   # on a GPU: an IDEFICS2-8B-shaped model, random weights, bf16, LoRA r=256
    python bench/train_step.py --idefics2-8b --streamed   # the product's loop and loader: tokens/s and MFU, eval items/s

``--streamed`` runs the training loop itself (trainer/loop.py: examples encoded by 2 loader worker processes
from photos and text through the checkpoint's processor, the loss of a step over its response tokens) with
gradient checkpointing at batch 4 and 8, and prints tokens/s, the share of step time spent waiting for
data and the model FLOPs utilisation (MFU: the FLOPs of a forward and backward without recomputation,
counted once by torch's FlopCounterMode, per second, over the GPU's dense bf16 peak); then evaluation
items/s at batch 1 and 16 (trainer/evaluate.py ``predict``, the objective benchmark) with the predictions
compared. Without ``--idefics2-8b`` the same runs on the tiny model on the CPU (MFU not given).

Both settings run in one process on the same batch; the script prints the ratio (checkpointing against
the plain step). Memory is the CUDA allocator's peak on a GPU; on the CPU it is the bytes autograd saves
for the backward pass (what checkpointing trades for recomputation), counted by a saved-tensors hook,
plus the process's resident-set peak.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def idefics2_8b_config(image_size: int):
    """IDEFICS2-8B's shape: Mistral-7B, SigLIP-SO400M (27 layers, 1152 wide, patch 14), perceiver with 64 latents."""
    from transformers import Idefics2Config

    return Idefics2Config(
        text_config={"model_type": "mistral", "vocab_size": 32003, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
                     "sliding_window": None, "pad_token_id": 0},
        vision_config={"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                       "image_size": image_size, "patch_size": 14},
        perceiver_config={"hidden_size": 4096, "resampler_n_latents": 64, "resampler_depth": 3, "resampler_n_heads": 16,
                          "resampler_head_dim": 96, "num_key_value_heads": 4},
        image_token_id=32001, tie_word_embeddings=False,
    )


def lora_model(model, r: int, alpha: int, checkpointing: bool):
    from peft import LoraConfig, get_peft_model

    from curation.vlm.families.idefics import Idefics2Adapter
    from trainer.lora import target_modules

    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    names = target_modules(Idefics2Adapter, model, ("vision", "connector", "language"))
    pattern = "^(" + "|".join(n.replace(".", r"\.") for n in names) + ")$"
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.1, target_modules=pattern))


class SavedBytes:
    """Bytes autograd keeps for the backward pass during one forward (a CPU-side activation-memory measure)."""

    def __init__(self):
        self.total = 0

    def __enter__(self):
        def pack(t):
            self.total += t.numel() * t.element_size()
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def step_figures(model, batch, steps: int, device: str) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4)
    model.train()
    tokens = int(batch["attention_mask"].sum())

    def one_step(measure=None):
        if measure is not None:
            with measure:
                loss = model(**batch).loss
        else:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    one_step()  # warm-up: allocator, optimiser state
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    saved = SavedBytes()
    one_step(saved)
    started = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    out = {"tokens_per_s": tokens / seconds, "s_per_step": seconds, "saved_activation_gb": saved.total / 2**30, "tokens": tokens}
    if device.startswith("cuda"):
        out["peak_gb"] = torch.cuda.max_memory_allocated() / 2**30
    else:
        import resource

        out["rss_peak_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def tiny_case(args) -> tuple:
    from PIL import Image

    from curation.tiny_models import make_tiny
    from curation.vlm import LoadOptions, Sample
    from curation.vlm.families.idefics import Idefics2Adapter
    from trainer.data import collate, make_example

    folder = Path(tempfile.mkdtemp(prefix="bench-tiny-")) / "idefics2"
    make_tiny("idefics2", folder, layers=4, hidden=128)

    def build(checkpointing: bool):
        adapter = Idefics2Adapter.load(folder, LoadOptions())
        adapter.model = lora_model(adapter.model, args.r, args.alpha, checkpointing)
        words = "the bottle of shampoo arrived leaking and the box was wet " * 12
        examples = [make_example(adapter, f"s{i}", Sample([Image.new("RGB", (64, 64), (i * 40 % 255, 90, 160))], "Describe the product.", words, "SUNVALE 300 ml"))
                    for i in range(args.batch)]
        return adapter.model, collate(adapter, examples)

    return build, "cpu", f"tiny IDEFICS2 (4 layers, 128 wide), batch {args.batch}, LoRA r={args.r}, float32, CPU"


def idefics2_8b_case(args) -> tuple:
    from transformers import Idefics2ForConditionalGeneration

    device = "cuda"
    config = idefics2_8b_config(args.image_size)
    n_image_tokens = 64
    text = args.seq - n_image_tokens - 2

    def build(checkpointing: bool):
        torch.manual_seed(0)
        with torch.device(device):
            torch.set_default_dtype(torch.bfloat16)
            model = Idefics2ForConditionalGeneration(config)
            torch.set_default_dtype(torch.float32)
        model = lora_model(model, args.r, args.alpha, checkpointing)
        ids = torch.randint(3, 32000, (args.batch, args.seq), device=device)
        ids[:, 1 : 1 + n_image_tokens] = config.image_token_id
        labels = ids.clone()
        labels[:, : 1 + n_image_tokens + text // 2] = -100  # loss on the response half only, as training does
        pixels = torch.randn(args.batch, 1, 3, args.image_size, args.image_size, device=device, dtype=torch.bfloat16)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels, "pixel_values": pixels,
                 "pixel_attention_mask": torch.ones(args.batch, 1, args.image_size, args.image_size, dtype=torch.bool, device=device)}
        return model, batch

    name = torch.cuda.get_device_name(0)
    return build, device, f"IDEFICS2-8B shape (random weights), bf16, batch {args.batch} x {args.seq} tokens, one {args.image_size}px image each, LoRA r={args.r} on {name}"


# dense bf16 peaks (NVIDIA's data sheets, without sparsity), by a name the device's contains
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def _peak_flops(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def streamed_adapter(args):
    """(adapter, device): the IDEFICS2-8B shape (random bf16 weights, processor at 980 px, 64 image tokens
    per image) on a GPU, or the tiny model on the CPU; LoRA r=args.r on all three parts, checkpointing on."""
    from curation.tiny_models import make_tiny
    from curation.vlm import LoadOptions
    from curation.vlm.families.idefics import Idefics2Adapter
    from trainer.config import LoraSettings
    from trainer.lora import apply_lora

    folder = Path(tempfile.mkdtemp(prefix="bench-streamed-")) / "idefics2"
    make_tiny("idefics2", folder, layers=4, hidden=128)
    if not args.idefics2_8b:
        adapter = Idefics2Adapter.load(folder, LoadOptions())
        adapter.configure_images(longest_edge=224, splitting=False)
        apply_lora(adapter, LoraSettings(r=args.r, alpha=args.alpha, dropout=0.1), gradient_checkpointing=True)
        return adapter, "cpu"
    from transformers import AutoProcessor, Idefics2ForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder)  # the tiny checkpoint's tokenizer and template, the 8B's image layout
    processor.image_seq_len = 64
    processor.image_processor.do_image_splitting = False
    processor.image_processor.size = {"longest_edge": args.image_size, "shortest_edge": 378}
    config = idefics2_8b_config(args.image_size)
    config.image_token_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    torch.manual_seed(0)
    with torch.device("cuda"):
        torch.set_default_dtype(torch.bfloat16)
        model = Idefics2ForConditionalGeneration(config)
        torch.set_default_dtype(torch.float32)
    adapter = Idefics2Adapter(model, processor, "idefics2-8b-shape", LoadOptions(device="cuda", dtype="bfloat16"))
    apply_lora(adapter, LoraSettings(r=args.r, alpha=args.alpha, dropout=0.1), gradient_checkpointing=True)
    return adapter, "cuda"


def streamed_samples(n: int, image_px: int, words: int):
    from PIL import Image, ImageDraw

    from curation.vlm import Sample

    text = "the bottle of shampoo arrived leaking and the box was wet, the cap is cracked "
    samples = {}
    for i in range(n):
        im = Image.new("RGB", (image_px, int(image_px * 0.75)), (i * 37 % 255, 90, 160))
        ImageDraw.Draw(im).rectangle((20, 20, image_px // 3, image_px // 4), fill=(240, 240, 240))
        answer = " ".join((text * (1 + words // 14)).split()[: words - 20 * (i % 4)])  # lengths differ, as real answers do
        samples[f"s{i:05d}"] = Sample([im], "Describe the condition of the product in the photo.", answer, "SUNVALE 300 ml")
    return samples


def model_flops(adapter, example) -> float:
    """FLOPs of one forward and backward of one example, without recomputation (what MFU counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.data import collate
    from trainer.loop import response_loss_sum

    model = adapter.model
    was = model.is_gradient_checkpointing
    if was:
        model.gradient_checkpointing_disable()
    with FlopCounterMode(display=False) as counter:
        response_loss_sum(model, collate(adapter, [example])).backward()
    model.zero_grad(set_to_none=True)
    if was:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return float(counter.get_total_flops())


def streamed(args) -> None:
    from trainer.config import LoraSettings, TrainConfig
    from trainer.data import make_example
    from trainer.loop import train
    from trainer.stream import SampleSource, TrainingSet

    adapter, device = streamed_adapter(args)
    image_px = args.image_size if args.idefics2_8b else 320
    words = args.seq // 2 if args.idefics2_8b else 120
    samples = streamed_samples(max(args.batch_sizes) * (args.steps + 2), image_px, words)
    first = next(iter(samples.items()))
    flops_per_sample = model_flops(adapter, make_example(adapter, first[0], first[1]))
    peak = _peak_flops(device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"{'IDEFICS2-8B shape, bf16' if args.idefics2_8b else 'tiny IDEFICS2 (4 layers, 128 wide), float32'} on {name}; LoRA r={args.r} on all "
          f"three parts; gradient checkpointing; one {image_px}px photo and ~{words} answer words per sample; 2 loader workers; "
          f"{flops_per_sample / 1e12:.2f} TFLOP per sample (forward + backward)")
    for batch in args.batch_sizes:
        config = TrainConfig(lora=LoraSettings(r=args.r, alpha=args.alpha, dropout=0.1), batch_size=batch, max_steps=args.steps + 2, epochs=100,
                             device=device, dtype="bfloat16" if device == "cuda" else "float32", gradient_checkpointing=True,
                             checkpoint_every=10**6, loader_workers=2, warmup_ratio=0.0)
        ids = sorted(samples)
        data = TrainingSet(ids, SampleSource(samples))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        try:
            result = train(adapter, data, config, Path(tempfile.mkdtemp(prefix="bench-run-")))
        except torch.OutOfMemoryError:
            print(f"  batch {batch}: out of GPU memory")
            continue
        logs = result.logs[2:]  # the first steps start the loader's workers and the allocator
        seconds = sum(x.seconds for x in logs)
        tokens = sum(x.tokens for x in logs) / seconds
        samples_s = sum(x.samples for x in logs) / seconds
        mfu = f"MFU {flops_per_sample * samples_s / peak:.1%}" if peak else "MFU n/a (no GPU peak)"
        mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GB" if device == "cuda" else ""
        print(f"  batch {batch}: {tokens:,.0f} tokens/s, {samples_s:.2f} samples/s, {mfu}, waiting for data "
              f"{sum(x.data_seconds for x in logs) / seconds:.1%} of step time{mem}")
    evaluation(adapter, device, args)


def evaluation(adapter, device: str, args) -> None:
    """Evaluation items/s at batch 1 and 16 on the same model (its LoRA layers in place), the objective benchmark."""
    from bench.eval_batch import make_items
    from trainer.evaluate import predict

    adapter.model.eval()
    root = Path(tempfile.mkdtemp(prefix="bench-eval-items-"))
    items = make_items(args.eval_items, root)
    rates, answers = {}, {}
    for batch in (1, 16):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        predictions = predict(adapter, items, "objective", root, ocr=True, batch_size=batch)
        if device == "cuda":
            torch.cuda.synchronize()
        rates[batch] = len(items) / (time.perf_counter() - started)
        answers[batch] = [p.text for p in predictions]
        failed = [p.error for p in predictions if p.error]
        if failed:
            print(f"  evaluation: {len(failed)} item(s) failed, e.g. {failed[0]}")
    same = sum(a == b for a, b in zip(answers[1], answers[16]))
    print(f"  evaluation (objective, <=4 new tokens, {len(items)} items): batch 1 {rates[1]:.2f} items/s, batch 16 {rates[16]:.2f} items/s, "
          f"ratio {rates[16] / rates[1]:.2f}x; {same}/{len(items)} predictions equal")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streamed", action="store_true", help="the product's loop and loader at batch 4 and 8 (MFU), then evaluation at batch 1 and 16")
    ap.add_argument("--batch-sizes", default="4,8", help="--streamed: batch sizes")
    ap.add_argument("--eval-items", type=int, default=64, help="--streamed: evaluation items")
    ap.add_argument("--idefics2-8b", action="store_true", help="the 8B-shaped model on a CUDA GPU")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--seq", type=int, default=1024, help="tokens per sample (8B case)")
    ap.add_argument("--image-size", type=int, default=980, help="image side in pixels (8B case)")
    ap.add_argument("--r", type=int, default=256)
    ap.add_argument("--alpha", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--mode", choices=["plain", "checkpointing"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.idefics2_8b and not torch.cuda.is_available():
        sys.exit("--idefics2-8b needs a CUDA GPU")
    if args.streamed:
        args.batch_sizes = [int(x) for x in args.batch_sizes.split(",")]
        args.steps = args.steps or (6 if args.idefics2_8b else 3)
        streamed(args)
        return
    args.batch = args.batch or (8 if args.idefics2_8b else 8)
    args.steps = args.steps or (3 if args.idefics2_8b else 5)
    if args.mode:  # a child: one setting, figures as JSON on the last line
        build, device, title = (idefics2_8b_case if args.idefics2_8b else tiny_case)(args)
        print(title)
        try:
            model, batch = build(args.mode == "checkpointing")
            print(json.dumps(step_figures(model, batch, args.steps, device)))
        except torch.OutOfMemoryError:
            print(json.dumps(None))
        return
    # Each setting runs in its own process on the same inputs: an out-of-memory in one must not leave
    # allocator state behind that the other then pays for.
    results = {}
    for mode, label in (("plain", "plain"), ("checkpointing", "gradient checkpointing")):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--mode", mode], capture_output=True, text=True)
        lines = [ln for ln in child.stdout.splitlines() if ln.strip()]
        if child.returncode != 0 or not lines:
            sys.exit(f"{label} failed:\n{child.stderr[-3000:]}")
        if not results:
            print(lines[0])  # the title
        r = results[label] = json.loads(lines[-1])
        if r is None:
            print(f"  {label:<24} out of GPU memory")
            continue
        mem = f"peak {r['peak_gb']:.2f} GB" if "peak_gb" in r else f"RSS peak {r['rss_peak_gb']:.2f} GB"
        print(f"  {label:<24} {r['tokens_per_s']:>10.0f} tokens/s  {r['s_per_step']:.4f} s/step  {mem}  activations saved for backward {r['saved_activation_gb']:.3f} GB")
    plain, ckpt = results.get("plain"), results.get("gradient checkpointing")
    if plain and ckpt:
        print(f"ratio (checkpointing / plain): speed {ckpt['tokens_per_s'] / plain['tokens_per_s']:.2f}x, "
              f"saved activations {ckpt['saved_activation_gb'] / plain['saved_activation_gb']:.2f}x"
              + (f", peak memory {ckpt['peak_gb'] / plain['peak_gb']:.2f}x" if "peak_gb" in plain else ""))


if __name__ == "__main__":
    main()
