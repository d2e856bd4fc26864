"""Classification metrics on the held-out split, computed with scikit-learn (pure functions), the ISIC
challenge's own metric pack, and rescoring of a stored ``predictions.csv``."""
from __future__ import annotations

import csv
import functools
import io
import warnings

import numpy as np
from sklearn import metrics as skm


def compute_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: list[str], *,
                    confidence_intervals: bool = True) -> dict:
    """Accuracy, balanced accuracy, precision/recall/F1 (macro, weighted, per class), confusion matrix,
    one-vs-rest ROC-AUC, top-2 accuracy, the ISIC metric pack (``isic``, see ``isic_metrics``) and 95 %
    bootstrap confidence intervals of the headline metrics over the images (``ci95``, see ``bootstrap_ci``).

    ``y_prob`` has shape (n, num_classes). A class that is never predicted has precision 0 (not NaN).
    Nothing here raises for a split with absent classes or degenerate probability rows: a metric that cannot
    be computed is None and ``unavailable[name]`` says why, so a finished trial always keeps its record.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=float)
    n_classes = len(class_names)
    labels = list(range(n_classes))
    y_pred = y_prob.argmax(axis=1) if len(y_prob) else np.zeros(0, dtype=int)
    out: dict = {"n_test": int(len(y_true))}
    unavailable: dict[str, str] = {}

    def guarded(name: str, fn):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fn()
        except (ValueError, ZeroDivisionError, IndexError) as err:
            unavailable[name] = str(err).splitlines()[0] if str(err) else type(err).__name__
            return None

    if not len(y_true):
        unavailable["all"] = "the split holds no images"
    out["accuracy"] = guarded("accuracy", lambda: float(skm.accuracy_score(y_true, y_pred))) if len(y_true) else None
    out["balanced_accuracy"] = guarded("balanced_accuracy", lambda: _balanced_accuracy(y_true, y_pred))
    for avg in ("macro", "weighted"):
        prf = guarded(f"f1_{avg}", lambda: skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=avg, zero_division=0)) if len(y_true) else None
        for i, name in enumerate(("precision", "recall", "f1")):
            out[f"{name}_{avg}"] = None if prf is None else float(prf[i])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None,
                                                         zero_division=0) if len(y_true) else [np.zeros(n_classes)] * 4
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }
    out["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist() if len(y_true) else \
        np.zeros((n_classes, n_classes), dtype=int).tolist()
    out["top2_accuracy"] = (guarded("top2_accuracy", lambda: float(skm.top_k_accuracy_score(
        y_true, y_prob, k=2, labels=labels))) if len(y_true) else None) if n_classes > 2 else 1.0
    auc, why = _roc_auc(y_true, y_prob, labels)
    out["roc_auc_ovr"] = auc
    if why:
        unavailable["roc_auc_ovr"] = why
    out["isic"] = guarded("isic", lambda: isic_metrics(y_true, y_prob, class_names))
    if confidence_intervals and len(y_true) > 1:
        out["ci95"] = bootstrap_ci(y_true, y_prob, n_classes)
    out["unavailable"] = unavailable
    return out


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's definition)."""
    return float(skm.balanced_accuracy_score(y_true, y_pred)) if len(y_true) else None


def _roc_auc(y_true: np.ndarray, y_prob: np.ndarray, labels: list[int]) -> tuple[float | None, str | None]:
    """One-vs-rest macro ROC-AUC over the classes present in the split, or (None, the reason it is undefined)."""
    present = np.unique(y_true)
    if len(present) < 2:
        return None, f"the split holds {len(present)} class(es); ROC-AUC needs at least two"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(labels) == 2:
                return float(skm.roc_auc_score(y_true, y_prob[:, 1])), None
            # Only classes present in the split can be scored one-vs-rest, on probabilities renormalised to them.
            probs = y_prob[:, present]
            sums = probs.sum(axis=1, keepdims=True)
            if (sums <= 0).any():
                return None, (f"{int((sums <= 0).sum())} row(s) give zero probability to every class present in "
                              "the split, so probabilities over the present classes are undefined")
            probs = probs / sums
            if len(present) == 2:
                return float(skm.roc_auc_score(y_true == present[1], probs[:, 1])), None
            return float(skm.roc_auc_score(y_true, probs, multi_class="ovr", labels=present)), None
    except ValueError as err:
        return None, str(err).splitlines()[0]


# ------------------------------------------------------------------------------------------------ uncertainty
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_METHOD = (f"95 % percentile bootstrap over the split's images (scipy.stats.bootstrap, "
                    f"{BOOTSTRAP_RESAMPLES} resamples, seed 0)")
