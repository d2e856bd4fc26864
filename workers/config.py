"""The configuration of one trial, as handed from the coordinator to a worker (plain data)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialConfig:
    """Everything a worker needs to run one trial; JSON-serialisable."""

    trial_id: str
    experiment: str
    architecture: str
    epochs: int
    node_type: str
    augmentation: str
    framework: str
    repeat: int
    seed: int
    dataset: dict[str, Any]
    split: dict[str, Any]
    training: dict[str, Any]
    augmentation_settings: dict[str, Any]
    model: dict[str, Any]
    resources: dict[str, float] = field(default_factory=dict)
    accelerator: str | None = None
    price_per_hour: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialConfig":
        return cls(**data)

    def hparam(self, name: str, default: Any = None) -> Any:
        """A training hyperparameter, with search overrides taking precedence."""
        if name in self.overrides:
            return self.overrides[name]
        return self.training.get(name, default)
