"""Data at scale: parallel preparation into shards (1 and N Ray CPUs) against a bare decode loop, and a trial's
peak memory on big vs small data.

    python benchmarks/make_isic2019.py benchmarks/_work/isic2019                     # once: 25,331 JPEGs, 600x450
    python benchmarks/bench_data.py --isic2019 benchmarks/_work/isic2019 --out benchmarks/results/data.md
    python benchmarks/bench_data.py --smoke --out /tmp/data.md                        # tiny, checks the harness

What is measured:
  * preparation of the ISIC-2019-shaped folder at ``--size`` (224x224) with the Augmentor stage topping every
    training class up to ``--target`` (2,000), on a fresh local Ray of 1 and of 2 CPUs: wall time, each stage
    (decode-and-resize, Augmentor, shard writing) timed apart, and the peak memory of the preparing processes
    (this driver, Ray's raylet / object store and workers), sampled every 2 s as the sum of PSS (shared pages
    split between the processes that map them) and the sum of RSS; the runs' shards are compared by checksum
    (they must be identical); before it, the decode stage alone, first on that fresh Ray (cold object store,
    workers not yet started), timed apart;
  * in the same run, a bare decode-and-resize loop over the same files to the same size in the same number of
    processes (a fork pool, plain Pillow: open, reduced-size ``draft``, convert, resize; and without ``draft``;
    and with ``draft``, keeping every image in fresh shared memory as the stage keeps its own):
    the decode stage's images/s against it is the pipeline's efficiency (goal >= 0.9);
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
    """Samples the memory of this process and all its descendants in a thread (Linux ``/proc``); peaks in MB.
    A sample reads every process's ``smaps_rollup`` (about 30 ms of CPU with gigabytes in the object store), so
    it is taken every 2 s: 1.5 % of one core, which the preparation it measures shares."""

    def __init__(self, interval_s: float = 2.0):
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
        cold = cold_decode_stage(dataset)
        with TreeMemory() as memory:
            t = time.perf_counter()
            index = prepare_shards(dataset, SPLIT, "augmentor", aug, target, executor=RayExecutor(),
                                   notify=lambda line: print(f"[{cpus} CPU] {line}", flush=True))
            wall = time.perf_counter() - t
        in_ray = {returns: ray_bare_loop(Path(dataset["path"]), dataset["image_size"][0], returns)
                  for returns in ("count", "pixels")}
    finally:
        ray.shutdown()
    return {"cpus": cpus, "wall_s": wall, "peak_pss_mb": memory.peak_pss, "peak_rss_mb": memory.peak_rss, "index": index,
            "in_ray": in_ray, "cold": cold}


def cold_decode_stage(dataset: dict) -> dict:
    """The product's decode stage alone, first on the fresh Ray (its object store's memory not yet touched, its
    workers not yet started), its images freed afterwards; images/s. The timed preparation then meets the
    warm Ray that the Ray-task loops after it meet too (equal terms), and this shows what a first preparation
    on a fresh Ray (every embedded run) pays on top."""
    from orchestrator.execution.data_preparation import RayExecutor
    from workers.data.prepare import decode_stage

    t = time.perf_counter()
    catalog = decode_stage(RayExecutor(), dataset, notify=lambda line: None)
    rate = (len(catalog.data.labels) + len(catalog.data.skipped or [])) / (time.perf_counter() - t)
    del catalog
    time.sleep(2)  # the freed objects leave the store before the timed preparation
    return {"rate": rate}


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


def _bare_image(path: str, size: int, draft: bool):
    """Decode and resize one file as plain Pillow does."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        if draft:
            img.draft("RGB", (size, size))
        return np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))


def _bare_pixels(job: tuple[list[str], int, bool]):
    """``_bare_image`` over every file of ``job``; the (n, size, size, 3) images."""
    import numpy as np

    paths, size, draft = job
    return np.stack([_bare_image(path, size, draft) for path in paths])


def _bare_decode(job: tuple[list[str], int, bool]) -> int:
    """(pool worker) ``_bare_image`` over every file of ``job``, keeping nothing; returns the count."""
    paths, size, draft = job
    for path in paths:
        _bare_image(path, size, draft)
    return len(paths)


def _bare_keep(job: tuple[list[str], int, bool, str, int, int]) -> int:
    """(pool worker) ``_bare_image`` over every file of ``job``, each written to its row of the shared-memory
    array ``name`` (``total`` rows) from row ``first`` on; returns the count."""
    from multiprocessing import shared_memory

    import numpy as np

    paths, size, draft, name, first, total = job
    shm = shared_memory.SharedMemory(name=name)
    try:
        rows = np.ndarray((total, size, size, 3), np.uint8, buffer=shm.buf)
        for i, path in enumerate(paths):
            rows[first + i] = _bare_image(path, size, draft)
        del rows
    finally:
        shm.close()
    return len(paths)