CI_METRICS = ("accuracy", "balanced_accuracy", "f1_macro")


def bootstrap_ci(y_true: np.ndarray, y_prob: np.ndarray, n_classes: int) -> dict:
    """95 % confidence intervals ``[low, high]`` of accuracy, balanced accuracy and macro F1, resampling the
    split's images (``scipy.stats.bootstrap``, paired, percentile method, fixed seed: the same predictions
    always give the same interval). The resampled scores come from confusion counts, vectorised over the
    resamples, with scikit-learn's definitions (balanced accuracy: mean recall over the classes present; macro
    F1 over every class, 0 where undefined). A metric whose interval cannot be computed is None."""
    from scipy import stats

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_prob).argmax(axis=1).astype(np.int64)
    out: dict = {"method": BOOTSTRAP_METHOD}
    for name in CI_METRICS:
        try:
            with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
                warnings.simplefilter("ignore")
                res = stats.bootstrap((y_true, y_pred), functools.partial(_resampled_score, name, n_classes),
                                      paired=True, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES, batch=250,
                                      method="percentile", rng=np.random.default_rng(0))
            low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
            out[name] = [low, high] if np.isfinite(low) and np.isfinite(high) else None
        except ValueError:
            out[name] = None
    return out


def _resampled_score(name: str, k: int, t: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """``name`` of every resample (rows of ``t``/``p``, images along ``axis``) from its confusion counts."""
    t, p = np.moveaxis(np.atleast_2d(t), axis, -1), np.moveaxis(np.atleast_2d(p), axis, -1)
    lead = t.shape[:-1]
    t, p = t.reshape(-1, t.shape[-1]), p.reshape(-1, p.shape[-1])
    batch = len(t)
    flat = (t * k + p) + (np.arange(batch) * k * k)[:, None]
    cm = np.bincount(flat.ravel(), minlength=batch * k * k).reshape(batch, k, k).astype(float)
    tp, support, predicted = np.diagonal(cm, axis1=1, axis2=2), cm.sum(axis=2), cm.sum(axis=1)
    if name == "accuracy":
        score = tp.sum(axis=1) / t.shape[1]
    elif name == "balanced_accuracy":
        recall = np.where(support > 0, tp / np.where(support > 0, support, 1), np.nan)
        score = np.nanmean(recall, axis=1)
    else:
        denominator = 2 * tp + (predicted - tp) + (support - tp)
        score = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0).mean(axis=1)
    return score.reshape(lead) if lead else score[0]


# ------------------------------------------------------------------------------------------------ ISIC challenge
ISIC_SCORER = "isic-challenge-scoring 5.6.0"
ISIC_PER_CLASS = ("sensitivity", "specificity", "accuracy", "ppv", "npv", "dice", "auc", "auc_sens_80", "ap")
ISIC_ABSENT_CLASS_RULE = (
    "a class absent from the test split counts as the ISIC scorer counts it: left out of balanced multiclass "
    "accuracy (its recall is 0/0, and the scorer's mean skips NaN), sensitivity 1.0 (the scorer's rule when a "
    "class has no positives); its AUC, AUC above 80 % sensitivity and average precision are undefined (null) and "
    "left out of the macro averages (the scorer's per-class means skip NaN; the scorer itself cannot compute AUC "
    "above 80 % sensitivity for such a class and stops)")


def isic_metrics(y_true: np.ndarray, y_prob: np.ndarray, class_names: list[str]) -> dict:
    """The ISIC challenge's classification metrics, with the definitions of its published scorer
    (``isic-challenge-scoring`` 5.6.0, ``isic_challenge_scoring/metrics.py`` and ``classification.py``):

    * ``balanced_multiclass_accuracy`` (the ranking metric): mean over classes of recall of the predicted
      label, the predicted label being the arg-max probability; a row whose maximum is tied is "undecided"
      and counts as wrong for every class (``undecided`` says how many rows).
    * per class (one-vs-rest; ``per_class[name]``): sensitivity, specificity, accuracy, PPV, NPV and Dice of
      the binary prediction ``p > 0.5`` (strictly), with the scorer's 1.0 for an empty denominator; ROC ``auc``;
      ``auc_sens_80``, the raw (not McClish-corrected) area under the ROC curve where sensitivity >= 0.8; and
      ``ap``, average precision.
    * ``macro``: the mean of each per-class metric over the classes where it is defined.

    ``absent_classes`` names classes that do not occur in ``y_true``; they are handled as
    ``ISIC_ABSENT_CLASS_RULE`` says (also stored in the result when there are any).
    """
    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=float)
    n_classes = len(class_names)
    predicted, undecided = _isic_labels(y_prob)
    recalls = []
    for k in range(n_classes):
        positives = y_true == k
        if positives.any():
            recalls.append(float(np.sum(positives & (predicted == k)) / np.sum(positives)))
    per_class = {name: _isic_class_scores(y_true == k, y_prob[:, k]) for k, name in enumerate(class_names)}
    macro = {}
    for metric in ISIC_PER_CLASS:
        values = [v[metric] for v in per_class.values() if v[metric] is not None]
        macro[metric] = float(np.mean(values)) if values else None
    absent = [name for k, name in enumerate(class_names) if not np.any(y_true == k)]
    out = {
        "scorer": ISIC_SCORER,
        "balanced_multiclass_accuracy": float(np.mean(recalls)) if recalls else None,
        "undecided": int(undecided.sum()),
        "per_class": per_class,
        "macro": macro,
        "absent_classes": absent,
    }
    if absent:
        out["absent_class_rule"] = ISIC_ABSENT_CLASS_RULE
    return out


