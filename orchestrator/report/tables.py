"""Trial records -> pandas tables (pure functions): the trial table, seed 000 Tables I-III, hardware comparison,
cost and Pareto front, devices, cluster nodes and problem trials.

Nothing here reads files, the clock or the environment: the same records always give the same tables.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.report import comparability as cmp
from workers.accelerators import ACCELERATORS, kind_of
from orchestrator.report.statistics import interval_text, t_interval, validation_score

TRIAL_COLUMNS = [
    "trial_id", "architecture", "epochs", "node_type", "augmentation", "framework", "repeat", "status",
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_ovr", "top2_accuracy",
    "train_s", "first_epoch_s", "steady_epoch_s", "images_per_s", "total_s",
    "requested_device", "device_kind", "device_used", "backend", "simulated", "device_mismatch", "device_check",
    "node_id", "attempt_nodes", "trials_sharing_node", "retries", "resumed", "price_per_hour", "cost_usd", "reason",
    "isic_balanced_accuracy", "isic_auc_macro", "isic_ap_macro", "isic_auc_sens_80_macro",
    "isic_sensitivity_macro", "isic_specificity_macro", "val_epoch_s", "target_epoch", "time_to_target_s",
    "cost_to_target_usd", *cmp.STACK_COLUMNS, "stack", "timing", "shared_with", "cpu_load_1m", "predicted_share",
    "collapsed", "val_accuracy", "val_f1_macro", "accuracy_ci_low", "accuracy_ci_high", "f1_macro_ci_low",
    "f1_macro_ci_high",
]
ISIC_COLUMNS = {"isic_auc_macro": "auc", "isic_ap_macro": "ap", "isic_auc_sens_80_macro": "auc_sens_80",
                "isic_sensitivity_macro": "sensitivity", "isic_specificity_macro": "specificity"}
FLOAT_COLUMNS = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_ovr",
                 "top2_accuracy", "train_s", "first_epoch_s", "steady_epoch_s", "images_per_s", "total_s",
                 "price_per_hour", "cost_usd", "isic_balanced_accuracy", *ISIC_COLUMNS, "val_epoch_s",
                 "time_to_target_s", "cost_to_target_usd", "cpu_load_1m", "predicted_share", "val_accuracy",
                 "val_f1_macro", "accuracy_ci_low", "accuracy_ci_high", "f1_macro_ci_low", "f1_macro_ci_high"]
INT_COLUMNS = ["epochs", "repeat", "retries", "trials_sharing_node", "target_epoch", "devices_used",
               "per_device_batch", "global_batch", "steps_per_execution"]
DEFAULT_TARGET = {"metric": "val_balanced_accuracy", "value": 0.75, "mode": "max"}
BOOL_COLUMNS = ["device_mismatch", "resumed", "collapsed"]
SETTING = ["architecture", "epochs", "node_type", "augmentation", "framework"]

# Values of ``device_check``: how the device that ran compares with the one the node type asked for.
CHECK_OK, CHECK_MISMATCH, CHECK_SIMULATED, CHECK_UNKNOWN = "ok", "MISMATCH", "simulated", "unknown"


def requested_device(config: dict, device: dict | None = None) -> str | None:
    """The device kind a trial's node type asks for, from its Ray resources (``workers.accelerators.kind_of``);
    without them, its node type's name where that names a registered device kind."""
    resources = config.get("resources")
    if isinstance(resources, dict) and resources:
        return kind_of(resources)
    for name in (config.get("node_type"), (device or {}).get("requested")):
        if name in ACCELERATORS:
            return name
    return None


def _device_check(requested: str | None, dev: dict) -> tuple[bool | None, str | None]:
    used = (dev.get("used") or {}).get("kind")
    if not dev or dev.get("used") == {}:  # a failed trial's record: the device asked for, none seen
        return None, None
    if used in ACCELERATORS and requested:
        if used == requested:
            return False, CHECK_OK
        return True, CHECK_SIMULATED if dev.get("simulated") else CHECK_MISMATCH
    if dev.get("mismatch") is not None and not used:
        return bool(dev["mismatch"]), CHECK_MISMATCH if dev["mismatch"] else CHECK_OK
    return None, CHECK_UNKNOWN


