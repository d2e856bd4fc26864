"""Expand an experiment spec into trial configurations (pure and deterministic)."""
from __future__ import annotations

import hashlib
import itertools
import json

from orchestrator.spec.schema import ExperimentSpec
from workers.config import TrialConfig


def _trial_id(fields: dict) -> str:
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:8]
    readable = "{architecture}-e{epochs}-{node_type}-{augmentation}-{framework}-r{repeat}".format(**fields)
    return f"{readable}-{digest}"


def expand_grid(spec: ExperimentSpec) -> list[TrialConfig]:
    """Every combination of the grid axes, times repeats, as ``TrialConfig`` objects.

    The order is stable (architecture, epochs, node type, augmentation, framework, repeat) and the
    trial ids depend only on the settings that affect the trial (with ``grid.repeats_vary: init_and_split`` each
    repeat's split seed too), so a re-submission of the same
    file yields the same ids (which is how finished trials are recognised and never recomputed).
    """
    node_types = spec.resolved_node_types()
    g = spec.grid
    trials = []
    for arch, epochs, node_type, aug, framework, repeat in itertools.product(
        g.architectures, g.epochs, g.node_types, g.augmentation, g.frameworks, range(g.repeats)
    ):
        nt = node_types[node_type]
        resolved_framework = nt.framework if framework == "auto" else framework
        resources = dict(nt.resources)
        if spec.execution.cpus_per_trial is not None:
            resources["CPU"] = spec.execution.cpus_per_trial
        model = spec.model_spec(arch)
        seed = spec.seed * 1000 + repeat
        split = spec.split
        if g.repeats_vary == "init_and_split":
            split = split.model_copy(update={"seed": spec.split.seed + repeat})
        fields = {
            "architecture": arch,
            "epochs": epochs,
            "node_type": node_type,
            "augmentation": aug,
            "framework": resolved_framework,
            "repeat": repeat,
            "seed": seed,
            "dataset": spec.dataset.model_dump(mode="json"),
            "split": split.model_dump(mode="json"),
            "training": spec.training.model_dump(mode="json"),
            "augmentation_settings": spec.augmentation.model_dump(mode="json"),
            "model": model.model_dump(mode="json"),
        }
        trials.append(
            TrialConfig(
                trial_id=_trial_id(fields),
                experiment=spec.name,
                resources=resources,
                accelerator=nt.accelerator,
                price_per_hour=nt.price_per_hour,
                allow_device_mismatch=spec.execution.allow_device_mismatch,
                **fields,
            )
        )
    return trials
