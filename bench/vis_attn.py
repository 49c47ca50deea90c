"""VisAttnScore on every VLM family: our path against eager ``output_attentions`` and against a plain forward.

    python bench/vis_attn.py                                  # CPU, every family: one table
    python bench/vis_attn.py --family qwen2_5_vl --family gemma3
    python bench/vis_attn.py --device cuda --dtype bfloat16 --shape idefics2-8b --shape qwen2_5_vl-7b   # on a GPU

Each family's tiny checkpoint is built with a language model of 8 layers, 8 heads (2 KV heads), width 512
(random weights), and its images chosen so that one sample is about 1,000 tokens of which at least 300 are
image tokens, as that family's own processor expands them (five 64-token images for IDEFICS2, one 325-token
image for LLaVA-1.5, Qwen images at their own resolution ...). Time: the three modes in one process, their
forwards taken in turn, the median of five each (so a change in the machine's load falls on all alike).
Memory: each mode alone in its own process, the peak above what the process held just before the forward
(median of three; on CPU the resident size sampled every millisecond, in a process where glibc maps every
large tensor on its own so that resident memory follows live tensors; ``torch.cuda.max_memory_allocated``
on a GPU).

Per family it prints time against the plain forward (target <= 1.3x), attention with the visual information
gain and the VLM judge against attention alone (the pass's logits kept at the answer's rows and at the
judge's turn after the answer, then one text-only pass; target <= 1.6x), eager's extra peak memory against
ours (target >= 10x), eager's time against ours (never slower), and the largest difference between our
A(t) and eager's. On a GPU (``--shape``: IDEFICS2-8B's and Qwen2.5-VL-7B's language models, random weights)
it prints samples/s for ours, eager and the plain forward, the peak memory of each, and the largest
difference in the dtype asked for; it says which attention kernel ours ran (the fused one or its fallback).
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
    # the issue's minimum: 8 layers, 8 heads, width 512 (grouped KV heads, as Mistral and Qwen have)
    "small": {"layers": 8, "heads": 8, "kv_heads": 2, "hidden": 512},
    # IDEFICS2-8B's language model (Mistral-7B): 32 layers, 32 heads, 8 KV heads, width 4096
    "idefics2-8b": {"layers": 32, "heads": 32, "kv_heads": 8, "hidden": 4096, "family": "idefics2"},
    # Qwen2.5-VL-7B's language model: 28 layers, 28 heads, 4 KV heads, width 3584
    "qwen2_5_vl-7b": {"layers": 28, "heads": 28, "kv_heads": 4, "hidden": 3584, "family": "qwen2_5_vl"},
}
# per family: the builder's image settings and the images of the sample ((width, height) each), so that
# the family's processor gives at least 300 image tokens
IMAGES = {
    "idefics2": ({"image_seq_len": 64}, [(64, 48)] * 5),  # 5 x 64 perceiver tokens
    "idefics3": ({}, [(128, 96)] * 6),  # 4x3 crops + the whole, 4 tokens each, per image
    "llava": ({"image_size": 144}, [(144, 144)]),  # one image (LLaVA-1.5's limit): 18x18 patches + CLS
    "llava_onevision": ({"tile": 64}, [(128, 128)]),  # one image, tiled 2x2 plus the whole, 64 tokens a tile
    "qwen2_vl": ({"max_pixels": 320 * 256}, [(320, 256)]),  # 20x16 merged patches
    "qwen2_5_vl": ({"max_pixels": 320 * 256}, [(320, 256)]),
    "qwen3_vl": ({"max_pixels": 320 * 256}, [(320, 256)]),
    "gemma3": ({"image_size": 64, "mm_tokens": 64, "sliding_window": 512}, [(64, 64)] * 5),  # 5 x 64 soft tokens
    "internvl": ({"tile": 64, "max_tiles": 6}, [(192, 128)] * 3),  # 6 tiles + thumbnail, 16 tokens a tile
    "mistral3": ({"longest_edge": 320}, [(320, 256)]),  # 20x16 [IMG] tokens and the row breaks
}
TARGET_TOKENS = 1000


def build_model(folder: Path, family: str, shape: str) -> Path:
    from curation.tiny_models import make_tiny

    s = {k: v for k, v in SHAPES[shape].items() if k != "family"}
    return make_tiny(family, folder, **s, **IMAGES[family][0])


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


def make_sample(adapter, family: str):
    """The family's images and an answer long enough that the sample is about TARGET_TOKENS tokens."""
    from PIL import Image

    from curation.vlm import Sample

    images = [Image.new("RGB", size, (40 * k % 255, 200 - 30 * k, 90)) for k, size in enumerate(IMAGES[family][1])]
    words = "the bottle of shampoo is leaking at the cap and the box is torn".split()
    n = 200
    for _ in range(6):  # a few rounds: words -> tokens is about 1.3 here
        answer = " ".join((words * (n // len(words) + 1))[:n])
        length = adapter.encode(Sample(images, "Describe the products in the images.", answer)).length
        if abs(length - TARGET_TOKENS) <= 10:
            break
        n = max(10, n + int((TARGET_TOKENS - length) / 1.3))
    return Sample(images, "Describe the products in the images.", answer)


def _load(mode: str, model_dir: str, family: str, device: str, dtype: str, batch: int):
    import torch

    from curation.vis_attn import ATTN_NAME, eager_reference, score_batch
    from curation.vlm import LoadOptions, load_vlm

    attention = {"plain": "sdpa", "ours": ATTN_NAME, "signals": ATTN_NAME, "eager": "eager"}[mode]
    adapter = load_vlm(model_dir, LoadOptions(device=device, dtype=dtype), language_model_attention=attention)
    sample = make_sample(adapter, family)
    encoded = [adapter.encode(sample)] * batch
    if mode == "signals":  # the judge's turn after the answer, read from the same pass
        from curation.judge import JUDGE_QUESTION, judge_tokens

        tokens = judge_tokens(adapter)
        judged = [adapter.encode(sample, follow_up=JUDGE_QUESTION)] * batch
    inputs = adapter.collate(encoded)
    answer = encoded[0].segments["answer"]

    def forward():
        if mode == "ours":
            return [s.token_scores for s in score_batch(adapter, encoded)][0]
        if mode == "signals":  # attention, gain and judge: one pass with its logits kept (and the judge's turn), one text-only pass
            from curation.visual_gain import encode_blind, gains

            results = score_batch(adapter, judged, logprobs=True, judge=tokens)
            gains(adapter, results, [encode_blind(adapter, sample)] * batch, "answer")
            return results[0].token_scores
        if mode == "eager":
            reference = eager_reference(adapter, encoded)[0]
            return [reference[p] for p in answer]
        with torch.inference_mode():
            return adapter.model(**inputs, use_cache=False).logits.shape

    return forward, encoded[0]


def measure_memory(mode: str, model_dir: str, family: str, device: str, dtype: str, batch: int) -> dict:
    """The extra peak memory of one forward of ``mode``, alone in this process."""
    import torch

    forward, _ = _load(mode, model_dir, family, device, dtype, batch)
    if device.startswith("cuda"):
        forward()  # warm-up (kernels, allocator)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        forward()
        torch.cuda.synchronize()
        return {"mode": mode, "extra_bytes": torch.cuda.max_memory_allocated() - base}
    # (the parent sets MALLOC_MMAP_THRESHOLD_ so that every large tensor is its own mapping, given back on
    # free: resident memory then follows live tensors, not the allocator's caches)
    extras = []
    for _ in range(3):
        with PeakSampler() as sampler:
            forward()
        extras.append(sampler.extra)
    return {"mode": mode, "extra_bytes": statistics.median(extras)}


def measure_time(model_dir: str, family: str, device: str, dtype: str, repeats: int, batch: int) -> dict:
    """The three modes in one process, their forwards taken in turn (plain, ours, eager, plain, ...), so a
    change in the machine's load falls on all three alike; the median of each."""
    import torch

    from curation import vis_attn

    modes = ("plain", "ours", "signals", "eager")
    loaded = {mode: _load(mode, model_dir, family, device, dtype, batch) for mode in modes}
    out = {mode: {"mode": mode, "scores": None} for mode in modes}
    times = {mode: [] for mode in modes}
    cuda = device.startswith("cuda")
    for mode in modes:  # warm-up, and the scores to compare
        result = loaded[mode][0]()
        if mode != "plain":
            out[mode]["scores"] = [float(x) for x in result]
        if mode == "ours":
            out[mode]["kernel"] = sorted(vis_attn.last_paths_seen)
    for _ in range(repeats):
        for mode in modes:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            loaded[mode][0]()
            if cuda:
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - start)
    encoded = loaded["ours"][1]
    for mode in modes:
        out[mode].update(seconds=statistics.median(times[mode]), tokens=encoded.length, image_tokens=len(encoded.image_positions), samples=batch)
    return out


def bench_family(family: str, shape: str, args) -> dict:
    def child(*extra: str, env: dict | None = None) -> dict:
        out = subprocess.run(
            [sys.executable, __file__, "--model", str(model_dir), "--family", family, "--device", args.device, "--dtype", args.dtype,
             "--repeats", str(args.repeats), "--batch", str(args.batch), *extra],
            capture_output=True, text=True, env={**os.environ, **(env or {})},
        )
        if out.returncode:
            raise RuntimeError(f"{family} {' '.join(extra)}: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp) / "model", family, shape)
        results = child("--measure", "time")
        # memory: each mode alone in its own process (on a CPU, with glibc mapping every large tensor apart)
        env = {} if args.device.startswith("cuda") else {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
        for mode in ("plain", "ours", "eager"):
            results[mode]["extra_bytes"] = child("--mode", mode, "--measure", "memory", env=env)["extra_bytes"]
    plain, ours, eager = results["plain"], results["ours"], results["eager"]
    ours_extra = max(ours["extra_bytes"] - plain["extra_bytes"], 1)
    eager_extra = max(eager["extra_bytes"] - plain["extra_bytes"], 1)
    return {
        "family": family, "tokens": ours["tokens"], "image_tokens": ours["image_tokens"], "results": results,
        "time_vs_plain": ours["seconds"] / plain["seconds"], "eager_memory_vs_ours": eager_extra / ours_extra,
        "signals_vs_attention": results["signals"]["seconds"] / ours["seconds"],
        "eager_time_vs_ours": eager["seconds"] / ours["seconds"], "ours_extra_mib": ours_extra / 2**20, "eager_extra_mib": eager_extra / 2**20,
        "max_diff": max(abs(a - b) for a, b in zip(ours["scores"], eager["scores"])), "kernel": ",".join(ours.get("kernel") or []),
    }


def main() -> None:
    from curation.tiny_models import vlm_families

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", action="append", help="a VLM family (repeat); default: every family")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES), help="small (default), or a real model's language-model shape (GPU)")
    parser.add_argument("--batch", type=int, default=1, help="samples per forward (samples/s on a GPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", dest="as_json", help="also write the figures to this file")
    parser.add_argument("--mode", choices=["plain", "ours", "eager"], help=argparse.SUPPRESS)  # child process
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.model:  # a child process
        if args.measure == "memory":
            print(json.dumps(measure_memory(args.mode, args.model, args.family[0], args.device, args.dtype, args.batch)))
        else:
            print(json.dumps(measure_time(args.model, args.family[0], args.device, args.dtype, args.repeats, args.batch)))
        return

    shapes = args.shape or ["small"]
    rows = []
    for shape in shapes:
        families = args.family or ([SHAPES[shape]["family"]] if "family" in SHAPES[shape] else vlm_families())
        s = SHAPES[shape]
        print(f"LM {s['layers']} layers, {s['heads']} heads ({s['kv_heads']} KV), width {s['hidden']}, random weights; "
              f"{args.device} {args.dtype}; batch {args.batch}", flush=True)
        for family in families:
            row = bench_family(family, shape, args)
            rows.append({"shape": shape, **row})
            r = row["results"]
            if args.device.startswith("cuda"):
                print(f"  {family:<16} {row['tokens']} tokens ({row['image_tokens']} image) | samples/s ours {args.batch / r['ours']['seconds']:.2f}, "
                      f"eager {args.batch / r['eager']['seconds']:.2f}, plain {args.batch / r['plain']['seconds']:.2f} | peak extra memory "
                      f"ours {r['ours']['extra_bytes'] / 2**30:.2f} GiB, eager {r['eager']['extra_bytes'] / 2**30:.2f} GiB, plain {r['plain']['extra_bytes'] / 2**30:.2f} GiB "
                      f"| max |ours - eager| {row['max_diff']:.2e} | kernel: {row['kernel']} | attention+gain+judge / attention "
                      f"{row['signals_vs_attention']:.2f}x", flush=True)
            else:
                print(f"  {family:<16} done", flush=True)
    if not args.device.startswith("cuda"):
        header = (f"{'family':<16} {'tokens':>6} {'image':>5} {'plain ms':>9} {'ours ms':>8} {'eager ms':>9} {'ours/plain':>10} {'eager/ours':>10} "
                  f"{'eager MiB':>9} {'ours MiB':>8} {'mem ratio':>9} {'max diff':>9} {'+gain':>7}")
        print()
        print("time: ours / plain (target <= 1.3x), eager / ours (target >= 1x); memory beyond the plain forward: eager / ours (target >= 10x); "
              "+gain: attention, visual information gain and judge / attention alone (target <= 1.6x)")
        print(header)
        print("-" * len(header))
        for row in rows:
            r = row["results"]
            print(f"{row['family']:<16} {row['tokens']:>6} {row['image_tokens']:>5} {r['plain']['seconds'] * 1000:>9.1f} {r['ours']['seconds'] * 1000:>8.1f} "
                  f"{r['eager']['seconds'] * 1000:>9.1f} {row['time_vs_plain']:>9.2f}x {row['eager_time_vs_ours']:>9.2f}x {row['eager_extra_mib']:>9.1f} "
                  f"{row['ours_extra_mib']:>8.1f} {row['eager_memory_vs_ours']:>8.1f}x {row['max_diff']:>9.1e} {row['signals_vs_attention']:>6.2f}x")
        worst = lambda key, fn: fn(row[key] for row in rows)  # noqa: E731
        print(f"worst over families: ours/plain {worst('time_vs_plain', max):.2f}x, eager/ours time {worst('eager_time_vs_ours', min):.2f}x, "
              f"eager/ours memory {worst('eager_memory_vs_ours', min):.1f}x, max diff {worst('max_diff', max):.1e}, "
              f"attention+gain+judge/attention {worst('signals_vs_attention', max):.2f}x")
    if args.as_json:
        Path(args.as_json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
