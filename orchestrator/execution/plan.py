"""A study's estimated wall time and cost before it runs, per node type and in total.

Pure functions over the trials, the node pools of the cluster it would run on (live nodes and the node types
an autoscaler may launch) and throughput figures: a calibration run just before the study where there is one
(``plan.calibrate``, ``execution/calibration.py``), else images/s measured by earlier runs in the same store
(``measured_throughput``), else the reference figures in the package data file
``orchestrator/data/reference_throughput.json`` (looked up by each device kind's ``reference_key``,
``workers/accelerators.py``); images per epoch come from the dataset source's registered count. Every row says
which source it used. Only ``earlier_records`` and ``plan_study`` read (the store and the reference file). Cost is
counted as the report counts it: a node type's price_per_hour x
each trial's wall time, summed; wall time is the longest node type's makespan (node pools run in parallel),
trials placed longest first on the earliest free slot.
"""
from __future__ import annotations

import heapq
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from statistics import median_high

from orchestrator.spec.node_types import NodeCapacity, placement_request
from workers.accelerators import CPU, accelerator, kind_of
from workers.config import TrialConfig, uses_augmentor

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "data" / "reference_throughput.json"


@dataclass(frozen=True)
class NodePool:
    """``count`` nodes offering ``resources`` each; ``source`` says where they come from."""

    name: str
    resources: dict[str, float]
    count: int
    source: str


@dataclass(frozen=True)
class Throughput:
    images_per_s: float
    startup_s: float
    source: str
    epoch_fixed_s: float = 0.0  # per epoch beside training images: validation, checkpoint, report (calibrated)


def load_reference(path: str | Path = REFERENCE_FILE) -> dict:
    """The reference figures (an empty table when the file is not there, e.g. outside a source checkout)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"entries": [], "startup_s": 30.0}


def local_pools() -> list[NodePool]:
    """This machine as the only node (the embedded local Ray): its CPUs, no accelerators."""
    return [NodePool("this machine", {"CPU": float(os.cpu_count() or 1)}, 1, "this machine")]


def cluster_pools(live: list[NodeCapacity], cluster_config: dict | None) -> list[NodePool]:
    """Live nodes (one pool each) plus every autoscaler node type of a ``ray up`` config at its
    ``max_workers`` (less the live nodes that already are of that type)."""
    pools = [NodePool(n.name, dict(n.resources), 1, "live") for n in live]
    for name, nt in ((cluster_config or {}).get("available_node_types") or {}).items():
        resources = {k: float(v) for k, v in (nt.get("resources") or {}).items()}
        running = sum(1 for n in live if n.resources == resources)
        count = int(nt.get("max_workers", 0)) - running
        if count > 0:
            pools.append(NodePool(name, resources, count, "autoscaler max_workers"))
    return pools


def _size_key(dataset: dict) -> str:
    return "x".join(str(int(v)) for v in dataset.get("image_size") or ())


def measured_throughput(records: list[dict]) -> dict[tuple[str, str, str], Throughput]:
    """Median images/s and start-up seconds (wall time not spent in steady epochs) per (architecture, node
    type, image size) over completed trials of earlier runs."""
    samples: dict[tuple, list[tuple[float, float, str]]] = {}
    for r in records:
        cfg, t = r.get("config") or {}, r.get("timings") or {}
        if r.get("status") != "completed" or not t.get("images_per_s") or not t.get("steady_epoch_s"):
            continue
        startup = max(0.0, float(t.get("total_s") or 0) - float(cfg.get("epochs") or 0) * float(t["steady_epoch_s"]))
        key = (cfg.get("architecture"), cfg.get("node_type"), _size_key(cfg.get("dataset") or {}))
        samples.setdefault(key, []).append((float(t["images_per_s"]), startup, str(cfg.get("experiment"))))
    out = {}
    for key, values in samples.items():
        out[key] = Throughput(median_high(v[0] for v in values), median_high(v[1] for v in values),
                              f"measured: median of {len(values)} earlier trial(s) in this store")
    return out


def reference_throughput(trial: TrialConfig, reference: dict) -> Throughput | None:
    """The reference entry for the trial's device kind and architecture with the nearest batch size, scaled by
    pixel count to the trial's image size and, on CPU, by its CPUs against the cores measured."""
    kind, batch = kind_of(trial.resources), float(trial.training.batch_size)
    entries = [e for e in reference.get("entries", []) if e["device"] == accelerator(kind).reference
               and e["architecture"] == trial.architecture]
    if not entries:
        return None
    e = min(entries, key=lambda e: abs(math.log(e["batch_size"] / batch)))
    pixels = math.prod(trial.dataset.image_size)
    rate = float(e["images_per_s"]) * e["image_size"] ** 2 / pixels
    if kind == CPU and e.get("cores"):
        rate *= float(trial.resources.get("CPU", 1)) / e["cores"]
    return Throughput(rate, float(reference.get("startup_s", 30.0)),
                      f"reference: {REFERENCE_FILE.name}, {e['source']} (batch {e['batch_size']}, {e['image_size']}px)")


