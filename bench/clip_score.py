"""CLIPScore: the batched pipeline against a one-pair-at-a-time loop on the same 512 images.

    python bench/clip_score.py                 # ViT-B-32 architecture, random weights, 512 photos
    python bench/clip_score.py --images 128    # quicker

The model is open_clip's ViT-B-32 built without weights (no hub here) and saved in open_clip's folder
format, so it loads through the same ``local-dir:`` path real checkpoints use; timing does not depend on
the weights. Prints the ratio (target >= 5x on CPU) and the share of the batched run spent in the
model's forward (target >= 70%).
"""
from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_model(folder: Path, name: str) -> Path:
    import open_clip
    import safetensors.torch
    from open_clip.push_to_hf_hub import save_config_for_hf

    model = open_clip.create_model(name, pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    save_config_for_hf(model, folder / "open_clip_config.json", model_config=open_clip.get_model_config(name))
    return folder


def make_images(n: int, seed: int = 3) -> list[bytes]:
    """Product-photo-like JPEGs (640x480, shapes and text), distinct from each other."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    out = []
    for i in range(n):
        img = Image.new("RGB", (640, 480), (rng.randrange(180, 255), rng.randrange(180, 255), rng.randrange(180, 255)))
        d = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.randrange(600), rng.randrange(440)
            d.rectangle([x, y, x + rng.randrange(30, 200), y + rng.randrange(30, 160)], fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        d.text((20, 20), f"BRAND {i} SHAMPOO 250 ml", fill=(0, 0, 0))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=88)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images-per-item", type=int, default=4, help="photos sharing one item text")
    args = parser.parse_args()

    import torch

    from curation.clip_score import ClipConfig, ClipScorer, Timing

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_model(Path(tmp) / "clip", args.arch)
        images = make_images(args.images)
        # like the store: an item's photos share its text (here 4 photos per item)
        texts = [f"Brand {i // args.images_per_item} shampoo, 250 ml bottle, leaking at the cap" for i in range(args.images)]
        scorer = ClipScorer(ClipConfig(model=str(folder), device=args.device, batch_size=args.batch_size, decode_threads=args.decode_threads))
        print(f"{args.arch} (random weights) on {args.device}, torch threads {torch.get_num_threads()}; {args.images} JPEGs 640x480, {args.images_per_item} per item text")
        scorer.score_pairs(list(zip(images[:8], texts[:8])))  # warm-up: first calls allocate

        timing = Timing()
        start = time.perf_counter()
        batched = scorer.score_pairs(list(zip(images, texts)), timing)
        t_batched = time.perf_counter() - start

        start = time.perf_counter()
        single = [scorer.score_one(img, txt) for img, txt in zip(images, texts)]
        t_single = time.perf_counter() - start

    worst = max(abs(a.cosine - b.cosine) for a, b in zip(batched, single))
    print(f"one pair at a time: {t_single:7.2f} s  {args.images / t_single:7.1f} pairs/s")
    print(f"batched pipeline:   {t_batched:7.2f} s  {args.images / t_batched:7.1f} pairs/s  (batch {args.batch_size}, {args.decode_threads} decode threads)")
    print(f"ratio batched vs one at a time: {t_single / t_batched:.2f}x (target >= 5x)")
    print(f"share of the batched run in the model's forward: {100 * timing.forward / timing.total:.0f}% (target >= 70%)")
    print(f"largest difference between the two: {worst:.2g} (same scores)")
    print(json.dumps({"ratio": t_single / t_batched, "forward_share": timing.forward / timing.total}))


if __name__ == "__main__":
    main()