def _isic_labels(y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Arg-max labels, -1 where the maximum is shared by several classes (the scorer's "undecided")."""
    top = y_prob.max(axis=1, keepdims=True)
    undecided = (y_prob == top).sum(axis=1) > 1
    return np.where(undecided, -1, y_prob.argmax(axis=1)), undecided


def _ratio_or_one(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 1.0


def _isic_class_scores(truth: np.ndarray, prob: np.ndarray) -> dict:
    """One class against the rest, as the scorer's ``ClassificationScore._category_score``."""
    predicted = prob > 0.5
    tp, tn = int(np.sum(truth & predicted)), int(np.sum(~truth & ~predicted))
    fp, fn = int(np.sum(~truth & predicted)), int(np.sum(truth & ~predicted))
    both_present = 0 < truth.sum() < len(truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "sensitivity": _ratio_or_one(tp, tp + fn),
            "specificity": _ratio_or_one(tn, tn + fp),
            "accuracy": float((tp + tn) / len(truth)) if len(truth) else None,
            "ppv": _ratio_or_one(tp, tp + fp),
            "npv": _ratio_or_one(tn, tn + fn),
            "dice": _ratio_or_one(2 * tp, 2 * tp + fp + fn),
            "auc": float(skm.roc_auc_score(truth, prob)) if both_present else None,
            "auc_sens_80": auc_above_sensitivity(truth, prob, 0.8) if both_present else None,
            "ap": float(skm.average_precision_score(truth, prob)) if both_present else None,
        }


def auc_above_sensitivity(truth: np.ndarray, prob: np.ndarray, sensitivity: float = 0.8) -> float:
    """Raw partial area under the ROC curve over the part where the true-positive rate is at least
    ``sensitivity`` (the scorer's ``auc_above_sensitivity``: the curve is cut at that rate, with a point
    interpolated exactly on it; no McClish correction). Needs positives and negatives in ``truth``."""
    fpr, tpr, _ = skm.roc_curve(truth, prob, drop_intermediate=False)
    i = int(tpr.searchsorted(sensitivity, side="left"))
    fpr_at = np.interp(sensitivity, tpr[i - 1:i + 1], fpr[i - 1:i + 1])
    return float(skm.auc(np.insert(fpr[i:], 0, fpr_at), np.insert(tpr[i:], 0, sensitivity)))


# ------------------------------------------------------------------------------------------------ predictions.csv
def format_probability(value) -> str:
    """A probability as the shortest decimal that reads back as the same float32 (numpy's float32 repr)."""
    return str(np.float32(value))


def read_predictions_csv(text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``predictions.csv`` -> (true class indices, float32 probabilities, class names from the ``p_`` columns)."""
    rows = list(csv.reader(io.StringIO(text)))
    header, body = rows[0], [r for r in rows[1:] if r]
    prob_cols = [i for i, name in enumerate(header) if name.startswith("p_")]
    class_names = [header[i][2:] for i in prob_cols]
    index = {name: k for k, name in enumerate(class_names)}
    true_col = header.index("true_class")
    y_true = np.array([index[r[true_col]] for r in body], dtype=int)
    probs = np.array([[r[i] for i in prob_cols] for r in body], dtype=np.float32).reshape(len(body), len(prob_cols))
    return y_true, probs, class_names


def rescore_predictions_csv(text: str, confidence_intervals: bool = True) -> dict:
    """The metrics of a stored ``predictions.csv``: equal to the ``metrics`` of the trial's record.json (less
    ``validation``); of its ``val_predictions.csv`` with ``confidence_intervals=False``: ``metrics.validation``."""
    y_true, probs, class_names = read_predictions_csv(text)
    return compute_metrics(y_true, probs, class_names, confidence_intervals=confidence_intervals)
