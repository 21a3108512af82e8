"""How long `python -m samexp.data inspect ROOT` takes on a big folder dataset (issue 23: under
10 s for 10,000 images on a 2-core machine).

    python experiments/bench_inspect.py                  # 10,000 images, 256×256 PNG masks
    python experiments/bench_inspect.py --images 1000    # quick

Writes `<tmp>/train/{images,masks}` and `<tmp>/test/...` (80/20) of small JPEG photos and PNG
masks, then times the command as a user runs it (a fresh process: imports included) and
`inspect_text` alone in this process. Detection lists names, reads the headers it needs and
decodes at most `samexp.data.detect.values.SAMPLE` masks, so the time grows with the number of
names, not of pixels.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def write(root: Path, images: int, side: int) -> None:
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : side // 2, side // 4 : side // 2] = 255
    photo_bytes = cv2.imencode(".jpg", photo)[1].tobytes()  # one encoding, written n times
    mask_bytes = cv2.imencode(".png", mask)[1].tobytes()
    for i in range(images):
        split = "test" if i % 5 == 0 else "train"
        for kind, ext, data in (("images", ".jpg", photo_bytes), ("masks", ".png", mask_bytes)):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:06d}{ext}").write_bytes(data)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--side", type=int, default=256)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "big"
        start = time.perf_counter()
        write(root, args.images, args.side)
        written = time.perf_counter() - start
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "samexp.data", "inspect", str(root)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        command = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"inspect failed ({done.returncode}): {done.stderr.strip()}")
        from samexp.data.inspect import inspect_text

        start = time.perf_counter()
        inspect_text(root)
        in_process = time.perf_counter() - start
        print(done.stdout)
        print(json.dumps({"images": args.images, "side": args.side, "write_s": round(written, 2),
                          "inspect_command_s": round(command, 2),
                          "inspect_text_s": round(in_process, 2)}))  # fmt: skip


if __name__ == "__main__":
    main()
