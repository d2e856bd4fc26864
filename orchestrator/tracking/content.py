"""What a trial or a study shows in MLflow: params, metrics, tags and artifacts, as pure functions of the
trial settings and the trial record (the same functions serve in-trial logging and ``report --to-mlflow``).

Names: per-epoch metrics keep their history names (``loss``, ``accuracy``, ``val_loss``, ``val_f1_macro``,
``epoch_train_s`` ...) with ``step`` = epoch; the final test metrics are ``test_<name>`` for every number in
record.json's ``metrics``; timings are ``time_<name>``.
"""
from __future__ import annotations

import math
from typing import Any

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own parent-run tag: child runs nest under the study in the UI
ROLE_TAG = "role"
STUDY_ROLE, TRIAL_ROLE = "study", "trial"
_TRIAL_SETTINGS = ("architecture", "epochs", "node_type", "augmentation", "framework", "repeat", "seed",
                   "accelerator", "price_per_hour")
MAX_PARAM_CHARS = 6000  # MLflow's limit on one param value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _trial_settings(config: dict) -> dict[str, Any]:
    params: dict[str, Any] = {k: config.get(k) for k in _TRIAL_SETTINGS}
    training = {**(config.get("training") or {}), **{k: v for k, v in (config.get("overrides") or {}).items()
                                                     if k != "model_params"}}
    params.update(training)
    params.update({f"model_{k}": v for k, v in ((config.get("overrides") or {}).get("model_params") or {}).items()})
    dataset = config.get("dataset") or {}
    params.update({"dataset": dataset.get("source"), "image_size": dataset.get("image_size")})
    params.update({f"resources_{k}": v for k, v in (config.get("resources") or {}).items()})
    return {k: v for k, v in params.items() if v is not None}


def trial_params(config: dict) -> dict[str, str]:
    """A trial's settings as MLflow params: the grid axes, the training hyperparameters (search overrides
    applied), the dataset and the requested resources."""
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in _trial_settings(config).items()}


def epoch_metrics(row: dict) -> tuple[int, dict[str, float]]:
    """(step, metrics) of one history row: every finite number except the epoch counter itself."""
    metrics = {k: _number(v) for k, v in row.items() if k != "epoch"}
    return int(row["epoch"]), {k: v for k, v in metrics.items() if v is not None}


def final_metrics(record: dict) -> dict[str, float]:
    """The record's test metrics as ``test_<name>``, the ISIC scorer's as ``test_isic_<name>`` (macro means as
    ``test_isic_<name>_macro``), its timings as ``time_<name>`` and its cost (price_per_hour x trial wall time,
    as the report counts it) as ``cost_usd`` (finite numbers only)."""
    metrics = record.get("metrics") or {}
    out = {f"test_{k}": _number(v) for k, v in metrics.items()}
    isic = metrics.get("isic") or {}
    out.update({f"test_isic_{k}": _number(v) for k, v in isic.items()})
    out.update({f"test_isic_{k}_macro": _number(v) for k, v in (isic.get("macro") or {}).items()})
    timings = record.get("timings") or {}
    out.update({f"time_{k}": _number(v) for k, v in timings.items()})
    price, total = _number((record.get("config") or {}).get("price_per_hour")), _number(timings.get("total_s"))
    if price is not None and total is not None:
        out["cost_usd"] = price * total / 3600
    return {k: v for k, v in out.items() if v is not None}


def hparams(config: dict) -> dict[str, Any]:
    """A trial's settings (those of ``trial_params``) for TensorBoard's HParams view: numbers and booleans kept,
    anything else as text."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v)[:MAX_PARAM_CHARS]
            for k, v in _trial_settings(config).items()}


def study_metrics(summary: dict) -> dict[str, float]:
    """The study's parent-run metrics from the report's ``summary.json``: trial counts, and per node type
    (``<node>_...``) the best setting's validation score, test accuracy and F1, time and cost to target and
    speed-ups (``report.summary``)."""
    out: dict[str, float | None] = {f"trials_{k}": _number(v) for k, v in (summary.get("counts") or {}).items()}
    out["trials_completed_n"] = _number(summary.get("n_completed"))
    for row in summary.get("summary_by_node_type") or []:
        node = "".join(c if c.isalnum() or c in "_-." else "_" for c in str(row.get("node_type")))
        for key in ("validation", "test_accuracy", "test_f1_macro", "time_to_target_s", "cost_to_target_usd",
                    "speedup_time_to_target", "speedup_images_per_s"):
            out[f"{node}_best_{key}"] = _number(row.get(key))
    costs = [_number(t.get("cost_usd")) for t in summary.get("trials") or []]
    costs = [c for c in costs if c is not None]
    if costs:
        out["cost_usd_total"] = sum(costs)
    return {k: v for k, v in out.items() if v is not None}


def run_tags(experiment: str, run_id: str) -> dict[str, str]:
    """Tags every run of one study carries."""
    return {"experiment": experiment, "run_id": run_id}


def trial_start_tags(config: dict, experiment: str, run_id: str, parent_run_id: str | None) -> dict[str, str]:
    """Tags a trial's run gets when it starts (its device and final status come with ``trial_tags``)."""
    tags = {**run_tags(experiment, run_id), ROLE_TAG: TRIAL_ROLE, "trial_id": config["trial_id"],
            "node_type": config.get("node_type") or "", "status": "running"}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    return tags


def trial_tags(record: dict) -> dict[str, str]:
    """Tags known once a trial ended: its status, the device that really ran and whether it was simulated."""
    device = record.get("device") or {}
    used = device.get("used") or {}
    tags = {"status": str(record.get("status") or "unknown"), "trial_id": str(record.get("trial_id"))}
    if used:
        tags.update({"device_used": f"{used.get('kind')}: {used.get('name')}", "device_kind": str(used.get("kind")),
                     "simulated": str(bool(device.get("simulated"))).lower()})
    if record.get("error"):
        tags["error"] = str(record["error"])[:500]
    return tags


def trial_artifacts(record: dict, predictions_csv: str | None = None) -> dict[str, bytes]:
    """predictions.csv, the confusion matrix and the learning curve of one trial, as file name -> bytes."""
    from orchestrator.report import plots

    files: dict[str, bytes] = {}
    predictions = predictions_csv or record.get("predictions_csv")
    if predictions:
        files["predictions.csv"] = predictions.encode("utf-8")
    matrix = (record.get("metrics") or {}).get("confusion_matrix")
    if matrix:
        png = plots.confusion_matrix(matrix, list(record.get("class_names") or []), str(record.get("trial_id")))
        if png:
            files["confusion_matrix.png"] = png
    if record.get("history"):
        png = plots.learning_curves([record["history"]], str(record.get("trial_id")))
        if png:
            files["learning_curve.png"] = png
    return files