def time_to_target(history: list[dict], target: dict) -> tuple[int | None, float | None]:
    """(epoch, seconds since the trial started) of the first epoch whose ``target["metric"]`` reaches
    ``target["value"]`` (``>=``, or ``<=`` for ``mode: min``); (None, None) when no epoch does. The seconds
    are the epoch's ``wall_s`` (data loading, compilation and validation included), None when not recorded."""
    lower = target.get("mode", "max") == "min"
    for row in history or []:
        value = row.get(target["metric"])
        if value is None or pd.isna(value):
            continue
        if (value <= target["value"]) if lower else (value >= target["value"]):
            wall = row.get("wall_s")
            return int(row.get("epoch") or 0) or None, None if wall is None else float(wall)
    return None, None


def _target_columns(record: dict, target: dict) -> dict:
    history = record.get("history") or []
    epoch, seconds = time_to_target(history, target)
    val = [row["val_s"] for row in history if row.get("val_s") is not None]
    price = (record.get("config") or {}).get("price_per_hour")
    isic = (record.get("metrics") or {}).get("isic") or {}
    return {
        "isic_balanced_accuracy": isic.get("balanced_multiclass_accuracy"),
        **{col: (isic.get("macro") or {}).get(key) for col, key in ISIC_COLUMNS.items()},
        "val_epoch_s": float(np.mean(val)) if val else None,
        "target_epoch": epoch, "time_to_target_s": seconds,
        "cost_to_target_usd": float(price) * seconds / 3600 if price is not None and seconds is not None else None,
    }


def _selection_columns(record: dict) -> dict:
    """Validation scores (what selects) and the test metrics' bootstrap intervals of one record."""
    ci = (record.get("metrics") or {}).get("ci95") or {}
    out = {f"val_{m}": validation_score(record, m) for m in ("accuracy", "f1_macro")}
    for m in ("accuracy", "f1_macro"):
        low, high = ci.get(m) or (None, None)
        out[f"{m}_ci_low"], out[f"{m}_ci_high"] = low, high
    return out


def trial_table(records: list[dict], target: dict | None = None) -> pd.DataFrame:
    """One row per trial, in grid order, whatever its status; typed columns (floats, nullable ints and bools).
    ``target`` (metric, value, mode; default ``DEFAULT_TARGET``) gives each trial's time and cost to target."""
    target = target or DEFAULT_TARGET
    rows = []
    for r in records:
        cfg = r.get("config") or {}
        m = r.get("metrics") or {}
        t = r.get("timings") or {}
        dev = r.get("device") or {}
        requested = requested_device(cfg, dev)
        mismatch, check = _device_check(requested, dev)
        total = t.get("total_s")
        price = cfg.get("price_per_hour")
        rows.append({
            "trial_id": str(r.get("trial_id")),
            "architecture": cfg.get("architecture"),
            "epochs": cfg.get("epochs"),
            "node_type": cfg.get("node_type"),
            "augmentation": cfg.get("augmentation"),
            "framework": cfg.get("framework"),
            "repeat": cfg.get("repeat"),
            "status": r.get("status") or "unknown",
            **{k: m.get(k) for k in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                                     "roc_auc_ovr", "top2_accuracy")},
            "train_s": t.get("fit_s"),
            "first_epoch_s": t.get("first_epoch_s"),
            "steady_epoch_s": t.get("steady_epoch_s"),
            "images_per_s": t.get("images_per_s"),
            "total_s": total,
            "requested_device": requested,
            "device_kind": (dev.get("used") or {}).get("kind"),
            "device_used": (dev.get("used") or {}).get("name"),
            "backend": dev.get("backend"),
            "simulated": dev.get("simulated"),
            "device_mismatch": mismatch,
            "device_check": check,
            "node_id": r.get("node_id"),
            "attempt_nodes": " -> ".join(n[:8] for n in r.get("attempt_nodes") or []) or None,
            "trials_sharing_node": r.get("trials_sharing_node"),
            "retries": r.get("retries") or 0,
            "resumed": r.get("resumed_from_checkpoint"),
            "price_per_hour": price,
            "cost_usd": float(price) * float(total) / 3600 if price is not None and total is not None else None,
            "reason": r.get("error"),
            **_target_columns(r, target),
            **cmp.trial_columns(r),
            **_selection_columns(r),
        })
        rows[-1]["stack"] = cmp.stack_text(rows[-1])
    df = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    for col in FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in INT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    for col in BOOL_COLUMNS:
        df[col] = df[col].astype("boolean")
    for col in TRIAL_COLUMNS:
        if col not in FLOAT_COLUMNS + INT_COLUMNS + BOOL_COLUMNS:  # text: str or None, object dtype
            df[col] = pd.Series([None if pd.isna(row[col]) else str(row[col]) for row in rows], index=df.index,
                                dtype=object)
    return df.sort_values(SETTING + ["repeat", "trial_id"], kind="stable", na_position="last").reset_index(drop=True)


def completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"]


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials whose timings describe their node type: a trial that ran on another device than it
    asked for (``MISMATCH``) is left out of the hardware and cost comparison."""
    done = completed(df)
    return done[done["device_check"] != CHECK_MISMATCH]


def _sd(values: pd.Series) -> float:
    """Sample standard deviation; NaN for fewer than two values."""
    values = values.dropna()
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def mean_sd_text(mean: float, sd: float, digits: int = 4) -> str:
    """``0.7206 ± 0.0123``; just the mean when there is no spread to show; ``-`` when there is no value."""
    if mean is None or pd.isna(mean):
        return "-"
    if sd is None or pd.isna(sd):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def table_accuracy_by_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Seed 000 Table I: test accuracy (%) by architecture x epochs, the mean over every trial of ``df`` (the
    report gives one table per augmentation stage, node type and framework: ``statistics.conditions``)."""
    done = completed(df).dropna(subset=["architecture", "epochs", "accuracy"])
    if done.empty:
        return pd.DataFrame()
    table = done.pivot_table(index="architecture", columns="epochs", values="accuracy", aggfunc="mean") * 100
    table = table.reindex(sorted(table.columns), axis=1)
    table.columns = [f"{int(c)} epochs (%)" for c in table.columns]
    table.index.name = "architecture"
    return table.round(2)


SCORE_METRICS = {"accuracy": "accuracy", "precision": "precision_macro", "recall": "recall_macro", "f1": "f1_macro"}


def table_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Seed 000 Tables II/III: accuracy, precision, recall, F1 (macro) by architecture for each node type, epoch
    budget, augmentation stage and framework. Repeats give ``<metric>_mean``, ``<metric>_sd`` (sample standard
    deviation; NaN for one repeat) and ``<metric>_ci_low`` / ``_ci_high`` (95 % t-interval of the mean)."""
    done = completed(df)
    if done.empty:
        return pd.DataFrame()
    rows = []
    keys = ["node_type", "epochs", "architecture", "augmentation", "framework"]
    for key, g in done.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key))
        row["repeats"] = len(g)
        for name, col in SCORE_METRICS.items():
            row[f"{name}_mean"] = float(g[col].mean()) if g[col].notna().any() else float("nan")
            row[f"{name}_sd"] = _sd(g[col])
            row[f"{name}_ci_low"], row[f"{name}_ci_high"] = t_interval(g[col])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["epochs"] = out["epochs"].astype("Int64")
    return out


def format_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """Tables II/III for reading: one ``mean ± sd`` text column per metric, and the F1 mean's 95 % t-interval."""
    if scores.empty:
        return scores
    out = scores[[c for c in scores.columns if not c.endswith(("_mean", "_sd", "_ci_low", "_ci_high"))]].copy()
    for name in SCORE_METRICS:
        out[name] = [mean_sd_text(m, s) for m, s in zip(scores[f"{name}_mean"], scores[f"{name}_sd"])]
    out["f1 95% CI"] = [interval_text(lo, hi) for lo, hi in zip(scores["f1_ci_low"], scores["f1_ci_high"])]
    return out


def cpu_reference(df: pd.DataFrame) -> str | None:
    """The node type speed-ups are measured against: ``cpu`` if it ran, else the first CPU-only node type that did."""
    done = measured(df)
    cpu_types = sorted(set(done.loc[done["requested_device"] == "cpu", "node_type"].dropna()))
    if "cpu" in set(done["node_type"].dropna()):
        return "cpu"
    return cpu_types[0] if cpu_types else None


HARDWARE_KEYS = ["architecture", "epochs", "augmentation", "node_type", "framework", "backend", "precision", "jit",
                 "global_batch", "steps_per_execution"]  # cmp.COMPARED + node type (+ the framework asked for)


