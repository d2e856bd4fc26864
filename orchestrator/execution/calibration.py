"""Calibration before a study: one short trial per distinct (architecture, node type, stack) on the cluster the
study will run on, so the plan (``execution/plan.py``) estimates from the machine as it is now rather than from
reference figures or an earlier run on a differently loaded machine.

A calibration trial is the setting's own trial cut to ``plan.calibration_epochs`` epochs (2 by default: the first
holds compilation, the second gives the steady throughput) of at most ``plan.calibration_steps`` training batches
each (200 by default), with its validation and test passes; it runs as a
study of its own (run id ``<time>-calibration``) on the same Ray, and its record is cached in the store under
``calibration/<key>.json``, the key a hash of everything that sets its speed (architecture, node type and its
resources, framework and the driver's Keras/backend versions, data, training settings, model). A later study of
the same setting reuses the cached figure. ``plan.plan_study`` reads the cache when ``plan.calibrate`` is on.
"""
from __future__ import annotations

from typing import Callable

from orchestrator.execution.calibration_cache import cache_path, cached_calibrations, calibration_key
from workers.config import STEPS_PER_EPOCH, TrialConfig


def calibration_trials(trials: list[TrialConfig], epochs: int, steps: int) -> dict[str, TrialConfig]:
    """key -> the calibration trial of each distinct setting among ``trials``: ``epochs`` epochs of at most
    ``steps`` training batches."""
    out: dict[str, TrialConfig] = {}
    for t in trials:
        key = calibration_key(t)
        if key not in out:
            out[key] = t.replace(epochs=epochs, repeat=0, overrides={**t.overrides, STEPS_PER_EPOCH: steps},
                                 trial_id=f"calibration-{t.architecture}-{t.node_type}-{key[:8]}")
    return out


def calibrate(spec, trials: list[TrialConfig], *, address: str | None = None, num_cpus: int | None = None,
              cluster_config: dict | None = None, notify: Callable[[str], None] = print) -> list[dict]:
    """Run the calibration trials not cached yet (one short study) and cache their records; returns the
    calibration records of every setting of ``trials`` (the ones that could run)."""
    from orchestrator.execution.run_steps import new_run_id, open_run_store
    from orchestrator.execution.study_runner import execute_study

    store = open_run_store(spec)
    wanted = calibration_trials(trials, spec.plan.calibration_epochs, spec.plan.calibration_steps)
    cached = {calibration_key(TrialConfig.from_dict(r["config"])) for r in cached_calibrations(store, trials)}
    missing = {k: t for k, t in wanted.items() if k not in cached}
    notify(f"Calibration: {len(wanted)} setting(s), {len(wanted) - len(missing)} cached, {len(missing)} to run "
           f"({spec.plan.calibration_epochs} epochs of at most {spec.plan.calibration_steps} steps each)")
    if missing:
        quiet = spec.model_copy(update={
            "tracking": type(spec.tracking)(tensorboard=False),
            "execution": spec.execution.model_copy(update={"budget_usd": None})})
        outcome = execute_study(quiet, trials=list(missing.values()), run_id=f"{new_run_id()}-calibration",
                                address=address, num_cpus=num_cpus, cluster_config=cluster_config,
                                show_progress=False, notify=notify)
        by_id = {r.trial_id: r for r in outcome.records}
        for key, trial in missing.items():
            record = by_id.get(trial.trial_id)
            if record is None:
                continue
            if record.completed:
                store.put_text(cache_path(key), record.model_dump_json())
            else:
                notify(f"Calibration of {trial.architecture} on {trial.node_type}: {record.status.value} "
                       f"({record.error}); its estimate uses the other sources")
    return cached_calibrations(store, trials)
