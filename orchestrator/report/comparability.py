"""Which trials a hardware comparison may set side by side (pure functions on records and trial tables).

A speed-up or cost ratio compares two node types; it says something about the hardware only when the trials
differ in the node type alone and their timings were taken on nodes they had to themselves:

* the **stack** of a trial is what it computed with besides the hardware: backend, precision policy, XLA, global
  batch and steps per execution (devices used and per-device batch follow from the node type and the global
  batch, and are named with it);
* ``COMPARED`` lists every factor two trials must share for their speed-up to be computed; otherwise the
  comparison is "not comparable" and names the factor that differs;
* a trial that shared its node with other trials (``trials_sharing_node`` > 1), or whose node's load average
  exceeded ``BUSY_LOAD`` times its CPUs (other work ran there), has **shared-node** timings: they are marked, and
  left out of speed-ups and the Pareto front;
* a **collapsed** model predicts (nearly) one class for every test image; it is flagged wherever it is listed;
* time to target is scored by MLPerf Training's rules (``mlperf_score``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

TIMING_ISOLATED, TIMING_SHARED = "isolated", "shared node"
BUSY_LOAD = 2.0  # a node whose 1-minute load average exceeded this many times its CPUs was busy with other work
COLLAPSE_SHARE = 0.95  # a model whose most-predicted class takes this share of the test predictions is collapsed
STACK_COLUMNS = ["precision", "jit", "devices_used", "per_device_batch", "global_batch", "steps_per_execution"]
# Factors two trials must share for a speed-up or cost ratio between their node types (backend: what ran).
COMPARED = ["architecture", "epochs", "augmentation", "backend", "precision", "jit", "global_batch",
            "steps_per_execution"]
COMPARABLE = "yes"

# MLPerf Training rules (mlcommons/training_policies, training_rules.adoc, "Benchmark Results" and "Run Results"):
# image classification needs 5 runs per benchmark result; the result is the mean of the run times after dropping
# the fastest and the slowest; a single run that does not reach the target may be treated as the slowest run and
# dropped, and a result with more than one such run is invalid. The clock starts before the system touches the
# dataset (data may start on any durable storage, e.g. the node's local disk) and stops when the target is reached.
MLPERF_RUNS = 5
MLPERF_RULES = "MLPerf Training rules, training_rules.adoc 'Benchmark Results'"


def trial_stack(record: dict) -> dict:
    """The stack one trial computed with, from its record (``None`` for what the record does not say)."""
    dev = record.get("device") or {}
    training = (record.get("config") or {}).get("training") or {}
    jit = dev.get("jit_compile")
    return {
        "precision": record.get("precision_policy"),
        "jit": None if jit is None else ("XLA" if jit is True else "no XLA" if jit is False else str(jit)),
        "devices_used": dev.get("devices_used"),
        "per_device_batch": dev.get("per_device_batch"),
        "global_batch": dev.get("global_batch") or training.get("batch_size"),
        "steps_per_execution": dev.get("steps_per_execution"),
    }


def stack_text(row) -> str | None:
    """``jax, mixed_bfloat16, XLA, 4 x 8 per device, 32 steps/execution`` for a row holding the stack columns."""
    def has(key):
        return key in row and row[key] is not None and not pd.isna(row[key])

    parts = [str(row[k]) for k in ("backend", "precision", "jit") if has(k)]
    if has("devices_used") and has("per_device_batch"):
        parts.append(f"{int(row['devices_used'])} x {int(row['per_device_batch'])} per device")
    elif has("global_batch"):
        parts.append(f"batch {int(row['global_batch'])}")
    if has("steps_per_execution"):
        parts.append(f"{int(row['steps_per_execution'])} steps/execution")
    return ", ".join(parts) or None


def predicted_share(record: dict) -> float | None:
    """Share of the test predictions that fall in the most-predicted class (from the confusion matrix)."""
    cm = (record.get("metrics") or {}).get("confusion_matrix")
    if not cm:
        return None
    predicted = np.asarray(cm, dtype=float).sum(axis=0)
    return float(predicted.max() / predicted.sum()) if predicted.sum() else None


def trial_columns(record: dict) -> dict:
    """The trial table's comparability columns of one record: stack, timing isolation, CPU load, collapse."""
    sharing = record.get("trials_sharing_node")
    share = predicted_share(record)
    timings = record.get("timings") or {}
    load, cpus = timings.get("cpu_load_1m"), timings.get("node_cpus")
    busy = load is not None and bool(cpus) and load > BUSY_LOAD * cpus  # other processes ran on the node
    columns = trial_stack(record)
    columns.update({
        "timing": TIMING_SHARED if busy or (sharing or 0) > 1 else None if sharing is None else TIMING_ISOLATED,
        "shared_with": ", ".join(record.get("shared_with") or []) or None,
        "cpu_load_1m": timings.get("cpu_load_1m"),
        "predicted_share": share,
        "collapsed": None if share is None else share >= COLLAPSE_SHARE,
    })
    return columns