def _timed(g: pd.DataFrame) -> tuple[pd.DataFrame, str, int]:
    """(trials whose timings count, timing mark, trials left out): the isolated trials when there are any, else
    all of them marked ``shared node``."""
    alone = cmp.isolated(g)
    if len(alone):
        return alone, cmp.TIMING_ISOLATED, len(g) - len(alone)
    return g, cmp.TIMING_SHARED, 0


def table_hardware(df: pd.DataFrame) -> pd.DataFrame:
    """Time per epoch and images/s (per node and per chip) per group of trials that differ in nothing but their
    repeat (architecture, epochs, augmentation, node type and stack), mean and sd over trials, validation seconds
    per epoch apart, the device that ran, ``timing`` (``isolated``; ``shared node`` when every trial shared its
    node, then the figures are not hardware figures) and speed-ups against the CPU reference node type
    (``speedup_reference``) for the same factors (``cmp.COMPARED``), per node and per chip; ``comparable`` names
    the factor when there is none. Trials that ran on another device than requested are left out, and shared-node
    trials of a group that also has isolated ones."""
    done = measured(df)
    if done.empty:
        return pd.DataFrame()
    rows = []
    for key, g in done.groupby(HARDWARE_KEYS, sort=True, dropna=False):
        t, timing, left_out = _timed(g)
        chips = t["devices_used"].astype("float64").fillna(1.0).clip(lower=1.0)
        rows.append(dict(zip(HARDWARE_KEYS, key)) | {
            "stack": t["stack"].dropna().iloc[0] if t["stack"].notna().any() else None,
            "device_used": ", ".join(sorted(set(g["device_used"].dropna()))) or None,
            "trials": len(t), "timing": timing, "shared_left_out": left_out,
            "first_epoch_s": t["first_epoch_s"].mean(),
            "steady_epoch_s": t["steady_epoch_s"].mean(), "steady_epoch_s_sd": _sd(t["steady_epoch_s"]),
            "images_per_s": t["images_per_s"].mean(), "images_per_s_sd": _sd(t["images_per_s"]),
            "images_per_s_per_chip": (t["images_per_s"] / chips).mean(),
            "val_epoch_s": t["val_epoch_s"].mean(),
            "max_trials_sharing_node": g["trials_sharing_node"].max() if g["trials_sharing_node"].notna().any() else None,
            "cpu_load_1m": t["cpu_load_1m"].mean(),
        })
    out = pd.DataFrame(rows)
    out["epochs"] = out["epochs"].astype("Int64")
    ref = cpu_reference(df)
    out = cmp.add_speedups(out, ref, {"speedup_vs_cpu": ("images_per_s", "higher"),
                                      "speedup_per_chip": ("images_per_s_per_chip", "higher")})
    out["speedup_reference"] = ref
    return out


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True where no other point is at least as cheap and at least as good (and strictly better in one).
    Points with a missing cost or value are never on the front."""
    valid = points[cost].notna() & points[value].notna()
    c, v = points[cost].to_numpy(dtype=float), points[value].to_numpy(dtype=float)
    flags = []
    for i in range(len(points)):
        if not valid.iloc[i]:
            flags.append(False)
            continue
        others = valid.to_numpy()
        dominated = (others & (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))).any()
        flags.append(not bool(dominated))
    return pd.Series(flags, index=points.index, dtype=bool)


def table_cost(df: pd.DataFrame) -> pd.DataFrame:
    """Cost per group of trials (architecture x epochs x node type x augmentation x stack, as in
    ``table_hardware``) from each node type's ``price_per_hour`` and the trials' wall time from their start (the
    clock of time to target): cost per trial, cost per accuracy point (USD per percentage point of test
    accuracy), the cost against the CPU reference's for the same factors (``cost_vs_reference``), ``timing``,
    and whether the setting is on the Pareto front of mean macro F1 against mean cost; only isolated timings
    are on the front. Trials that ran on another device than requested are left out."""
    done = measured(df)
    if done.empty:
        return pd.DataFrame()
    rows = []
    for key, g in done.groupby(HARDWARE_KEYS, sort=True, dropna=False):
        t, timing, left_out = _timed(g)
        cost = t["cost_usd"]
        rows.append(dict(zip(HARDWARE_KEYS, key)) | {
            "stack": t["stack"].dropna().iloc[0] if t["stack"].notna().any() else None,
            "trials": len(t), "timing": timing, "shared_left_out": left_out,
            "price_per_hour": t["price_per_hour"].mean(),
            "total_s": t["total_s"].mean(),
            "cost_per_trial_usd": cost.mean(), "cost_per_trial_usd_sd": _sd(cost),
            "accuracy_pct": t["accuracy"].mean() * 100,
            "f1_macro": t["f1_macro"].mean(), "f1_macro_sd": _sd(t["f1_macro"]),
            "collapsed": bool(t["collapsed"].fillna(False).astype(bool).any()),
        })
    out = pd.DataFrame(rows)
    out["epochs"] = out["epochs"].astype("Int64")
    out["usd_per_accuracy_point"] = out["cost_per_trial_usd"] / out["accuracy_pct"].where(out["accuracy_pct"] > 0)
    out = cmp.add_speedups(out, cpu_reference(df), {"cost_vs_reference": ("cost_per_trial_usd", "higher")})
    alone = out["timing"] == cmp.TIMING_ISOLATED
    out["pareto"] = False
    if alone.any():
        out.loc[alone, "pareto"] = pareto_front(out[alone], "cost_per_trial_usd", "f1_macro")
    out["pareto"] = out["pareto"].astype(bool)
    return out


MLPERF_MIN_RUNS = cmp.MLPERF_RUNS


def mlperf_mean(values: pd.Series) -> float:
    """MLPerf Training's score over repeated runs' times to target (NaN: the run never reached it); see
    ``comparability.mlperf_score`` for the rules."""
    return cmp.mlperf_score([None if pd.isna(v) else float(v) for v in values])[0]


def _target_row(g: pd.DataFrame) -> dict:
    t, timing, left_out = _timed(g)
    reached = t[t["time_to_target_s"].notna()]
    basis, note = cmp.mlperf_score([None if pd.isna(v) else float(v) for v in t["time_to_target_s"]])
    return {
        "stack": t["stack"].dropna().iloc[0] if t["stack"].notna().any() else None,
        "repeats": len(t), "timing": timing, "shared_left_out": left_out,
        "reached": len(reached), "not_reached": int(t["time_to_target_s"].isna().sum()),
        "target_epoch": reached["target_epoch"].astype(float).mean(),
        "time_to_target_s": reached["time_to_target_s"].mean(), "time_to_target_s_sd": _sd(reached["time_to_target_s"]),
        "time_to_target_mlperf_s": basis, "mlperf": note,
        "cost_to_target_usd": reached["cost_to_target_usd"].mean(),
        "cost_to_target_usd_sd": _sd(reached["cost_to_target_usd"]),
        "val_epoch_s": t["val_epoch_s"].mean(), "images_per_s": t["images_per_s"].mean(),
        "speedup_basis_s": basis if pd.notna(basis) else reached["time_to_target_s"].mean(),
    }


def table_time_to_target(df: pd.DataFrame) -> pd.DataFrame:
    """Time and cost to the target quality per group of trials (as in ``table_hardware``): mean ± sd over the
    repeats that reached it, the MLPerf score where MLPerf's rules give one (``mlperf`` says how it was obtained
    or why there is none), how many repeats never reached it, validation seconds per epoch, ``timing``, and two
    speed-ups against the CPU reference node type for the same factors (``cmp.COMPARED``; ``comparable`` says
    why there is none): in images/s and in time to target (MLPerf score where there is one, else the mean)."""
    done = measured(df)
    if done.empty:
        return pd.DataFrame()
    out = pd.DataFrame([dict(zip(HARDWARE_KEYS, key)) | _target_row(g)
                        for key, g in done.groupby(HARDWARE_KEYS, sort=True, dropna=False)])
    out["epochs"] = out["epochs"].astype("Int64")
    ref = cpu_reference(df)
    out = cmp.add_speedups(out, ref, {"speedup_images_per_s": ("images_per_s", "higher"),
                                      "speedup_time_to_target": ("speedup_basis_s", "lower")})
    out["speedup_reference"] = ref
    return out.drop(columns=["speedup_basis_s"])


ISIC_TABLE = {"balanced_multiclass_accuracy": "isic_balanced_accuracy", "auc": "isic_auc_macro",
              "auc_sens_80": "isic_auc_sens_80_macro", "ap": "isic_ap_macro",
              "sensitivity": "isic_sensitivity_macro", "specificity": "isic_specificity_macro"}


def table_isic(df: pd.DataFrame) -> pd.DataFrame:
    """The ISIC challenge's metrics per setting: balanced multiclass accuracy and the macro means of AUC, AUC
    above 80 % sensitivity, average precision, sensitivity and specificity (``<name>_mean``, ``<name>_sd``)."""
    done = completed(df)
    if done.empty or done["isic_balanced_accuracy"].isna().all():
        return pd.DataFrame()
    rows = []
    for key, g in done.groupby(SETTING, sort=True, dropna=False):
        row = dict(zip(SETTING, key)) | {"repeats": len(g)}
        for name, col in ISIC_TABLE.items():
            row[f"{name}_mean"], row[f"{name}_sd"] = g[col].mean(), _sd(g[col])
        rows.append(row)
    out = pd.DataFrame(rows)
    out["epochs"] = out["epochs"].astype("Int64")
    return out


def isic_per_class_table(record: dict) -> pd.DataFrame:
    """One trial's ISIC scores per class (``metrics.isic.per_class``); absent classes are marked."""
    isic = (record.get("metrics") or {}).get("isic") or {}
    absent = set(isic.get("absent_classes") or [])
    rows = [{"class": name, **v, "in test split": "no (absent)" if name in absent else "yes"}
            for name, v in (isic.get("per_class") or {}).items()]
    return pd.DataFrame(rows)


