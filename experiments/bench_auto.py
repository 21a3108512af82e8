"""Automatic masks on a large photo: the full photo (naive) against `auto.max_side` (ours), side by
side in one run, each in its own process so its peak RSS is its own.

    python experiments/bench_auto.py                          # vit_b (random weights), 3454×4318
    python experiments/bench_auto.py --model tiny --side 1200 # quick

SAM encodes any photo at 1024 px, but the stock generator upscales every candidate mask (3 per
prompt, `points_per_batch` prompts at a time) to the photo's size before filtering them: on a
15-megapixel photo that is most of the time and memory. `max_side` generates on a smaller copy and
scales the masks that survive back. Random weights cost the same FLOPs; the thresholds are 0 so
every candidate is kept and post-processed, as the worst case of a real model is.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def photo(height: int, width: int) -> np.ndarray:
    """A smooth synthetic photo with a few shapes (what a random model segments does not matter)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, 128)], -1)
    for _ in range(6):
        cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(100, 600)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r**2] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


def measure(
    model: str, height: int, width: int, max_side: int | None, points: int, batch: int, device: str
) -> dict:
    from segment_anything import SamAutomaticMaskGenerator

    from samexp.models.build import build_official, build_tiny
    from samexp.predict.auto import generate

    sam = (build_tiny(seed=0) if model == "tiny" else build_official(model, pretrained=False)).sam
    sam.to(device)
    generator = SamAutomaticMaskGenerator(sam.eval(), points_per_side=points, points_per_batch=batch,
                                          pred_iou_thresh=0.0, stability_score_thresh=0.0)  # fmt: skip
    image = photo(height, width)
    start = time.perf_counter()
    masks = generate(generator, image, max_side)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "peak_bytes": peak, "masks": len(masks)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit_b", choices=["tiny", "vit_b", "vit_l", "vit_h"])
    parser.add_argument("--side", type=int, nargs=2, default=[4318, 3454], metavar=("H", "W"))
    parser.add_argument("--points-per-side", type=int, default=8)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    h, w = args.side
    if args.case is not None:
        max_side = None if args.case == "naive" else args.max_side
        print(json.dumps(measure(args.model, h, w, max_side, args.points_per_side,
                                 args.points_per_batch, args.device)))  # fmt: skip
        return
    rows = {}
    for case in ("naive", "ours"):
        cmd = [sys.executable, __file__, "--case", case, "--model", args.model, "--side", str(h), str(w),
               "--points-per-side", str(args.points_per_side), "--points-per-batch",
               str(args.points_per_batch), "--max-side", str(args.max_side),
               "--device", args.device]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[case] = json.loads(done.stdout.strip().splitlines()[-1])
    naive, ours = rows["naive"], rows["ours"]
    print(f"auto masks, {args.model} (random weights), {w}x{h} photo, {args.points_per_side}^2 points, "
          f"points_per_batch={args.points_per_batch}; ours: auto.max_side={args.max_side}")  # fmt: skip
    print(f"{'':10}{'naive':>12}{'ours':>12}{'ratio':>10}")
    print(
        f"{'seconds':10}{naive['seconds']:12.1f}{ours['seconds']:12.1f}{naive['seconds'] / ours['seconds']:9.1f}x"
    )
    print(f"{'peak RSS':10}{naive['peak_bytes'] / 2**30:11.2f}G{ours['peak_bytes'] / 2**30:11.2f}G"
          f"{naive['peak_bytes'] / ours['peak_bytes']:9.1f}x")  # fmt: skip
    print(f"{'masks':10}{naive['masks']:12d}{ours['masks']:12d}")


if __name__ == "__main__":
    main()
