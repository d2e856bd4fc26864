"""Data at scale: parallel preparation into shards (1 and N Ray CPUs) and a trial's peak memory on big vs small data.

    python benchmarks/make_isic2019.py benchmarks/_work/isic2019                     # once: 25,331 JPEGs, 600x450
    python benchmarks/bench_data.py --isic2019 benchmarks/_work/isic2019 --out benchmarks/results/data.md
    python benchmarks/bench_data.py --smoke --out /tmp/data.md                        # tiny, checks the harness

What is measured:
  * preparation of the ISIC-2019-shaped folder at ``--size`` (224x224) with the Augmentor stage topping every
    training class up to ``--target`` (2,000), on a fresh local Ray of 1 and of 2 CPUs: wall time, and the peak
    memory of the preparing processes (this driver, Ray's raylet / object store and workers), sampled every
    0.5 s as the sum of PSS (shared pages split between the processes that map them) and the sum of RSS;
    the two runs' shards are compared by checksum (they must be identical);
  * peak RSS (``ru_maxrss``) of one trial (``--architecture`` with ``--filters``, batch 32, one epoch, CPU)
    training on those shards, and of the same trial on the quick-start data set prepared at the same image
    size (synthetic, 60 images in the largest class, Augmentor top-up to 60): memory must not grow with the
    data (difference < 25 %). Each trial runs in a fresh process.
The Markdown section (machine, versions, load average) is appended to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import append_result, md_table  # noqa: E402

QUICKSTART = {"source": "synthetic", "samples_per_class": 60}
SPLIT = {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return out


def _kb(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory:
    """Samples the memory of this process and all its descendants in a thread (Linux ``/proc``); peaks in MB."""

    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self.peak_pss = self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        pids = _descendants(os.getpid())
        pss = sum(_kb(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids)
        rss = sum(_kb(f"/proc/{pid}/status", "VmRSS") for pid in pids)
        self.peak_pss, self.peak_rss = max(self.peak_pss, pss / 1024), max(self.peak_rss, rss / 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def prepare_with_ray(dataset: dict, aug: dict, target: Path, cpus: int) -> dict:
    """Prepare into ``target`` on a fresh local Ray of ``cpus`` CPUs; wall time, memory peaks, the index."""
    import ray

    from orchestrator.execution.data_preparation import RayExecutor
    from workers.data import prepare_shards

    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with TreeMemory() as memory:
            t = time.perf_counter()
            index = prepare_shards(dataset, SPLIT, "augmentor", aug, target, executor=RayExecutor(),
                                   notify=lambda line: print(f"[{cpus} CPU] {line}", flush=True))
            wall = time.perf_counter() - t
    finally:
        ray.shutdown()
    return {"cpus": cpus, "wall_s": wall, "peak_pss_mb": memory.peak_pss, "peak_rss_mb": memory.peak_rss, "index": index}


def trial_peak_rss(directory: Path, args) -> dict:
    """Run one trial on the shards in ``directory`` in a fresh process; its ``ru_maxrss`` and timings."""
    cmd = [sys.executable, __file__, "--trial-on", str(directory), "--architecture", args.architecture,
           "--filters", str(args.filters), "--size", str(args.size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"trial process failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1])


def run_trial_here(directory: str, args) -> None:
    """(child process) one epoch of one trial streamed from ``directory``; prints a JSON line."""
    from orchestrator.spec.grid import expand_grid
    from orchestrator.spec.schema import parse_spec
    from workers.data import open_sharded
    from workers.train import run_trial

    data = open_sharded(directory)
    spec = parse_spec({"name": "bench-data", "dataset": {"image_size": [args.size, args.size]},
                       "training": {"batch_size": 32, "mixed_precision": "off"},
                       "models": {args.architecture: {"params": {"filters": args.filters}}},
                       "grid": {"architectures": [args.architecture], "epochs": [1], "node_types": ["cpu"]}})
    record = run_trial(expand_grid(spec)[0], data=data).record
    print(json.dumps({"maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "n_train": record.data["n_train"], "fit_s": record.timings.fit_s,
                      "total_s": record.timings.total_s, "accuracy": record.metrics["accuracy"]}))


def files_of(index: dict) -> dict:
    return {name: entry["sha256"] for name, entry in index["files"].items()}


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def run(args) -> str:
    from workers.data import prepare_shards

    work = Path(args.work)
    load_before, uptime_before = load_average(), subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    dataset = {"source": "isic2019", "path": str(Path(args.isic2019).resolve()), "image_size": [args.size, args.size]}
    aug = {"augmentor": {"mode": "top_up", "samples_per_class": args.target}}
    runs = [prepare_with_ray(dataset, aug, work / f"prepared-{cpus}cpu", cpus) for cpus in args.cpus]
    identical = all(files_of(r["index"]) == files_of(runs[0]["index"]) for r in runs)
    meta = runs[0]["index"]["meta"]
    rows = [[f"{r['cpus']} Ray CPU(s)", f"{r['wall_s']:.0f}", f"{r['peak_pss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}",
             f"{runs[0]['wall_s'] / r['wall_s']:.2f}x"] for r in runs]
    prep_table = md_table(["preparation", "wall s", "peak PSS MB (sum)", "peak RSS MB (sum)", "speed-up"], rows)
    shard_bytes = sum(e["bytes"] for e in runs[0]["index"]["files"].values())

    small = work / f"quickstart-{args.size}"
    prepare_shards({**QUICKSTART, "image_size": [args.size, args.size]}, SPLIT, "augmentor",
                   {"augmentor": {"mode": "top_up", "samples_per_class": 60}}, small)
    big_trial = trial_peak_rss(work / f"prepared-{args.cpus[-1]}cpu", args)
    small_trial = trial_peak_rss(small, args)
    diff = abs(big_trial["maxrss_mb"] - small_trial["maxrss_mb"]) / small_trial["maxrss_mb"]
    trial_rows = [[name, t["n_train"], f"{t['fit_s']:.0f}", f"{t['maxrss_mb']:.0f}"]
                  for name, t in (("ISIC-2019-shaped", big_trial), ("quick-start data", small_trial))]
    trial_table = md_table(["trial data", "training images", "fit s (1 epoch)", "peak RSS MB"], trial_rows)
    return "\n".join([
        f"- Load before: `{uptime_before}`; after: load average {load_average()} (shared 2-vCPU machine: other "
        "agents' tests and trainings ran at the same time, so times are upper bounds).",
        f"- Data: ISIC-2019-shaped folder ({meta['n_loaded']} JPEGs at 600x450, 8 classes with ISIC 2019's "
        f"counts) prepared at {args.size}x{args.size}; split 70/10/20; Augmentor top_up to {args.target}: "
        f"{meta['augmented_images']} images generated; train counts {meta['train_counts']}; "
        f"{shard_bytes / 1e9:.2f} GB of shards in {len(runs[0]['index']['files'])} files.",
        f"- Shards identical for every CPU count (sha256 of every file): **{identical}**.",
        "", prep_table,
        f"Trial: `{args.architecture}` (filters={args.filters}), batch 32, 1 epoch, CPU, streamed from shards, each "
        "in a fresh process (`ru_maxrss`). The quick-start data is prepared at the same image size, so only the "
        "data set's size differs.", "", trial_table,
        f"Peak RSS difference: **{diff:.1%}** (goal < 25 %).", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--isic2019", default="benchmarks/_work/isic2019", help="folder from make_isic2019.py")
    parser.add_argument("--out", default="benchmarks/results/data.md")
    parser.add_argument("--work", default="benchmarks/_work/bench_data")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--target", type=int, default=2000)
    parser.add_argument("--cpus", default="1,2")
    parser.add_argument("--architecture", default="cnn")
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--trial-on", help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny settings that finish in about a minute")
    args = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if args.trial_on:
        run_trial_here(args.trial_on, args)
        return 0
    args.cpus = [int(c) for c in str(args.cpus).split(",")]
    if args.smoke:
        tmp = Path(tempfile.mkdtemp(prefix="bench-data-"))
        from benchmarks.make_isic2019 import main as make

        make([str(tmp / "isic"), "--fraction", "0.004", "--processes", "1"])
        args.isic2019, args.work, args.size, args.target, args.filters = str(tmp / "isic"), str(tmp / "work"), 24, 30, 4
    body = run(args)
    print(body)
    append_result(args.out, f"Data at scale: sharded preparation and trial memory{' (SMOKE: not a measurement)' if args.smoke else ''}", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