def table_estimate_vs_actual(estimate: dict | None, df: pd.DataFrame, run_seconds: float | None) -> pd.DataFrame:
    """The plan stored in run.json beside what the run measured, per node type and in total: trial-hours and
    cost (price x trial wall time, summed over trials that ran) with the plan's error in percent of the actual
    (``*_error_pct``, signed), and wall hours (the whole run's duration)."""
    if not estimate or not estimate.get("rows"):
        return pd.DataFrame()
    ran = df[df["total_s"].notna()]
    rows = []
    for r in estimate["rows"]:
        g = ran[ran["node_type"] == r["node_type"]]
        rows.append({"node_type": r["node_type"], "trials_planned": r["trials"], "trials_ran": len(g),
                     "trial_hours_est": r["trial_hours"], "trial_hours_actual": g["total_s"].sum() / 3600,
                     "cost_usd_est": r["cost_usd"], "cost_usd_actual": g["cost_usd"].sum(min_count=1),
                     "wall_hours_est": r["wall_hours"], "wall_hours_actual": None,
                     "throughput_source": r.get("throughput_source")})
    t = estimate.get("total") or {}
    rows.append({"node_type": "total", "trials_planned": t.get("trials"), "trials_ran": len(ran),
                 "trial_hours_est": t.get("trial_hours"), "trial_hours_actual": ran["total_s"].sum() / 3600,
                 "cost_usd_est": t.get("cost_usd"), "cost_usd_actual": ran["cost_usd"].sum(min_count=1),
                 "wall_hours_est": t.get("wall_hours"),
                 "wall_hours_actual": run_seconds / 3600 if run_seconds is not None else None,
                 "throughput_source": None})
    out = pd.DataFrame(rows)
    for what in ("trial_hours", "cost_usd"):  # signed: + the plan said more than the run took
        est = pd.to_numeric(out[f"{what}_est"], errors="coerce")
        actual = pd.to_numeric(out[f"{what}_actual"], errors="coerce")
        out[f"{what}_error_pct"] = (100 * (est - actual) / actual).where(actual > 0)
    return out


