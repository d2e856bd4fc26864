"""Write an ISIC-2019-shaped folder for benchmarks (synthetic lesions, NOT medical images).

    python benchmarks/make_isic2019.py benchmarks/_work/isic2019            # 25,331 JPEGs at 600x450
    python benchmarks/make_isic2019.py benchmarks/_work/isic2019-5pc --fraction 0.05

Layout as the ISIC 2019 challenge ships it, read by the ``isic2019`` source: ``ISIC_2019_Training_Input/<image>.jpg``
and ``ISIC_2019_Training_GroundTruth.csv`` (image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK one-hot), with
ISIC 2019's training class counts (scaled by ``--fraction``). Lesions are drawn at a quarter of the size by
``workers.data.synthetic.render_lesion`` and scaled up, deterministic for ``--seed``; processes split the work.
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.data.synthetic import render_lesion  # noqa: E402

CLASS_COUNTS = {"MEL": 4522, "NV": 12875, "BCC": 3323, "AK": 867, "BKL": 2624, "DF": 239, "VASC": 253, "SCC": 628}
COLUMNS = list(CLASS_COUNTS) + ["UNK"]
LOOK = {"MEL": 3, "NV": 4, "BCC": 1, "AK": 0, "BKL": 5, "DF": 2, "VASC": 8, "SCC": 7}  # synthetic look per class
WIDTH, HEIGHT = 600, 450


def plan(fraction: float) -> list[tuple[str, str]]:
    """(image name, class) for every image, classes interleaved as in the real CSV."""
    rows = []
    for name, count in CLASS_COUNTS.items():
        rows += [name] * max(2, round(count * fraction))
    order = np.random.default_rng(2019).permutation(len(rows))
    return [(f"ISIC_{i:07d}", rows[j]) for i, j in enumerate(order)]


def _write(job: tuple[Path, int, list[tuple[int, str, str]]]) -> int:
    folder, seed, items = job
    for index, image, cls in items:
        rng = np.random.default_rng([seed, index])
        small = render_lesion(rng, (HEIGHT // 4, WIDTH // 4), LOOK[cls])
        Image.fromarray(small).resize((WIDTH, HEIGHT), Image.BILINEAR).save(folder / f"{image}.jpg", quality=90)
    return len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--fraction", type=float, default=1.0, help="share of ISIC 2019's 25,331 images")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = plan(args.fraction)
    folder = args.out / "ISIC_2019_Training_Input"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    items = [(i, image, cls) for i, (image, cls) in enumerate(rows) if not (folder / f"{image}.jpg").is_file()]
    jobs = [(folder, args.seed, items[k:k + 200]) for k in range(0, len(items), 200)]
    with mp.get_context("fork").Pool(args.processes) as pool:
        for done, _ in enumerate(pool.imap_unordered(_write, jobs), 1):
            if done % 10 == 0 or done == len(jobs):
                print(f"  {min(done * 200, len(items))}/{len(items)} images", flush=True)
    with open(args.out / "ISIC_2019_Training_GroundTruth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image"] + COLUMNS)
        for image, cls in rows:
            writer.writerow([image] + ["1.0" if c == cls else "0.0" for c in COLUMNS])
    print(f"{len(rows)} images under {args.out} ({len(items)} written in {time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
