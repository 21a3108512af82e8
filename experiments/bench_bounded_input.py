"""What the file limits (`samexp.config.limits`) cost and save: peak memory and time of loading a large,
real-shaped COCO file, and of refusing the hostile files of issue 22, each in its own process so
its peak RSS is its own.

    python experiments/bench_bounded_input.py                       # 40k images, 300k annotations
    python experiments/bench_bounded_input.py --images 5000 --per-image 7   # quick (val2017-sized)

The large file is shaped like COCO train2017 (640×480 images, ~7 annotations each, polygons of
~24 vertices with two-decimal coordinates); its images are tiny PNGs of the stated size header.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

LOAD = "from samexp.data.coco_json import read_coco; read_coco({json!r}, {images!r})"
YAML = "from pathlib import Path; from samexp.data.yolo import read_data_yaml; read_data_yaml(Path({path!r}))"
IMPORTS = "import samexp.data.coco_json, samexp.data.yolo"
# What samexp did before the limits: safe_load, then names walked (str) as read_data_yaml did
OLD_YAML = "import yaml; d = yaml.safe_load(open({path!r})); [str(n) for n in d['names']]"


def coco_file(root: Path, images: int, per_image: int) -> Path:
    """`images` 640×480 images with `per_image` polygons of 24 vertices each."""
    import cv2

    (root / "images").mkdir(parents=True)
    png = cv2.imencode(".png", np.zeros((480, 640), np.uint8))[1].tobytes()
    rng = np.random.default_rng(0)
    entries, anns = [], []
    for i in range(1, images + 1):
        (root / "images" / f"{i:06d}.png").write_bytes(png)
        entries.append({"id": i, "file_name": f"{i:06d}.png", "height": 480, "width": 640})
        for _ in range(per_image):
            cx, cy, r = rng.uniform(60, 580), rng.uniform(60, 420), rng.uniform(10, 55)
            angles = np.sort(rng.uniform(0, 2 * np.pi, 24))
            xy = np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1).round(2)
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "area": 0.0, "bbox": [0, 0, 1, 1], "segmentation": [xy.ravel().tolist()]})  # fmt: skip
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": entries, "annotations": anns,
                                "categories": [{"id": 1, "name": "thing"}]}))  # fmt: skip
    return path


def million_on_one_image(root: Path) -> Path:
    """The issue's case: 10⁶ tiny annotations (on one image: an image needs a file)."""
    import cv2

    (root / "images").mkdir(parents=True)
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((48, 64), np.uint8))
    ann = '{"id":%d,"image_id":1,"category_id":1,"segmentation":[[1,1,5,1,5,5]]}'
    body = ",".join(ann % i for i in range(1_000_000))
    path = root / "annotations.json"
    path.write_text('{"images":[{"id":1,"file_name":"a.png","height":48,"width":64}],'
                    f'"categories":[{{"id":1,"name":"x"}}],"annotations":[{body}]}}')  # fmt: skip
    return path


def alias_bomb(root: Path) -> Path:
    lol = ", ".join(["lol"] * 9)
    lines = [f"a0: &a0 [{lol}]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # fmt: skip
    path = root / "data.yaml"
    path.write_text("\n".join(lines) + "\nnames: *a8\n")
    return path


# Each case runs in a child that reports its own peak RSS, also when a watchdog stops it at the
# memory cap or the time limit (as the machine would, later and less politely). An address-space
# rlimit would not do: importing torch alone reserves gigabytes it never touches.
CHILD = """
import json, os, resource, threading, time
def report(ended):
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"seconds": round(seconds, 2), "peak_rss_mb": round(peak / 1024),
                      "ended": ended}}), flush=True)
def watch():
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        time.sleep(0.05)
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * page
        if rss > {cap} or time.perf_counter() - start > {timeout}:
            report(f"stopped at {{rss / 2**30:.1f}} GB after {{time.perf_counter() - start:.0f}} s")
            os._exit(0)
exec({setup!r})  # imports: before the clock, in the peak
start = time.perf_counter()
threading.Thread(target=watch, daemon=True).start()
try:
    exec({code!r})
    ended = "loaded"
except BaseException as e:
    ended = f"{{type(e).__name__}}: {{e}}"
report(ended)
"""


def measure(code: str, cap_gb: float, timeout: int, setup: str = IMPORTS) -> dict:
    """`code` in a fresh process after `setup`: its seconds, peak RSS, and how it ended."""
    child = CHILD.format(cap=int(cap_gb * 2**30), timeout=timeout, code=code, setup=setup)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=timeout + 60)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--per-image", type=int, default=7)
    parser.add_argument("--cap-gb", type=float, default=6, help="address-space cap per process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = {"python + samexp's data imports": measure("pass", args.cap_gb, 60)}
        (root / "bomb").mkdir()
        bomb = alias_bomb(root / "bomb")
        rows["alias bomb, as read before (safe_load + names walked)"] = measure(
            OLD_YAML.format(path=str(bomb)), args.cap_gb, 60, setup="import yaml"
        )
        rows["alias bomb, read_data_yaml"] = measure(YAML.format(path=str(bomb)), args.cap_gb, 60)
        million = million_on_one_image(root / "million")
        rows[f"10⁶ annotations on one image ({million.stat().st_size / 1e6:.0f} MB)"] = measure(
            LOAD.format(json=str(million), images=str(million.parent / "images")),
            args.cap_gb,
            120,
        )
        big = coco_file(root / "big", args.images, args.per_image)
        label = f"{args.images} images, {args.images * args.per_image} annotations"
        rows[f"{label} ({big.stat().st_size / 1e6:.0f} MB)"] = measure(
            LOAD.format(json=str(big), images=str(big.parent / "images")),
            args.cap_gb,
            600,
        )
    for name, row in rows.items():
        print(f"{name}: {row['seconds']} s, peak RSS {row['peak_rss_mb']} MB; {row['ended'][:200]}")


if __name__ == "__main__":
    main()