def train_images(trial: TrialConfig, measured_n: dict[tuple, int]) -> int | None:
    """Training images per epoch: an earlier run's count for the same data setting, else the data set's size
    (its source's registered ``image_count``) after the split and the Augmentor stage (``add`` or ``top_up``);
    None when the source registers no count (the estimate then says so rather than guess)."""
    from workers.data.sources import source_entry  # importing workers.data registers the sources (numpy, PIL)

    key = (json.dumps(trial.dataset.model_dump(mode="json"), sort_keys=True),
           json.dumps(trial.split.model_dump(mode="json"), sort_keys=True), trial.augmentation)
    if key in measured_n:
        return measured_n[key]
    entry, classes = source_entry(trial.dataset.source), trial.dataset.classes
    images = entry.image_count(trial.dataset.model_dump(mode="json")) if entry.image_count else None
    n_classes = 2 if classes == "binary_melanoma" else len(classes) if isinstance(classes, list) else entry.class_count
    if images is None or n_classes is None:
        return None
    n = images * (1 - trial.split.test_fraction - trial.split.val_fraction)
    if uses_augmentor(trial.augmentation):
        aug = trial.augmentation_settings.augmentor
        n = n + n_classes * aug.samples_per_class if aug.mode == "add" else max(n, n_classes * aug.samples_per_class)
    return max(1, int(n))


def measured_train_images(records: list[dict]) -> dict[tuple, int]:
    out = {}
    for r in records:
        data = r.get("data") or {}
        cfg, n = r.get("config") or {}, data.get("n_train_split") or data.get("n_train")
        if n and cfg.get("dataset") is not None:
            out[(json.dumps(cfg["dataset"], sort_keys=True), json.dumps(cfg.get("split"), sort_keys=True),
                 cfg.get("augmentation"))] = int(n)
    return out


