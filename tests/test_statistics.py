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


# ------------------------------------------------------------------------------------------------ leakage
def _textured(seed: int, size: int = 28) -> np.ndarray:
    """A smooth image of four coloured blobs (distinct seeds are at least ~12 perceptual-hash bits apart)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((size, size, 3))
    for _ in range(4):
        cx, cy, s = rng.random(3)
        out += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.1 + 0.3 * s) ** 2))[..., None] * rng.random(3) * 200
    return np.clip(out, 0, 255).astype(np.uint8)


N_ORIGINALS, COPIES = 42, 6


def _leaky_dataset():
    """Seven classes of distinct textured images, with near duplicates (contrast and brightness changed) and exact
    copies of the first ``COPIES`` images planted after them."""
    images = [_textured(i) for i in range(N_ORIGINALS)]
    labels = [i % 7 for i in range(N_ORIGINALS)]
    for k in range(COPIES):
        near = np.clip(images[k].astype(float) * 0.95 + 6, 0, 255).astype(np.uint8)  # re-exposed copy
        images.append(near if k % 2 == 0 else images[k].copy())
        labels.append(labels[k])
    return np.stack(images), np.array(labels)


def test_near_and_exact_duplicates_planted_across_the_split_are_found():
    from workers.data.leakage import duplicate_pairs, hash_chunk

    images, _ = _leaky_dataset()
    hashes = hash_chunk(images)
    pairs, exact = duplicate_pairs(hashes[:, 0], hashes[:, 1], 4, hashes[:, 2].astype(bool))
    planted = {(k, N_ORIGINALS + k) for k in range(COPIES)}
    assert planted <= {tuple(p) for p in pairs.tolist()}
    assert exact.sum() == COPIES // 2 and (~exact).sum() >= COPIES // 2


def test_flat_images_match_only_exact_copies_and_flatness_is_the_pixels_standard_deviation():
    from workers.data.leakage import FLAT_STD, duplicate_pairs, hash_chunk, is_flat

    grey, darker = np.full((28, 28, 3), 120, np.uint8), np.full((28, 28, 3), 90, np.uint8)
    edge = np.zeros((10, 10, 3), np.uint8)
    edge[:5] = 4  # every channel's standard deviation is exactly 2: not below FLAT_STD
    one_channel = grey.copy()
    one_channel[::2, :, 1] = 126  # only green varies (std 3)
    hashes = hash_chunk(np.stack([grey, darker, grey.copy(), one_channel]))
    assert hashes[:, 2].tolist() == [1, 1, 1, 0]
    pairs, exact = duplicate_pairs(hashes[:, 0], hashes[:, 1], 4, hashes[:, 2].astype(bool))
    assert pairs.tolist() == [[0, 2]] and exact.tolist() == [True]  # equal flat hashes alone pair nothing
    assert not is_flat(edge) and is_flat(edge // 2)
    rng = np.random.default_rng(5)
    for spread in (0, 1, 2, 3, 4, 6):
        img = np.clip(100 + rng.integers(-spread, spread + 1, (19, 23, 3)), 0, 255).astype(np.uint8)
        assert is_flat(img) == (float(np.std(img.reshape(-1, 3), axis=0).max()) < FLAT_STD)


def _prepare(tmp_path, monkeypatch, duplicates: str):
    """The leaky set as a DermaMNIST .npz (every image in its train arrays), split at random."""
    from workers.data import prepare_data

    images, labels = _leaky_dataset()
    path = tmp_path / "dermamnist.npz"
    np.savez(path, train_images=images, train_labels=labels, val_images=images[:0], val_labels=labels[:0],
             test_images=images[:0], test_labels=labels[:0])
    monkeypatch.setenv("SKINLESION_CACHE", str(tmp_path / "cache"))
    return prepare_data({"source": "dermamnist", "path": str(path), "image_size": [28, 28]},
                        {"test_fraction": 0.25, "val_fraction": 0.2, "seed": 3, "duplicates": duplicates}, "none", {})


def test_grouped_split_keeps_planted_duplicates_on_one_side(tmp_path, monkeypatch):
    data = _prepare(tmp_path, monkeypatch, "group")
    leak = data.meta["leakage"]
    assert leak["exact_pairs"] == COPIES // 2 and leak["near_pairs"] >= COPIES // 2 and leak["grouped"]
    assert leak["across_split"] == 0 and leak["duplicate_groups"] >= COPIES
    side = {i: s for s in ("train", "val", "test") for i in getattr(data, f"ids_{s}")}
    ids = sorted(side)
    assert len(ids) == N_ORIGINALS + COPIES
    for k in range(COPIES):
        assert side[f"train/{k}"] == side[f"train/{N_ORIGINALS + k}"]


def test_refuse_stops_a_split_with_duplicates_across_it(tmp_path, monkeypatch):
    from workers.data.sources import DatasetError

    with pytest.raises(DatasetError, match=r"split\.duplicates: \d+ exact or near-duplicate"):
        _prepare(tmp_path, monkeypatch, "refuse")
