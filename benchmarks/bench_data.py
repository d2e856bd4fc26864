"""Data-preparation benchmark: Augmentor throughput (one process vs N processes over classes) and the cache effect.

    python benchmarks/bench_data.py --out benchmarks/results/data.md           # real settings (about a minute)
    python benchmarks/bench_data.py --smoke --out /tmp/data.md                 # tiny settings, seconds

What is measured, on the built-in synthetic ISIC set (9 imbalanced classes):
  * Augmentor rebalancing of the training split up to ``--target`` images per class (rotate, flip, zoom, as
    ``workers.augment.augmentor_rebalance`` does it): generated samples per second in this process, and with a
    warm ``multiprocessing`` pool of N processes where each task rebalances one class (largest job first);
  * the cache effect: ``prepare_data`` (decode the JPEG folder, split, Augmentor) plus serialising the result to
    ``.npz`` in a local store, against loading that cached ``.npz`` back (what every trial does instead).
Every timing is the median of ``--repeats`` runs. A dated Markdown table (machine, versions, settings) is
appended to ``--out``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.augment import augmentor_rebalance  # noqa: E402
from workers.data import PreparedData, load_dataset, prepare_data, preparation_key  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def versions() -> str:
    out = [f"Python {platform.python_version()}"]
    for pkg in ("numpy", "pillow", "Augmentor", "scikit-learn"):
        try:
            out.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def timed(fn, repeats: int):
    """(median seconds, last result) over ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def _rebalance_class(job):
    images, labels, ids, target, seed = job
    cpu = time.process_time()
    x, y, _ = augmentor_rebalance(images, labels, ids, samples_per_class=target, seed=seed)
    return x[len(images):], y[len(images):], time.process_time() - cpu  # only generated images travel back


def augment_parallel(pool, images, labels, ids, target: int, seed: int) -> tuple[int, float]:
    """Rebalance class by class in ``pool`` (largest job first); returns generated images and worker CPU seconds."""
    classes = sorted(np.unique(labels), key=lambda c: (labels == c).sum())  # fewest images = most work
    jobs = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        jobs.append((images[members], labels[members], [ids[i] for i in members], target, seed + int(c)))
    generated, cpu = 0, 0.0
    for new_x, _, seconds in pool.imap_unordered(_rebalance_class, jobs):
        generated += len(new_x)
        cpu += seconds
    return generated, cpu