def problem_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Failed, infeasible and retried (or resumed) trials with their reasons."""
    retried = df["retries"].fillna(0) > 0
    mask = (df["status"] != "completed") | retried | df["resumed"].fillna(False).astype(bool)
    out = df.loc[mask, ["trial_id", "architecture", "epochs", "node_type", "status", "retries", "reason"]].copy()
    for i in out.index:
        if pd.isna(out.at[i, "reason"]) and out.at[i, "status"] == "completed":
            n = int(out.at[i, "retries"] or 0)
            out.at[i, "reason"] = (f"completed after {n} retr{'y' if n == 1 else 'ies'}" if n
                                   else "completed, resumed from a checkpoint")
        nodes = df.at[i, "attempt_nodes"] if "attempt_nodes" in df else None
        if int(out.at[i, "retries"] or 0) and isinstance(nodes, str):
            out.at[i, "reason"] = f"{out.at[i, 'reason']} (nodes {nodes})"
    order = {"failed": 0, "infeasible": 1}
    return out.sort_values("status", key=lambda s: s.map(lambda v: order.get(v, 2)), kind="stable")


def table_devices(df: pd.DataFrame) -> pd.DataFrame:
    """Requested node type next to the device that really ran, per distinct combination, with ``check``
    (``ok``, ``MISMATCH``, ``simulated``, ``unknown``) and the mismatching trial ids."""
    ran = df[df["device_check"].notna()]
    if ran.empty:
        return pd.DataFrame()
    keys = ["node_type", "requested_device", "device_kind", "device_used", "backend", "simulated", "device_check"]
    rows = []
    for key, g in ran.groupby(keys, sort=True, dropna=False):
        row = {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in zip(keys, key)}
        row["trials"] = len(g)
        row["trial_ids"] = ", ".join(g["trial_id"]) if row["device_check"] != CHECK_OK else ""
        rows.append(row)
    out = pd.DataFrame(rows).rename(columns={"device_check": "check", "device_kind": "used_kind",
                                             "requested_device": "requested_kind"})
    order = {CHECK_MISMATCH: 0, CHECK_UNKNOWN: 1, CHECK_SIMULATED: 2, CHECK_OK: 3}
    return out.sort_values("check", key=lambda s: s.map(lambda v: order.get(v, 4)), kind="stable") \
        .reset_index(drop=True)


def table_nodes(nodes: list[dict], df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Cluster nodes (from ``run.json``) with CPUs, GPUs, TPUs, other accelerators, memory, and the devices
    trials saw on them (matched through the node id)."""
    if not nodes:
        return pd.DataFrame()
    rows = []
    for n in nodes:
        res = n.get("resources") or {}
        name = str(n.get("name"))
        short_id = name.rsplit(":", 1)[-1] if ":" in name else None
        seen = []
        if df is not None and short_id:
            on_node = df[df["node_id"].fillna("").str.startswith(short_id)]
            seen = sorted(set(f"{k} ({d})" for k, d in zip(on_node["device_kind"], on_node["device_used"])
                              if isinstance(d, str)))
        other = {k: v for k, v in res.items() if k not in ("CPU", "GPU", "TPU", "memory", "object_store_memory")
                 and not k.startswith("node:")}
        rows.append({
            "node": name, "CPU": res.get("CPU", 0), "GPU": res.get("GPU", 0), "TPU": res.get("TPU", 0),
            "other resources": ", ".join(f"{k}={v:g}" for k, v in sorted(other.items())) or None,
            "memory_gib": res["memory"] / 2**30 if res.get("memory") else None,
            "devices seen by trials": "; ".join(seen) or None,
        })
    return pd.DataFrame(rows)


