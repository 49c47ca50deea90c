"""Peak memory of a training run against the size of its snapshot: streamed examples (the product's way)
against every example encoded before the first step (the way it was: ``trainer.data.build_examples``),
on the same stores, in one run.

    python bench/train_memory.py                       # about 300, 1,500 and 6,000 training examples
    python bench/train_memory.py --sizes 300,1500 --naive-up-to 1500

For each size a synthetic store is built (bench/synthetic_store.py: catalog items and complaints with 1-3
JPEGs each, 800 px a side by default, as catalog photos are), a snapshot of all its samples made, and a run of a tiny IDEFICS2 (224 px, no splitting,
batch 8, 2 optimiser steps) trained on it in a process tree of its own: the streamed run through the
train job's launcher (torchrun's, with 2 loader workers), the naive one in a plain child. Peak memory
is the largest sum of PSS over the run's processes (shared pages counted once), sampled every 0.2 s.

Printed: peak GB and time to the first step per size and way; the growth exponent k of peak ~ examples^k
(least squares over the sizes; target k <= 0.05 for the streamed way); the ratio naive/streamed at each
size. Then the share of step time spent waiting for data over 30 steps with 2 loader workers (target <= 5%).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOLDOUT = 0.1
SAMPLES_PER_EXAMPLE = 1 / (1 - HOLDOUT)  # samples a store needs per training example (the rest are held out)


class TreePeak:
    """The largest total PSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int, every: float = 0.2):
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    total += p.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITPRO_")}
    env["VITPRO_HOME"] = str(home)
    return env


