"""Orchestration overhead: N trials whose work is a fixed sleep, run through the real study path.

    python benchmarks/bench_overhead.py --trials 200 --sleep 1 --out benchmarks/results/overhead.md

Reports makespan against the ideal (trials x sleep / parallel slots) and the per-trial overhead.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--sleep", type=float, default=1.0)
    p.add_argument("--slots", type=int, default=2, help="CPUs of the embedded Ray = parallel trial slots")
    p.add_argument("--out", default="benchmarks/results/overhead.md")
    p.add_argument("--smoke", action="store_true", help="tiny settings (a few seconds)")
    args = p.parse_args(argv)
    if args.smoke:
        args.trials, args.sleep = 6, 0.2

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from orchestrator import Study
    from orchestrator.execution.ray_runtime import connect_ray
    from orchestrator.spec.schema import parse_spec
    from tests.support.trainables import sleep_trainable

    with tempfile.TemporaryDirectory() as tmp:
        spec = parse_spec({"name": "overhead", "dataset": {"image_size": [8, 8], "samples_per_class": 4},
                           # one trial per epoch budget: N distinct trials; the sleep trainable ignores the budget
                           "grid": {"architectures": ["cnn"], "epochs": list(range(1, args.trials + 1))},
                           "models": {"cnn": {"params": {"seconds": args.sleep}}},
                           "execution": {"cpus_per_trial": 1, "max_retries": 0}, "storage": {"uri": f"{tmp}/store"}})
        connect_ray(None, num_cpus=args.slots)
        t = time.perf_counter()
        outcome = Study(spec, trainable=sleep_trainable).run(show_progress=False, notify=lambda m: None)
        makespan = time.perf_counter() - t
    ideal = args.trials * args.sleep / args.slots
    over = makespan / ideal - 1
    per_trial = (makespan - ideal) * args.slots / args.trials
    completed = outcome.counts.get("completed", 0)
    rows = [[args.trials, args.sleep, args.slots, completed, round(makespan, 1), round(ideal, 1), f"{over * 100:.1f} %",
             round(per_trial, 3)]]
    body = md_table(["trials", "sleep s", "slots", "completed", "makespan s", "ideal s", "over ideal",
                     "overhead s/trial"], rows)
    body += ("\nKnobs: one Tuner for the whole grid, `reuse_actors=True` (one backend in the study), "
             "`TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1` (records are written by our own callback), a sleep trainable injected "
             "through `Study(trainable=...)` that, like every trial, hands its record over in a final checkpoint; the "
             "device probe and data preparation run once before the Tuner starts (included in the makespan).\n")
    print(body)
    if not args.smoke or args.out:
        append_result(args.out, f"Orchestration overhead{' (smoke)' if args.smoke else ''}", body)
    return 0 if completed == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
