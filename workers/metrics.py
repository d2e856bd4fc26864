"""Classification metrics on the held-out split, computed with scikit-learn (pure functions)."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm


def compute_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, balanced accuracy, precision/recall/F1 (macro, weighted, per class), confusion matrix,
    one-vs-rest ROC-AUC and top-2 accuracy.

    ``y_prob`` has shape (n, num_classes). A class that is never predicted has precision 0 (not NaN).
    ROC-AUC is None when the test split does not contain at least two classes.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=float)
    n_classes = len(class_names)
    labels = list(range(n_classes))
    y_pred = y_prob.argmax(axis=1)
    out: dict = {
        "n_test": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
        for avg in ("macro", "weighted"):
            p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
            out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["top2_accuracy"] = float(skm.top_k_accuracy_score(y_true, y_prob, k=2, labels=labels)) if n_classes > 2 else 1.0
    out["roc_auc_ovr"] = _roc_auc(y_true, y_prob, labels)
    return out


def _roc_auc(y_true: np.ndarray, y_prob: np.ndarray, labels: list[int]) -> float | None:
    present = np.unique(y_true)
    if len(present) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(labels) == 2:
            return float(skm.roc_auc_score(y_true, y_prob[:, 1]))
        # Only classes present in the test split can be scored one-vs-rest.
        probs = y_prob[:, present]
        probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        if len(present) == 2:
            return float(skm.roc_auc_score(y_true == present[1], probs[:, 1]))
        return float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=present))
