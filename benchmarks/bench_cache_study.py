"""Cache effect on a whole study: the same multi-trial study submitted twice to one store. The first submission
prepares its data (decode, split, Augmentor) once as a Ray task; the second prepares nothing.

    python benchmarks/bench_cache_study.py --out benchmarks/results/data.md
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--target", type=int, default=500, help="Augmentor images per class")
    p.add_argument("--architectures", default="cnn,cnn_lstm")
    p.add_argument("--out", default="benchmarks/results/data.md")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.samples, args.target, args.architectures = 16, 10, 12, "cnn"
    architectures = args.architectures.split(",")

    from orchestrator import Study
    from orchestrator.execution.ray_runtime import connect_ray
    from orchestrator.spec.schema import parse_spec

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = parse_spec({
            "name": "cachebench", "dataset": {"image_size": [args.size, args.size], "samples_per_class": args.samples},
            "augmentation": {"augmentor": {"samples_per_class": args.target}},
            "grid": {"architectures": architectures, "epochs": [1], "augmentation": ["augmentor"], "repeats": 2},
            "execution": {"cpus_per_trial": 1}, "storage": {"uri": f"{tmp}/store"}})
        connect_ray(None, num_cpus=2)
        for n in (1, 2):
            t = time.perf_counter()
            outcome = Study(spec).run(show_progress=False, notify=lambda m: None)
            wall = time.perf_counter() - t
            info = json.loads(outcome.store.get_text(outcome.paths.run_info))
            cache = list(info["data_cache"].values())
            rows.append([f"submission {n}", len(outcome.records), sum(c["hit"] for c in cache),
                         sum(not c["hit"] for c in cache), round(sum(c["seconds"] for c in cache), 2),
                         round(sum(c.get("saved_s") or 0 for c in cache), 2), round(wall, 1)])
    body = md_table(["submission", "trials", "cache hits", "prepared", "prepare s", "saved s", "wall s"], rows)
    body += (f"\nStudy: {' + '.join(architectures)} x 2 repeats, 1 epoch, {args.size}x{args.size} synthetic, "
             f"Augmentor to {args.target} per class; {2 * len(architectures)} trials share one prepared setting in "
             "each submission.\n")
    print(body)
    append_result(args.out, f"Cache effect on a two-submission study{' (smoke)' if args.smoke else ''}", body)
    return 0 if rows[1][3] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
