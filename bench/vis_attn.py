"""VisAttnScore: our path against eager ``output_attentions`` and against a plain forward with no scoring.

    python bench/vis_attn.py                      # CPU: an IDEFICS2 with an 8-layer, 8-head, 512-wide LM
    python bench/vis_attn.py --device cuda --dtype bfloat16 --shape idefics2-8b    # on a GPU

Each mode runs in its own process on the same model (random weights, saved once) and the same sample:
about 1,000 tokens of which 320 are image tokens (five images of 64 perceiver tokens, as IDEFICS2's
image splitting gives). Memory is the peak above what the process held just before a forward (median of three; on CPU the
resident size sampled every millisecond, with glibc told to map every large tensor on its own so that
the resident size follows live tensors; ``torch.cuda.max_memory_allocated`` on a GPU). Prints three ratios:
time against the plain forward (target <= 1.3x), eager's extra peak memory against ours (target >= 10x),
and eager's time against ours (never slower on CPU; >= 3x on a GPU at IDEFICS2-8B shape).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHAPES = {
    # the minimum: 8 layers, 8 heads, hidden 512 (grouped KV heads, as Mistral has)
    "small": {"layers": 8, "heads": 8, "kv_heads": 2, "hidden": 512},
    # IDEFICS2-8B's language model (Mistral-7B): 32 layers, 32 heads, 8 KV heads, hidden 4096
    "idefics2-8b": {"layers": 32, "heads": 32, "kv_heads": 8, "hidden": 4096},
}


def build_model(folder: Path, shape: str) -> Path:
    from curation.tiny_models import make_idefics2

    s = SHAPES[shape]
    return make_idefics2(folder, layers=s["layers"], heads=s["heads"], kv_heads=s["kv_heads"], hidden=s["hidden"], image_seq_len=64)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """Peak resident memory while a block runs (CPU): a thread reads /proc every millisecond."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = _rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def extra(self) -> int:
        return self.peak - self.base


def run_mode(mode: str, model_dir: str, device: str, dtype: str, repeats: int, answer_words: int, measure: str) -> dict:
    import torch
    from PIL import Image

    from curation.vis_attn import ATTN_NAME, eager_reference, score_batch
    from curation.vlm import LoadOptions, Sample, load_vlm

    attention = {"plain": "sdpa", "ours": ATTN_NAME, "eager": "eager"}[mode]
    adapter = load_vlm(model_dir, LoadOptions(device=device, dtype=dtype), language_model_attention=attention)
    images = [Image.new("RGB", (64, 48), (30 * i, 200 - 30 * i, 90)) for i in range(5)]
    answer = " ".join(["the bottle of shampoo is leaking at the cap and the box is torn"] * (answer_words // 14 + 1)).split()[:answer_words]
    encoded = [adapter.encode(Sample(images, "Describe the products in the images.", " ".join(answer)))]
    inputs = adapter.collate(encoded)

    def forward():
        if mode == "ours":
            return score_batch(adapter, encoded)
        if mode == "eager":
            return eager_reference(adapter, encoded)
        with torch.inference_mode():
            return adapter.model(**inputs, use_cache=False).logits.shape

    cuda = device.startswith("cuda")
    extra = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward()
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - base
    elif measure == "memory":
        # (the parent sets MALLOC_MMAP_THRESHOLD_ so that every large tensor is its own mapping, given
        # back on free: resident memory then follows live tensors, not the allocator's caches)
        extras = []
        for _ in range(3):
            with PeakSampler() as sampler:
                forward()
            extras.append(sampler.extra)
        extra = statistics.median(extras)
    if measure == "memory" and not cuda:
        return {"mode": mode, "extra_bytes": extra}
    forward()  # warm-up
    times = []
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        forward()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {
        "mode": mode,
        "seconds": statistics.median(times),
        "extra_bytes": extra,
        "tokens": encoded[0].length,
        "image_tokens": len(encoded[0].image_positions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--answer-words", type=int, default=560, help="sets the sequence length (about 1,000 tokens by default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=["plain", "ours", "eager"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.mode:
        print(json.dumps(run_mode(args.mode, args.model, args.device, args.dtype, args.repeats, args.answer_words, args.measure)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", args.shape)
        results = {}
        for mode in ("plain", "ours", "eager"):
            def child(measure: str, env: dict) -> dict:
                out = subprocess.run(
                    [sys.executable, __file__, "--mode", mode, "--model", str(model_dir), "--device", args.device, "--dtype", args.dtype,
                     "--repeats", str(args.repeats), "--answer-words", str(args.answer_words), "--measure", measure],
                    capture_output=True, text=True, check=True, env={**os.environ, **env},
                )
                return json.loads(out.stdout.strip().splitlines()[-1])

            # time with the normal allocator; memory (CPU) in a second process where glibc maps every
            # large tensor on its own, so resident memory follows live tensors
            results[mode] = child("time", {})
            if not args.device.startswith("cuda"):
                results[mode]["extra_bytes"] = child("memory", {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"})["extra_bytes"]
    plain, ours, eager = results["plain"], results["ours"], results["eager"]
    s = SHAPES[args.shape]
    print(f"LM {s['layers']} layers, {s['heads']} heads ({s['kv_heads']} KV), hidden {s['hidden']}, random weights; {args.device} {args.dtype}")
    print(f"sequence: {ours['tokens']} tokens, {ours['image_tokens']} of them image tokens")
    for r in (plain, ours, eager):
        print(f"  {r['mode']:<6} {r['seconds'] * 1000:9.1f} ms   extra peak memory {r['extra_bytes'] / 2**20:9.1f} MiB")
    ours_extra = max(ours["extra_bytes"] - plain["extra_bytes"], 1)
    eager_extra = max(eager["extra_bytes"] - plain["extra_bytes"], 1)
    print(f"time, ours against the plain forward: {ours['seconds'] / plain['seconds']:.2f}x (target <= 1.3x)")
    print(f"extra memory beyond the plain forward, eager against ours: {eager_extra / ours_extra:.1f}x (target >= 10x)"
          f"  [{eager_extra / 2**20:.1f} MiB vs {ours_extra / 2**20:.1f} MiB]")
    print(f"time, eager against ours: {eager['seconds'] / ours['seconds']:.2f}x (target: never slower on CPU, >= 3x on a GPU at 8B shape)")


if __name__ == "__main__":
    main()
