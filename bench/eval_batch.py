"""Evaluation items per second at batch N against batch 1, on the same items, with the predictions checked equal.

    python bench/eval_batch.py                      # tiny IDEFICS2 (8 layers, 512 wide) on the CPU, batch 8 vs 1
    python bench/eval_batch.py --device cuda --batch 16 --layers 16 --hidden 1024

Runs ``trainer.evaluate.predict`` (what the evaluation job runs) over the same items at batch 1 and at
``--batch``, for the objective benchmark (the paper's generate-and-parse: at most 4 new tokens), the
generative benchmark (128 new tokens: a random tiny model never stops early, so every item takes all 128)
and the objective benchmark in logprob mode (one forward pass). Items differ in prompt length and image
count (1 or 2 images), as real ones do. Prints items/s at both sizes (the fastest of ``--repeats``
alternated passes), the ratio, and whether every prediction is the same (the script fails when one is not).
On a CPU it also prints items per CPU second of the process, which other work on a shared machine
disturbs much less than the wall clock, and the load average.

On a CPU the prompt's forward pass is compute-bound already at one prompt, so batching gains little where
it dominates (the objective benchmark, the logprob mode); the gain is in the decoding steps, where each
step reads every weight once for the whole batch instead of once per item.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = [
    "Is the sleeve style of this product 3/4 Sleeve?",
    "Does the photo show damage to the product or its packaging, such as a dent, a tear or a leak?",
    "Is this the same product as the listing titled 'SUNVALE herbal shampoo 300 ml, two pack, for dry hair'?",
    "Is the colour of this product blue?",
    "Describe the condition of the bottle and the box in the photos, and say whether the seal is intact.",
]


def make_items(n: int, root: Path):
    from PIL import Image, ImageDraw

    from trainer.benchmarks import EvalItem

    for k in range(8):
        im = Image.new("RGB", (64 + 16 * (k % 3), 64 + 8 * (k % 4)), (40 * k % 255, 120, 200 - 20 * k))
        ImageDraw.Draw(im).rectangle((8, 8, 40, 30 + k), fill=(250, 250, 250))
        im.save(root / f"{k}.png")
    items = []
    for k in range(n):
        images = 1 + k % 2
        question = QUESTIONS[k % len(QUESTIONS)] + " Look closely." * (k % 4)
        items.append(EvalItem(f"i{k}", "PM", question, "yes" if k % 2 else "no", [f"{(k + j) % 8}.png" for j in range(images)],
                              [f"SUNVALE {k} 300 ml"] * images, "c", f"p{k}"))
    return items


def run(adapter, items, benchmark: str, root: Path, batch: int, mode: str):
    from trainer.evaluate import predict

    started, cpu = time.perf_counter(), time.process_time()
    predictions = predict(adapter, items, benchmark, root, ocr=True, batch_size=batch, objective_mode=mode)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    errors = [p.error for p in predictions if p.error]
    if errors:
        sys.exit(f"{len(errors)} item(s) failed: {errors[0]}")
    return (len(items) / seconds, len(items) / cpu_seconds), predictions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="idefics2")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--items", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=1, help="passes per setting, alternated; the fastest counts")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = ap.parse_args()

    import torch

    from curation.tiny_models import make_tiny
    from curation.vlm import LoadOptions, load_vlm

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    folder = make_tiny(args.family, tmp / args.family, layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=max(1, args.heads // 2))
    adapter = load_vlm(folder, LoadOptions(device=args.device, dtype=args.dtype))
    params = sum(p.numel() for p in adapter.model.parameters())
    items = make_items(args.items, tmp)
    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    if not args.device.startswith("cuda"):
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"tiny {args.family}: {args.layers} layers, {args.hidden} wide, {params / 1e6:.1f}M parameters, {args.dtype}, {where}; "
          f"{args.items} items (1-2 images, prompts of different lengths)")
    run(adapter, items[:2], "objective", tmp, 2, "generate")  # warm-up
    all_equal = True
    for benchmark, mode, label in (("objective", "generate", "objective (generate, <=4 new tokens)"),
                                   ("generative", "generate", "generative (128 new tokens)"),
                                   ("objective", "logprob", "objective (logprob, 1 forward pass)")):
        one_rate = many_rate = (0.0, 0.0)
        for _ in range(args.repeats):  # alternated, the best of each: a machine shared with other work slows some passes
            rate, one = run(adapter, items, benchmark, tmp, 1, mode)
            one_rate = max(one_rate, rate)
            rate, many = run(adapter, items, benchmark, tmp, args.batch, mode)
            many_rate = max(many_rate, rate)
        equal = [a.text for a in one] == [b.text for b in many]
        all_equal &= equal
        print(f"  {label:<38} batch 1: {one_rate[0]:7.2f} items/s   batch {args.batch}: {many_rate[0]:7.2f} items/s   "
              f"ratio {many_rate[0] / one_rate[0]:5.2f}x   predictions {'equal' if equal else 'DIFFER'}"
              + ("" if args.device.startswith("cuda") else f"   (per CPU second: {one_rate[1]:.2f} -> {many_rate[1]:.2f}, {many_rate[1] / one_rate[1]:.2f}x)"))
    if not args.device.startswith("cuda"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall figures are slowed by other work; "
              "items per CPU second of this process much less)")
    if not all_equal:
        sys.exit("batched predictions differ from batch 1")


if __name__ == "__main__":
    main()
