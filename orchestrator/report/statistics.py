"""The report's statistics (pure functions): what selects a trial (validation only), what a table pools, the
conditions a table is split by, t-intervals over repeats, and how each dataset was split.

Nothing here reads files, the clock or the environment.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SELECTION_SPLIT = "validation"
SELECTION_NOTE = ("Every choice between trials (best trial, ensemble members) ranks on the validation split; "
                  "the test split is only reported.")
GRID_AXES = ["architecture", "epochs", "node_type", "augmentation", "framework"]
CONDITION_AXES = ["augmentation", "node_type", "framework"]  # what Table I and Tables II/III are split by


# ------------------------------------------------------------------------------------------------ selection
def validation_score(record: dict, metric: str) -> float | None:
    """A completed trial's validation ``metric`` (e.g. ``f1_macro``) of its final model: ``metrics.validation``,
    or for records stored before that existed, the last history row's ``val_<metric>``. None without a
    validation split."""
    value = ((record.get("metrics") or {}).get("validation") or {}).get(metric)
    if value is None:
        history = record.get("history") or []
        value = history[-1].get(f"val_{metric}") if history else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def rank_on_validation(records: list[dict], metric: str) -> list[dict]:
    """Completed records that have a validation ``metric``, best first (stable: grid order on ties)."""
    scored = [(validation_score(r, metric), i, r) for i, r in enumerate(records)]
    return [r for score, _, r in sorted((s for s in scored if s[0] is not None), key=lambda s: (-s[0], s[1]))]


# ------------------------------------------------------------------------------------------------ pooling
def pooled_over(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """The grid axes that vary inside at least one group of ``df`` grouped by ``keys`` (besides repeats):
    what a mean over those groups pools apart from repeats."""
    if df.empty:
        return []
    pooled = []
    for axis in GRID_AXES:
        if axis in keys or axis not in df.columns:
            continue
        if (df.groupby(keys, dropna=False)[axis].nunique(dropna=False) > 1).any():
            pooled.append(axis)
    return pooled


def pooling_text(df: pd.DataFrame, keys: list[str], what: str = "repeats") -> str:
    """``mean over repeats only`` or ``mean over repeats, pooled over epochs and augmentation``."""
    extra = pooled_over(df, keys)
    return f"mean over {what} only" if not extra else f"mean over {what}, pooled over {' and '.join(extra)}"


def conditions(df: pd.DataFrame, axes: list[str] | None = None) -> list[tuple[dict, pd.DataFrame]]:
    """``df`` split by the condition axes (augmentation stage, node type, and framework where the grid crosses
    it with node types): ``[(condition, rows)]`` in sorted order, each condition naming its values."""
    axes = [a for a in (axes or CONDITION_AXES) if a in df.columns]
    if "framework" in axes and "node_type" in axes and not (
            df.groupby("node_type", dropna=False)["framework"].nunique(dropna=False) > 1).any():
        axes.remove("framework")  # each node type's own backend: the grid does not cross frameworks
    if not axes or df.empty:
        return [({}, df)]
    return [(dict(zip(axes, key if isinstance(key, tuple) else (key,))), g)
            for key, g in df.groupby(axes, sort=True, dropna=False)]


def condition_label(condition: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in condition.items()) or "all trials"


# ------------------------------------------------------------------------------------------------ intervals
T_INTERVAL_NOTE = "95 % t-interval of the mean over repeats (scipy.stats.t)"


def t_interval(values: pd.Series, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values``; (NaN, NaN) for fewer than two values."""
    from scipy import stats

    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    sem = float(stats.sem(v))
    if sem == 0:
        return float(v.mean()), float(v.mean())
    low, high = stats.t.interval(confidence, len(v) - 1, loc=float(v.mean()), scale=sem)
    return float(low), float(high)


def interval_text(low, high, digits: int = 4) -> str:
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


# ------------------------------------------------------------------------------------------------ split facts
def split_grouping(records: list[dict]) -> list[dict]:
    """Per dataset (source, path), how its split was made: split seed(s), whether it was grouped by lesion
    and by (near-)duplicate images, the duplicates found and crossing the split, and warnings."""
    out: dict[tuple, dict] = {}
    for r in records:
        cfg, data = r.get("config") or {}, r.get("data") or {}
        ds, split = cfg.get("dataset") or {}, cfg.get("split") or {}
        key = (ds.get("source"), ds.get("path"))
        row = out.setdefault(key, {"dataset": ds.get("source"), "path": ds.get("path"), "split_seeds": set(),
                                   "grouped_by_lesion": None, "grouped_by_duplicates": None,
                                   "duplicate_groups": None, "duplicates_across_split": None,
                                   "near_duplicate_distance": None, "warnings": set()})
        if split.get("seed") is not None:
            row["split_seeds"].add(int(split["seed"]))
        leak = data.get("leakage") or {}
        if "grouped_split" in data and row["grouped_by_lesion"] is None:
            row["grouped_by_lesion"] = bool(data.get("grouped_by_lesion", data.get("grouped_split")))
        if leak:
            row["grouped_by_duplicates"] = bool(leak.get("grouped"))
            row["duplicate_groups"] = leak.get("duplicate_groups")
            row["duplicates_across_split"] = leak.get("across_split")
            row["near_duplicate_distance"] = leak.get("max_distance")
        for w in data.get("split_warnings") or []:
            row["warnings"].add(str(w))
    rows = []
    for row in out.values():
        row["split_seeds"] = ", ".join(str(s) for s in sorted(row["split_seeds"])) or None
        row["warnings"] = "; ".join(sorted(row["warnings"])) or None
        rows.append(row)
    return rows


def yes_no(value) -> str:
    return "unknown" if value is None else "yes" if value else "no"