def slots_on(request: dict[str, float], pool: NodePool | NodeCapacity) -> int:
    """How many trials asking for ``request`` one node of ``pool`` (or the node) runs at once (0: none fits)."""
    wanted = {k: v for k, v in request.items() if v > 0}
    if not wanted:
        return 0
    return max(0, min(int(pool.resources.get(k, 0) // v) for k, v in wanted.items()))


def makespan(durations: list[float], slots: int) -> float:
    """Longest-processing-time-first list scheduling of ``durations`` on ``slots`` identical slots."""
    if not durations:
        return 0.0
    if slots <= 0:
        return math.inf
    free = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def trial_seconds(trial: TrialConfig, rate: Throughput, n_train: int) -> float:
    """Start-up (data load, build, compile, evaluation) plus every epoch at the throughput given."""
    return rate.startup_s + trial.epochs * (n_train / rate.images_per_s + rate.epoch_fixed_s)


def _node_type_row(node_type: str, trials: list[TrialConfig], pools: list[NodePool], rates: dict, n_train: dict,
                   exclusive: bool) -> dict:
    capacities = [NodeCapacity(p.name, p.resources) for p in pools]
    request = placement_request(trials[0].resources, node_type, capacities, exclusive=exclusive)
    fitting = [(p, slots_on(request, p)) for p in pools]
    fitting = [(p, s) for p, s in fitting if s > 0]
    slots = sum(p.count * s for p, s in fitting)
    seconds = [trial_seconds(t, rates[t.trial_id], n_train[t.trial_id])
               if rates[t.trial_id] and n_train[t.trial_id] is not None else None for t in trials]
    known = None not in seconds
    price = trials[0].price_per_hour
    span = makespan(seconds, slots) if known else None
    kinds: dict[str, int] = {}
    for t in trials:
        kind = rates[t.trial_id].source.split(":")[0] if rates[t.trial_id] else \
            f"no figure for {t.architecture} on {kind_of(t.resources)}"
        if n_train[t.trial_id] is None:
            kind = f"no image count for dataset source '{t.dataset.source}'"
        kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "node_type": node_type, "trials": len(trials),
        "nodes": ", ".join(f"{p.count} x {p.name} ({p.source})" for p, _ in fitting) or "none fits",
        "slots": slots, "trial_hours": sum(seconds) / 3600 if known else None,
        "wall_hours": span / 3600 if span is not None and math.isfinite(span) else None,
        "price_per_hour": price,
        "cost_usd": price * sum(seconds) / 3600 if known and price is not None else None,
        "throughput_source": ", ".join(f"{k} ({n} trials)" for k, n in sorted(kinds.items())),
    }


def calibrated_throughput(records: list[dict]) -> dict[tuple[str, str, str], Throughput]:
    """Throughput from calibration records, per (architecture, node type, image size), from their later epochs
    (the first holds compilation): ``images_per_s`` is the images an epoch trained (a calibration epoch may be cut
    to ``plan.calibration_steps`` batches) over its training pass, ``epoch_fixed_s`` the rest of the epoch's wall
    time (validation of the whole validation split, checkpoint, report), start-up the rest of the trial's time."""
    samples: dict[tuple, list[tuple[float, float, float]]] = {}
    for r in records:
        cfg, t, history = r.get("config") or {}, r.get("timings") or {}, r.get("history") or []
        walls = [float(h["wall_s"]) for h in history if h.get("wall_s") is not None]
        n_train = (r.get("data") or {}).get("n_train")
        if r.get("status") != "completed" or len(walls) != len(history) or len(walls) < 2 or not n_train \
                or not t.get("total_s"):
            continue
        later = range(1, len(history))
        train_s = median_high(float(history[i].get("epoch_train_s") or 0.0) for i in later)
        epoch_s = median_high(walls[i] - walls[i - 1] for i in later)
        if train_s <= 0 or epoch_s <= 0:
            continue
        startup = max(0.0, float(t["total_s"]) - len(history) * epoch_s)
        key = (cfg.get("architecture"), cfg.get("node_type"), _size_key(cfg.get("dataset") or {}))
        samples.setdefault(key, []).append((float(n_train) / train_s, max(0.0, epoch_s - train_s), startup))
    out = {}
    for key, values in samples.items():
        ips, fixed, starts = (median_high(v[i] for v in values) for i in range(3))
        out[key] = Throughput(ips, starts, f"calibrated: {len(values)} calibration trial(s) just before the run",
                              epoch_fixed_s=fixed)
    return out


def estimate_study(trials: list[TrialConfig], pools: list[NodePool], records: list[dict], reference: dict, *,
                   exclusive: bool = False, calibration: list[dict] | None = None) -> dict:
    """``{"rows": [one per node type], "total": {...}}``: trials, node pools and parallel slots, trial-hours,
    wall hours and cost (None where a figure, a price or a fitting node is missing), and the throughput source.
    ``calibration`` records win over ``records`` (earlier trial records of the same store), which win over the
    reference."""
    calibration = calibration or []
    calibrated = calibrated_throughput(calibration)
    measured, measured_n = measured_throughput(records), measured_train_images(calibration + records)
    rates, n_train = {}, {}
    for t in trials:
        key = (t.architecture, t.node_type, _size_key(t.dataset.model_dump()))
        rates[t.trial_id] = calibrated.get(key) or measured.get(key) or reference_throughput(t, reference)
        n_train[t.trial_id] = train_images(t, measured_n)
    by_type: dict[str, list[TrialConfig]] = {}
    for t in trials:
        by_type.setdefault(t.node_type, []).append(t)
    rows = [_node_type_row(nt, group, pools, rates, n_train, exclusive) for nt, group in by_type.items()]
    walls, costs = [r["wall_hours"] for r in rows], [r["cost_usd"] for r in rows]
    total = {
        "trials": len(trials),
        "trial_hours": None if any(r["trial_hours"] is None for r in rows) else sum(r["trial_hours"] for r in rows),
        "wall_hours": None if None in walls else max(walls, default=0.0),
        "cost_usd": None if None in costs else sum(costs),
    }
    return {"rows": rows, "total": total, "pools": [p.__dict__ for p in pools]}


def budget_refusal(estimate: dict, budget_usd: float | None, field: str = "execution.budget_usd") -> str | None:
    """One line refusing the study when its estimated cost exceeds ``budget_usd`` (or cannot be estimated)."""
    if budget_usd is None:
        return None
    cost = estimate["total"]["cost_usd"]
    if cost is None:
        unknown = [r["node_type"] for r in estimate["rows"] if r["cost_usd"] is None]
        return (f"{field}: the study's cost cannot be estimated (node type(s) {', '.join(unknown)} lack a "
                f"price or a throughput figure), so a budget of ${budget_usd:,.2f} cannot be checked; nothing was started")
    if cost > budget_usd:
        return (f"{field}: the study's estimated cost ${cost:,.2f} exceeds the budget of ${budget_usd:,.2f} "
                f"(see 'orchestrator submit FILE --dry-run'); nothing was started")
    return None


def _fmt(value, digits: int = 2, unit: str = "") -> str:
    return "unknown" if value is None else f"{unit}{value:,.{digits}f}"


def format_plan(estimate: dict) -> str:
    """The estimate as a plain-text table, one line per node type and a total."""
    lines = ["Estimate (before running):",
             f"{'node type':<12} {'trials':>6} {'slots':>5} {'trial h':>9} {'wall h':>8} {'cost USD':>10}  source / nodes"]
    for r in estimate["rows"]:
        lines.append(f"{r['node_type']:<12} {r['trials']:>6} {r['slots']:>5} {_fmt(r['trial_hours']):>9} "
                     f"{_fmt(r['wall_hours']):>8} {_fmt(r['cost_usd'], unit='$'):>10}  {r['throughput_source']}; "
                     f"nodes: {r['nodes']}")
    t = estimate["total"]
    lines.append(f"{'total':<12} {t['trials']:>6} {'':>5} {_fmt(t['trial_hours']):>9} {_fmt(t['wall_hours']):>8} "
                 f"{_fmt(t['cost_usd'], unit='$'):>10}  node types run in parallel")
    lines.append(f"reference figures: {REFERENCE_FILE.relative_to(REFERENCE_FILE.parents[2])}; cost = price_per_hour "
                 "x trial wall time, as the report counts it")
    return "\n".join(lines)


def earlier_records(store) -> list[dict]:
    """Trial records of every run in ``store`` (none when the store cannot be read: the reference is used)."""
    from workers.storage import StorageError

    try:
        keys = [k for k in store.list() if k.endswith("/record.json") and "/trials/" in k]
        return [json.loads(store.get_text(k)) for k in keys]
    except (StorageError, OSError, ValueError):
        return []


def pools_from_nodes(nodes: list[NodeCapacity], cluster_config: dict | None) -> list[NodePool]:
    """Pools from what ``place_trials`` saw: live nodes, and autoscaler node types at their ``max_workers`` when
    the cluster config is known, else one node each (the autoscaler reported the type but not how many)."""
    live = [n for n in nodes if not n.name.startswith("autoscaler:")]
    if cluster_config is not None:
        return cluster_pools(live, cluster_config)
    return cluster_pools(live, None) + [NodePool(n.name, dict(n.resources), 1, "autoscaler, 1 assumed")
                                        for n in nodes if n.name.startswith("autoscaler:")]


def plan_study(spec, trials: list[TrialConfig], store, pools: list[NodePool] | None = None) -> dict:
    """The estimate for ``spec``'s ``trials`` on ``pools`` (default: this machine), with throughput calibrated
    (``plan.calibrate``: the store's calibration cache) or measured in ``store`` where there is some, and the
    spec's budget beside it."""
    calibration = None
    if spec.plan.calibrate:
        from orchestrator.execution.calibration_cache import cached_calibrations

        calibration = cached_calibrations(store, trials)
    estimate = estimate_study(trials, pools or local_pools(), earlier_records(store), load_reference(),
                              exclusive=spec.execution.exclusive_nodes or spec.execution.isolated_timing,
                              calibration=calibration)
    estimate["budget_usd"] = spec.execution.budget_usd
    if calibration is not None:
        estimate["calibrated"] = len(calibration)
    return estimate