def _jobs(folder: Path, size: int, draft: bool, chunk: int) -> list:
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    return [(paths[k:k + chunk], size, draft) for k in range(0, len(paths), chunk)]


def ray_bare_loop(folder: Path, size: int, returns: str, chunk: int = 256) -> dict:
    """The bare loop (with ``draft``) as Ray tasks on the running Ray, each returning its count, or its pixels,
    which then stay in the object store until every task is done (as the decode stage's blocks do); images/s."""
    import ray

    fn, jobs = ray.remote(_bare_decode if returns == "count" else _bare_pixels), _jobs(folder, size, True, chunk)
    t = time.perf_counter()
    refs = [fn.remote(job) for job in jobs]
    if returns == "count":
        ray.get(refs)
    else:
        ray.wait(refs, num_returns=len(refs), fetch_local=False, timeout=None)
    rate = sum(len(j[0]) for j in jobs) / (time.perf_counter() - t)
    del refs
    return {"rate": rate}


BARE_VARIANTS = {"draft": (True, False), "full decode": (False, False), "draft, kept": (True, True)}


def bare_loop(folder: Path, size: int, processes: int, variant: str, chunk: int = 256) -> dict:
    """A bare decode-and-resize loop over every JPEG under ``folder`` in a fork pool of ``processes``, as
    ``BARE_VARIANTS[variant]`` = (reduced-size decoding, keep the pixels): kept pixels are written to one
    shared-memory array created just before the clock starts (its pages touched for the first time, as a fresh
    object store's are), otherwise each image is dropped once decoded."""
    import multiprocessing as mp
    from multiprocessing import shared_memory

    draft, keep = BARE_VARIANTS[variant]
    jobs = _jobs(folder, size, draft, chunk)
    total = sum(len(j[0]) for j in jobs)
    shm = shared_memory.SharedMemory(create=True, size=total * size * size * 3) if keep else None
    if keep:
        jobs = [(*job, shm.name, k * chunk, total) for k, job in enumerate(jobs)]
    try:
        t = time.perf_counter()
        with mp.get_context("fork").Pool(processes) as pool:
            done = sum(pool.imap_unordered(_bare_keep if keep else _bare_decode, jobs))
        wall = time.perf_counter() - t
    finally:
        if shm is not None:
            shm.close()
            shm.unlink()
    return {"processes": processes, "variant": variant, "images": done, "wall_s": wall, "rate": done / wall}


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
    runs, bare = [], {}
    for cpus in args.cpus:  # bare loops right before and after each preparation (rates averaged): the same load
        loops = [bare_loop(Path(args.isic2019), args.size, cpus, variant) for variant in BARE_VARIANTS]
        runs.append(prepare_with_ray(dataset, aug, work / f"prepared-{cpus}cpu", cpus))
        loops += [bare_loop(Path(args.isic2019), args.size, cpus, variant) for variant in BARE_VARIANTS]
        for variant in BARE_VARIANTS:
            rates = [loop["rate"] for loop in loops if loop["variant"] == variant]
            bare[(cpus, variant)] = {"rate": sum(rates) / len(rates), "rates": rates}
    identical = all(files_of(r["index"]) == files_of(runs[0]["index"]) for r in runs)
    meta = runs[0]["index"]["meta"]
    base = runs[0]
    rows = [[f"{r['cpus']} Ray CPU(s)", f"{r['wall_s']:.1f}", f"{r['index']['meta']['load_s']:.1f}",
             f"{r['index']['meta']['list_s']:.1f}",
             f"{r['index']['meta'].get('leakage_s', float('nan')):.1f}",
             f"{r['index']['meta']['augment_s']:.1f}", f"{r['index']['meta']['write_s']:.1f}",
             f"{r['peak_pss_mb']:.0f}", f"{r['peak_rss_mb']:.0f}", f"{base['wall_s'] / r['wall_s']:.2f}x",
             f"{base['index']['meta']['load_s'] / r['index']['meta']['load_s']:.2f}x"] for r in runs]
    prep_table = md_table(["preparation", "wall s", "decode-and-resize s", "of which listing s",
                           "duplicate search s", "Augmentor s",
                           "shard writing s",
                           "peak PSS MB (sum)", "peak RSS MB (sum)", "speed-up (wall)", "speed-up (decode)"], rows)
    n_images = meta["n_loaded"] + len(meta.get("skipped_images") or [])
    bare_rows = []
    for r in runs:
        stage = n_images / r["index"]["meta"]["load_s"]
        decoding = n_images / (r["index"]["meta"]["load_s"] - r["index"]["meta"]["list_s"])
        with_draft, without, kept = (bare[(r["cpus"], v)] for v in BARE_VARIANTS)
        counts, pixels = r["in_ray"]["count"]["rate"], r["in_ray"]["pixels"]["rate"]
        cold = r["cold"]["rate"]
        spread = [f"{loop['rate']:.0f} ({' / '.join(f'{v:.0f}' for v in loop['rates'])})"
                  for loop in (with_draft, without, kept)]
        bare_rows.append([r["cpus"], n_images, f"{stage:.0f}", f"{cold:.0f}", *spread, f"{counts:.0f}", f"{pixels:.0f}",
                          f"**{stage / with_draft['rate']:.2f}**", f"{decoding / with_draft['rate']:.2f}",
                          f"{stage / without['rate']:.2f}", f"**{cold / kept['rate']:.2f}**",
                          f"{counts / with_draft['rate']:.2f} / {pixels / counts:.2f} / {stage / pixels:.2f}"])
    bare_table = md_table(["processes", "images", "decode stage img/s", "decode stage first on a fresh Ray img/s",
                           "bare loop img/s (draft)", "bare loop img/s (full decode)",
                           "bare loop img/s (draft, pixels kept in fresh shared memory)",
                           "bare loop in Ray tasks, counts img/s", "bare loop in Ray tasks, pixels img/s",
                           "stage / bare (draft)", "stage without its listing / bare (draft)",
                           "stage / bare (full decode)", "stage first on a fresh Ray / bare (draft, kept)",
                           "where the ratio goes: Ray tasks / pixels through the object store / product code"],
                          bare_rows)
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
        f"- Load before: `{uptime_before}`; after: load average {load_average()} (a load well above the CPU count "
        "means other work shared the machine: times are then upper bounds).",
        f"- Data: ISIC-2019-shaped folder ({meta['n_loaded']} JPEGs at 600x450, 8 classes with ISIC 2019's "
        f"counts) prepared at {args.size}x{args.size}; split 70/10/20; Augmentor top_up to {args.target}: "
        f"{meta['augmented_images']} images generated; train counts {meta['train_counts']}; "
        f"{shard_bytes / 1e9:.2f} GB of shards in {len(runs[0]['index']['files'])} files.",
        f"- Shards identical for every CPU count (sha256 of every file): **{identical}**.",
        "", prep_table,
        "Stages: decode-and-resize = listing (reading the labels and indexing the files, one Ray task, until the "
        "listing reaches the driver: the stage's serial start, shown apart) plus decoding every JPEG to the target "
        "size in Ray tasks of 256 images (the product's `decode_image`: reduced-size JPEG decoding, then a bilinear resize); duplicate "
        "search = perceptual and exact hashes of every decoded image (a Ray task per block) and the grouped split "
        "(`workers/data/leakage.py`); Augmentor = "
        "generating the top-up images of the training split (after the split); shard writing = one Ray task per "
        "shard gathering its rows and writing its file, pinned to the driver's node, the index written last by "
        "the driver. Ray start-up is not included.", "",
        "Decode-and-resize stage against a bare loop (same files, same size, same number of processes, same run; "
        "the bare loop is a fork pool of plain Pillow calls, chunks of 256 files, run right before and right after "
        "the preparation, mean of the two (each in brackets); goal: stage / bare (draft) >= 0.9; the bare loop "
        "lists its files before its clock starts, so the stage without its listing is shown beside it). The bare "
        "loop drops each image once decoded, while the stage keeps every image for the later stages; the kept "
        "variant writes each image to its row of one shared-memory array created just before its clock starts, "
        "so it pays, as the stage on a fresh Ray does, the first touch of that memory. Before the "
        "timed preparation, the decode stage ran once alone on the fresh Ray, its images then freed: that run "
        "pays the first touch of the object store's memory and the workers' start (what a first preparation on a "
        "fresh Ray, as in every embedded run, pays on top) and is shown apart; the timed preparation and the "
        "Ray-task loops after it meet the same warm Ray. The same bare loop "
        "(with draft) then ran as Ray tasks of 256 files on the preparation's Ray, once returning counts and once "
        "returning the decoded pixels (kept in the object store until all are done, as the decode stage's are); "
        "the last column splits the stage's ratio into those three factors (their product):", "", bare_table,
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