def isolated(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose timings come from a node the trial had to itself (unknown sharing counts as isolated); slices of
    ``df`` when that is every row or none (no copy: reports call this once per group)."""
    alone = df["timing"] != TIMING_SHARED
    if alone.all():
        return df
    if not alone.any():
        return df.iloc[:0]
    return df[alone]


def timing_label(g: pd.DataFrame) -> str:
    """``isolated``, ``shared node`` or ``shared node (2 of 3 trials)`` for a group of trials."""
    shared = int((g["timing"] == TIMING_SHARED).sum())
    if not shared:
        return TIMING_ISOLATED
    return TIMING_SHARED if shared == len(g) else f"{TIMING_SHARED} ({shared} of {len(g)} trials)"


def _value(v):
    return None if v is None or (not isinstance(v, str) and pd.isna(v)) else v


def differing_factor(a: dict, b: dict, factors=COMPARED) -> str | None:
    """``precision (mixed_bfloat16 vs float32)`` for the first factor in which ``a`` and ``b`` differ, else None."""
    for f in factors:
        va, vb = _value(a.get(f)), _value(b.get(f))
        if va != vb:
            return f"{f} ({va} vs {vb})"
    return None


def key_of(row, factors=COMPARED) -> tuple:
    return tuple(_value(row[f]) if f in row else None for f in factors)


def first_by_key(rows: list[dict]) -> dict[tuple, dict]:
    """``rows`` by ``key_of``, the first row of each key."""
    out: dict[tuple, dict] = {}
    for r in rows:
        out.setdefault(key_of(r), r)
    return out


def comparison(row: dict, reference_rows: dict[tuple, dict], reference: str | None) -> tuple[str, dict | None]:
    """(``yes`` and the matching reference row) or (``not comparable: ...`` naming the factor, None) for one
    group of trials against the reference node type's groups (``first_by_key`` of them: built once per table)."""
    if reference is None:
        return "not comparable: no CPU reference node type completed a trial", None
    same = reference_rows.get(key_of(row))
    if same is not None:
        return COMPARABLE, same
    near = [r for r in reference_rows.values() if all(_value(r.get(f)) == _value(row.get(f))
                                                      for f in ("architecture", "epochs", "augmentation"))]
    if not near:
        return (f"not comparable: node type '{reference}' has no trial of this architecture, epochs and "
                "augmentation"), None
    return f"not comparable: {differing_factor(row, near[0])} differs from '{reference}'", None


def add_speedups(groups: pd.DataFrame, reference: str | None, columns: dict[str, str]) -> pd.DataFrame:
    """Speed-ups of every group (one row per ``COMPARED`` factors x node type, with ``timing``) against the
    ``reference`` node type's group with the same factors. ``columns`` maps each output column to
    ``(source column, direction)``: ``higher`` (throughput: group / reference) or ``lower`` (time: reference /
    group). Shared-node groups get no speed-up; ``comparable`` says why a row has none."""
    out = groups.copy()
    ref_rows = [r for r in out.to_dict("records") if r.get("node_type") == reference
                and r.get("timing") == TIMING_ISOLATED]
    verdicts, values, by_key = [], {name: [] for name in columns}, first_by_key(ref_rows)
    for row in out.to_dict("records"):
        if row.get("timing") != TIMING_ISOLATED:
            verdict, ref = "not comparable: shared node (timings taken while other trials ran on the node)", None
        elif reference is not None and not ref_rows and row.get("node_type") != reference:
            verdict, ref = f"not comparable: '{reference}' has no isolated timing", None
        else:
            verdict, ref = comparison(row, by_key, reference)
        verdicts.append(verdict)
        for name, (source, direction) in columns.items():
            mine, theirs = (row.get(source), ref.get(source)) if ref else (None, None)
            ok = ref is not None and pd.notna(mine) and pd.notna(theirs) and mine and theirs
            values[name].append((mine / theirs if direction == "higher" else theirs / mine) if ok else np.nan)
    for name, vals in values.items():
        out[name] = pd.Series(vals, index=out.index, dtype="float64")
    out["comparable"] = verdicts
    return out


def mlperf_score(times: list[float | None], runs: int = MLPERF_RUNS) -> tuple[float, str]:
    """MLPerf Training's benchmark result over repeated runs' times to target (None: the run never reached it)
    and a note on how it was obtained (see ``MLPERF_RULES`` above).

    With at least ``runs`` runs: the fastest and the slowest are dropped and the rest averaged; one run that
    missed the target counts as the slowest (and is dropped); more than one makes the result invalid (NaN).
    With fewer runs there is no MLPerf score (NaN) and the note says so."""
    reached = sorted(float(t) for t in times if t is not None and not pd.isna(t))
    missed = len(times) - len(reached)
    if len(times) < runs:
        return float("nan"), f"too few runs for an MLPerf score ({len(times)} of {runs}); mean of reaching runs shown"
    if missed > 1:
        return float("nan"), f"invalid under MLPerf rules: {missed} runs missed the target (at most 1 allowed)"
    kept = reached[1:] if missed else reached[1:-1]  # a missed run is the slowest one dropped
    note = f"MLPerf score over {len(times)} runs (fastest and slowest dropped"
    return float(np.mean(kept)), note + (", the slowest being the run that missed the target)" if missed else ")")


def collapsed_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed trials whose test predictions (nearly) all fall in one class."""
    done = df[(df["status"] == "completed") & df["collapsed"].fillna(False).astype(bool)]
    return done[["trial_id", "architecture", "epochs", "node_type", "predicted_share", "accuracy",
                 "balanced_accuracy"]]


def stacks_by_node_type(df: pd.DataFrame) -> pd.DataFrame:
    """The distinct stacks each node type's completed trials ran with (one row per node type and stack)."""
    done = df[df["status"] == "completed"]
    if done.empty:
        return pd.DataFrame()
    rows = []
    for node, g in done.groupby("node_type", sort=True):
        for text, h in g.groupby(g.apply(stack_text, axis=1), sort=True):
            rows.append({"node_type": node, "stack": text, "trials": len(h)})
    return pd.DataFrame(rows)
