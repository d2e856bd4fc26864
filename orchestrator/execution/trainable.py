"""The trial trainable, the typed task it is handed, and the reporting contract every trainable follows.

The run engine (``orchestrator.execution.engine``) calls ``trainable(task)`` with a ``TrialTask``: the trial's
``TrialConfig``, how to open the run's store, its prepared data's key, what ``orchestrator.tracking`` needs and,
for a search, the time-to-target target of its objectives: with a target every result also carries the trial's
time and cost to target so far (``orchestrator.search.objectives``), which a searcher optimises.
Per epoch ``trial_trainable`` reports the epoch's metrics with a checkpoint (so a killed worker resumes from its
last epoch). At the end ``report_trial_record`` reports the final metrics with the record and its prediction files
under ``RECORD_KEY`` (``record.json``, ``predictions.csv``, ``val_predictions.csv``) and, only when the model is
kept, a checkpoint holding it. The coordinator's recorder takes the record out of that result before Tune stores
it (``take_final_record``), so Tune's stored results and experiment state carry metrics only, and a trial without
a kept model ends without a final checkpoint (which would cost Tune a save round trip to the actor per trial).
"""
from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from workers.config import TrialConfig
from workers.records import TrialRecord

RECORD_FILE = "record.json"
PREDICTIONS_FILE = "predictions.csv"
VAL_PREDICTIONS_FILE = "val_predictions.csv"
MODEL_DIR = "model"  # the trained model in the final checkpoint (``workers.model_files``), when models are kept
FINAL_KEY = "final_report"  # marks the last result of a trial (Tune itself sets "done" when it stops a trial)
RECORD_KEY = "trial_record"  # the final result's record and prediction files: {file name: text}
NODE_ID_KEY = "node_id"  # added to every result by ``named_trial_class``: the Ray node the attempt runs on


@dataclass(frozen=True)
class TrialTask:
    """What a trainable is handed: the trial, how to open the run's store (``open_store`` settings), its
    prepared data's key, the tracking context (``StudyTracking.trial_context``; None: untracked),
    ``storage.keep_models`` (anything but ``none``: the trained model goes into the final checkpoint) and a
    search's time-to-target target (None: no objectives reported)."""

    trial: TrialConfig
    store: dict
    cache_key: str | None = None
    tracking: dict | None = None
    keep_models: str = "none"
    target: dict | None = None

    @property
    def trial_id(self) -> str:
        return self.trial.trial_id

    def resolve(self, sample: dict, tune_trial_id: str) -> "TrialTask":
        """The task of one Tune trial given the values Tune sampled for it: a study's task is already
        complete (a search's task template overrides this)."""
        return self


def numeric(row: dict) -> dict:
    """The numeric entries of a result row (what Tune, its schedulers and searchers take)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def report_trial_record(record: TrialRecord, predictions_csv: str | None = None,
                        val_predictions_csv: str | None = None, model=None, extra: dict | None = None) -> None:
    """Final report of a trial: the last epoch's and the test metrics (and ``extra`` metrics), the record with its
    test and validation predictions (``RECORD_KEY``) and, when given, a checkpoint holding the trained Keras
    ``model`` as ``model/model.keras`` with its ``model.json``."""
    from ray import tune

    last = numeric(record.history[-1]) if record.history else {}
    files = {RECORD_FILE: record.model_dump_json(), PREDICTIONS_FILE: predictions_csv,
             VAL_PREDICTIONS_FILE: val_predictions_csv}
    final = {**last, **(extra or {}), **{f"test_{k}": v for k, v in numeric(record.metrics).items()}, FINAL_KEY: True,
             RECORD_KEY: {name: text for name, text in files.items() if text}}
    if model is None:
        tune.report(final)
        return
    from workers.model_files import model_meta, save_model

    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / MODEL_DIR,
                   model_meta(record.config, record.class_names or [], tuple(model.input_shape[1:])))
        tune.report(final, checkpoint=tune.Checkpoint.from_directory(tmp))


def take_final_record(result: dict) -> tuple[TrialRecord, dict[str, str]] | None:
    """(record, prediction files by name: ``predictions.csv``, ``val_predictions.csv``) of a trial's final result,
    removed from ``result`` (what ``orchestrator.run_store.write_trial_record`` takes); None for an epoch's result."""
    files = result.pop(RECORD_KEY, None)
    if not files:
        return None
    files = dict(files)
    return TrialRecord.model_validate_json(files.pop(RECORD_FILE)), files


