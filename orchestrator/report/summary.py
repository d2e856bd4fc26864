"""The report's answer first (pure): per node type, the setting with the best validation score, its test
accuracy, time and cost to the target, and its speed-ups against the CPU reference node type.

The choice uses the validation split only (``target.metric`` at each trial's last epoch, mean over repeats); test
figures are reported for the chosen setting, never used to choose it. Trials that ran on other hardware than
requested (MISMATCH) are left out, as in the hardware comparison. Each row carries its ``timing`` (isolated or
shared node) so a time or cost from a shared node is never shown unmarked.
"""
from __future__ import annotations

import math

import pandas as pd

from orchestrator.report.tables import SETTING, measured

SUMMARY_COLUMNS = ["node_type", "best_architecture", "epochs", "augmentation", "framework", "repeats",
                   "validation", "test_accuracy", "test_f1_macro", "time_to_target_s", "cost_to_target_usd",
                   "speedup_time_to_target", "speedup_images_per_s", "timing"]


def last_validation(record: dict, metric: str) -> float | None:
    """``metric`` at the trial's last epoch (None when it has none)."""
    history = record.get("history") or []
    value = history[-1].get(metric) if history else None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def table_summary(records: list[dict], df: pd.DataFrame, time_to_target: pd.DataFrame, target: dict) -> pd.DataFrame:
    """One row per node type (see the module docstring); ``time_to_target`` is ``tables.table_time_to_target``."""
    done = measured(df)
    if done.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    scores = {str(r.get("trial_id")): last_validation(r, target["metric"]) for r in records}
    done = done.assign(validation=done["trial_id"].map(scores).astype("float64"))
    per_setting = done.groupby(SETTING, sort=True, dropna=False).agg(
        repeats=("trial_id", "size"), validation=("validation", "mean"), test_accuracy=("accuracy", "mean"),
        test_f1_macro=("f1_macro", "mean")).reset_index()
    if not time_to_target.empty:
        keep = [c for c in ("time_to_target_s", "cost_to_target_usd", "speedup_time_to_target", "speedup_images_per_s",
                            "timing") if c in time_to_target.columns]
        per_setting = per_setting.merge(time_to_target[SETTING + keep], on=SETTING, how="left")
    lower = target.get("mode", "max") == "min"
    rows = []
    for node, g in per_setting.groupby("node_type", sort=True):
        scored = g[g["validation"].notna()]
        if scored.empty:
            continue
        best = scored.sort_values(["validation", "test_accuracy"], ascending=[lower, False], kind="stable").iloc[0]
        rows.append({"node_type": node, "best_architecture": best["architecture"],
                     **{c: best.get(c) for c in SUMMARY_COLUMNS[2:]}})
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    out["epochs"] = pd.to_numeric(out["epochs"], errors="coerce").astype("Int64")
    out["repeats"] = pd.to_numeric(out["repeats"], errors="coerce").astype("Int64")
    return out
