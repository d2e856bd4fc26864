"""Trial records -> pandas tables (pure functions): the trial table, seed 000 Tables I-III, hardware comparison."""
from __future__ import annotations

import numpy as np
import pandas as pd

TRIAL_COLUMNS = [
    "trial_id", "architecture", "epochs", "node_type", "augmentation", "framework", "repeat", "status",
    "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc_ovr", "top2_accuracy",
    "train_s", "first_epoch_s", "steady_epoch_s", "images_per_s", "total_s", "device_used", "device_mismatch",
    "simulated", "retries", "price_per_hour", "cost_usd", "reason",
]


def trial_table(records: list[dict]) -> pd.DataFrame:
    """One row per trial, in grid order, whatever its status."""
    rows = []
    for r in records:
        cfg = r.get("config", {})
        m = r.get("metrics", {}) or {}
        t = r.get("timings", {}) or {}
        dev = r.get("device", {}) or {}
        total = t.get("total_s")
        price = float(cfg.get("price_per_hour") or 0.0)
        rows.append({
            "trial_id": r["trial_id"],
            "architecture": cfg.get("architecture"),
            "epochs": cfg.get("epochs"),
            "node_type": cfg.get("node_type"),
            "augmentation": cfg.get("augmentation"),
            "framework": cfg.get("framework"),
            "repeat": cfg.get("repeat"),
            "status": r.get("status"),
            **{k: m.get(k) for k in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                                     "roc_auc_ovr", "top2_accuracy")},
            "train_s": t.get("fit_s"),
            "first_epoch_s": t.get("first_epoch_s"),
            "steady_epoch_s": t.get("steady_epoch_s"),
            "images_per_s": t.get("images_per_s"),
            "total_s": total,
            "device_used": (dev.get("used") or {}).get("name"),
            "device_mismatch": dev.get("mismatch"),
            "simulated": dev.get("simulated"),
            "retries": r.get("retries", 0),
            "price_per_hour": price,
            "cost_usd": price * total / 3600 if total is not None else None,
            "reason": r.get("reason") or r.get("error"),
        })
    df = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return df.sort_values(["architecture", "epochs", "node_type", "augmentation", "framework", "repeat"],
                          kind="stable").reset_index(drop=True)


def _completed(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"]


def _mean_sd(series: pd.Series) -> str:
    values = series.dropna().astype(float)
    if values.empty:
        return "-"
    if len(values) == 1:
        return f"{values.iloc[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def table_accuracy_by_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Seed 000 Table I: test accuracy (%) by architecture x epochs (mean over repeats and node types)."""
    done = _completed(df)
    if done.empty:
        return pd.DataFrame()
    table = done.pivot_table(index="architecture", columns="epochs", values="accuracy", aggfunc="mean") * 100
    table.columns = [f"{c} epochs (%)" for c in table.columns]
    return table.round(2)


def table_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Seed 000 Tables II/III: accuracy, precision, recall, F1 by architecture for each node type and epoch budget.

    Repeats are shown as mean ± sample standard deviation.
    """
    done = _completed(df)
    if done.empty:
        return pd.DataFrame()
    rows = []
    for (node, epochs, arch, aug), g in done.groupby(["node_type", "epochs", "architecture", "augmentation"], sort=True):
        rows.append({
            "node_type": node, "epochs": epochs, "architecture": arch, "augmentation": aug, "repeats": len(g),
            "accuracy": _mean_sd(g["accuracy"]), "precision": _mean_sd(g["precision_macro"]),
            "recall": _mean_sd(g["recall_macro"]), "f1": _mean_sd(g["f1_macro"]),
        })
    return pd.DataFrame(rows)


def table_hardware(df: pd.DataFrame) -> pd.DataFrame:
    """Time per epoch and images/s per architecture x node type, speed-up against CPU, cost per trial and per
    accuracy point."""
    done = _completed(df)
    if done.empty:
        return pd.DataFrame()
    agg = done.groupby(["architecture", "node_type"]).agg(
        trials=("trial_id", "count"),
        steady_epoch_s=("steady_epoch_s", "mean"),
        images_per_s=("images_per_s", "mean"),
        images_per_s_sd=("images_per_s", "std"),
        cost_per_trial_usd=("cost_usd", "mean"),
        accuracy=("accuracy", "mean"),
        device_used=("device_used", "first"),
    ).reset_index()
    cpu = agg[agg["node_type"] == "cpu"].set_index("architecture")["images_per_s"]
    agg["speedup_vs_cpu"] = [
        (row.images_per_s / cpu[row.architecture]) if row.architecture in cpu.index and cpu[row.architecture] else np.nan
        for row in agg.itertuples()
    ]
    agg["usd_per_accuracy_point"] = agg["cost_per_trial_usd"] / (agg["accuracy"] * 100).replace(0, np.nan)
    return agg


def pareto_front(points: pd.DataFrame, cost: str, value: str) -> pd.Series:
    """True where no other point is at least as cheap and at least as good (and better in one)."""
    flags = []
    for i, row in points.iterrows():
        dominated = ((points[cost] <= row[cost]) & (points[value] >= row[value])
                     & ((points[cost] < row[cost]) | (points[value] > row[value]))).any()
        flags.append(not dominated)
    return pd.Series(flags, index=points.index)


def problem_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Failed, infeasible and retried trials with their reasons."""
    mask = (df["status"] != "completed") | (df["retries"].fillna(0) > 0)
    return df.loc[mask, ["trial_id", "status", "retries", "reason"]]
