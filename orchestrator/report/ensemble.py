"""Ensembles of finished trials (seed 003): average their test-set probabilities and score the average.

Trials qualify only if they predicted the same test images with the same classes; probabilities come from the
``predictions.csv`` each trial stored, so ensembles need no retraining. ``--top K`` chooses members by their
validation score (``report.statistics.rank_on_validation``), never by the test split the ensemble is scored on.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd

from orchestrator.errors import BadInput
from orchestrator.run_store import RunPaths, read_trial_records
from orchestrator.report.statistics import SELECTION_SPLIT, rank_on_validation, validation_score
from workers.storage import Store
from workers.metrics import compute_metrics


RANKING_METRICS = ("f1_macro", "accuracy", "balanced_accuracy", "f1_weighted", "precision_macro", "recall_macro",
                   "top2_accuracy")  # test metrics of a record that --top may rank by (higher is better)


class EnsembleError(BadInput):
    """Trials that cannot be ensembled, phrased for the user in one line."""


def average_probabilities(predictions: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, list[str]]:
    """Mean of per-class probabilities over trials; the frames must cover the same images and classes."""
    if len(predictions) < 2:
        raise EnsembleError("an ensemble needs at least two completed trials")
    frames = {tid: df.set_index("image_id").sort_index() for tid, df in predictions.items()}
    first_id, first = next(iter(frames.items()))
    prob_cols = [c for c in first.columns if c.startswith("p_")]
    for tid, df in frames.items():
        if list(df.index) != list(first.index):
            raise EnsembleError(f"trial {tid} predicted other test images than {first_id} (different split or data)")
        if [c for c in df.columns if c.startswith("p_")] != prob_cols:
            raise EnsembleError(f"trial {tid} has other classes than {first_id}")
    mean = sum(df[prob_cols].to_numpy(dtype=float) for df in frames.values()) / len(frames)
    out = pd.DataFrame(mean, index=first.index, columns=prob_cols)
    out.insert(0, "true_class", first["true_class"])
    return out.reset_index(), [c[2:] for c in prob_cols]


def build_ensemble(store: Store, paths: RunPaths, trial_ids: list[str] | None = None, top: int | None = None,
                   by: str = "f1_macro") -> dict:
    """Ensemble the given trials (or the ``top`` completed ones by validation ``by``); store and return its record,
    which says what the members were selected on (``selected_on``) and their validation scores. Completed trials
    without a ``predictions.csv`` cannot take part: the record names them in ``left_out``."""
    if top is not None and top < 2:
        raise EnsembleError(f"--top: an ensemble needs at least two trials, got {top}")
    if by not in RANKING_METRICS:
        raise EnsembleError(f"--by: unknown metric '{by}' (valid: {', '.join(RANKING_METRICS)})")
    completed = [r.to_dict() for r in read_trial_records(store, paths) if r.completed]
    without = [r["trial_id"] for r in completed if not store.exists(paths.trial(r["trial_id"], "predictions.csv"))]
    if trial_ids and (named := [t for t in trial_ids if t in without]):
        raise EnsembleError(f"{store.url(paths.trial(named[0], 'predictions.csv'))}: trial {named[0]} of run "
                            f"{paths.run_id} has no predictions.csv; leave it out of --trials")
    completed = [r for r in completed if r["trial_id"] not in without]
    if trial_ids:
        known = {r["trial_id"] for r in completed}
        missing = [t for t in trial_ids if t not in known]
        if missing:
            raise EnsembleError(f"trial '{missing[0]}' is not a completed trial of run {paths.run_id}")
        chosen = [r for r in completed if r["trial_id"] in trial_ids]
        selected_on = "the trial ids given"
    elif not top:
        chosen, selected_on = completed, "all completed trials (no selection)"
    else:
        ranked = rank_on_validation(completed, by)
        if len(ranked) < 2:
            raise EnsembleError(f"--top ranks trials on their validation {by}; only {len(ranked)} completed "
                                f"trial(s) of run {paths.run_id} have one (set split.val_fraction above 0)")
        chosen = ranked[:top]
        selected_on = f"{SELECTION_SPLIT} {by}"
    predictions = {r["trial_id"]: pd.read_csv(io.StringIO(store.get_text(paths.trial(r["trial_id"], "predictions.csv"))))
                   for r in chosen}
    averaged, classes = average_probabilities(predictions)
    y_true = averaged["true_class"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = averaged[[f"p_{c}" for c in classes]].to_numpy()
    metrics = compute_metrics(y_true, probs, classes)
    name = "ensemble-" + "-".join(sorted(r["config"]["architecture"] for r in chosen))
    averaged.insert(2, "predicted_class", [classes[i] for i in np.argmax(probs, axis=1)])
    record = {"name": name, "members": [r["trial_id"] for r in chosen], "selected_on": selected_on,
              "member_validation": {r["trial_id"]: validation_score(r, by) for r in chosen},
              "metrics": metrics, "class_names": classes, "left_out": [f"{t} (no predictions.csv)" for t in without]}
    store.put_text(f"{paths.root}/ensembles/{name}/predictions.csv", averaged.to_csv(index=False), "text/csv")
    store.put_text(f"{paths.root}/ensembles/{name}/record.json", json.dumps(record, indent=1), "application/json")
    return record