def best_trial(df: pd.DataFrame, metric: str) -> dict | None:
    """The completed trial with the highest validation ``metric`` (first in grid order on ties), with its test
    ``metric``; ``selected_on`` says so. None when no trial has a validation score."""
    done = completed(df)
    chooser = f"val_{metric}"
    done = done[done[chooser].notna()]
    if done.empty:
        return None
    row = done.loc[done[chooser].idxmax()]
    out = {"trial_id": row["trial_id"], "architecture": row["architecture"],
           "epochs": None if pd.isna(row["epochs"]) else int(row["epochs"]), "node_type": row["node_type"],
           "augmentation": row["augmentation"], "framework": row["framework"],
           metric: None if pd.isna(row[metric]) else float(row[metric]), "selected_on": f"validation {metric}",
           chooser: float(row[chooser])}
    for extra in ("accuracy", "f1_macro"):
        if extra != metric and pd.notna(row[extra]):
            out[extra] = float(row[extra])
    return out


def per_class_table(record: dict) -> pd.DataFrame:
    """Precision, recall, F1 and support per class of one trial (``metrics.per_class``)."""
    per_class = (record.get("metrics") or {}).get("per_class") or {}
    rows = [{"class": name, **{k: v.get(k) for k in ("precision", "recall", "f1", "support")}}
            for name, v in per_class.items() if isinstance(v, dict)]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"]) if rows else pd.DataFrame()


def setting_label(row) -> str:
    """``cnn, 8 epochs, gpu`` (+ augmentation/framework) for one row of a per-setting table."""
    parts = [str(row["architecture"]), f"{row['epochs']} epochs", str(row["node_type"])]
    parts += [str(row[k]) for k in ("augmentation", "framework") if k in row and isinstance(row[k], str)]
    return ", ".join(parts)