def build_store(home: Path, examples: int, photo_px: int) -> None:
    """A store of ``VITPRO_HOME``=home whose snapshot 'all' gives about ``examples`` training examples."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from bench.synthetic_store import build\n"
            "from config.settings import load_settings\n"
            "from curation import snapshots\nfrom curation.filters import FilterConfig\n"
            "from db.app.engine import write_engine\nfrom db.store import open_store\n"
            "build(%d, photo_px=%d)\n"
            "s = load_settings()\n"
            "snapshots.create(open_store(s.store), write_engine(s.app_url), name='all', filter_name=None, config=FilterConfig([]), created_by='bench')\n"
            ) % (str(Path(__file__).resolve().parents[1]), int(math.ceil(examples * SAMPLES_PER_EXAMPLE)), photo_px)
    subprocess.run([sys.executable, "-c", code], env=_env(home), check=True, capture_output=True)


def _config(steps: int, workers: int) -> dict:
    from trainer.config import LoraSettings, TrainConfig

    return TrainConfig(lora=LoraSettings(r=8, alpha=16, dropout=0.1), batch_size=8, max_steps=steps, epochs=1, holdout=HOLDOUT,
                       checkpoint_every=10_000, loader_workers=workers).with_overrides(longest_edge=224, splitting=False).to_dict()


def streamed(home: Path, model: Path, steps: int, workers: int = 2) -> dict:
    """The product's way: the train job's launcher (torchrun, one process, ``workers`` loader workers)."""
    code = ("import sys, json, time; sys.path.insert(0, %r)\n"
            "from config.settings import load_settings\nfrom db.app import training\nfrom db.app.engine import write_engine\n"
            "from trainer.launch import launch\nfrom trainer.ranks import RunSpec\n"
            "s = load_settings(); engine = write_engine(s.app_url); cfg = json.loads(sys.argv[1]); name = 'r%%d' %% time.time_ns()\n"
            "training.create_run(engine, name=name, snapshot='all', base_model=sys.argv[2], config=cfg, out_dir=sys.argv[3], created_by='bench')\n"
            "t0 = time.perf_counter(); first = []\n"
            "def watch():\n"
            "    if not first and training.get_run(engine, name).steps_done >= 1: first.append(time.perf_counter() - t0)\n"
            "out = launch(RunSpec(name=name, snapshot='all', model=sys.argv[2], config=cfg, work_dir=sys.argv[3], out=sys.argv[3]), 1, watch=watch, poll_s=0.05)\n"
            "assert out.returncode == 0, out.failure()\n"
            "r = out.result; r['first_step_s'] = first[0] if first else None; print(json.dumps(r))\n"
            ) % str(Path(__file__).resolve().parents[1])
    out_dir = Path(tempfile.mkdtemp(prefix="run-", dir=home))
    return _measure([sys.executable, "-c", code, json.dumps(_config(steps, workers)), str(model), str(out_dir)], home)


def naive(home: Path, model: Path, steps: int) -> dict:
    """The way it was: every row read, every example encoded (images and pixel values held), then the loop."""
    code = ("import sys, json, time; sys.path.insert(0, %r)\n"
            "t0 = time.perf_counter()\n"
            "from config.settings import load_settings\nfrom curation import snapshots\nfrom db.app.engine import write_engine\n"
            "from db.storage.blobs import open_blobs\nfrom db.store import open_store\n"
            "from trainer.benchmarks import split_rows\nfrom trainer.config import TrainConfig\nfrom trainer.data import build_examples\n"
            "from trainer.loop import train\nfrom trainer.lora import apply_lora, load_for_training\n"
            "s = load_settings(); cfg = TrainConfig.from_dict(json.loads(sys.argv[1]))\n"
            "rows, _ = split_rows(snapshots.snapshot_rows(open_store(s.store), write_engine(s.app_url), 'all'), cfg.holdout, cfg.seed)\n"
            "adapter = load_for_training(sys.argv[2], cfg); apply_lora(adapter, cfg.lora)\n"
            "examples, skipped = build_examples(adapter, rows, open_blobs(s), ocr=cfg.ocr)\n"
            "first = []\n"
            "r = train(adapter, examples, cfg, sys.argv[3], on_step=lambda e: first.append(time.perf_counter() - t0) if not first else None)\n"
            "print(json.dumps({'examples': len(examples), 'steps': r.steps, 'first_step_s': first[0]}))\n"
            ) % str(Path(__file__).resolve().parents[1])
    out_dir = Path(tempfile.mkdtemp(prefix="naive-", dir=home))
    return _measure([sys.executable, "-c", code, json.dumps(_config(steps, 0)), str(model), str(out_dir)], home)


def _measure(cmd: list[str], home: Path) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = TreePeak(proc.pid)
    out, err = proc.communicate()
    result = {"peak_gb": peak.stop() / 2**30, "wall_s": time.perf_counter() - started}
    if proc.returncode != 0:
        return {**result, "error": err[-2000:]}
    return {**result, **json.loads(out.strip().splitlines()[-1])}


def exponent(sizes: list[int], values: list[float]) -> float:
    """k of values ~ sizes^k, least squares in log-log."""
    import numpy as np

    return float(np.polyfit(np.log(sizes), np.log(values), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300,1500,6000", help="training examples per store")
    ap.add_argument("--naive-up-to", type=int, default=6000, help="largest size the naive way is run at (it holds every example)")
    ap.add_argument("--photo-px", type=int, default=800, help="side of the stores' JPEG photos (catalog photos are 500-2000 px)")
    ap.add_argument("--wait-steps", type=int, default=30, help="steps of the data-wait measure (0: skip it)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    from curation.tiny_models import make_tiny

    root = Path(tempfile.mkdtemp(prefix="bench-train-memory-"))
    model = make_tiny("idefics2", root / "idefics2")
    rows = []
    for n in sizes:
        home = root / f"store-{n}"
        t = time.perf_counter()
        build_store(home, n, args.photo_px)
        built = time.perf_counter() - t
        s = streamed(home, model, 2)
        nv = naive(home, model, 2) if n <= args.naive_up_to else None
        rows.append((n, s, nv))
        print(f"{s.get('examples', n):>6} examples (store built in {built:.0f} s): streamed peak {s['peak_gb']:.2f} GB, first step after "
              f"{s.get('first_step_s') or float('nan'):.1f} s"
              + (f" | naive peak {nv['peak_gb']:.2f} GB, first step after {nv.get('first_step_s') or float('nan'):.1f} s, "
                 f"ratio naive/streamed {nv['peak_gb'] / s['peak_gb']:.2f}x" if nv else " | naive not run at this size")
              + (f"  [error: {s.get('error') or nv.get('error')}]" if s.get("error") or (nv and nv.get("error")) else ""), flush=True)
    ok = [(r[1].get("examples", r[0]), r[1]["peak_gb"]) for r in rows if "error" not in r[1]]
    if len(ok) >= 2:
        k = exponent([x for x, _ in ok], [y for _, y in ok])
        print(f"streamed: peak memory ~ examples^{k:.3f} (target k <= 0.05): {'met' if k <= 0.05 else 'NOT met'}")
    naive_ok = [(r[2]["examples"], r[2]["peak_gb"]) for r in rows if r[2] and "error" not in r[2]]
    if len(naive_ok) >= 2:
        print(f"naive:    peak memory ~ examples^{exponent([x for x, _ in naive_ok], [y for _, y in naive_ok]):.3f}")
    firsts = [r[1].get("first_step_s") for r in rows if r[1].get("first_step_s")]
    if len(firsts) >= 2:
        print(f"streamed: time to the first step {min(firsts):.1f}-{max(firsts):.1f} s over sizes {sizes[0]}-{sizes[-1]} "
              f"(growth exponent {exponent([r[1].get('examples', r[0]) for r in rows if r[1].get('first_step_s')], firsts):.3f})")
    if args.wait_steps:
        home = root / f"store-{sizes[-1]}"
        w = streamed(home, model, args.wait_steps, workers=2)
        print(f"data wait: {w.get('data_wait_share', float('nan')):.1%} of step time over {args.wait_steps} steps with 2 loader workers "
              f"(target <= 5%): {'met' if (w.get('data_wait_share') or 1) <= 0.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
