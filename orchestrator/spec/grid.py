"""Expand an experiment spec into trial configurations (pure and deterministic)."""
from __future__ import annotations

import hashlib
import itertools
import json

from orchestrator.spec.schema import ExperimentSpec
from orchestrator.spec.stack import resolve_stack
from workers.config import TrialConfig


ID_FIELDS = ("architecture", "epochs", "node_type", "augmentation", "framework", "repeat", "seed", "dataset", "split",
             "training", "augmentation_settings", "model")


def trial_id(settings: dict, tag: str | None = None) -> str:
    """The one trial id of every run (studies, searches, a search's best-configuration study).

    ``settings`` is a trial's JSON form (``TrialConfig.to_dict()`` or the grid's fields): the readable axes, then a
    hash of everything that affects the trial (the ``ID_FIELDS``, a search's ``overrides``, and ``tag``). ``tag``
    tells apart trials of equal settings: a search sample's Tune trial id, or ``best``. Equal inputs give equal
    ids, which is how a resume recognises finished trials and how coordinator and worker name a trial alike."""
    fields = {k: settings[k] for k in ID_FIELDS}
    if settings.get("overrides"):
        fields["overrides"] = settings["overrides"]
    if tag:
        fields["tag"] = tag
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:8]
    readable = "{architecture}-{label}e{epochs}-{node_type}-{augmentation}-{framework}-r{repeat}".format(
        **fields, label=f"{tag}-" if tag else "")
    return f"{readable}-{digest}"


def expand_grid(spec: ExperimentSpec) -> list[TrialConfig]:
    """Every combination of the grid axes, times repeats, as ``TrialConfig`` objects.

    The order is stable (architecture, epochs, node type, augmentation, framework, repeat) and the
    trial ids depend only on the settings that affect the trial, so a re-submission of the same
    file yields the same ids (which is how finished trials are recognised and never recomputed).
    """
    node_types = spec.resolved_node_types()
    g = spec.grid
    trials = []
    for arch, epochs, node_type, aug, framework, repeat in itertools.product(
        g.architectures, g.epochs, g.node_types, g.augmentation, g.frameworks, range(g.repeats)
    ):
        nt = node_types[node_type]
        stack = resolve_stack(spec, node_type, framework)  # one stack per study unless the node type sets its own
        resolved_framework = stack["framework"]
        training = spec.training.model_copy(update={k: stack[k] for k in
                                                    ("mixed_precision", "jit_compile", "steps_per_execution")})
        resources = dict(nt.resources)
        if spec.execution.cpus_per_trial is not None:
            resources["CPU"] = spec.execution.cpus_per_trial
        model = spec.model_spec(arch)
        seed = spec.seed * 1000 + repeat
        fields = {
            "architecture": arch,
            "epochs": epochs,
            "node_type": node_type,
            "augmentation": aug,
            "framework": resolved_framework,
            "repeat": repeat,
            "seed": seed,
            "dataset": spec.dataset.model_dump(mode="json"),
            "split": spec.split.model_dump(mode="json"),
            "training": training.model_dump(mode="json"),
            "augmentation_settings": spec.augmentation.model_dump(mode="json"),
            "model": model.model_dump(mode="json"),
        }
        trials.append(
            TrialConfig(
                trial_id=trial_id(fields),
                experiment=spec.name,
                resources=resources,
                accelerator=nt.accelerator,
                price_per_hour=nt.price_per_hour,
                allow_device_mismatch=spec.execution.allow_device_mismatch,
                **fields,
            )
        )
    return trials
