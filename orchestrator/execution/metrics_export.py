"""Per-trial study progress as Ray metrics, for the Ray dashboard's Metrics view (Prometheus + Grafana).

The study driver records, per trial, the epoch it reached, its progress fraction and its latest validation
metrics, and counts finished trials by status. Ray exports them from the node the driver runs on, in Prometheus
format at that node's metrics export port, with the prefix ``ray_``:

    ray_skinlesion_trial_epoch{experiment, run_id, trial, node_type}        last epoch reported by the trial
    ray_skinlesion_trial_progress{experiment, run_id, trial, node_type}     epochs done / epochs planned (0..1)
    ray_skinlesion_trial_metric{experiment, run_id, trial, node_type, metric}   val_accuracy, val_loss, ...
    ray_skinlesion_trials_finished_total{experiment, run_id, status}        completed / failed trials (counter)
    ray_skinlesion_trials_running{experiment, run_id}                       trials running now

Use it from the Tune callback side (the driver): either add ``MetricsExportCallback(experiment, run_id, trials)``
to ``RunConfig(callbacks=[...])``, or call ``TrialMetrics`` yourself from an existing callback. Every call is a
no-op when Ray is not initialised or metrics are unavailable: progress reporting must never fail a study.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from orchestrator.execution.engine import trial_id_of

log = logging.getLogger(__name__)

EXPORTED_METRICS = ("val_accuracy", "val_loss", "val_f1_macro", "accuracy", "loss", "epoch_train_s")
TRIAL_TAGS = ("experiment", "run_id", "trial", "node_type")
RUN_TAGS = ("experiment", "run_id")


def _ray_metrics():
    """The ``ray.util.metrics`` module when a Ray worker/driver is connected, else None."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray.util import metrics

        return metrics
    except Exception:  # pragma: no cover - Ray missing or half-initialised
        return None


class TrialMetrics:
    """Ray Gauges and a Counter for one run's trials (``ray.util.metrics``); created lazily on first use, after
    ``ray.init``."""

    def __init__(self, experiment: str, run_id: str):
        self.experiment, self.run_id = experiment, run_id
        self._made = False
        self._epoch = self._progress = self._metric = self._finished = self._running = None
        self.running: set[str] = set()
        self.finished: dict[str, str] = {}

    # -- construction ----------------------------------------------------------------------------------
    def _ensure(self) -> bool:
        if self._made:
            return self._epoch is not None
        backend = _ray_metrics()
        if backend is None:
            return False  # try again later: Ray may be initialised by then
        self._made = True
        try:
            self._epoch = backend.Gauge("skinlesion_trial_epoch", description="Last epoch a trial reported",
                                        tag_keys=TRIAL_TAGS)
            self._progress = backend.Gauge("skinlesion_trial_progress",
                                           description="Epochs done / epochs planned, per trial", tag_keys=TRIAL_TAGS)
            self._metric = backend.Gauge("skinlesion_trial_metric", description="Latest per-epoch metric of a trial",
                                         tag_keys=TRIAL_TAGS + ("metric",))
            self._finished = backend.Counter("skinlesion_trials_finished", description="Trials that ended, by status",
                                             tag_keys=RUN_TAGS + ("status",))
            self._running = backend.Gauge("skinlesion_trials_running", description="Trials running now",
                                          tag_keys=RUN_TAGS)
        except Exception as err:
            log.debug("Ray metrics unavailable: %s", err)
            self._epoch = None
            return False
        return True

    def _tags(self, trial_id: str, node_type: str | None) -> dict[str, str]:
        return {"experiment": self.experiment, "run_id": self.run_id, "trial": trial_id, "node_type": node_type or "-"}

    def _run_tags(self) -> dict[str, str]:
        return {"experiment": self.experiment, "run_id": self.run_id}

    def _safely(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:  # never fail a study because of metrics
            log.debug("recording a Ray metric failed: %s", err)

    # -- recording -------------------------------------------------------------------------------------
    def epoch(self, trial_id: str, epoch: int, *, total_epochs: int | None = None, node_type: str | None = None,
              metrics: dict | None = None) -> None:
        """A trial reported ``epoch`` (1-based) with these per-epoch ``metrics``."""
        if not self._ensure():
            return
        tags = self._tags(trial_id, node_type)

        def record() -> None:
            if trial_id not in self.running and trial_id not in self.finished:
                self.running.add(trial_id)
                self._running.set(len(self.running), tags=self._run_tags())
            self._epoch.set(float(epoch), tags=tags)
            if total_epochs:
                self._progress.set(min(1.0, float(epoch) / float(total_epochs)), tags=tags)
            for name in EXPORTED_METRICS:
                value = (metrics or {}).get(name)
                if isinstance(value, (int, float)) and value == value:  # skip NaN
                    self._metric.set(float(value), tags={**tags, "metric": name})

        self._safely(record)

    def finish(self, trial_id: str, status: str, *, node_type: str | None = None, epochs: int | None = None) -> None:
        """A trial ended (``completed``, ``failed``, ...); counted once per trial."""
        if not self._ensure() or trial_id in self.finished:
            return

        def record() -> None:
            self.finished[trial_id] = status
            self.running.discard(trial_id)
            self._finished.inc(1.0, tags={**self._run_tags(), "status": status})
            self._running.set(len(self.running), tags=self._run_tags())
            if status == "completed":
                self._progress.set(1.0, tags=self._tags(trial_id, node_type))
                if epochs:
                    self._epoch.set(float(epochs), tags=self._tags(trial_id, node_type))

        self._safely(record)


def _tune_callback_base():
    try:
        from ray.tune import Callback

        return Callback
    except Exception:  # pragma: no cover
        return object


class MetricsExportCallback(_tune_callback_base()):
    """A Ray Tune callback feeding ``TrialMetrics`` (add it to ``RunConfig(callbacks=[...])`` in the driver).

    ``trials`` are the run's ``TrialConfig`` objects (for the node type and planned epochs of each trial id).
    """

    def __init__(self, experiment: str, run_id: str, trials: Iterable[Any] = ()):
        self.metrics = TrialMetrics(experiment, run_id)
        self.plan = {t.trial_id: (t.node_type, t.epochs) for t in trials}

    @staticmethod
    def _tid(trial) -> str:
        return trial_id_of(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        tid = self._tid(trial)
        node_type, total = self.plan.get(tid, (None, None))
        if "record" in result:  # the final report carries the trial's record, not an epoch
            return
        epoch = result.get("epoch", result.get("training_iteration"))
        if epoch is not None:
            self.metrics.epoch(tid, int(epoch), total_epochs=total, node_type=node_type, metrics=result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        tid = self._tid(trial)
        node_type, total = self.plan.get(tid, (None, None))
        self.metrics.finish(tid, "completed", node_type=node_type, epochs=total)

    def on_trial_error(self, iteration, trials, trial, **info):
        tid = self._tid(trial)
        node_type, _ = self.plan.get(tid, (None, None))
        self.metrics.finish(tid, "failed", node_type=node_type)
