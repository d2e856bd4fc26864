"""Honest statistics at the worker: metrics that never lose a record, bootstrap intervals."""
from __future__ import annotations

import numpy as np
import pytest

from workers.metrics import compute_metrics

CLASSES = ["a", "b", "c", "d"]


def _softmax32(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float32)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_degenerate_row_with_an_absent_class_gives_a_null_auc_and_its_reason():
    """Class d is absent from the split; the last row's float32 softmax of [0, 0, 0, 120] is 0 on a, b, c."""
    probs = _softmax32([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [0, 0, 0, 120]])
    assert probs[3, :3].sum() == 0
    metrics = compute_metrics(np.array([0, 1, 2, 0]), probs, CLASSES)
    assert metrics["roc_auc_ovr"] is None
    assert "zero probability" in metrics["unavailable"]["roc_auc_ovr"]
    assert metrics["accuracy"] == pytest.approx(0.75) and metrics["isic"]["absent_classes"] == ["d"]
    assert metrics["ci95"]["accuracy"] is not None


@pytest.mark.parametrize("y_true, probs", [
    (np.array([0, 0, 0]), np.full((3, 4), 0.25, np.float32)),            # one class only, all ties
    (np.array([0, 1]), np.zeros((2, 4), np.float32)),                    # all-zero rows
    (np.array([0, 1, 2]), np.array([[np.nan] * 4] * 3, np.float32)),     # NaN probabilities
    (np.zeros(0, int), np.zeros((0, 4), np.float32)),                    # an empty split
])
def test_every_metric_survives_degenerate_input(y_true, probs):
    metrics = compute_metrics(y_true, probs, CLASSES)
    assert "unavailable" in metrics and "confusion_matrix" in metrics


def test_bootstrap_interval_brackets_the_accuracy_and_is_reproducible():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    probs = np.eye(3)[np.where(rng.random(200) < 0.7, y, (y + 1) % 3)].astype(np.float32)
    a = compute_metrics(y, probs, CLASSES[:3])
    low, high = a["ci95"]["accuracy"]
    assert low < a["accuracy"] < high and high - low < 0.2
    assert compute_metrics(y, probs, CLASSES[:3])["ci95"] == a["ci95"]
    assert "bootstrap" in a["ci95"]["method"]
