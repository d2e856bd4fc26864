"""Orchestration overhead: N trials whose work is a fixed sleep, through raw Ray Tune, the study path and the
search path, in one run on one embedded Ray (so machine noise is shared), plus the fixed costs per run. Each path
runs ``--rounds`` times in alternating order (raw, study, search, then search, study, raw, ...), so a drift of the
machine's state over the run favours none; the table holds medians and each round's ratio.

    python benchmarks/bench_overhead.py --trials 200 --sleep 1 --out benchmarks/results/overhead.md

Per path: makespan against the ideal (trials x sleep / slots), the overhead per trial of slot time, and the ratio
to raw Tune (a `Tuner` of a function that sleeps and reports once, `reuse_actors=True`). The makespan runs from the
call to the last trial's end (study and search: `Study.run` / `Search.run` until the last record is stored: store,
placement, device probe, data cache, Tuner, records); the whole call, with the report after the last trial, is
shown beside it, and the driver's CPU time per trial (where a path's own work would show); a second table splits
each path's slot time beyond the sleeps (``timeline``: before each actor's first trial, between trials on one
actor, after the last, the sleeps' own lateness). The data of the sleep
trials is prepared once before the timed runs (its cold preparation is shown), so every path meets a warm cache,
as a repeated study does; each path first runs ``--warmup`` trials untimed, so that one-time imports of a process
(raw Tune's before its clock starts, the library's inside its first call) count for none of them (their times are
shown). Fixed costs: the device probe of the embedded run (`preflight`) and a prepared-data cache hit
(`prepare_shared_data` of already prepared data).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import append_result, md_table  # noqa: E402

PATHS = ("raw", "study", "search")
LABELS = ("raw Ray Tune (reuse_actors=True)", "study path (Study.run)", "search path (Search.run)")


def raw_tune(trials: int, sleep: float, storage: str) -> tuple[float, float, dict]:
    """(makespan: start to the last trial's end, whole call, timeline) of a plain Tuner over ``trials`` sleeps
    (grid search, actor reuse, one result per trial)."""
    from ray import tune

    def trainable(config):
        started = time.time()
        time.sleep(sleep)
        tune.report({"started": started, "ended": time.time()})

    t = time.time()
    grid = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                      param_space={"i": tune.grid_search(list(range(trials)))},
                      tune_config=tune.TuneConfig(reuse_actors=True),
                      run_config=tune.RunConfig(name="raw", storage_path=storage, verbose=0)).fit()
    whole = time.time() - t
    spans = [(r.metrics["started"], r.metrics["ended"], r.metrics["pid"]) for r in grid]
    last = max(e for _, e, _ in spans)
    return last - t, whole, timeline(spans, t, last, sleep)


def timeline(spans: list[tuple[float, float, int]], t0: float, end: float, sleep: float) -> dict:
    """Where a call's slot time beyond the sleeps went, in seconds summed over the actors that ran trials:
    ``lead`` (call start to each actor's first sleep), ``gaps`` (one trial's end to the next one's start on the same
    actor: result, stop, callbacks, reset, the next task), ``end`` (each actor's last sleep to the makespan's end:
    the last record stored, and a slot left idle while the other finishes), ``late`` (the sleeps' own excess over
    ``sleep``: a busy or disturbed machine wakes sleepers late). ``spans``: (start, end, pid) of each trial's sleep;
    ``end``: the makespan's end."""
    by_actor: dict[int, list[tuple[float, float]]] = {}
    for start, stop, pid in sorted(spans):
        by_actor.setdefault(pid, []).append((start, stop))
    gaps = [b[0] - a[1] for runs in by_actor.values() for a, b in zip(runs, runs[1:])]
    return {"actors": len(by_actor), "lead": sum(runs[0][0] - t0 for runs in by_actor.values()),
            "gaps": sum(gaps), "gap_ms": median(gaps) * 1000 if gaps else float("nan"),
            "end": sum(end - runs[-1][1] for runs in by_actor.values()),
            "late": sum(stop - start - sleep for start, stop, _ in spans)}


def library_call(run, records: Path, sleep: float) -> tuple[float, float, dict, object]:
    """(makespan: start to the last trial's record stored, whole call, timeline, result) of a study or search
    ``run()`` of ``sleep`` s trials (earlier calls' records under ``records`` are older, so the newest is this
    call's last)."""
    t = time.time()
    result = run()
    whole = time.time() - t
    last = max(p.stat().st_mtime for p in records.glob("*/trials/*/record.json"))
    spans = [(r.timings.started, r.timings.ended, r.pid) for r in result.records if r.timings is not None]
    return last - t, whole, timeline(spans, t, last, sleep), result


def driver_cpu_s() -> float:
    """CPU seconds this process (the driver: Tune's loop, callbacks, the library) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spec_dict(trials: int, sleep: float, store: str, search: bool, name: str = "overhead") -> dict:
    spec = {"name": f"{name}-search" if search else name, "dataset": {"image_size": [8, 8], "samples_per_class": 4},
            "models": {"cnn": {"params": {"seconds": sleep}}},
            "execution": {"cpus_per_trial": 1, "max_retries": 0}, "storage": {"uri": store},
            "tracking": {"tensorboard": False}}
    if search:  # random search, FIFO: every sample runs its one "epoch" of sleeping
        spec["grid"] = {"architectures": ["cnn"], "epochs": [1]}
        spec["search"] = {"architecture": "cnn", "epochs": 1, "scheduler": "fifo", "num_samples": trials,
                          "space": {"learning_rate": {"loguniform": [0.0001, 0.01]}}}
    else:  # one trial per epoch budget: N distinct trials; the sleep trainable ignores the budget
        spec["grid"] = {"architectures": ["cnn"], "epochs": list(range(1, trials + 1))}
    return spec


def prepare(spec) -> float:
    """Seconds to prepare the data of ``spec``'s trials (a cold cache the first time)."""
    from orchestrator.execution.data_cache import prepare_shared_data
    from orchestrator.execution.run_steps import store_settings
    from orchestrator.spec.grid import expand_grid

    t = time.perf_counter()
    prepare_shared_data(expand_grid(spec)[:1], store_settings(spec), lambda m: None)
    return time.perf_counter() - t


def fixed_costs(spec) -> dict:
    """Seconds of the embedded run's device probe and of a cache hit on already prepared data."""
    from orchestrator.execution.data_cache import prepare_shared_data
    from orchestrator.execution.device_probe import preflight
    from orchestrator.execution.run_steps import store_settings
    from orchestrator.spec.grid import expand_grid
    from orchestrator.cluster.nodes import cluster_nodes

    trials = expand_grid(spec)
    t = time.perf_counter()
    probed = preflight(trials, cluster_nodes(), notify=lambda m: None, single_machine=True)
    probe_s = time.perf_counter() - t
    t = time.perf_counter()
    cache = prepare_shared_data(trials, store_settings(spec), lambda m: None)
    hit_s = time.perf_counter() - t
    return {"probe_s": probe_s, "probe": probed.probes[0], "hit_s": hit_s, "hit": all(c["hit"] for c in cache.values())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--sleep", type=float, default=1.0)
    p.add_argument("--slots", type=int, default=2, help="CPUs of the embedded Ray = parallel trial slots")
    p.add_argument("--out", default="benchmarks/results/overhead.md")
    p.add_argument("--warmup", type=int, default=4,
                   help="trials of an untimed first run of each path before the timed ones (0: none)")
    p.add_argument("--rounds", type=int, default=2,
                   help="timed calls of each path, in alternating order (medians are reported)")
    p.add_argument("--smoke", action="store_true", help="tiny settings (a few seconds per path)")
    args = p.parse_args(argv)
    if args.smoke:
        args.trials, args.sleep, args.warmup, args.rounds = 6, 0.2, 0, 2

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    from benchmarks.sleep_trainable import sleep_trainable
    from orchestrator import Search, Study
    from orchestrator.execution.ray_runtime import connect_ray
    from orchestrator.spec.schema import parse_spec

    ideal = args.trials * args.sleep / args.slots
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        connect_ray(None, num_cpus=args.slots)
        study_spec = parse_spec(spec_dict(args.trials, args.sleep, f"{tmp}/store", search=False))
        cold_s = prepare(study_spec)
        first = {}  # the first call of each path in this process: one-time imports and first-Tuner costs
        if args.warmup:
            first["raw Tune"] = raw_tune(args.warmup, args.sleep, f"{tmp}/raw-first")[1]
            for search, label in ((False, "study"), (True, "search")):
                spec = parse_spec(spec_dict(args.warmup, args.sleep, f"{tmp}/store", search, name="first"))
                t = time.time()
                (Search(spec, trainable=sleep_trainable).run(notify=lambda m: None) if search else
                 Study(spec, trainable=sleep_trainable).run(show_progress=False, notify=lambda m: None))
                first[label] = time.time() - t
        search_spec = parse_spec(spec_dict(args.trials, args.sleep, f"{tmp}/store", search=True))
        calls = {
            "raw": lambda r: raw_tune(args.trials, args.sleep, f"{tmp}/raw-{r}") + (None,),
            "study": lambda r: library_call(
                lambda: Study(study_spec, trainable=sleep_trainable).run(show_progress=False, notify=lambda m: None),
                Path(tmp, "store", study_spec.name), args.sleep),
            "search": lambda r: library_call(
                lambda: Search(search_spec, trainable=sleep_trainable).run(notify=lambda m: None),
                Path(tmp, "store", search_spec.name), args.sleep),
        }
        runs = {name: [] for name in PATHS}  # per path, per round: (makespan, whole call, driver CPU s, result)
        lines = {name: [] for name in PATHS}  # per path, per round: its timeline
        for r in range(args.rounds):  # forward, then backward, ...: a drift of the machine state cancels out
            for name in (PATHS if r % 2 == 0 else PATHS[::-1]):
                cpu = driver_cpu_s()
                makespan, whole, line, result = calls[name](r)
                runs[name].append((makespan, whole, driver_cpu_s() - cpu, result))
                lines[name].append(line)
        costs = fixed_costs(study_spec)
    raw = median(m for m, *_ in runs["raw"])
    for name, label in zip(PATHS, LABELS):
        done = [args.trials if res is None else res.counts.get("completed", 0) for *_, res in runs[name]]
        ok &= all(c == args.trials for c in done)
        makespan = median(m for m, *_ in runs[name])
        whole = median(w for _, w, *_ in runs[name])
        rows.append([label, args.trials, args.sleep, args.slots, min(done), round(makespan, 1), round(ideal, 1),
                     f"{(makespan / ideal - 1) * 100:.1f} %", round((makespan - ideal) * args.slots / args.trials, 3),
                     f"{makespan / raw:.3f}", " / ".join(f"{m / raw_m:.3f}" for (m, *_), (raw_m, *_)
                                                          in zip(runs[name], runs["raw"])),
                     round(whole, 1), round(whole - makespan, 1),
                     round(median(c for _, _, c, _ in runs[name]) * 1000 / args.trials, 1)])
    body = md_table(["path", "trials", "sleep s", "slots", "completed", "makespan s", "ideal s", "over ideal",
                     "overhead s/trial", "ratio to raw Tune", "ratio per round", "whole call s",
                     "after the last trial s", "driver CPU ms/trial"], rows)
    split = []
    for name, label in zip(PATHS, LABELS):
        part = {key: median(line[key] for line in lines[name]) / args.trials for key in ("lead", "gaps", "end", "late")}
        split.append([label, " / ".join(str(line["actors"]) for line in lines[name]), round(part["lead"], 4),
                      round(part["gaps"], 4), round(median(line["gap_ms"] for line in lines[name]), 1),
                      round(part["end"], 4), round(part["late"], 4), round(sum(part.values()), 4)])
    body += ("\nWhere each path's slot time beyond the sleeps went, seconds per trial (medians over the rounds; from "
             "each sleep's start and end and the process that ran it): before each actor's first trial (the call's "
             "work before the Tuner, actor start, the first task), between one trial's end and the next one's start "
             "on the same actor (result, stop, callbacks and record, reset, the next task; its median gap beside), "
             "after each actor's last trial until the makespan's end (the last record; a slot idle while the "
             "other finishes), and the sleeps' own lateness (a busy or disturbed machine wakes sleepers late: no "
             "path's work, but it shows a disturbed round). With as many actors as slots the four add up to the "
             "overhead per trial of each round (their medians nearly add up to the median above).\n\n")
    body += md_table(["path", "actors (per round)", "before the first trial s/trial", "between trials s/trial",
                      "median gap ms", "after the last trial s/trial", "sleeps late s/trial", "sum s/trial"],
                     split)
    probe = costs["probe"]
    body += (f"\nFixed costs of a run: device probe of the embedded run {costs['probe_s']:.2f} s "
             f"({probe.get('kind')} / {probe.get('backend')}, {'in process' if probe.get('in_process') else 'Ray task'}); "
             f"prepared-data cache {'hit' if costs['hit'] else 'MISS'} {costs['hit_s']:.2f} s (the cold preparation "
             f"before the timed runs: {cold_s:.1f} s).\n"
             f"\nThe three paths ran one after another on one embedded Ray (same machine state), {args.rounds} "
             "round(s) in alternating order (raw, study, search; then search, study, raw; ...), so a drift of the "
             "machine's state over the run cancels out; figures are medians over the rounds, the ratio per round "
             "compares each round's call with raw Tune's of the same round. Driver CPU: the benchmark process's CPU "
             "time (every thread of the driver: Tune's loop, callbacks, the library) during the whole call, the "
             "study's and the search's report included. Makespan: from the "
             "call to the last trial's end (raw Tune: the last sleep's end as the trial reports it; study and search: the last "
             "record stored), so it holds the library's work before and during the trials (store, placement, probe, "
             "data cache, Tuner, records); after the last trial come the teardown and, for study and search, the "
             "report (a fixed cost per run, in the last column). Sleep "
             "trials hand their record over in their final result like every trial "
             "(`benchmarks/sleep_trainable.py`).\n")
    if first:
        body += (f"\nFirst call of each path in this process ({args.warmup} trials, before the timed runs above): "
                 + ", ".join(f"{k} {v:.1f} s" for k, v in first.items()) + ". It holds one-time costs of a process: "
                 "raw Tune's `ray.tune` import comes before its clock starts; the library's first Tuner with callbacks "
                 "imports Ray's MLflow/W&B/Comet/Aim integrations for Ray's usage tags (`tag_callbacks`).\n")
    else:
        body += "\nNo warm-up: each path's first call in this process is the timed one.\n"
    print(body)
    append_result(args.out, f"Orchestration overhead{' (smoke)' if args.smoke else ''}", body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
