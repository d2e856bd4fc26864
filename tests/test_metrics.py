"""Metrics against hand-computed values, including a class that is never predicted."""
from __future__ import annotations

import numpy as np
import pytest

from workers.metrics import compute_metrics

CLASSES = ["a", "b", "c"]


def _onehot(pred, n=3, p=0.8):
    probs = np.full((len(pred), n), (1 - p) / (n - 1))
    probs[np.arange(len(pred)), pred] = p
    return probs


def test_hand_computed_case_with_a_never_predicted_class():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 1, 0])  # class 2 is never predicted
    m = compute_metrics(y_true, _onehot(y_pred), CLASSES)
    assert m["accuracy"] == pytest.approx(3 / 6)
    # precision: a 1/2, b 2/4, c 0 (never predicted -> 0, not NaN); recall: a 1/2, b 2/2, c 0/2
    assert m["per_class"]["a"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["precision"] == 0.0
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert m["precision_macro"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 1 + 0) / 3)
    f1_a, f1_b = 0.5, 2 * 0.5 * 1 / 1.5
    assert m["f1_macro"] == pytest.approx((f1_a + f1_b + 0) / 3)
    assert m["f1_weighted"] == pytest.approx((2 * f1_a + 2 * f1_b) / 6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 1, 0]]
    assert all(v["support"] == 2 for v in m["per_class"].values())


def test_perfect_predictions_and_top2():
    y = np.array([0, 1, 2, 2])
    m = compute_metrics(y, _onehot(y), CLASSES)
    assert m["accuracy"] == m["f1_macro"] == m["roc_auc_ovr"] == 1.0
    probs = np.array([[0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.1, 0.5, 0.4], [0.1, 0.2, 0.7]])
    m = compute_metrics(np.array([0, 1, 2, 0]), probs, CLASSES)
    # top-2 hits: row0 yes, row1 yes (b second), row2 yes (c second), row3 no
    assert m["top2_accuracy"] == pytest.approx(3 / 4)
    assert m["accuracy"] == pytest.approx(1 / 4)


def test_binary_and_single_class_test_split():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    m = compute_metrics(np.array([0, 1, 1, 0]), probs, ["other", "melanoma"])
    assert m["roc_auc_ovr"] == pytest.approx(0.75)  # pos {0.8, 0.4} vs neg {0.1, 0.7}: 3 of 4 pairs ordered
    m = compute_metrics(np.array([1, 1]), np.array([[0.1, 0.9], [0.6, 0.4]]), ["other", "melanoma"])
    assert m["roc_auc_ovr"] is None and m["accuracy"] == 0.5


def test_multiclass_problem_with_only_two_classes_in_the_test_split():
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    m = compute_metrics(np.array([0, 1, 1]), probs, CLASSES)
    # renormalised p(b | a or b): 0.22, 0.78, 0.33 -> positives {0.78, 0.33} both above the negative 0.22
    assert m["roc_auc_ovr"] == pytest.approx(1.0)