def named_trial_class(trainable, study: str):
    """Tune's class for the function ``trainable``, named so that trials can be told apart in Ray's views
    (``ray list actors``, the dashboard): the class is ``<study>_trial`` and each actor's repr is its trial's name
    (the trial id), which Ray takes when the actor is created. Every result also carries the Ray node id of the
    attempt (``node_id``), beside Tune's own ``node_ip``: nodes on one machine share an address, not an id."""
    import ray
    from ray.tune.trainable import wrap_function

    base = wrap_function(trainable)

    class NamedTrial(base):
        def __repr__(self) -> str:
            return self.trial_name or base._name

        def get_auto_filled_metrics(self, *args, **kwargs) -> dict:
            filled = super().get_auto_filled_metrics(*args, **kwargs)
            filled[NODE_ID_KEY] = ray.get_runtime_context().get_node_id()
            return filled

    name = "".join(c if c.isalnum() else "_" for c in study) + "_trial"
    NamedTrial.__name__ = NamedTrial.__qualname__ = name
    return NamedTrial


def _limit_threads(cpus: float) -> None:
    n = str(max(1, int(cpus)))
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = n
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def _objectives(trial: TrialConfig, target: dict | None, history: list[dict]) -> dict:
    """Time and cost to ``target`` of the epochs so far (nothing without a target)."""
    if not target:
        return {}
    from orchestrator.search.objectives import objective_values

    return objective_values(history, target, trial.price_per_hour)


def _epoch_reporter(tracking, trial: TrialConfig, target: dict | None):
    from ray import tune

    seen: list[dict] = []

    def on_epoch(row: dict, save) -> None:
        tracking.epoch(row)
        seen.append(row)
        with tempfile.TemporaryDirectory() as tmp:
            save(tmp)
            tracking.save_state(tmp)
            tune.report({**numeric(row), **_objectives(trial, target, seen)},
                        checkpoint=tune.Checkpoint.from_directory(tmp))

    return on_epoch


def trial_trainable(task: TrialTask) -> None:
    """Run one trial under Tune: load its prepared data, train, report per epoch and the final record."""
    import ray
    from ray import tune

    from orchestrator.execution.data_cache import load_prepared, resolve_weights
    from orchestrator.tracking.trial import TrialTracking
    from workers.train import run_trial

    _limit_threads(task.trial.resources.get("CPU", 1))
    t = time.perf_counter()
    data = load_prepared(task.store, task.cache_key)  # stages the node's data cache (once per node)
    data_load_s = time.perf_counter() - t
    started = time.perf_counter()  # the trial's clock starts here, at the same point for every trial
    checkpoint = tune.get_checkpoint()
    resume_dir = checkpoint.to_directory() if checkpoint else None
    tracking = TrialTracking(task.tracking, task.trial.to_dict(), task.store, resume_dir)
    try:
        result = run_trial(
            task.trial, data=data, on_epoch=_epoch_reporter(tracking, task.trial, task.target),
            resume_dir=resume_dir,
            weights_path=resolve_weights(task.trial, task.store),
            data_timings={"data_load_s": data_load_s, "prepare_s": 0.0, "augment_s": float(data.meta.get("augment_s", 0.0))},
            started=started,
        )
    except Exception as err:
        tracking.fail(f"{type(err).__name__}: {err}")
        raise
    record = result.record.model_copy(update={
        "node_id": ray.get_runtime_context().get_node_id(), "resumed_from_checkpoint": resume_dir is not None,
        "tune_trial_id": tune.get_context().get_trial_id()})
    record = record.model_copy(update={"tracking": tracking.finish(record.to_dict(), result.predictions_csv)})
    keep = task.keep_models != "none" and record.status.value == "completed"
    report_trial_record(record, result.predictions_csv, result.val_predictions_csv, result.model if keep else None,
                        _objectives(task.trial, task.target, record.history))
