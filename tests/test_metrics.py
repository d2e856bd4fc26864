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


# ------------------------------------------------------------------------------------------------ ISIC metric pack
ISIC_CLASSES = ["a", "b", "c", "d"]
ISIC_TRUE = np.array([0, 0, 0, 1, 1, 2, 2])          # d is absent from the test split
ISIC_PROBS = np.array([
    [0.7, 0.1, 0.1, 0.1],    # a -> a
    [0.4, 0.3, 0.2, 0.1],    # a -> a (by arg-max; no probability above 0.5)
    [0.2, 0.6, 0.1, 0.1],    # a -> b
    [0.1, 0.8, 0.05, 0.05],  # b -> b
    [0.2, 0.35, 0.35, 0.1],  # b -> tie of b and c: "undecided" for the scorer (arg-max would say b)
    [0.6, 0.1, 0.2, 0.1],    # c -> a
    [0.1, 0.55, 0.3, 0.05],  # c -> b; c is never predicted
])


def test_isic_balanced_multiclass_accuracy_counts_ties_as_undecided_and_skips_absent_classes():
    from workers.metrics import isic_metrics

    m = isic_metrics(ISIC_TRUE, ISIC_PROBS, ISIC_CLASSES)
    # recall a 2/3, b 1/2 (the tie is undecided), c 0/2; d absent -> left out
    assert m["balanced_multiclass_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["undecided"] == 1
    assert m["absent_classes"] == ["d"] and "absent" in m["absent_class_rule"]
    assert m["scorer"] == "isic-challenge-scoring 5.6.0"
    # scikit-learn's arg-max balanced accuracy counts the tie as b (first maximum): 5/9
    assert compute_metrics(ISIC_TRUE, ISIC_PROBS, ISIC_CLASSES)["balanced_accuracy"] == pytest.approx(5 / 9)


def test_isic_per_class_scores_by_hand():
    from workers.metrics import isic_metrics

    m = isic_metrics(ISIC_TRUE, ISIC_PROBS, ISIC_CLASSES)
    a = m["per_class"]["a"]  # p_a > 0.5 on rows 0 and 5: TP 1, FN 2, FP 1, TN 3
    assert (a["sensitivity"], a["specificity"]) == (pytest.approx(1 / 3), pytest.approx(3 / 4))
    assert (a["accuracy"], a["ppv"], a["npv"], a["dice"]) == (pytest.approx(4 / 7), pytest.approx(1 / 2),
                                                              pytest.approx(3 / 5), pytest.approx(2 / 5))
    assert a["auc"] == pytest.approx(9.5 / 12)  # positives {.7,.4,.2} vs negatives {.1,.2,.6,.1}, a tie is half
    assert a["ap"] == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)  # precision at recall 1/3, 2/3, 1
    # ROC (0,0) (0,1/3) (.25,1/3) (.25,2/3) (.5,1) (1,1); cut at tpr 0.8 -> fpr 0.35; area (.5-.35)*.9 + .5*1
    assert a["auc_sens_80"] == pytest.approx(0.635)
    c = m["per_class"]["c"]  # never predicted: no p_c above 0.5
    assert c["sensitivity"] == 0.0 and c["specificity"] == 1.0 and c["dice"] == 0.0
    assert c["ppv"] == 1.0  # the scorer's rule for an empty denominator (TP + FP = 0)
    assert c["auc"] == pytest.approx(7.5 / 10)
    d = m["per_class"]["d"]  # absent: sensitivity is the scorer's 1.0, ranking scores are undefined
    assert d["sensitivity"] == 1.0 and d["specificity"] == 1.0
    assert d["auc"] is None and d["ap"] is None and d["auc_sens_80"] is None
    assert m["per_class"]["b"]["auc"] == pytest.approx(8 / 10)
    assert m["macro"]["auc"] == pytest.approx((9.5 / 12 + 0.8 + 0.75) / 3)  # d left out
    assert m["macro"]["sensitivity"] == pytest.approx((1 / 3 + 1 / 2 + 0 + 1) / 4)  # d's 1.0 counts


def test_isic_metrics_match_the_published_scorer():
    scorer = pytest.importorskip("isic_challenge_scoring.classification")
    import pandas as pd

    from workers.metrics import isic_metrics

    rng = np.random.default_rng(3)
    y = np.concatenate([np.arange(5), rng.integers(0, 5, 55)])  # every class present (the scorer needs it)
    probs = np.round(rng.dirichlet(np.ones(5), len(y)), 1)      # rounding makes ties and undecided rows
    names = [f"k{i}" for i in range(5)]
    truth = pd.DataFrame(np.eye(5)[y], columns=names)
    weights = pd.DataFrame({"score_weight": np.ones(len(y)), "validation_weight": np.ones(len(y))})
    ref = scorer.ClassificationScore(truth, pd.DataFrame(probs, columns=names), weights,
                                     scorer.ClassificationMetric.BALANCED_ACCURACY)
    m = isic_metrics(y, probs, names)
    assert m["undecided"] > 0
    assert m["balanced_multiclass_accuracy"] == pytest.approx(ref.aggregate["balanced_accuracy"], abs=1e-12)
    for name in names:
        for metric, value in m["per_class"][name].items():
            assert value == pytest.approx(ref.per_category.loc[name, metric], abs=1e-12), (name, metric)
    for metric, value in m["macro"].items():
        assert value == pytest.approx(ref.macro_average[metric], abs=1e-12), metric


def test_predictions_csv_keeps_float32_so_rescoring_gives_the_same_metrics():
    import json

    from workers.metrics import rescore_predictions_csv
    from workers.train import _predictions_csv

    # A collapsed model: scores that differ only below the 6th decimal (6-decimal rounding would tie them).
    base = np.float32(0.3333333)
    p1 = np.array([base + np.float32(i) * np.float32(3e-8) for i in range(8)], dtype=np.float32)
    probs = np.stack([p1, 1 - p1 - np.float32(0.1), np.full(8, 0.1, dtype=np.float32)], axis=1).astype(np.float32)
    y = np.array([0, 1, 0, 1, 1, 0, 1, 1])
    metrics = compute_metrics(y, probs, CLASSES)
    text = _predictions_csv([f"img{i}" for i in range(8)], y, probs, CLASSES)
    rounded = compute_metrics(y, np.round(probs.astype(float), 6), CLASSES)
    assert rounded["isic"]["per_class"]["a"]["auc"] != metrics["isic"]["per_class"]["a"]["auc"]
    assert json.loads(json.dumps(rescore_predictions_csv(text))) == json.loads(json.dumps(metrics))