def load_average() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def run(args) -> tuple[str, dict]:
    load_before = load_average()
    size = [args.size, args.size]
    dataset = {"source": "synthetic", "image_size": size, "samples_per_class": args.samples_per_class, "synthetic_seed": 0}
    t = time.perf_counter()
    data = load_dataset(dataset)  # generates the synthetic JPEG folder once (cached on local disk)
    first_load_s = time.perf_counter() - t
    decode_s, data = timed(lambda: load_dataset(dataset), 1)
    train = data.source_split == "train"
    x, y = data.images[train], data.labels[train]
    ids = [i for i, m in zip(data.ids, train) if m]
    counts = np.bincount(y).tolist()
    to_generate = int(sum(max(0, args.target - c) for c in counts))

    # Single process and every pool size are measured in turns (repeat by repeat), so that load from other
    # processes on the machine affects all of them alike; each figure is the median over the repeats.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    pools, start_s = {}, {}
    for n in args.processes:
        t = time.perf_counter()
        pools[n] = ctx.Pool(n)
        pools[n].map(abs, range(n))  # start every worker before timing
        start_s[n] = time.perf_counter() - t
    single_times, single_cpu = [], []
    par_times, par_cpu = {n: [] for n in args.processes}, {n: [] for n in args.processes}
    try:
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            x_out, _, _ = augmentor_rebalance(x, y, ids, samples_per_class=args.target, seed=0)
            single_times.append(time.perf_counter() - t)
            single_cpu.append(time.process_time() - c)
            assert len(x_out) - len(x) == to_generate
            for n, pool in pools.items():
                t = time.perf_counter()
                generated, cpu = augment_parallel(pool, x, y, ids, args.target, 0)
                par_times[n].append(time.perf_counter() - t)
                par_cpu[n].append(cpu)
                assert generated == to_generate
    finally:
        for pool in pools.values():
            pool.terminate()
    single_s, cpu_s = statistics.median(single_times), statistics.median(single_cpu)
    rows = [("Augmentor rebalance, 1 process", f"{to_generate} images generated; CPU time {cpu_s:.2f} s "
             f"({to_generate / cpu_s:,.0f} samples per CPU-second)", single_s,
             f"{to_generate / single_s:,.0f} samples/s", "1.00x")]
    for n in args.processes:
        par_s, cpu_n = statistics.median(par_times[n]), statistics.median(par_cpu[n])
        rows.append((f"Augmentor rebalance, {n} processes over classes",
                     f"{to_generate} images; worker CPU time {cpu_n:.2f} s; pool start {start_s[n]:.2f} s ({method}) "
                     "not included", par_s,
                     f"{to_generate / par_s:,.0f} samples/s", f"{single_s / par_s:.2f}x"))

    split = {"test_fraction": 0.2, "val_fraction": 0.1, "seed": 0}
    aug_settings = {"augmentor_samples_per_class": args.target}
    key = preparation_key(dataset, split, "augmentor", aug_settings)
    with tempfile.TemporaryDirectory() as tmp:
        from workers.storage import open_store

        store = open_store(tmp)
        cache_path = f"cache/prepared/{key}.npz"

        def prepare_and_store():
            prepared = prepare_data(dataset, split, "augmentor", aug_settings)
            store.put_bytes(cache_path, prepared.to_bytes())
            return prepared

        prep_s, prepared = timed(prepare_and_store, args.repeats)
        npz_mb = store.local_path(cache_path).stat().st_size / 1e6
        load_s, loaded = timed(lambda: PreparedData.from_bytes(store.local_path(cache_path).read_bytes()), args.repeats)
        assert np.array_equal(loaded.x_train, prepared.x_train)
    n_train = len(prepared.y_train)
    rows.append(("Prepare: decode JPEGs + split + Augmentor + write .npz", f"{n_train} training images after "
                 f"augmentation, {len(prepared.y_val)} val, {len(prepared.y_test)} test", prep_s, "", "1.00x"))
    rows.append(("Load the cached .npz (what each trial does)", f"{npz_mb:.1f} MB uncompressed", load_s,
                 f"{npz_mb / load_s:,.0f} MB/s", f"{prep_s / load_s:.0f}x"))

    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## Data preparation — {now}{' (SMOKE settings: not a measurement)' if args.smoke else ''}",
        "",
        f"- Machine: {cpu_model()}, {usable_cores()} usable cores (os.cpu_count {os.cpu_count()}), "
        f"{platform.system()} {platform.machine()}",
        f"- Versions: {versions()}",
        f"- Load average (1/5/15 min) before: {load_before}, after: {load_average()} "
        f"(other processes on the machine slow every figure; compare rows of one table only)",
        f"- Data: synthetic ISIC, {args.size}x{args.size}, samples_per_class {args.samples_per_class}: "
        f"{len(y)} training images, per class {counts}; Augmentor target {args.target} per class. "
        f"Median of {args.repeats} run(s).",
        f"- One-off: generating the synthetic JPEG folder and decoding it took {first_load_s:.2f} s; "
        f"decoding the cached folder alone {decode_s:.2f} s.",
        "",
        "| Measurement | Setting | Time (s) | Throughput | Speedup |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {setting} | {secs:.3f} | {tput} | {speed} |" for name, setting, secs, tput, speed in rows]
    lines.append("")
    summary = {"single_samples_per_s": to_generate / single_s, "prepare_s": prep_s, "cached_load_s": load_s,
               "rows": [{"name": r[0], "seconds": r[2]} for r in rows]}
    return "\n".join(lines) + "\n", summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/data.md", help="Markdown file the table is appended to")
    parser.add_argument("--size", type=int, default=120, help="image side in pixels")
    parser.add_argument("--samples-per-class", type=int, default=200, help="synthetic: images of the largest class")
    parser.add_argument("--target", type=int, default=500, help="Augmentor: images per class after rebalancing")
    parser.add_argument("--processes", default=None,
                        help="comma-separated process counts for the parallel run (default: 2 and all usable cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny settings that finish in seconds (checks the harness)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.samples_per_class, args.target, args.repeats = 24, 6, 10, 1
    cores = usable_cores()
    args.processes = sorted({int(p) for p in args.processes.split(",")}) if args.processes else sorted({2, max(2, cores)})
    if args.smoke:
        args.processes = [2]
    table, _ = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        out.write_text("# Data benchmarks\n\nAppended by `python benchmarks/bench_data.py --out benchmarks/results/data.md`.\n\n")
    with open(out, "a") as fh:
        fh.write(table + "\n")
    print(table)
    print(f"appended to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
